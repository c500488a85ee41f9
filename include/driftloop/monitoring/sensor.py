"""The drift sensor's decision: does a monitoring result of the current champion call for retraining?

:func:`find_drift_trigger` is a pure read (a registry call and two run searches), so the deferrable sensor can
ask it from Airflow's triggerer as often as it likes. Writing happens in two separate calls:
:func:`mark_trigger_fired` after the retraining run was queued, and :func:`suppress_cooldown_runs`, which
labels results that the cooldown held back so the MLflow UI says why they did not fire.

Rules (thresholds in ``cfg.monitoring``): a FINISHED monitoring run of the current champion version crosses
when its live primary metric (F1, macro-F1 or RMSE, by task) is worse than the champion's holdout value by
more than ``performance_drop_threshold`` (relative), and, as ``retrain_on`` says, when its drift share is at
least ``drift_share_threshold`` (``drift``) or its estimated primary metric is worse by more than that
threshold across its whole band (``estimated_performance``: labels have not told yet, the calibrated scores
have). A
result fires at most once (``sensor_fired_at``), results covered by a firing never fire
(``sensor_suppressed``), and results that started less than ``cooldown_s`` after the last firing never fire
either, so one drift episode retrains once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from driftloop.core import bus, registry
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.tracking import FINISHED, get_client, search_runs
from driftloop.monitoring.monitoring_results import DriftDecision, FiredTrigger, RetrainingTrigger

log = logging.getLogger(__name__)


def _champion_version(client: Any, model_name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, bus.CHAMPION).version)
    except MlflowException:
        return None


def crosses_drift(cfg: DatasetConfig, metrics: dict[str, float]) -> bool:
    """Drift share at or above the threshold, when drift retrains (``monitoring.retrain_on``)."""
    return (
        "drift" in cfg.monitoring.retrain_on
        and metrics.get(bus.DRIFT_SHARE, 0.0) >= cfg.monitoring.drift_share_threshold
    )


def crosses_estimate(cfg: DatasetConfig, metrics: dict[str, float]) -> bool:
    """The estimated primary metric is worse than the holdout by more than the threshold even at the band's
    optimistic end, when estimated performance retrains (``monitoring.retrain_on``)."""
    return (
        "estimated_performance" in cfg.monitoring.retrain_on
        and bus.ESTIMATED_DROP_BEST_CASE in metrics
        and metrics[bus.ESTIMATED_DROP_BEST_CASE] > cfg.monitoring.performance_drop_threshold
    )


def crossing_reason(cfg: DatasetConfig, metrics: dict[str, float]) -> str | None:
    """Why a monitoring result calls for retraining (``performance``, ``estimated_performance`` or
    ``drift``, in that order), or None."""
    if crosses_performance(cfg, metrics):
        return "performance"
    if crosses_estimate(cfg, metrics):
        return "estimated_performance"
    return "drift" if crosses_drift(cfg, metrics) else None


def crosses_performance(cfg: DatasetConfig, metrics: dict[str, float]) -> bool:
    """The live primary metric is worse than the champion's holdout value by more than the threshold."""
    return bus.LIVE_DROP in metrics and metrics[bus.LIVE_DROP] > cfg.monitoring.performance_drop_threshold


def _unhandled_crossing_runs(cfg: DatasetConfig, client: Any, champion_version: str) -> list[Any]:
    """FINISHED monitoring runs of ``champion_version`` that cross and carry no sensor tag, newest first."""
    runs = search_runs(
        client,
        cfg.experiment_name("monitoring"),
        {bus.CHAMPION_VERSION_TAG: champion_version},
        extra_filter=FINISHED,
    )
    return [
        run
        for run in runs
        if bus.SENSOR_FIRED_AT_TAG not in run.data.tags
        and bus.SENSOR_SUPPRESSED_TAG not in run.data.tags
        and crossing_reason(cfg, run.data.metrics) is not None
    ]


def last_fired_s(cfg: DatasetConfig, client: Any) -> float | None:
    """Epoch seconds of the newest firing in this dataset's monitoring experiment, or None."""
    fired = search_runs(
        client, cfg.experiment_name("monitoring"), extra_filter=f"tags.`{bus.SENSOR_FIRED_AT_TAG}` LIKE '%'"
    )
    times = [
        float(run.data.tags[bus.SENSOR_FIRED_AT_TAG])
        for run in fired
        if run.data.tags.get(bus.SENSOR_FIRED_AT_TAG)
    ]
    return max(times) if times else None


def _in_cooldown(cfg: DatasetConfig, run: Any, fired_s: float | None) -> bool:
    return fired_s is not None and run.info.start_time / 1000 < fired_s + cfg.monitoring.cooldown_s


