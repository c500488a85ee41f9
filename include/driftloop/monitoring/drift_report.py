"""Evidently's drift report: the HTML a monitoring run logs, and Evidently's own drift numbers.

:func:`evidently_drift` runs Evidently 0.7's data drift preset on the features plus ``ValueDrift`` on each
model output and reads the numbers out of its snapshot; it was how monitoring computed drift before
:mod:`driftloop.monitoring.drift_stats`, and stays as the reference those statistics are checked against
(``tests/unit/test_drift_stats.py``, ``bench/bench_monitoring.py``). :class:`DriftReport` renders the HTML
users open from a monitoring run, with Evidently, only when it is saved and on at most ``max_rows`` current
rows; when the run compared more rows, the page says so above Evidently's report.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import MonitoringError

# Evidently draws a histogram, a binned scatter and correlations per column, and computes each column three
# times: ~0.7 s on 10,000 rows and 20 columns, ~1.6 s on 50,000, ~20 s on 1M (idle 2-core machine, warm). The
# HTML of a larger comparison is drawn on a seeded sample of this many current rows; the page says so.
REPORT_MAX_ROWS = 10_000
REPORT_SEED = 42


def evidently_drift(
    cfg: DatasetConfig, reference_df: Any, current_df: Any, output_columns: tuple[str, ...]
) -> dict[str, Any]:
    """Run Evidently's data drift preset on the features and a separate drift check on each output column.

    Evidently picks the test per column from the reference size: p-values (K-S, chi-square, Z) up to 1,000
    reference rows, distances (normed Wasserstein, Jensen-Shannon) above; ``methods`` says which one was used.
    A feature that is empty on one side only cannot be tested and counts as drifted.

    Returns:
        What :func:`driftloop.monitoring.drift.compute_drift` returns, with Evidently's numbers and its
        ``snapshot`` (which has ``save_html``).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    features, outputs = list(cfg.features), list(output_columns)
    reference_df = _normalise(cfg, reference_df[[*features, *outputs]], outputs)
    current_df = _normalise(cfg, current_df[[*features, *outputs]], outputs)
    empty_ref = {col for col in features if reference_df[col].isna().all()}
    empty_cur = {col for col in features if current_df[col].isna().all()}
    tested = [col for col in features if col not in empty_ref | empty_cur]
    definition = DataDefinition(
        numerical_columns=[
            col for col in [*cfg.numeric_features, *outputs] if col not in empty_ref | empty_cur
        ],
        categorical_columns=[col for col in cfg.categorical_features if col in tested],
    )
    metrics: list[Any] = [ValueDrift(column=col) for col in outputs]
    if tested:
        metrics.insert(0, DataDriftPreset(columns=tested, drift_share=cfg.monitoring.drift_share_threshold))
    snapshot = Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(current_df[[*tested, *outputs]], data_definition=definition),
        reference_data=Dataset.from_pandas(reference_df[[*tested, *outputs]], data_definition=definition),
    )
    result = extract_drift(snapshot.dict(), tested, outputs)
    drifted_empty = sorted(empty_ref ^ empty_cur)  # empty on both sides is no change
    drifted_names = [col for col in features if col in result["drifted_column_names"] or col in drifted_empty]
    result.update(
        drift_share=len(drifted_names) / len(features),
        drifted_columns=float(len(drifted_names)),
        drifted_column_names=drifted_names,
        empty_columns=sorted(empty_ref | empty_cur),
        snapshot=snapshot,
    )
    return result


def extract_drift(
    snapshot_dict: dict[str, Any],
    features: list[str],
    outputs: list[str] | tuple[str, ...] = (bus.SCORE_COLUMN,),
) -> dict[str, Any]:
    """Pull drift numbers out of an Evidently 0.7 snapshot dict (``Snapshot.dict()``).

    Args:
        snapshot_dict: Snapshot of a report with ``DataDriftPreset(columns=features)`` and
            ``ValueDrift(column=...)`` per output, run with ``include_tests=True``.
        features: Feature columns; the drift share is computed over these only.
        outputs: The model output columns tested.

    Returns:
        ``drift_share``, ``drifted_columns``, ``drift_scores``, ``methods``, ``drifted_column_names``,
        ``prediction_drift_score`` and ``prediction_drifted``.
    """
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    for metric in snapshot_dict["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            scores[config["column"]] = float(metric["value"])
            methods[config["column"]] = str(config.get("method", ""))
    drifted: dict[str, bool] = {}
    for test in snapshot_dict.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift"):
            status = getattr(test["status"], "value", test["status"])
            drifted[params["column"]] = str(status).upper() == "FAIL"
    missing = [col for col in [*features, *outputs] if col not in scores or col not in drifted]
    if missing:
        raise MonitoringError(f"Evidently snapshot lacks drift results for columns {missing}")
    drifted_names = [col for col in features if drifted[col]]
    return {
        "drift_share": len(drifted_names) / len(features) if features else 0.0,
        "drifted_columns": float(len(drifted_names)),
        "drift_scores": scores,
        "methods": methods,
        "drifted_column_names": drifted_names,
        "prediction_drift_score": sum(scores[col] for col in outputs) / len(outputs),
        "prediction_drifted": any(drifted[col] for col in outputs),
        "output_columns": list(outputs),
    }


class DriftReport:
    """Evidently's HTML drift report of a comparison, drawn when saved (on at most ``max_rows`` current rows).

    Args:
        cfg: Dataset config.
        reference_df: The reference frame compared.
        current_df: The current frame compared.
        output_columns: The model outputs tested.
        max_rows: Current rows Evidently draws at most (a seeded sample above that).
    """

    def __init__(
        self,
        cfg: DatasetConfig,
        reference_df: Any,
        current_df: Any,
        output_columns: tuple[str, ...],
        max_rows: int = REPORT_MAX_ROWS,
    ) -> None:
        self.cfg, self.reference_df, self.current_df = cfg, reference_df, current_df
        self.output_columns, self.max_rows = output_columns, max_rows

    @property
    def sampled(self) -> bool:
        """Whether the report is drawn on a sample of the current rows compared."""
        return len(self.current_df) > self.max_rows

    def save_html(self, path: str) -> None:
        """Write the report to ``path``, with a note above it when it is drawn on a sample."""
        current = self.current_df
        if self.sampled:
            current = current.sample(self.max_rows, random_state=REPORT_SEED)
        snapshot = evidently_drift(self.cfg, self.reference_df, current, self.output_columns)["snapshot"]
        snapshot.save_html(path)
        if self.sampled:
            note = (
                f"Drawn by Evidently on a sample of {self.max_rows:,} of the {len(self.current_df):,} "
                "current rows compared. The monitoring run's drift scores and decisions (its metrics and "
                f"{bus.DRIFT_SUMMARY_ARTIFACT}) are computed on all of them, with the same tests."
            )
            page = Path(path)
            text = page.read_text(encoding="utf-8")
            banner = f'<p style="font-family:sans-serif;margin:8px">{html.escape(note)}</p>'
            head, body, rest = text.partition("<body>")
            page.write_text(head + body + banner + rest if body else banner + text, encoding="utf-8")


def _normalise(cfg: DatasetConfig, frame: Any, outputs: list[str]) -> Any:
    import pandas as pd

    frame = frame.copy()
    for col in [*cfg.numeric_features, *outputs]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    # Categories compared as strings, so 0/1 stored as int in one file and str in another is not "drift".
    for col in cfg.categorical_features:
        frame[col] = frame[col].where(frame[col].isna(), frame[col].astype(str))
    return frame.reset_index(drop=True)
