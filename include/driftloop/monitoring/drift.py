"""Drift computation: Evidently's data drift preset on the features plus prediction drift on the model's
outputs.

The outputs tested are the version's score (binary: positive-class probability; regression: the value) or, for
multiclass, every class's probability; the prediction drift score is their mean and the prediction drifted
when any of them did.

Pure computation on two frames; reading batches, references and MLflow is
:mod:`driftloop.monitoring.monitor`'s job.
"""

from __future__ import annotations

from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import MonitoringError

SCORE_COLUMN = bus.SCORE_COLUMN


def compute_drift(
    cfg: DatasetConfig, reference_df: Any, current_df: Any, output_columns: tuple[str, ...] = (SCORE_COLUMN,)
) -> dict[str, Any]:
    """Run Evidently's data drift preset on the features and a separate drift check on each output column.

    Evidently picks the test per column from the reference size: p-values (K-S, chi-square, Z) up to 1,000
    reference rows, distances (normed Wasserstein, Jensen-Shannon) above; ``methods`` says which one was used.
    A feature that is empty on one side only cannot be tested and counts as drifted.

    Args:
        cfg: Dataset config (feature types are declared from it, never inferred).
        reference_df: Reference frame with ``cfg.features`` and the output columns.
        current_df: Current frame with the same columns.
        output_columns: The model outputs to test (``score``, or the ``proba_<label>`` columns).

    Returns:
        ``drift_share`` and ``drifted_columns`` over the features only, ``drift_scores`` and ``methods`` per
        tested column (score included), ``drifted_column_names``, ``empty_columns``,
        ``prediction_drift_score``, ``prediction_drifted`` and the Evidently ``snapshot`` (for ``save_html``).
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
    snapshot_dict: dict[str, Any], features: list[str], outputs: list[str] | tuple[str, ...] = (SCORE_COLUMN,)
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


def _normalise(cfg: DatasetConfig, frame: Any, outputs: list[str]) -> Any:
    import pandas as pd

    frame = frame.copy()
    for col in [*cfg.numeric_features, *outputs]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    # Categories compared as strings, so 0/1 stored as int in one file and str in another is not "drift".
    for col in cfg.categorical_features:
        frame[col] = frame[col].where(frame[col].isna(), frame[col].astype(str))
    return frame.reset_index(drop=True)
