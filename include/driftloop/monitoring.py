"""Monitoring: drift and live performance of every scored batch, and the drift sensor's decision logic.

``monitor_predictions`` compares each newly scored batch with the reference sample logged by the training run
of the model version that scored it (Evidently ``DataDriftPreset``) and logs one monitoring run per inference
run. Late labels are joined to predictions as they arrive, giving live F1/AUC in the same monitoring run.

``find_drift_trigger`` and ``mark_trigger_fired`` are what the drift sensor pokes: they read only MLflow runs and
tags, so a poke costs one or two searches and one registry call.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Any

from driftloop.config import DatasetConfig, Settings, StatePaths, uri_to_path
from driftloop.tracking import get_client, keyed_run, search_runs

# Evidently's cost grows with rows; a seeded sample of this size gives stable drift scores on any batch size.
MAX_CURRENT_ROWS = 50_000
MAX_REFERENCE_ROWS = 50_000
SAMPLE_SEED = 42
SCORE_COLUMN = "score"
REFERENCE_ARTIFACT = "reference/reference.parquet"
REPORT_ARTIFACT = "drift_report.html"
SUMMARY_ARTIFACT = "drift_summary.json"

KEY_TAG = "driftloop.inference_run_id"
FIRED_AT_TAG = "driftloop.sensor_fired_at"
TRIGGER_RUN_TAG = "driftloop.sensor_trigger_run_id"
SUPPRESSED_TAG = "driftloop.sensor_suppressed"
LABELS_TAG = "driftloop.labels_fingerprint"


class MonitoringError(RuntimeError):
    """A batch cannot be monitored (missing artifact, file or column)."""


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
    finished = "attributes.status = 'FINISHED'"

    inference_runs = search_runs(client, cfg.experiment_name("inference"), extra_filter=finished)
    monitoring_runs = search_runs(client, cfg.experiment_name("monitoring"), extra_filter=finished)
    monitored_ids = {run.data.tags.get(KEY_TAG) for run in monitoring_runs}
    # Oldest first, so monitoring runs are created in the order the batches were scored.
    pending = [run for run in reversed(inference_runs) if run.info.run_id not in monitored_ids]

    label_files = sorted(paths.labels_dir.glob("*.parquet"))
    fingerprint = _labels_fingerprint(label_files)
    awaiting_labels = (
        [run for run in monitoring_runs if _awaits_labels(run, fingerprint)] if label_files else []
    )
    labels = _read_labels(cfg, label_files) if label_files and (pending or awaiting_labels) else None

    references: dict[str, Any] = {}
    monitored, skipped = [], []
    for inference_run in pending:
        try:
            monitored.append(
                _monitor_inference_run(
                    cfg, settings, client, paths, inference_run, labels, fingerprint, references, max_rows
                )
            )
        except MonitoringError as exc:
            skipped.append({"inference_run_id": inference_run.info.run_id, "reason": str(exc)})

    updated = []
    for run in awaiting_labels:
        result = _update_with_labels(cfg, client, run, labels, fingerprint)
        if result:
            updated.append(result)
    return {"monitored": monitored, "updated_with_labels": updated, "skipped": skipped}


def find_drift_trigger(
    cfg: DatasetConfig, settings: Settings | None = None, now_s: float | None = None
) -> dict[str, Any] | None:
    """Decide whether monitoring results of the current champion call for retraining.

    Only monitoring runs without a sensor tag are considered. Runs that do not cross a threshold stay untagged,
    so late labels can still make them cross. Crossing runs inside the cooldown after an earlier firing are
    tagged ``driftloop.sensor_suppressed=cooldown`` and never fire.

    Args:
        cfg: Dataset config (thresholds in ``cfg.monitoring``).
        settings: Process settings; defaults to :meth:`Settings.from_env`.
        now_s: Current epoch seconds (for tests); defaults to ``time.time()``.

    Returns:
        None when nothing should fire, else ``{"reason": "drift"|"performance", "monitoring_run_id",
        "drift_share", "live_f1_drop", "champion_version", "detail"}`` for the newest crossing run.
    """
    settings = settings or Settings.from_env()
    now_s = time.time() if now_s is None else now_s
    client = get_client(settings)
    champion_version = _champion_version(client, cfg.registered_model_name)
    if champion_version is None:
        return None
    crossing = _crossing_runs(cfg, client, champion_version)
    if not crossing:
        return None

    last_fired_s = _last_fired_s(cfg, client)
    if last_fired_s is not None and now_s - last_fired_s < cfg.monitoring.cooldown_s:
        for run in crossing:
            client.set_tag(run.info.run_id, SUPPRESSED_TAG, "cooldown")
        return None

    newest = crossing[0]
    metrics = newest.data.metrics
    drift_share = metrics.get("drift_share")
    f1_drop = metrics.get("live_f1_drop")
    reason = "performance" if _crosses_performance(cfg, metrics) else "drift"
    return {
        "reason": reason,
        "monitoring_run_id": newest.info.run_id,
        "drift_share": drift_share,
        "live_f1_drop": f1_drop,
        "champion_version": champion_version,
        "detail": _describe_trigger(cfg, newest, champion_version, reason, len(crossing)),
    }


def mark_trigger_fired(
    cfg: DatasetConfig,
    monitoring_run_id: str,
    trigger_run_id: str,
    settings: Settings | None = None,
    now_s: float | None = None,
) -> dict[str, Any]:
    """Record that a monitoring result triggered retraining, so the same drift episode never fires twice.

    Other untagged crossing runs of the same champion version are tagged
    ``driftloop.sensor_suppressed=covered_by:<monitoring_run_id>``. A rerun keeps the original firing time.

    Args:
        cfg: Dataset config.
        monitoring_run_id: The run returned by :func:`find_drift_trigger`.
        trigger_run_id: Id of what was triggered (e.g. the Airflow run id of the retraining DAG).
        settings: Process settings; defaults to :meth:`Settings.from_env`.
        now_s: Current epoch seconds (for tests); defaults to ``time.time()``.

    Returns:
        ``{"monitoring_run_id", "trigger_run_id", "fired_at", "covered_run_ids"}``.
    """
    settings = settings or Settings.from_env()
    now_s = time.time() if now_s is None else now_s
    client = get_client(settings)
    run = client.get_run(monitoring_run_id)
    fired_at = run.data.tags.get(FIRED_AT_TAG)
    if fired_at is None or run.data.tags.get(TRIGGER_RUN_TAG) != trigger_run_id:
        fired_at = str(int(now_s))
        client.set_tag(monitoring_run_id, FIRED_AT_TAG, fired_at)
        client.set_tag(monitoring_run_id, TRIGGER_RUN_TAG, trigger_run_id)

    covered = []
    champion_version = run.data.tags.get("driftloop.champion_version")
    if champion_version:
        for other in _crossing_runs(cfg, client, champion_version):
            if other.info.run_id != monitoring_run_id:
                client.set_tag(other.info.run_id, SUPPRESSED_TAG, f"covered_by:{monitoring_run_id}")
                covered.append(other.info.run_id)
    return {
        "monitoring_run_id": monitoring_run_id,
        "trigger_run_id": trigger_run_id,
        "fired_at": int(fired_at),
        "covered_run_ids": covered,
    }


def _monitor_inference_run(
    cfg: DatasetConfig,
    settings: Settings,
    client: Any,
    paths: StatePaths,
    inference_run: Any,
    labels: Any,
    labels_fingerprint: str,
    references: dict[str, Any],
    max_rows: int,
) -> dict[str, Any]:
    import mlflow

    tags = inference_run.data.tags
    inference_run_id = inference_run.info.run_id
    batch_id = tags.get("driftloop.batch_id", "")
    batch_uri, predictions_uri = tags.get("driftloop.batch_uri"), tags.get("driftloop.predictions_uri")
    if not batch_uri or not predictions_uri:
        raise MonitoringError(
            f"inference run {inference_run_id} lacks driftloop.batch_uri/predictions_uri tags"
        )
    model_version = tags.get("driftloop.model_version", "")
    reference_run_id = tags.get("driftloop.model_run_id") or _version_run_id(
        client, cfg.registered_model_name, model_version
    )
    if reference_run_id not in references:
        references[reference_run_id] = _load_reference(cfg, settings, reference_run_id)
    reference_df = references[reference_run_id]

    predictions_df = _read_parquet(predictions_uri, [cfg.id_column, SCORE_COLUMN, "prediction"])
    total_rows = len(predictions_df)
    current_df, sample_note = _read_current(cfg, batch_uri, predictions_df, max_rows)
    drift = compute_drift(cfg, reference_df, current_df)
    live = _live_metrics(cfg, predictions_df, labels)
    holdout_f1 = _holdout_f1(client, reference_run_id)
    if live and holdout_f1:
        live["live_f1_drop"] = (holdout_f1 - live["live_f1"]) / holdout_f1

    report_path = paths.reports_dir / "monitoring" / batch_id / REPORT_ARTIFACT
    report_path.parent.mkdir(parents=True, exist_ok=True)
    drift.pop("snapshot").save_html(str(report_path))

    metrics = {
        "drift_share": drift["drift_share"],
        "drifted_columns": drift["drifted_columns"],
        "prediction_drift_score": drift["prediction_drift_score"],
        "prediction_drifted": float(drift["prediction_drifted"]),
        "rows": float(total_rows),
        "rows_compared": float(len(current_df)),
        "reference_rows": float(len(reference_df)),
        **{f"drift_score.{_metric_safe(col)}": score for col, score in drift["drift_scores"].items()},
        **live,
    }
    run_tags = {
        "driftloop.batch_id": batch_id,
        "driftloop.champion_version": model_version,
        "driftloop.reference_run_id": reference_run_id,
        "driftloop.predictions_uri": predictions_uri,
        "driftloop.batch_uri": batch_uri,
        "driftloop.current_sample": sample_note,
        LABELS_TAG: labels_fingerprint,
        "driftloop.drifted_column_names": ",".join(drift["drifted_column_names"])[:5000],
        "driftloop.drift_methods": ",".join(sorted(set(drift["methods"].values()))),
    }
    summary = {
        col: {
            "score": drift["drift_scores"].get(col),
            "method": drift["methods"].get(col),
            "drifted": col in drift["drifted_column_names"]
            or (col == SCORE_COLUMN and drift["prediction_drifted"]),
            "empty": col in drift["empty_columns"],
        }
        for col in [*cfg.features, SCORE_COLUMN]
    }
    with keyed_run(
        client, cfg.experiment_name("monitoring"), {KEY_TAG: inference_run_id}, f"drift-{batch_id}"
    ) as run:
        mlflow.set_tags(run_tags)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(report_path))
        mlflow.log_dict(summary, SUMMARY_ARTIFACT)
        run_id = run.info.run_id
    return {
        "monitoring_run_id": run_id,
        "inference_run_id": inference_run_id,
        "batch_id": batch_id,
        "champion_version": model_version,
        "drift_share": drift["drift_share"],
        "drifted_columns": int(drift["drifted_columns"]),
        "prediction_drift_score": drift["prediction_drift_score"],
        **live,
    }


def compute_drift(cfg: DatasetConfig, reference_df: Any, current_df: Any) -> dict[str, Any]:
    """Run Evidently's data drift preset on the features and a separate drift check on ``score``.

    Evidently picks the test per column from the reference size: p-values (K-S, chi-square, Z) up to 1,000
    reference rows, distances (normed Wasserstein, Jensen-Shannon) above; ``methods`` says which one was used.
    A feature that is empty on one side only cannot be tested and counts as drifted.

    Args:
        cfg: Dataset config (feature types are declared from it, never inferred).
        reference_df: Reference frame with ``cfg.features`` and ``score``.
        current_df: Current frame with the same columns.

    Returns:
        ``drift_share`` and ``drifted_columns`` over the features only, ``drift_scores`` and ``methods`` per
        tested column (score included), ``drifted_column_names``, ``empty_columns``,
        ``prediction_drift_score``, ``prediction_drifted`` and the Evidently ``snapshot`` (for ``save_html``).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    features = list(cfg.features)
    reference_df = _normalise(cfg, reference_df[[*features, SCORE_COLUMN]])
    current_df = _normalise(cfg, current_df[[*features, SCORE_COLUMN]])
    empty_ref = {col for col in features if reference_df[col].isna().all()}
    empty_cur = {col for col in features if current_df[col].isna().all()}
    tested = [col for col in features if col not in empty_ref | empty_cur]
    definition = DataDefinition(
        numerical_columns=[
            col for col in [*cfg.numeric_features, SCORE_COLUMN] if col not in empty_ref | empty_cur
        ],
        categorical_columns=[col for col in cfg.categorical_features if col in tested],
    )
    metrics: list[Any] = [ValueDrift(column=SCORE_COLUMN)]
    if tested:
        metrics.insert(0, DataDriftPreset(columns=tested, drift_share=cfg.monitoring.drift_share_threshold))
    snapshot = Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(current_df[[*tested, SCORE_COLUMN]], data_definition=definition),
        reference_data=Dataset.from_pandas(reference_df[[*tested, SCORE_COLUMN]], data_definition=definition),
    )
    result = extract_drift(snapshot.dict(), tested)
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