def _describe(cfg: DatasetConfig, run: Any, champion_version: str, reason: str, crossing: int) -> str:
    metrics, thresholds = run.data.metrics, cfg.monitoring
    batch_id = run.data.tags.get(bus.BATCH_ID_TAG, "?")
    parts = [
        f"drift share {metrics.get(bus.DRIFT_SHARE, 0.0):.2f} "
        f"({int(metrics.get(bus.DRIFTED_COLUMNS, 0))} of {len(cfg.features)} features; "
        f"threshold {thresholds.drift_share_threshold:.2f})"
    ]
    if bus.LIVE_DROP in metrics:
        name = run.data.tags.get(bus.LIVE_DROP_METRIC_TAG, bus.LIVE_F1)
        parts.append(
            f"{name} {metrics.get(name, float('nan')):.3f} is {metrics[bus.LIVE_DROP]:.1%} worse than on the "
            "holdout "
            f"(threshold {thresholds.performance_drop_threshold:.0%}, "
            f"{int(metrics.get(bus.LABELLED_ROWS, 0))} "
            "labelled rows)"
        )
    if bus.ESTIMATED_DROP in metrics:
        method, estimated_rows = (
            run.data.tags.get(bus.ESTIMATION_METHOD_TAG, ""),
            metrics.get(bus.ESTIMATED_ROWS, 0),
        )
        parts.append(
            f"the estimate before labels is {metrics[bus.ESTIMATED_DROP]:.1%} worse than on the holdout (at "
            f"least {metrics.get(bus.ESTIMATED_DROP_BEST_CASE, float('nan')):.1%} across its band; threshold "
            f"{thresholds.performance_drop_threshold:.0%}; "
            f"{method} on {int(estimated_rows)} rows)"
        )
    return (
        f"{reason} trigger for champion v{champion_version}: batch {batch_id} has "
        + "; ".join(parts)
        + f" ({crossing} crossing monitoring run(s) not yet acted on)."
    )


def newest_snapshot_hash(cfg: DatasetConfig, settings: Settings | None = None) -> str | None:
    """Hash of the newest training snapshot (a read of the snapshot manifests), or None when there is none."""
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import list_manifests

    manifests = list_manifests(StatePaths.for_dataset(cfg, settings).snapshots_dir)
    return str(manifests[-1]["snapshot_hash"]) if manifests else None


def drift_decision(cfg: DatasetConfig, settings: Settings | None = None) -> DriftDecision:
    """The sensor's decision with its reason: fire, nothing to fire, or a crossing that waits for labels.

    A crossing result does not fire while the newest training snapshot is the one the champion was trained on
    (the retrain would reproduce the champion): it stays unhandled and fires once labels of the drifted period
    land.

    Returns:
        The trigger (:func:`find_drift_trigger`'s) or None, and why a crossing waits for labels, if one does.
    """
    client = get_client(settings)
    champion_version = _champion_version(client, cfg.registered_model_name)
    if champion_version is None:
        return {"trigger": None, "waiting_for_labels": None}
    fired_s = last_fired_s(cfg, client)
    eligible = [
        run
        for run in _unhandled_crossing_runs(cfg, client, champion_version)
        if not _in_cooldown(cfg, run, fired_s)
    ]
    if not eligible:
        return {"trigger": None, "waiting_for_labels": None}
    newest = eligible[0]
    metrics = newest.data.metrics
    reason = crossing_reason(cfg, metrics) or "drift"
    trigger: RetrainingTrigger = {
        "reason": reason,
        "monitoring_run_id": newest.info.run_id,
        "trigger_run_id": bus.drift_trigger_run_id(newest.info.run_id),
        "drift_share": metrics.get(bus.DRIFT_SHARE),
        "live_drop": metrics.get(bus.LIVE_DROP),
        "estimated_drop": metrics.get(bus.ESTIMATED_DROP),
        "estimated_drop_best_case": metrics.get(bus.ESTIMATED_DROP_BEST_CASE),
        "champion_version": champion_version,
        "detail": _describe(cfg, newest, champion_version, reason, len(eligible)),
    }
    waiting = registry.waiting_for_labels(cfg, newest_snapshot_hash(cfg, settings) or "", settings)
    if waiting is not None:
        log.info("%s: %s held back: %s", cfg.name, reason, waiting)
        return {"trigger": None, "waiting_for_labels": f"{trigger['detail']} Held back, {waiting}"}
    return {"trigger": trigger, "waiting_for_labels": None}


def find_drift_trigger(cfg: DatasetConfig, settings: Settings | None = None) -> RetrainingTrigger | None:
    """The newest unhandled monitoring result of the champion that calls for retraining, or None. Writes
    nothing.

    Args:
        cfg: Dataset config (thresholds in ``cfg.monitoring``).
        settings: Process settings; defaults to :meth:`Settings.from_env`.

    Returns:
        None when nothing should fire (or a crossing waits for labels, see :func:`drift_decision`), else the
        trigger: its reason, the monitoring run, the numbers, and ``trigger_run_id``, the Airflow run id the
        retraining run must get (one monitoring result, one run).
    """
    return drift_decision(cfg, settings)["trigger"]


