"""Monitoring: drift and live performance of every scored batch, logged as one monitoring run per inference
run.

Each newly scored batch is compared with the reference sample logged by the training run of the model version
that scored it (:func:`driftloop.monitoring.drift.compute_drift`), features and the model's outputs alike.
Late labels are joined to predictions as they arrive, giving the task's live metrics in the same monitoring
run (:mod:`driftloop.monitoring.live`). Whether a result calls for retraining is
:mod:`driftloop.monitoring.sensor`'s decision.

Three steps, like batch scoring, so a large batch is read by several workers at once:

1. :func:`plan_monitoring` lists the batches scored but not monitored and cuts each predictions file into
   parts of ``monitoring.part_rows`` rows (from the parquet footer; nothing read), with the label files of
   the moment.
2. :func:`driftloop.monitoring.samples.sample_part` reads one part and keeps its drift rows and labelled rows,
   chosen by id hash so that the batch's sample does not depend on how it was cut.
3. :func:`commit_monitoring` merges each batch's part samples, runs Evidently on them, measures live
   performance, logs the monitoring run, and joins labels that arrived since into earlier runs.

:func:`monitor_predictions` runs the three in one process (the CLI, the demo, tests); the DAG maps step 2.
Memory is bounded by a part whatever the batch size: at most ``max_rows`` rows are compared for drift and
``MAX_LIVE_ROWS`` labelled rows measured (the count of labelled rows is always exact).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import MonitoringError
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths, path_to_uri, uri_to_path
from driftloop.core.storage import list_files, remove_tree
from driftloop.core.tracking import (
    FINISHED,
    find_finished_run,
    get_client,
    keyed_run,
    search_runs,
)
from driftloop.monitoring import attribution, live
from driftloop.monitoring.drift import compute_drift
from driftloop.monitoring.estimated import estimate_performance
from driftloop.monitoring.late_labels import update_with_labels
from driftloop.monitoring.monitoring_results import (
    MonitoringPartValues,
    MonitoringPlan,
    MonitoringResult,
    RunNumbers,
    SkippedBatch,
)
from driftloop.monitoring.partitions import check_columns
from driftloop.monitoring.samples import (
    MonitoringPart,
    cut_parts,
    join_notes,
    merge_samples,
    read_part_sample,
    sample_part,
)
from driftloop.monitoring.version_inputs import VersionInputs

log = logging.getLogger(__name__)

# A drift sample of this size gives stable drift scores on any batch size.
MAX_CURRENT_ROWS = 50_000
# 50k labelled rows keep F1 and the parity gaps within ~0.005 of the whole batch's, at a fixed cost per run.
MAX_LIVE_ROWS = 50_000


def monitor_predictions(
    cfg: DatasetConfig, settings: Settings | None = None, max_rows: int = MAX_CURRENT_ROWS
) -> MonitoringResult:
    """Log a drift (and, when labels exist, live performance) run for every scored batch not yet monitored, in
    this process: plan, sample each part, commit.

    Also logs live metrics into earlier monitoring runs when labels for more of their rows have arrived since
    (labels come later than features). Safe to rerun: a call with no new batch and no new label file writes
    nothing.

    Args:
        cfg: Dataset config.
        settings: Process settings; defaults to :meth:`Settings.from_env`.
        max_rows: Current rows compared with the reference at most (the smallest id hashes above that).

    Returns:
        ``{"monitored": [...], "updated_with_labels": [...], "skipped": [...]}``; each monitored item holds
        ``monitoring_run_id``, ``inference_run_id``, ``batch_id``, ``champion_version``, ``drift_share``,
        ``drifted_columns``, ``prediction_drift_score`` and, when labelled, the live metrics.
    """
    settings = settings or Settings.from_env()
    planned = plan_monitoring(cfg, settings, max_rows)
    for part_values in planned["parts"]:
        sample_part(cfg, part_values, settings)
    return commit_monitoring(cfg, planned, settings)


def plan_monitoring(
    cfg: DatasetConfig, settings: Settings | None = None, max_rows: int = MAX_CURRENT_ROWS
) -> MonitoringPlan:
    """The parts of every scored batch not yet monitored, and the label files they join.

    A batch whose files cannot be monitored (tags missing, a file gone, a column missing) is skipped with the
    reason, not failed: the other batches are monitored.

    Returns:
        The parts (:class:`MonitoringPart` as values), the batches skipped and why, and the label files.
    """
    settings = settings or Settings.from_env()
    client = get_client(settings)
    paths = StatePaths.for_dataset(cfg, settings)
    inference_runs = search_runs(client, cfg.experiment_name("inference"), extra_filter=FINISHED)
    monitoring_runs = search_runs(client, cfg.experiment_name("monitoring"), extra_filter=FINISHED)
    monitored_ids = {run.data.tags.get(bus.INFERENCE_RUN_ID_TAG) for run in monitoring_runs}
    # Oldest first, so monitoring runs are created in the order the batches were scored.
    pending = [run for run in reversed(inference_runs) if run.info.run_id not in monitored_ids]
    label_files = list_files(paths.labels_dir, "*.parquet")
    label_uris = tuple(path_to_uri(path) for path in label_files)
    inputs = VersionInputs(cfg, client)
    parts: list[MonitoringPartValues] = []
    skipped: list[SkippedBatch] = []
    for run in pending:
        try:
            parts += [p.to_dict() for p in _plan_parts(cfg, inputs, run, label_uris, max_rows)]
        except MonitoringError as exc:
            skipped.append({"inference_run_id": run.info.run_id, "reason": str(exc)})
    if parts:
        log.info(
            "%d batch(es) to monitor in %d part(s) of at most %d rows; %d label file(s)",
            len({p["inference_run_id"] for p in parts}), len(parts), cfg.monitoring.part_rows,
            len(label_uris),
        )  # fmt: skip
    return {
        "parts": parts,
        "skipped": skipped,
        "label_uris": list(label_uris),
        "labels_fingerprint": live.fingerprint_labels(label_files),
        "max_rows": max_rows,
    }


def _plan_parts(
    cfg: DatasetConfig,
    inputs: VersionInputs,
    inference_run: Any,
    label_uris: tuple[str, ...],
    max_rows: int,
) -> list[MonitoringPart]:
    batch_uri, predictions_uri = _batch_uris(inference_run)
    facts = inputs.facts(inputs.run_id_of(inference_run.data.tags))
    check_columns(batch_uri, [cfg.id_column, *cfg.features])
    return cut_parts(
        cfg,
        inference_run_id=inference_run.info.run_id,
        batch_id=inference_run.data.tags.get(bus.BATCH_ID_TAG, ""),
        batch_uri=batch_uri,
        predictions_uri=predictions_uri,
        output_columns=facts.output_columns,
        scored_columns=facts.scored_columns,
        max_rows=max_rows,
        max_live_rows=MAX_LIVE_ROWS,
        label_uris=label_uris,
    )


def commit_monitoring(
    cfg: DatasetConfig, planned: MonitoringPlan, settings: Settings | None = None
) -> MonitoringResult:
    """Log the monitoring run of every planned batch from its parts' samples; join new labels into earlier
    runs.

    A batch monitored already (a retried commit) is reported, not logged twice; its parts are removed once its
    run exists.

    Raises:
        RuntimeError: A part is not sampled yet (a fault: its mapped task is retried).
    """
    settings = settings or Settings.from_env()
    client = get_client(settings)
    paths = StatePaths.for_dataset(cfg, settings)
    label_files = [uri_to_path(uri) for uri in planned["label_uris"]]
    fingerprint = planned["labels_fingerprint"]
    monitoring_runs = search_runs(client, cfg.experiment_name("monitoring"), extra_filter=FINISHED)
    awaiting = [run for run in monitoring_runs if live.awaits_labels(run, fingerprint)] if label_files else []

    by_run: dict[str, list[MonitoringPart]] = {}
    for values in planned["parts"]:
        part = MonitoringPart.from_dict(values)
        by_run.setdefault(part.inference_run_id, []).append(part)
    inputs = VersionInputs(cfg, client)
    monitored: list[RunNumbers] = []
    skipped = list(planned["skipped"])
    for inference_run_id, parts in by_run.items():
        parts.sort(key=lambda p: p.part)
        try:
            monitored.append(_commit_run(cfg, settings, inputs, paths, parts, planned))
        except MonitoringError as exc:
            skipped.append({"inference_run_id": inference_run_id, "reason": str(exc)})
        remove_tree(paths.monitoring_parts_dir / inference_run_id)

    updated: list[RunNumbers] = []
    for run in awaiting:
        facts = inputs.facts(run.data.tags.get(bus.REFERENCE_RUN_ID_TAG, ""))
        result = update_with_labels(cfg, client, run, facts, label_files, fingerprint, MAX_LIVE_ROWS)
        if result:
            updated.append(result)
    log.info(
        "monitoring: %d batch(es) monitored, %d updated with late labels, %d skipped %s",
        len(monitored), len(updated), len(skipped), [s["reason"] for s in skipped] or "",
    )  # fmt: skip
    return {"monitored": monitored, "updated_with_labels": updated, "skipped": skipped}


def _drift_outputs(
    cfg: DatasetConfig, drift: dict[str, Any]
) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    """Metrics, tags and the per-column summary artifact of one drift result."""
    metrics = {
        bus.DRIFT_SHARE: drift["drift_share"],
        bus.DRIFTED_COLUMNS: drift["drifted_columns"],
        bus.PREDICTION_DRIFT_SCORE: drift["prediction_drift_score"],
        bus.PREDICTION_DRIFTED: float(drift["prediction_drifted"]),
        **{bus.drift_score_metric(col): score for col, score in drift["drift_scores"].items()},
    }
    tags = {
        bus.DRIFTED_COLUMN_NAMES_TAG: ",".join(drift["drifted_column_names"])[:5000],
        bus.DRIFT_METHODS_TAG: ",".join(sorted(set(drift["methods"].values()))),
    }
    summary = {
        col: {
            "score": drift["drift_scores"].get(col),
            "method": drift["methods"].get(col),
            "drifted": col in drift["drifted_column_names"]
            or (col in drift["output_columns"] and drift["prediction_drifted"]),
            "empty": col in drift["empty_columns"],
        }
        for col in [*cfg.features, *drift["output_columns"]]
    }
    return metrics, tags, summary


def _batch_uris(inference_run: Any) -> tuple[str, str]:
    tags = inference_run.data.tags
    batch_uri, predictions_uri = tags.get(bus.BATCH_URI_TAG), tags.get(bus.PREDICTIONS_URI_TAG)
    if not batch_uri or not predictions_uri:
        raise MonitoringError(
            f"inference run {inference_run.info.run_id} lacks "
            f"{bus.BATCH_URI_TAG}/{bus.PREDICTIONS_URI_TAG} tags"
        )
    return batch_uri, predictions_uri


def _commit_run(
    cfg: DatasetConfig,
    settings: Settings,
    inputs: VersionInputs,
    paths: StatePaths,
    parts: list[MonitoringPart],
    planned: MonitoringPlan,
) -> RunNumbers:
    """One batch's monitoring run from its parts' samples (the run found, when a retry logged it already)."""
    import mlflow

    client = inputs.client
    inference_run_id = parts[0].inference_run_id
    key = {bus.INFERENCE_RUN_ID_TAG: inference_run_id}
    finished = find_finished_run(client, cfg.experiment_name("monitoring"), key)
    if finished is not None:
        return _logged_result(finished)
    inference_run = client.get_run(inference_run_id)
    tags = inference_run.data.tags
    batch_id = tags.get(bus.BATCH_ID_TAG, "")
    batch_uri, predictions_uri = _batch_uris(inference_run)
    model_version = tags.get(bus.MODEL_VERSION_TAG, "")
    reference_run_id = inputs.run_id_of(tags)
    facts = inputs.facts(reference_run_id)
    reference_df = inputs.reference(reference_run_id)

    sample = merge_samples(
        [read_part_sample(paths, p) for p in parts], parts[0].max_rows, parts[0].max_live_rows
    )
    current_df = sample.current
    if current_df.empty:
        raise MonitoringError(f"no batch rows in {batch_uri} match the scored ids")
    drift = compute_drift(cfg, reference_df, current_df, facts.output_columns)
    estimated = estimate_performance(facts, inputs.estimator(reference_run_id), current_df)
    performance = live.live_performance(cfg, facts, sample)
    insight = attribution.explain_drift(
        cfg, client, reference_run_id, model_version, reference_df, current_df, drift, settings
    )

    snapshot = drift.pop("snapshot")
    drift_metrics, drift_tags, summary = _drift_outputs(cfg, drift)
    summary["_insight"] = insight["summary"]
    metrics = {
        **drift_metrics,
        **insight["metrics"],
        bus.ROWS: float(sample.rows),
        bus.ROWS_COMPARED: float(len(current_df)),
        bus.REFERENCE_ROWS: float(len(reference_df)),
        **estimated.metrics,
        **performance,
    }
    run_tags = {
        bus.BATCH_ID_TAG: batch_id,
        bus.CHAMPION_VERSION_TAG: model_version,
        bus.REFERENCE_RUN_ID_TAG: reference_run_id,
        bus.PREDICTIONS_URI_TAG: predictions_uri,
        bus.BATCH_URI_TAG: batch_uri,
        bus.CURRENT_SAMPLE_TAG: join_notes(sample.note, sample.live_note if performance else ""),
        bus.LABELS_FINGERPRINT_TAG: planned["labels_fingerprint"],
        bus.LIVE_DROP_METRIC_TAG: live.live_drop_metric(facts),
        **({bus.ESTIMATION_METHOD_TAG: estimated.method} if estimated.method else {}),
        **drift_tags,
        **insight["tags"],
    }
    with (
        report_folder(cfg, settings, batch_id) as folder,
        keyed_run(
            client, cfg.experiment_name("monitoring"), key, bus.monitoring_run_name(batch_id), settings
        ) as run,
    ):
        report_path = folder / bus.DRIFT_REPORT_ARTIFACT
        snapshot.save_html(str(report_path))
        mlflow.set_tags(run_tags)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(report_path))
        mlflow.log_dict(summary, bus.DRIFT_SUMMARY_ARTIFACT)
        run_id = run.info.run_id
    log.info(
        "monitored batch %s (champion v%s): drift share %.3f (threshold %.2f), %d drifted: %s; "
        "%s; live %s; %d part(s); run %s",
        batch_id, model_version, drift["drift_share"], cfg.monitoring.drift_share_threshold,
        int(drift["drifted_columns"]), ", ".join(drift["drifted_column_names"][:5]) or "none", estimated.note,
        {k: round(v, 4) for k, v in performance.items() if isinstance(v, float)} or "no labels yet",
        len(parts), run_id,
    )  # fmt: skip
    return {
        "monitoring_run_id": run_id,
        "inference_run_id": inference_run_id,
        "batch_id": batch_id,
        "champion_version": model_version,
        "drift_share": drift["drift_share"],
        "drifted_columns": int(drift["drifted_columns"]),
        "prediction_drift_score": drift["prediction_drift_score"],
        **estimated.metrics,
        **performance,
    }


def _logged_result(run: Any) -> RunNumbers:
    """What :func:`_commit_run` returns, for a batch whose monitoring run exists already."""
    tags, metrics = run.data.tags, run.data.metrics
    live_keys = {k: v for k, v in metrics.items() if k.startswith("live_") or k == bus.LABELLED_ROWS}
    return {
        "monitoring_run_id": run.info.run_id,
        "inference_run_id": tags.get(bus.INFERENCE_RUN_ID_TAG, ""),
        "batch_id": tags.get(bus.BATCH_ID_TAG, ""),
        "champion_version": tags.get(bus.CHAMPION_VERSION_TAG, ""),
        "drift_share": metrics.get(bus.DRIFT_SHARE, 0.0),
        "drifted_columns": int(metrics.get(bus.DRIFTED_COLUMNS, 0.0)),
        "prediction_drift_score": metrics.get(bus.PREDICTION_DRIFT_SCORE, 0.0),
        **live_keys,
    }


@contextmanager
def report_folder(cfg: DatasetConfig, settings: Settings, batch_id: str) -> Iterator[Path]:
    """The local folder a batch's drift report is written to before MLflow logs it.

    ``reports/monitoring/<batch id>`` when the data zones are a folder (kept there, as before); a temporary
    folder, removed once the report is logged, when they are on object storage (MLflow keeps the report).
    """
    folder = StatePaths.for_dataset(cfg, settings).reports_dir / "monitoring" / batch_id
    if isinstance(folder, Path):
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="driftloop-report-") as tmp:
        yield Path(tmp)


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop monitor``."""
    from driftloop.core.commands import dataset_parent

    parser = subparsers.add_parser(
        "monitor", parents=[dataset_parent()], help="drift and live metrics for newly scored batches"
    )
    parser.add_argument(
        "--max-rows", type=int, default=MAX_CURRENT_ROWS, help="current rows compared at most"
    )
    parser.set_defaults(func=_cmd_monitor)


def _cmd_monitor(args: Any) -> int:
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config

    print_result(monitor_predictions(load_dataset_config(args.dataset), max_rows=args.max_rows))
    return 0