def extract_drift(snapshot_dict: dict[str, Any], features: list[str]) -> dict[str, Any]:
    """Pull drift numbers out of an Evidently 0.7 snapshot dict (``Snapshot.dict()``).

    Args:
        snapshot_dict: Snapshot of a report with ``DataDriftPreset(columns=features)`` and
            ``ValueDrift(column="score")``, run with ``include_tests=True``.
        features: Feature columns; the drift share is computed over these only.

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
    missing = [col for col in [*features, SCORE_COLUMN] if col not in scores or col not in drifted]
    if missing:
        raise MonitoringError(f"Evidently snapshot lacks drift results for columns {missing}")
    drifted_names = [col for col in features if drifted[col]]
    return {
        "drift_share": len(drifted_names) / len(features) if features else 0.0,
        "drifted_columns": float(len(drifted_names)),
        "drift_scores": scores,
        "methods": methods,
        "drifted_column_names": drifted_names,
        "prediction_drift_score": scores[SCORE_COLUMN],
        "prediction_drifted": drifted[SCORE_COLUMN],
    }


def _normalise(cfg: DatasetConfig, frame: Any) -> Any:
    import pandas as pd

    frame = frame.copy()
    for col in cfg.numeric_features:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame[SCORE_COLUMN] = pd.to_numeric(frame[SCORE_COLUMN], errors="coerce")
    # Categories compared as strings, so 0/1 stored as int in one file and str in another is not "drift".
    for col in cfg.categorical_features:
        frame[col] = frame[col].where(frame[col].isna(), frame[col].astype(str))
    return frame.reset_index(drop=True)


def _read_current(cfg: DatasetConfig, batch_uri: str, predictions_df: Any, max_rows: int) -> tuple[Any, str]:
    """Batch features joined with scores on the id, sampled to ``max_rows`` before the features are read."""
    import pandas as pd

    scores = predictions_df[[cfg.id_column, SCORE_COLUMN]].drop_duplicates(cfg.id_column, keep="last")
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
    """Yield a parquet file in chunks of ``cfg.inference.chunk_rows`` so a huge batch never sits in memory."""
    import pyarrow.parquet as pq

    path = uri_to_path(uri)
    if not Path(path).is_file():
        raise MonitoringError(f"file {uri} does not exist")
    parquet = pq.ParquetFile(path)
    missing = [col for col in columns if col not in parquet.schema_arrow.names]
    if missing:
        raise MonitoringError(f"{uri} lacks columns {missing}")
    for batch in parquet.iter_batches(batch_size=cfg.inference.chunk_rows, columns=columns):
        yield batch.to_pandas()


def _read_parquet(uri: str, columns: list[str]) -> Any:
    import pandas as pd
    import pyarrow.parquet as pq

    path = uri_to_path(uri)
    if not Path(path).is_file():
        raise MonitoringError(f"file {uri} does not exist")
    present = pq.ParquetFile(path).schema_arrow.names
    missing = [col for col in columns if col not in present]
    if missing:
        raise MonitoringError(f"{uri} lacks columns {missing}")
    return pd.read_parquet(path, columns=columns)


def _load_reference(cfg: DatasetConfig, settings: Settings, reference_run_id: str) -> Any:
    import mlflow
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=reference_run_id,
                artifact_path=REFERENCE_ARTIFACT,
                dst_path=tmp,
                tracking_uri=settings.tracking_uri,
            )
        except Exception as exc:  # MLflow raises several types for a missing artifact or run
            raise MonitoringError(
                f"training run {reference_run_id} has no {REFERENCE_ARTIFACT}: {exc}"
            ) from exc
        reference = pd.read_parquet(path)
    missing = [col for col in [*cfg.features, SCORE_COLUMN] if col not in reference.columns]
    if missing:
        raise MonitoringError(f"{REFERENCE_ARTIFACT} of run {reference_run_id} lacks columns {missing}")
    if len(reference) > MAX_REFERENCE_ROWS:
        reference = reference.sample(n=MAX_REFERENCE_ROWS, random_state=SAMPLE_SEED)
    return reference


def _labels_fingerprint(label_files: list[Path]) -> str:
    """Identity of the accepted label set; label files are immutable, so names and sizes suffice."""
    import hashlib

    if not label_files:
        return "none"
    listing = "\n".join(f"{path.name}:{path.stat().st_size}" for path in label_files)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def _awaits_labels(run: Any, fingerprint: str) -> bool:
    """True when the label set changed since the run was last joined and the run is not fully labelled."""
    if run.data.tags.get(LABELS_TAG) == fingerprint:
        return False
    metrics = run.data.metrics
    return "live_f1" not in metrics or metrics.get("labelled_rows", 0.0) < metrics.get("rows", float("inf"))


def _read_labels(cfg: DatasetConfig, label_files: list[Path]) -> Any:
    """Accepted labels as a boolean Series (True = positive) indexed by id."""
    import pandas as pd

    frames = [pd.read_parquet(f, columns=[cfg.id_column, cfg.target]) for f in label_files]
    labels = pd.concat(frames, ignore_index=True).dropna(subset=[cfg.target])
    labels = labels.drop_duplicates(cfg.id_column, keep="last")  # a correction in a later file wins
    return (labels[cfg.target].astype(str) == cfg.positive_label).set_axis(labels[cfg.id_column])


def _live_metrics(cfg: DatasetConfig, predictions_df: Any, labels: Any) -> dict[str, float]:
    """Live F1 (and AUC when both classes occur) on the scored rows that have labels; empty below min_rows."""
    from sklearn.metrics import f1_score, roc_auc_score

    if labels is None:
        return {}
    scored = predictions_df.drop_duplicates(cfg.id_column, keep="last")
    matched = scored[scored[cfg.id_column].isin(labels.index)]
    if len(matched) < cfg.monitoring.min_rows:
        return {}
    y_true = labels.loc[matched[cfg.id_column]].to_numpy()
    result = {
        "live_f1": float(f1_score(y_true, matched["prediction"].astype(int).to_numpy(), zero_division=0)),
        "labelled_rows": float(len(matched)),
    }
    if 0 < y_true.sum() < len(y_true):
        result["live_auc"] = float(roc_auc_score(y_true, matched[SCORE_COLUMN].to_numpy()))
    return result


def _update_with_labels(
    cfg: DatasetConfig, client: Any, run: Any, labels: Any, fingerprint: str
) -> dict[str, Any] | None:
    """Log live metrics into an existing monitoring run when more of its rows are labelled than before."""
    tags, run_id = run.data.tags, run.info.run_id
    predictions_uri = tags.get("driftloop.predictions_uri")
    if not predictions_uri and tags.get(KEY_TAG):
        predictions_uri = client.get_run(tags[KEY_TAG]).data.tags.get("driftloop.predictions_uri")
    try:
        predictions_df = _read_parquet(predictions_uri or "", [cfg.id_column, SCORE_COLUMN, "prediction"])
    except MonitoringError:
        return None
    live = _live_metrics(cfg, predictions_df, labels)
    # Remember this label set was joined, so the next call does not reread the predictions for nothing.
    client.set_tag(run_id, LABELS_TAG, fingerprint)
    if not live or live["labelled_rows"] <= run.data.metrics.get("labelled_rows", 0.0):
        return None
    holdout_f1 = _holdout_f1(client, tags.get("driftloop.reference_run_id"))
    if holdout_f1:
        live["live_f1_drop"] = (holdout_f1 - live["live_f1"]) / holdout_f1
    timestamp_ms = int(time.time() * 1000)
    for key, value in live.items():
        client.log_metric(run_id, key, value, timestamp=timestamp_ms)
    return {"monitoring_run_id": run_id, "batch_id": tags.get("driftloop.batch_id", ""), **live}


def _holdout_f1(client: Any, training_run_id: str | None) -> float | None:
    if not training_run_id:
        return None
    try:
        return client.get_run(training_run_id).data.metrics.get("holdout_f1")
    except Exception:  # a deleted training run only costs the relative drop, not the monitoring run
        return None


def _version_run_id(client: Any, model_name: str, version: str) -> str:
    if not version:
        raise MonitoringError("inference run lacks driftloop.model_run_id and driftloop.model_version tags")
    try:
        return client.get_model_version(model_name, version).run_id
    except Exception as exc:
        raise MonitoringError(f"model {model_name} version {version} not found: {exc}") from exc


def _champion_version(client: Any, model_name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, "champion").version)
    except MlflowException:
        return None


def _crossing_runs(cfg: DatasetConfig, client: Any, champion_version: str) -> list[Any]:
    """Untagged FINISHED monitoring runs of ``champion_version`` that cross a threshold, newest first."""
    runs = search_runs(
        client,
        cfg.experiment_name("monitoring"),
        {"driftloop.champion_version": champion_version},
        extra_filter="attributes.status = 'FINISHED'",
    )
    return [
        run
        for run in runs
        if FIRED_AT_TAG not in run.data.tags
        and SUPPRESSED_TAG not in run.data.tags
        and (_crosses_drift(cfg, run.data.metrics) or _crosses_performance(cfg, run.data.metrics))
    ]


def _crosses_drift(cfg: DatasetConfig, metrics: dict[str, float]) -> bool:
    return metrics.get("drift_share", 0.0) >= cfg.monitoring.drift_share_threshold


def _crosses_performance(cfg: DatasetConfig, metrics: dict[str, float]) -> bool:
    return "live_f1_drop" in metrics and metrics["live_f1_drop"] > cfg.monitoring.f1_drop_threshold


def _last_fired_s(cfg: DatasetConfig, client: Any) -> float | None:
    fired = search_runs(
        client, cfg.experiment_name("monitoring"), extra_filter=f"tags.`{FIRED_AT_TAG}` LIKE '%'"
    )
    times = [float(run.data.tags[FIRED_AT_TAG]) for run in fired if run.data.tags.get(FIRED_AT_TAG)]
    return max(times) if times else None


def _describe_trigger(cfg: DatasetConfig, run: Any, champion_version: str, reason: str, crossing: int) -> str:
    metrics, thresholds = run.data.metrics, cfg.monitoring
    batch_id = run.data.tags.get("driftloop.batch_id", "?")
    parts = [
        f"drift share {metrics.get('drift_share', 0.0):.2f} "
        f"({int(metrics.get('drifted_columns', 0))} of {len(cfg.features)} features; "
        f"threshold {thresholds.drift_share_threshold:.2f})"
    ]
    if "live_f1_drop" in metrics:
        parts.append(
            f"live F1 {metrics.get('live_f1', float('nan')):.3f} is {metrics['live_f1_drop']:.1%} below holdout "
            f"(threshold {thresholds.f1_drop_threshold:.0%}, {int(metrics.get('labelled_rows', 0))} labelled rows)"
        )
    return (
        f"{reason} trigger for champion v{champion_version}: batch {batch_id} has "
        + "; ".join(parts)
        + f" ({crossing} crossing monitoring run(s) not yet acted on)."
    )


def _metric_safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", name)


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop monitor`` and ``driftloop drift-check``."""
    parser = subparsers.add_parser("monitor", help="drift and live metrics for newly scored batches")
    parser.add_argument(
        "--max-rows", type=int, default=MAX_CURRENT_ROWS, help="current rows compared at most"
    )
    parser.set_defaults(func=_run_monitor_cli)
    check = subparsers.add_parser("drift-check", help="would the drift sensor fire now? (tags nothing)")
    check.set_defaults(func=_run_check_cli)


