"""Monitoring: drift and live performance of every scored batch, logged as one monitoring run per inference run.

``monitor_predictions`` compares each newly scored batch with the reference sample logged by the training run of
the model version that scored it (:func:`driftloop.drift.compute_drift`), features and the model's outputs alike.
Late labels are joined to predictions as they arrive, giving the task's live metrics in the same monitoring run
(:mod:`driftloop.live`). Whether a result calls for retraining is :mod:`driftloop.sensor`'s decision.
"""

from __future__ import annotations

import time
from typing import Any

from driftloop import attribution, bus, live
from driftloop.config import DatasetConfig
from driftloop.drift import compute_drift
from driftloop.errors import MonitoringError
from driftloop.live import VersionFacts
from driftloop.settings import Settings
from driftloop.state import StatePaths, uri_to_path
from driftloop.tracking import FINISHED, get_client, keyed_run, read_run_frame, search_runs

# Evidently's cost grows with rows; a seeded sample of this size gives stable drift scores on any batch size.
MAX_CURRENT_ROWS = 50_000
MAX_REFERENCE_ROWS = 50_000
SAMPLE_SEED = 42


def monitor_predictions(
    cfg: DatasetConfig, settings: Settings | None = None, max_rows: int = MAX_CURRENT_ROWS
) -> dict[str, Any]:
    """Log a drift (and, when labels exist, live performance) run for every scored batch not yet monitored.

    Also logs live metrics into earlier monitoring runs when labels for more of their rows have arrived since
    (labels come later than features). Safe to rerun: a call with no new batch and no new label file writes
    nothing.

    Args:
        cfg: Dataset config.
        settings: Process settings; defaults to :meth:`Settings.from_env`.
        max_rows: Current rows compared with the reference at most (seeded random sample above that).

    Returns:
        ``{"monitored": [...], "updated_with_labels": [...], "skipped": [...]}``; each monitored item holds
        ``monitoring_run_id``, ``inference_run_id``, ``batch_id``, ``champion_version``, ``drift_share``,
        ``drifted_columns``, ``prediction_drift_score`` and, when labelled, the live metrics.
    """
    settings = settings or Settings.from_env()
    client = get_client(settings)
    paths = StatePaths.for_dataset(cfg, settings)
    inference_runs = search_runs(client, cfg.experiment_name("inference"), extra_filter=FINISHED)
    monitoring_runs = search_runs(client, cfg.experiment_name("monitoring"), extra_filter=FINISHED)
    monitored_ids = {run.data.tags.get(bus.INFERENCE_RUN_ID_TAG) for run in monitoring_runs}
    # Oldest first, so monitoring runs are created in the order the batches were scored.
    pending = [run for run in reversed(inference_runs) if run.info.run_id not in monitored_ids]

    label_files = sorted(paths.labels_dir.glob("*.parquet"))
    fingerprint = live.fingerprint_labels(label_files)
    awaiting_labels = (
        [run for run in monitoring_runs if live.awaits_labels(run, fingerprint)] if label_files else []
    )
    labels = live.read_labels(cfg, label_files) if label_files and (pending or awaiting_labels) else None

    references: dict[str, Any] = {}
    monitored, skipped = [], []
    for inference_run in pending:
        try:
            monitored.append(
                _monitor_inference_run(cfg, settings, client, inference_run, labels, fingerprint, references, max_rows)
            )
        except MonitoringError as exc:
            skipped.append({"inference_run_id": inference_run.info.run_id, "reason": str(exc)})

    updated = []
    for run in awaiting_labels:
        result = _update_with_labels(cfg, client, run, labels, fingerprint, references)
        if result:
            updated.append(result)
    return {"monitored": monitored, "updated_with_labels": updated, "skipped": skipped}


def _drift_outputs(cfg: DatasetConfig, drift: dict[str, Any]) -> tuple[dict[str, float], dict[str, str], dict]:
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


