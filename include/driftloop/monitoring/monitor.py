"""Monitoring: drift and live performance of every scored batch, logged as one monitoring run per inference
run.

``monitor_predictions`` compares each newly scored batch with the reference sample logged by the training run
of the model version that scored it (:func:`driftloop.monitoring.drift.compute_drift`), features and the
model's outputs alike. Late labels are joined to predictions as they arrive, giving the task's live metrics in
the same monitoring run (:mod:`driftloop.monitoring.live`). Whether a result calls for retraining is
:mod:`driftloop.monitoring.sensor`'s decision.

Memory is bounded whatever the batch size: predictions, batches and label files are read in chunks of
``monitoring.chunk_rows`` (from a folder or streamed from object storage), rows are located by a 64-bit hash
of their id (8 bytes a row), and only seeded samples are materialised: at most ``max_rows`` rows for drift,
``MAX_LIVE_ROWS`` labelled rows for live metrics and fairness (the count of labelled rows is always exact).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import MonitoringError
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths
from driftloop.core.storage import StoragePath, list_files
from driftloop.core.tracking import FINISHED, get_client, keyed_run, read_run_frame, search_runs
from driftloop.monitoring import attribution, live
from driftloop.monitoring.drift import compute_drift
from driftloop.monitoring.live import VersionFacts
from driftloop.monitoring.partitions import (
    SAMPLE_SEED,
    iter_parquet,
    labelled_positions,
    labels_for,
    sample_positions,
    scan_predictions,
    take_rows,
)

log = logging.getLogger(__name__)

# Evidently's cost grows with rows; a seeded sample of this size gives stable drift scores on any batch size.
MAX_CURRENT_ROWS = 50_000
MAX_REFERENCE_ROWS = 50_000
# fairlearn costs ~0.3 ms a row (278 s on 1M labelled rows); 50k rows keep F1 and the parity gaps within
# ~0.005.
MAX_LIVE_ROWS = 50_000


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

    label_files = list_files(paths.labels_dir, "*.parquet")
    fingerprint = live.fingerprint_labels(label_files)
    awaiting_labels = (
        [run for run in monitoring_runs if live.awaits_labels(run, fingerprint)] if label_files else []
    )

    references: dict[str, Any] = {}
    monitored, skipped = [], []
    for inference_run in pending:
        try:
            monitored.append(
                _monitor_inference_run(
                    cfg, settings, client, inference_run, label_files, fingerprint, references, max_rows
                )
            )
        except MonitoringError as exc:
            skipped.append({"inference_run_id": inference_run.info.run_id, "reason": str(exc)})

    updated = []
    for run in awaiting_labels:
        result = _update_with_labels(cfg, client, run, label_files, fingerprint, references)
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


def _monitor_inference_run(
    cfg: DatasetConfig,
    settings: Settings,
    client: Any,
    inference_run: Any,
    label_files: list[StoragePath],
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

    scan = scan_predictions(cfg, predictions_uri)
    current_df, sample_note = _read_current(cfg, batch_uri, predictions_uri, scan, max_rows, facts)
    drift = compute_drift(cfg, reference_df, current_df, facts.output_columns)
    performance, live_note = _live_performance(cfg, facts, batch_uri, predictions_uri, scan, label_files)
    insight = attribution.explain_drift(
        cfg, client, reference_run_id, model_version, reference_df, current_df, drift, settings
    )

    snapshot = drift.pop("snapshot")
    drift_metrics, drift_tags, summary = _drift_outputs(cfg, drift)
    summary["_insight"] = insight["summary"]
    metrics = {
        **drift_metrics,
        **insight["metrics"],
        bus.ROWS: float(len(scan[0])),
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
        bus.CURRENT_SAMPLE_TAG: _join_notes(sample_note, live_note),
        bus.LABELS_FINGERPRINT_TAG: labels_fingerprint,
        bus.LIVE_DROP_METRIC_TAG: live.live_drop_metric(facts),
        **drift_tags,
        **insight["tags"],
    }
    key = {bus.INFERENCE_RUN_ID_TAG: inference_run_id}
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
        "live %s; run %s",
        batch_id, model_version, drift["drift_share"], cfg.monitoring.drift_share_threshold,
        int(drift["drifted_columns"]), ", ".join(drift["drifted_column_names"][:5]) or "none",
        {k: round(v, 4) for k, v in performance.items() if isinstance(v, float)} or "no labels yet", run_id,
    )  # fmt: skip
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


def _read_current(
    cfg: DatasetConfig,
    batch_uri: str,
    predictions_uri: str,
    scan: tuple[Any, Any],
    max_rows: int,
    facts: VersionFacts,
) -> tuple[Any, str]:
    """Batch features joined with the outputs on the id, sampled to ``max_rows`` before anything is read."""
    import pandas as pd

    hashes, last = scan
    positions, sampled = sample_positions(last, max_rows)
    note = (
        f"random {max_rows} of {len(hashes)} rows (seed {SAMPLE_SEED})"
        if sampled
        else f"all {len(last)} rows"
    )
    scores = take_rows(cfg, predictions_uri, [cfg.id_column, *facts.output_columns], positions)
    columns = [cfg.id_column, *cfg.features]
    wanted = set(scores[cfg.id_column])
    chunks = [chunk[chunk[cfg.id_column].isin(wanted)] for chunk in iter_parquet(batch_uri, columns, cfg)]
    features_df = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=columns)
    features_df = features_df.drop_duplicates(cfg.id_column, keep="last")
    current = features_df.merge(scores, on=cfg.id_column, how="inner")
    if current.empty:
        raise MonitoringError(f"no batch rows in {batch_uri} match the scored ids")
    return current, note


def _join_notes(sample_note: str, live_note: str) -> str:
    return f"{sample_note}; {live_note}" if live_note else sample_note


def _scored_columns(facts: VersionFacts) -> list[str]:
    return list(dict.fromkeys([bus.PREDICTION_COLUMN, bus.SCORE_COLUMN, *facts.output_columns]))


def _version_facts(cfg: DatasetConfig, client: Any, run_id: str, cache: dict[Any, Any]) -> VersionFacts:
    key = ("facts", run_id)
    if key not in cache:
        cache[key] = live.read_version_facts(cfg, client, run_id)
    facts: VersionFacts = cache[key]
    return facts


def _reference(
    cfg: DatasetConfig, client: Any, run_id: str, facts: VersionFacts, cache: dict[Any, Any]
) -> Any:
    key = ("reference", run_id)
    if key not in cache:
        cache[key] = _load_reference(cfg, client, run_id, facts)
    return cache[key]


def _live_performance(
    cfg: DatasetConfig,
    facts: VersionFacts,
    batch_uri: str | None,
    predictions_uri: str,
    scan: tuple[Any, Any],
    label_files: list[StoragePath],
) -> tuple[dict[str, float], str]:
    """Live metrics, ``live_drop`` and fairness on the labelled rows of one batch ({} below ``min_rows``).

    ``labelled_rows`` counts every labelled row; metrics and fairness use at most ``MAX_LIVE_ROWS`` of them
    (seeded sample), and the returned note says so.
    """
    import pandas as pd

    labelled = labelled_positions(cfg, label_files, scan) if label_files else []
    if not len(labelled) or len(labelled) < cfg.monitoring.min_rows:
        return {}, ""
    positions, sampled = sample_positions(labelled, MAX_LIVE_ROWS)
    rows = take_rows(cfg, predictions_uri, [cfg.id_column, *_scored_columns(facts)], positions)
    labels = labels_for(cfg, label_files, set(rows[cfg.id_column]))
    rows = rows[rows[cfg.id_column].isin(labels.index)].reset_index(drop=True)  # a hash collision is no label
    if len(rows) < cfg.monitoring.min_rows:
        return {}, ""
    matched = rows.assign(**{cfg.target: labels.loc[rows[cfg.id_column]].to_numpy()})
    performance = live.measure_live(cfg, facts, matched)
    performance[bus.LABELLED_ROWS] = float(len(labelled))
    if cfg.sensitive_features and batch_uri:
        wanted = set(matched[cfg.id_column])
        columns = [cfg.id_column, *cfg.sensitive_features]
        chunks = [c[c[cfg.id_column].isin(wanted)] for c in iter_parquet(batch_uri, columns, cfg)]
        if chunks:
            performance.update(live.fairness_of(cfg, facts, matched, pd.concat(chunks, ignore_index=True)))
    note = f"live metrics on random {len(positions)} of {len(labelled)} labelled rows (seed {SAMPLE_SEED})"
    return performance, note if sampled else ""


def _load_reference(cfg: DatasetConfig, client: Any, reference_run_id: str, facts: VersionFacts) -> Any:
    try:
        reference = read_run_frame(client, reference_run_id, bus.REFERENCE_ARTIFACT)
    except Exception as exc:  # MLflow raises several types for a missing artifact or run
        raise MonitoringError(
            f"training run {reference_run_id} has no {bus.REFERENCE_ARTIFACT}: {exc}"
        ) from exc
    missing = [col for col in [*cfg.features, *facts.output_columns] if col not in reference.columns]
    if missing:
        raise MonitoringError(f"{bus.REFERENCE_ARTIFACT} of run {reference_run_id} lacks columns {missing}")
    if len(reference) > MAX_REFERENCE_ROWS:
        reference = reference.sample(n=MAX_REFERENCE_ROWS, random_state=SAMPLE_SEED)
    return reference


def _update_with_labels(
    cfg: DatasetConfig,
    client: Any,
    run: Any,
    label_files: list[StoragePath],
    fingerprint: str,
    cache: dict[Any, Any],
) -> dict[str, Any] | None:
    """Log live metrics into an existing monitoring run when more of its rows are labelled than before."""
    tags, run_id = run.data.tags, run.info.run_id
    predictions_uri = tags.get(bus.PREDICTIONS_URI_TAG)
    if not predictions_uri and tags.get(bus.INFERENCE_RUN_ID_TAG):
        predictions_uri = client.get_run(tags[bus.INFERENCE_RUN_ID_TAG]).data.tags.get(
            bus.PREDICTIONS_URI_TAG
        )
    facts = _version_facts(cfg, client, tags.get(bus.REFERENCE_RUN_ID_TAG, ""), cache)
    try:
        scan = scan_predictions(cfg, predictions_uri or "")
        performance, live_note = _live_performance(
            cfg, facts, tags.get(bus.BATCH_URI_TAG), predictions_uri or "", scan, label_files
        )
    except MonitoringError:
        return None
    # Remember this label set was joined, so the next call does not reread the predictions for nothing.
    client.set_tag(run_id, bus.LABELS_FINGERPRINT_TAG, fingerprint)
    if not performance or performance[bus.LABELLED_ROWS] <= run.data.metrics.get(bus.LABELLED_ROWS, 0.0):
        return None
    client.set_tag(run_id, bus.LIVE_DROP_METRIC_TAG, live.live_drop_metric(facts))
    drift_note = tags.get(bus.CURRENT_SAMPLE_TAG, "").split("; live metrics")[0]
    client.set_tag(run_id, bus.CURRENT_SAMPLE_TAG, _join_notes(drift_note, live_note))
    timestamp_ms = int(time.time() * 1000)
    for key, value in performance.items():
        client.log_metric(run_id, key, value, timestamp=timestamp_ms)
    return {"monitoring_run_id": run_id, "batch_id": tags.get(bus.BATCH_ID_TAG, ""), **performance}


def _version_run_id(client: Any, model_name: str, version: str) -> str:
    if not version:
        raise MonitoringError(f"inference run lacks {bus.MODEL_RUN_ID_TAG} and {bus.MODEL_VERSION_TAG} tags")
    try:
        run_id: str = client.get_model_version(model_name, version).run_id
    except Exception as exc:
        raise MonitoringError(f"model {model_name} version {version} not found: {exc}") from exc
    return run_id


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
