"""Drift computation: the tests of Evidently's data drift preset on the features plus prediction drift on the
model's outputs.

The outputs tested are the version's score (binary: positive-class probability; regression: the value) or, for
multiclass, every class's probability; the prediction drift score is their mean and the prediction drifted
when any of them did.

The scores and decisions are computed with numpy on each column's value counts
(:mod:`driftloop.monitoring.drift_stats`: the same tests, thresholds and verdicts as Evidently 0.7's, in a
fraction of its time on large batches); Evidently draws the HTML report users open
(:class:`driftloop.monitoring.drift_report.DriftReport`). Pure computation on two frames; reading batches,
references and MLflow is :mod:`driftloop.monitoring.monitor`'s job.
"""

from __future__ import annotations

from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import MonitoringError
from driftloop.monitoring.drift_report import REPORT_MAX_ROWS, DriftReport, extract_drift

SCORE_COLUMN = bus.SCORE_COLUMN

__all__ = ["compute_drift", "extract_drift"]


def compute_drift(
    cfg: DatasetConfig,
    reference_df: Any,
    current_df: Any,
    output_columns: tuple[str, ...] = (SCORE_COLUMN,),
    report_rows: int = REPORT_MAX_ROWS,
) -> dict[str, Any]:
    """Test every feature and each output column for drift, as Evidently's data drift preset does.

    The test per column follows the reference size: p-values (K-S, chi-square, Z) up to 1,000 reference rows,
    distances (normed Wasserstein, Jensen-Shannon) above; ``methods`` says which one was used. A feature that
    is empty on one side only cannot be tested and counts as drifted.

    Args:
        cfg: Dataset config (feature types are declared from it, never inferred).
        reference_df: Reference frame with ``cfg.features`` and the output columns.
        current_df: Current frame with the same columns.
        output_columns: The model outputs to test (``score``, or the ``proba_<label>`` columns).
        report_rows: Current rows the HTML report is drawn on at most.

    Returns:
        ``drift_share`` and ``drifted_columns`` over the features only, ``drift_scores`` and ``methods`` per
        tested column (score included), ``drifted_column_names``, ``empty_columns``,
        ``prediction_drift_score``, ``prediction_drifted``, ``output_columns`` and the ``snapshot`` (a
        :class:`DriftReport`, for ``save_html``).

    Raises:
        MonitoringError: An output column has no value on one side.
    """
    from driftloop.monitoring import drift_stats

    features, outputs = list(cfg.features), list(output_columns)
    numeric = {*cfg.numeric_features, *outputs}
    missing = [col for col in [*features, *outputs] if col not in reference_df or col not in current_df]
    if missing:
        raise MonitoringError(f"drift cannot be computed: columns {missing} are missing")

    def counts(frame: Any, col: str) -> drift_stats.Counts:
        series = frame[col]
        return drift_stats.numeric_counts(series) if col in numeric else drift_stats.category_counts(series)

    tests: dict[str, drift_stats.ColumnDrift] = {}
    empty_ref: set[str] = set()
    empty_cur: set[str] = set()
    for col in [*features, *outputs]:
        ref, cur = counts(reference_df, col), counts(current_df, col)
        if ref.rows and cur.rows:
            tests[col] = drift_stats.column_drift(ref, cur, numeric=col in numeric)
        elif col in outputs:
            side = "reference" if not ref.rows else "current"
            raise MonitoringError(f"the model output {col!r} has no value in the {side} rows")
        else:
            (empty_ref if not ref.rows else empty_cur).add(col)
    empty = empty_ref | empty_cur
    # Empty on both sides is no change; empty on one side only is drift.
    drifted_names = [
        col for col in features if (col in tests and tests[col].drifted) or col in empty_ref ^ empty_cur
    ]
    scores = {col: test.score for col, test in tests.items()}
    return {
        "drift_share": len(drifted_names) / len(features) if features else 0.0,
        "drifted_columns": float(len(drifted_names)),
        "drift_scores": scores,
        "methods": {col: test.method for col, test in tests.items()},
        "drifted_column_names": drifted_names,
        "prediction_drift_score": sum(scores[col] for col in outputs) / len(outputs),
        "prediction_drifted": any(tests[col].drifted for col in outputs),
        "output_columns": outputs,
        "empty_columns": sorted(empty),
        "snapshot": DriftReport(cfg, reference_df, current_df, output_columns, report_rows),
    }