def _monitor_inference_run(
    cfg: DatasetConfig,
    settings: Settings,
    client: Any,
    inference_run: Any,
    labels: Any,
    labels_fingerprint: str,
    references: dict[str, Any],
    max_rows: int,
) -> dict[str, Any]:
    import mlflow

    tags = inference_run.data.tags
    inference_run_id = inference_run.info.run_id
    batch_id = tags.get(bus.BATCH_ID_TAG, "")
    batch_uri, predictions_uri = tags.get(bus.BATCH_URI_TAG), tags.get(bus.PREDICTIONS_URI_TAG)
    if not batch_uri or not predictions_uri:
        raise MonitoringError(
            f"inference run {inference_run_id} lacks {bus.BATCH_URI_TAG}/{bus.PREDICTIONS_URI_TAG} tags"
        )
    model_version = tags.get(bus.MODEL_VERSION_TAG, "")
    reference_run_id = tags.get(bus.MODEL_RUN_ID_TAG) or _version_run_id(
        client, cfg.registered_model_name, model_version
    )
    facts = _version_facts(cfg, client, reference_run_id, references)
    reference_df = _reference(cfg, client, reference_run_id, facts, references)

    predictions_df = _read_parquet(predictions_uri, [cfg.id_column, *_scored_columns(facts)])
    current_df, sample_note = _read_current(cfg, batch_uri, predictions_df, max_rows, facts)
    drift = compute_drift(cfg, reference_df, current_df, facts.output_columns)
    performance = _live_performance(cfg, facts, batch_uri, predictions_df, labels)
    insight = attribution.explain_drift(cfg, client, reference_run_id, model_version, reference_df, current_df, drift, settings)

    report_path = StatePaths.for_dataset(cfg, settings).reports_dir / "monitoring" / batch_id / bus.DRIFT_REPORT_ARTIFACT
    report_path.parent.mkdir(parents=True, exist_ok=True)
    drift.pop("snapshot").save_html(str(report_path))
    drift_metrics, drift_tags, summary = _drift_outputs(cfg, drift)
    summary["_insight"] = insight["summary"]
    metrics = {
        **drift_metrics,
        **insight["metrics"],
        bus.ROWS: float(len(predictions_df)),
        bus.ROWS_COMPARED: float(len(current_df)),
        bus.REFERENCE_ROWS: float(len(reference_df)),
        **performance,
    }
    run_tags = {
        bus.BATCH_ID_TAG: batch_id,
        bus.CHAMPION_VERSION_TAG: model_version,
        bus.REFERENCE_RUN_ID_TAG: reference_run_id,
        bus.PREDICTIONS_URI_TAG: predictions_uri,
        bus.BATCH_URI_TAG: batch_uri,
        bus.CURRENT_SAMPLE_TAG: sample_note,
        bus.LABELS_FINGERPRINT_TAG: labels_fingerprint,
        bus.LIVE_DROP_METRIC_TAG: live.live_drop_metric(facts),
        **drift_tags,
        **insight["tags"],
    }
    key = {bus.INFERENCE_RUN_ID_TAG: inference_run_id}
    with keyed_run(client, cfg.experiment_name("monitoring"), key, bus.monitoring_run_name(batch_id), settings) as run:
        mlflow.set_tags(run_tags)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(report_path))
        mlflow.log_dict(summary, bus.DRIFT_SUMMARY_ARTIFACT)
        run_id = run.info.run_id
    return {
        "monitoring_run_id": run_id,
        "inference_run_id": inference_run_id,
        "batch_id": batch_id,
        "champion_version": model_version,
        "drift_share": drift["drift_share"],
        "drifted_columns": int(drift["drifted_columns"]),
        "prediction_drift_score": drift["prediction_drift_score"],
        **performance,
    }


def _read_current(cfg: DatasetConfig, batch_uri: str, predictions_df: Any, max_rows: int,
                  facts: VersionFacts) -> tuple[Any, str]:
    """Batch features joined with the outputs on the id, sampled to ``max_rows`` before the features are read."""
    import pandas as pd

    outputs = [cfg.id_column, *facts.output_columns]
    scores = predictions_df[outputs].drop_duplicates(cfg.id_column, keep="last")
    if len(scores) > max_rows:
        scores = scores.sample(n=max_rows, random_state=SAMPLE_SEED)
        note = f"random {max_rows} of {len(predictions_df)} rows (seed {SAMPLE_SEED})"
    else:
        note = f"all {len(scores)} rows"
    columns = [cfg.id_column, *cfg.features]
    wanted = set(scores[cfg.id_column])
    chunks = [chunk[chunk[cfg.id_column].isin(wanted)] for chunk in _iter_parquet(batch_uri, columns, cfg)]
    features_df = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=columns)
    features_df = features_df.drop_duplicates(cfg.id_column, keep="last")
    current = features_df.merge(scores, on=cfg.id_column, how="inner")
    if current.empty:
        raise MonitoringError(f"no batch rows in {batch_uri} match the scored ids")
    return current, note


def _iter_parquet(uri: str, columns: list[str], cfg: DatasetConfig) -> Any:
    """Yield a parquet file in chunks of ``cfg.monitoring.chunk_rows`` so a huge batch never sits in memory."""
    import pyarrow.parquet as pq

    path = uri_to_path(uri)
    if not path.is_file():
        raise MonitoringError(f"file {uri} does not exist")
    parquet = pq.ParquetFile(path)
    missing = [col for col in columns if col not in parquet.schema_arrow.names]
    if missing:
        raise MonitoringError(f"{uri} lacks columns {missing}")
    for batch in parquet.iter_batches(batch_size=cfg.monitoring.chunk_rows, columns=columns):
        yield batch.to_pandas()


def _read_parquet(uri: str, columns: list[str]) -> Any:
    import pandas as pd
    import pyarrow.parquet as pq

    path = uri_to_path(uri)
    if not path.is_file():
        raise MonitoringError(f"file {uri} does not exist")
    present = pq.ParquetFile(path).schema_arrow.names
    missing = [col for col in columns if col not in present]
    if missing:
        raise MonitoringError(f"{uri} lacks columns {missing}")
    return pd.read_parquet(path, columns=columns)


def _scored_columns(facts: VersionFacts) -> list[str]:
    return list(dict.fromkeys([bus.PREDICTION_COLUMN, bus.SCORE_COLUMN, *facts.output_columns]))