def _run_monitor_cli(args: Any) -> int:
    from driftloop.cli import print_result
    from driftloop.config import load_dataset_config

    print_result(monitor_predictions(load_dataset_config(args.dataset), max_rows=args.max_rows))
    return 0


def _run_check_cli(args: Any) -> int:
    from driftloop.cli import print_result
    from driftloop.config import load_dataset_config

    print_result(preview_drift_trigger(load_dataset_config(args.dataset)))
    return 0


def preview_drift_trigger(cfg: DatasetConfig, settings: Settings | None = None) -> dict[str, Any]:
    """Read-only view of the sensor's inputs: crossing runs of the champion and the cooldown state.

    Args:
        cfg: Dataset config.
        settings: Process settings; defaults to :meth:`Settings.from_env`.

    Returns:
        ``{"champion_version", "crossing_run_ids", "last_fired_at", "cooldown_s"}``.
    """
    settings = settings or Settings.from_env()
    client = get_client(settings)
    champion_version = _champion_version(client, cfg.registered_model_name)
    crossing = _crossing_runs(cfg, client, champion_version) if champion_version else []
    return {
        "champion_version": champion_version,
        "crossing_run_ids": [run.info.run_id for run in crossing],
        "last_fired_at": _last_fired_s(cfg, client),
        "cooldown_s": cfg.monitoring.cooldown_s,
    }
