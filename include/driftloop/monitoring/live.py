"""Live performance: late labels joined to a batch's predictions, per task, and how far it fell from the
holdout.

Labels arrive after features. Each time more of a scored batch is labelled, its monitoring run gets the task's
live metrics (binary F1/AUC, multiclass macro-F1/accuracy, regression RMSE/MAE), ``live_drop`` (the relative
degradation of the task's primary metric against the version's holdout value; the sensor's performance
trigger) and fairness on the labelled rows. Pure computation on frames; :mod:`driftloop.monitoring.monitor`
reads the files.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import ConfigError, MonitoringError
from driftloop.core.storage import StoragePath, store_errors, to_uri
from driftloop.core.task_types import LIVE_PRIMARY, Decision, live_metrics, read_decision, relative_drop
from driftloop.monitoring.samples import BatchSample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionFacts:
    """What monitoring needs of the version that scored a batch, read once from its training run.

    Attributes:
        decision: How the version decides (task, classes, threshold).
        holdout: Its holdout metrics (``holdout_<metric>``).
    """

    decision: Decision
    holdout: dict[str, float]

    @property
    def output_columns(self) -> tuple[str, ...]:
        """Prediction columns drift is tested on: the score, or every class probability (multiclass)."""
        columns = self.decision.output_columns()
        probabilities = tuple(c for c in columns if c not in (bus.PREDICTION_COLUMN, bus.SCORE_COLUMN))
        return probabilities or (bus.SCORE_COLUMN,)

    @property
    def scored_columns(self) -> tuple[str, ...]:
        """Every prediction column live metrics may read: prediction, score and the outputs."""
        return tuple(dict.fromkeys([bus.PREDICTION_COLUMN, bus.SCORE_COLUMN, *self.output_columns]))


GONE_CODES = ("RESOURCE_DOES_NOT_EXIST",)


def read_version_facts(cfg: DatasetConfig, client: Any, training_run_id: str) -> VersionFacts:
    """The decision and holdout metrics recorded on a training run (the config's decision when it is gone).

    Only a training run that does not exist (deleted, or no id recorded) falls back to the config's decision,
    and costs the live drop (no holdout metrics to compare with); that is logged. Any other failure (MLflow
    unreachable, a timeout, a server error) is a fault and propagates, so the task is retried.

    Raises:
        MonitoringError: The run is gone and the config alone cannot say how the version decides (multiclass
            needs the class list the run recorded).
        MlflowException: Any failure other than a missing run (a fault: retried).
    """
    from mlflow.exceptions import MlflowException

    try:
        if not training_run_id:
            raise LookupError("the scoring run records no training run id")
        run = client.get_run(training_run_id)
    except (LookupError, MlflowException) as exc:
        if isinstance(exc, MlflowException) and exc.error_code not in GONE_CODES:
            raise
        log.warning(
            "training run %r not found (%s): monitoring with the config's decision and without holdout "
            "metrics, so this batch gets no live drop",
            training_run_id,
            exc,
        )
        try:
            return VersionFacts(read_decision(cfg, {}), {})
        except ConfigError as missing:
            raise MonitoringError(
                f"training run {training_run_id!r} not found, and the config alone cannot say how the "
                "version "
                f"decides: {missing}"
            ) from exc
    metrics = {k: v for k, v in run.data.metrics.items() if k in bus.HOLDOUT_METRICS}
    return VersionFacts(read_decision(cfg, run.data.tags), metrics)


def fingerprint_labels(label_files: list[StoragePath]) -> str:
    """Identity of the accepted label set; label files are immutable, so names and sizes suffice."""
    if not label_files:
        return "none"
    with store_errors(to_uri(label_files[0].parent)):
        listing = "\n".join(f"{path.name}:{path.stat().st_size}" for path in label_files)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def awaits_labels(run: Any, fingerprint: str) -> bool:
    """True when the label set changed since the run was last joined and the run is not fully labelled."""
    if run.data.tags.get(bus.LABELS_FINGERPRINT_TAG) == fingerprint:
        return False
    metrics: dict[str, float] = run.data.metrics
    return metrics.get(bus.LABELLED_ROWS, 0.0) < metrics.get(bus.ROWS, float("inf"))


def measure_live(cfg: DatasetConfig, facts: VersionFacts, matched: Any) -> dict[str, float]:
    """Live metrics, labelled rows and ``live_drop`` of labelled predictions (one row per id, label in
    ``cfg.target``)."""
    live = live_metrics(facts.decision, matched[cfg.target], matched)
    live[bus.LABELLED_ROWS] = float(len(matched))
    drop = relative_drop(facts.decision.task, live, facts.holdout)
    if drop is not None:
        live[bus.LIVE_DROP] = drop
    return live


def live_drop_metric(facts: VersionFacts) -> str:
    """The live metric ``live_drop`` is about, for the run's ``live_drop_metric`` tag."""
    return bus.live_metric(LIVE_PRIMARY[facts.decision.task])


def fairness_of(
    cfg: DatasetConfig, facts: VersionFacts, matched: Any, sensitive_rows: Any
) -> dict[str, float]:
    """Fairness metrics (``fairness.<attribute>.<gap>``) of labelled predictions.

    Args:
        cfg: Dataset config (``sensitive``).
        facts: The scoring version's facts.
        matched: Labelled predictions, one row per id, the label in ``cfg.target``.
        sensitive_rows: The batch's id and sensitive columns for (at least) the matched ids.
    """
    from driftloop.governance.fairness import assess_decisions, fairness_metrics

    rows = sensitive_rows.drop_duplicates(cfg.id_column, keep="last").merge(matched, on=cfg.id_column)
    report = assess_decisions(cfg, rows, facts.decision, {bus.PREDICTION_COLUMN: rows[bus.PREDICTION_COLUMN]})
    return fairness_metrics(report)


def live_performance(cfg: DatasetConfig, facts: VersionFacts, sample: BatchSample) -> dict[str, float]:
    """Live metrics, ``live_drop`` and fairness on a batch's labelled sample ({} below ``min_rows``).

    ``labelled_rows`` counts every labelled row of the batch; metrics and fairness use the sample.
    """
    labelled = sample.labelled
    if sample.labelled_rows < cfg.monitoring.min_rows or len(labelled) < cfg.monitoring.min_rows:
        return {}
    sensitive = [c for c in cfg.sensitive_features if c in labelled.columns]
    matched = labelled.drop(columns=sensitive)
    performance = measure_live(cfg, facts, matched)
    performance[bus.LABELLED_ROWS] = float(sample.labelled_rows)
    if sensitive:
        performance.update(fairness_of(cfg, facts, matched, labelled[[cfg.id_column, *sensitive]]))
    return performance