def _version_facts(cfg: DatasetConfig, client: Any, run_id: str, cache: dict[str, Any]) -> VersionFacts:
    key = ("facts", run_id)
    if key not in cache:
        cache[key] = live.read_version_facts(cfg, client, run_id)
    return cache[key]


def _reference(cfg: DatasetConfig, client: Any, run_id: str, facts: VersionFacts, cache: dict[str, Any]) -> Any:
    key = ("reference", run_id)
    if key not in cache:
        cache[key] = _load_reference(cfg, client, run_id, facts)
    return cache[key]


def _live_performance(cfg: DatasetConfig, facts: VersionFacts, batch_uri: str | None, predictions_df: Any,
                      labels: Any) -> dict[str, float]:
    """Live metrics, ``live_drop`` and fairness on the labelled rows of one batch; {} below ``min_rows``."""
    matched = live.labelled_predictions(cfg, predictions_df, labels)
    if matched is None:
        return {}
    performance = live.measure_live(cfg, facts, matched)
    if cfg.sensitive_features and batch_uri:
        wanted = set(matched[cfg.id_column])
        columns = [cfg.id_column, *cfg.sensitive_features]
        chunks = [c[c[cfg.id_column].isin(wanted)] for c in _iter_parquet(batch_uri, columns, cfg)]
        if chunks:
            import pandas as pd

            performance.update(live.fairness_of(cfg, facts, matched, pd.concat(chunks, ignore_index=True)))
    return performance


def _load_reference(cfg: DatasetConfig, client: Any, reference_run_id: str, facts: VersionFacts) -> Any:
    try:
        reference = read_run_frame(client, reference_run_id, bus.REFERENCE_ARTIFACT)
    except Exception as exc:  # MLflow raises several types for a missing artifact or run
        raise MonitoringError(f"training run {reference_run_id} has no {bus.REFERENCE_ARTIFACT}: {exc}") from exc
    missing = [col for col in [*cfg.features, *facts.output_columns] if col not in reference.columns]
    if missing:
        raise MonitoringError(f"{bus.REFERENCE_ARTIFACT} of run {reference_run_id} lacks columns {missing}")
    if len(reference) > MAX_REFERENCE_ROWS:
        reference = reference.sample(n=MAX_REFERENCE_ROWS, random_state=SAMPLE_SEED)
    return reference


def _update_with_labels(
    cfg: DatasetConfig, client: Any, run: Any, labels: Any, fingerprint: str, cache: dict[str, Any]
) -> dict[str, Any] | None:
    """Log live metrics into an existing monitoring run when more of its rows are labelled than before."""
    tags, run_id = run.data.tags, run.info.run_id
    predictions_uri = tags.get(bus.PREDICTIONS_URI_TAG)
    if not predictions_uri and tags.get(bus.INFERENCE_RUN_ID_TAG):
        predictions_uri = client.get_run(tags[bus.INFERENCE_RUN_ID_TAG]).data.tags.get(bus.PREDICTIONS_URI_TAG)
    facts = _version_facts(cfg, client, tags.get(bus.REFERENCE_RUN_ID_TAG, ""), cache)
    try:
        predictions_df = _read_parquet(predictions_uri or "", [cfg.id_column, *_scored_columns(facts)])
        performance = _live_performance(cfg, facts, tags.get(bus.BATCH_URI_TAG), predictions_df, labels)
    except MonitoringError:
        return None
    # Remember this label set was joined, so the next call does not reread the predictions for nothing.
    client.set_tag(run_id, bus.LABELS_FINGERPRINT_TAG, fingerprint)
    if not performance or performance[bus.LABELLED_ROWS] <= run.data.metrics.get(bus.LABELLED_ROWS, 0.0):
        return None
    client.set_tag(run_id, bus.LIVE_DROP_METRIC_TAG, live.live_drop_metric(facts))
    timestamp_ms = int(time.time() * 1000)
    for key, value in performance.items():
        client.log_metric(run_id, key, value, timestamp=timestamp_ms)
    return {"monitoring_run_id": run_id, "batch_id": tags.get(bus.BATCH_ID_TAG, ""), **performance}


def _version_run_id(client: Any, model_name: str, version: str) -> str:
    if not version:
        raise MonitoringError(f"inference run lacks {bus.MODEL_RUN_ID_TAG} and {bus.MODEL_VERSION_TAG} tags")
    try:
        return client.get_model_version(model_name, version).run_id
    except Exception as exc:
        raise MonitoringError(f"model {model_name} version {version} not found: {exc}") from exc


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop monitor``."""
    from driftloop.cli import dataset_parent

    parser = subparsers.add_parser("monitor", parents=[dataset_parent()],
                                   help="drift and live metrics for newly scored batches")
    parser.add_argument("--max-rows", type=int, default=MAX_CURRENT_ROWS, help="current rows compared at most")
    parser.set_defaults(func=_cmd_monitor)


def _cmd_monitor(args: Any) -> int:
    from driftloop.cli import print_result
    from driftloop.config import load_dataset_config

    print_result(monitor_predictions(load_dataset_config(args.dataset), max_rows=args.max_rows))
    return 0