def suppress_cooldown_runs(cfg: DatasetConfig, settings: Settings | None = None) -> list[str]:
    """Tag crossing results that the cooldown holds back with ``sensor_suppressed=cooldown``.

    The tag only explains; :func:`find_drift_trigger` skips such results by their start time anyway.

    Returns:
        The ids of the runs tagged now.
    """
    client = get_client(settings)
    champion_version = _champion_version(client, cfg.registered_model_name)
    if champion_version is None:
        return []
    fired_s = last_fired_s(cfg, client)
    held = [
        run.info.run_id
        for run in _unhandled_crossing_runs(cfg, client, champion_version)
        if _in_cooldown(cfg, run, fired_s)
    ]
    for run_id in held:
        client.set_tag(run_id, bus.SENSOR_SUPPRESSED_TAG, bus.SUPPRESSED_COOLDOWN)
    return held


def mark_trigger_fired(
    cfg: DatasetConfig,
    monitoring_run_id: str,
    trigger_run_id: str,
    settings: Settings | None = None,
    now_s: float | None = None,
) -> FiredTrigger:
    """Record that a monitoring result triggered retraining, so the same drift episode never fires twice.

    Other unhandled crossing results of the same champion version are tagged
    ``sensor_suppressed=covered_by:<monitoring_run_id>``. A rerun keeps the original firing time.

    Args:
        cfg: Dataset config.
        monitoring_run_id: The run returned by :func:`find_drift_trigger`.
        trigger_run_id: Id of what was triggered (the Airflow run id of the retraining DAG run).
        settings: Process settings; defaults to :meth:`Settings.from_env`.
        now_s: Current epoch seconds (for tests); defaults to ``time.time()``.

    Returns:
        The firing: the run, its trigger, when it first fired, the results it covers, its reason and numbers.
    """
    now_s = time.time() if now_s is None else now_s
    client = get_client(settings)
    run = client.get_run(monitoring_run_id)
    fired_at = run.data.tags.get(bus.SENSOR_FIRED_AT_TAG)
    if fired_at is None or run.data.tags.get(bus.SENSOR_TRIGGER_RUN_ID_TAG) != trigger_run_id:
        fired_at = str(int(now_s))
        client.set_tag(monitoring_run_id, bus.SENSOR_FIRED_AT_TAG, fired_at)
        client.set_tag(monitoring_run_id, bus.SENSOR_TRIGGER_RUN_ID_TAG, trigger_run_id)
    covered = []
    champion_version = run.data.tags.get(bus.CHAMPION_VERSION_TAG)
    if champion_version:
        for other in _unhandled_crossing_runs(cfg, client, champion_version):
            if other.info.run_id != monitoring_run_id:
                client.set_tag(
                    other.info.run_id,
                    bus.SENSOR_SUPPRESSED_TAG,
                    f"{bus.SUPPRESSED_COVERED_BY}{monitoring_run_id}",
                )
                covered.append(other.info.run_id)
    metrics = run.data.metrics
    reason = crossing_reason(cfg, metrics) or "drift"
    detail = _describe(cfg, run, champion_version or "?", reason, 1 + len(covered))
    log.info(
        "sensor fired: %s; retraining run %s; %d other result(s) covered",
        detail,
        trigger_run_id,
        len(covered),
    )
    return {
        "monitoring_run_id": monitoring_run_id,
        "trigger_run_id": trigger_run_id,
        "fired_at": int(fired_at),
        "covered_run_ids": covered,
        "reason": reason,
        "drift_share": metrics.get(bus.DRIFT_SHARE),
        "live_drop": metrics.get(bus.LIVE_DROP),
        "estimated_drop": metrics.get(bus.ESTIMATED_DROP),
        "estimated_drop_best_case": metrics.get(bus.ESTIMATED_DROP_BEST_CASE),
        "champion_version": champion_version,
        "detail": detail,
    }


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop drift-check``."""
    from driftloop.core.commands import dataset_parent

    check = subparsers.add_parser(
        "drift-check", parents=[dataset_parent()], help="would the drift sensor fire now? (writes nothing)"
    )
    check.set_defaults(func=_cmd_drift_check)


def _cmd_drift_check(args: Any) -> int:
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config

    cfg = load_dataset_config(args.dataset)
    client = get_client()
    decision = drift_decision(cfg)
    print_result(
        {
            "trigger": decision["trigger"],
            "waiting_for_labels": decision["waiting_for_labels"],
            "champion_version": _champion_version(client, cfg.registered_model_name),
            "last_fired_at": last_fired_s(cfg, client),
            "cooldown_s": cfg.monitoring.cooldown_s,
        }
    )
    return 0
