"""Served traffic into monitoring: each closed window of the prediction log becomes a scored batch.

For every window of ``serving.window_s`` seconds that closed at least ``serving.export_grace_s`` ago, and
every model version that answered in it, :func:`export_served_windows` writes exactly what the data and
inference stages write for a batch: the rows' inputs as an accepted scoring batch (``batches/<batch
id>.parquet`` + manifest, in the contract's dtypes, one row per entity), the answers as a predictions
partition (``predictions/<batch id>.parquet`` + manifest), and a FINISHED run in the inference experiment
with the tags :func:`driftloop.serving.batch_scoring.record_scoring` sets (plus ``driftloop.served_window``).
Monitoring then computes drift and, as labels arrive, live F1/AUC on served traffic, and the drift sensor's
performance trigger works on it unchanged. The entity id is the dataset's id column. Labelled served rows
also reach the next training snapshot, like the rows of any scoring batch.

Idempotent: a window already exported (its manifest exists) is skipped; a crash before the manifest is
repaired on the next call (same partitions, the same keyed run). The manifest is written last, so
``inference_pipeline`` never sees a half-exported window. The data zones may be a folder or object storage:
every file is written whole (a rename, or one PUT), so a retry rewrites the same keys, never a second copy.
"""

from __future__ import annotations

import hashlib
import math
import time
from datetime import UTC, datetime
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths, path_to_uri
from driftloop.core.storage import StoragePath, atomic_path, list_manifests, utc_now, write_json
from driftloop.core.tracking import find_finished_run, get_client, keyed_run
from driftloop.serving.online.prediction_log import PRIMARY, log_uri, read_log
from driftloop.serving.online.serving_results import ExportedWindow, ExportResult

SOURCE_NAME = "prediction_log"


def window_stamp(window_start_s: float) -> str:
    """A window's start as ``yyyymmddThhmmssZ`` (used in batch ids)."""
    return datetime.fromtimestamp(window_start_s, UTC).strftime("%Y%m%dT%H%M%SZ")


def _stamp_seconds(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


def _exported(paths: StatePaths) -> dict[str, float]:
    """Batch id → window start of every served window already exported."""
    done = {}
    for manifest in list_manifests(paths.batches_dir):
        batch_id = manifest.get("batch_id", "")
        if batch_id.startswith(bus.SERVED_BATCH_PREFIX):
            done[batch_id] = _stamp_seconds(batch_id.removeprefix(bus.SERVED_BATCH_PREFIX).split("__")[0])
    return done


def export_served_windows(
    cfg: DatasetConfig, settings: Settings | None = None, now_s: float | None = None
) -> ExportResult:
    """Export every closed, not yet exported window of served traffic (see the module docstring).

    Args:
        cfg: Dataset config (``serving.window_s``, ``serving.export_grace_s``, id column, features).
        settings: Process settings; defaults to :meth:`Settings.from_env`.
        now_s: The current epoch second (tests); defaults to ``time.time()``.

    Returns:
        ``{"exported": [{"batch_id", "rows", "model_version", "inference_run_id", "window_start"}],
        "scoring_batch_ids": [...], "until": <end of the last closed window, ISO>}``.
    """
    settings = settings or Settings.from_env()
    now_s = time.time() if now_s is None else now_s
    window_s = cfg.serving.window_s
    until_s = math.floor((now_s - cfg.serving.export_grace_s) / window_s) * window_s
    paths = StatePaths.for_dataset(cfg, settings)
    done = _exported(paths)
    since_s = max(done.values()) if done else None  # the newest exported window is re-read: it may be partial
    log_df = read_log(
        log_uri(cfg, settings), cfg.registered_model_name, since_s=since_s, until_s=until_s, role=PRIMARY
    )
    until = datetime.fromtimestamp(until_s, UTC).isoformat()
    if log_df.empty:
        return {"exported": [], "scoring_batch_ids": [], "until": until}
    log_df["window_start"] = (log_df["logged_at"] // window_s) * window_s
    client = get_client(settings)
    exported: list[ExportedWindow] = []
    for (window_start, version), rows in log_df.groupby(["window_start", "model_version"], sort=True):
        batch_id = bus.served_batch_id(window_stamp(window_start), version)
        if batch_id in done:
            continue
        exported.append(
            _export_window(cfg, settings, client, batch_id, float(window_start), str(version), rows)
        )
    return {"exported": exported, "scoring_batch_ids": [e["batch_id"] for e in exported], "until": until}


def _frames(cfg: DatasetConfig, rows: Any, decision: Any) -> tuple[Any, Any]:
    """(batch rows: id + features, the version's outputs as batch inference writes them), one row per entity
    (the last wins)."""
    import numpy as np
    import orjson
    import pandas as pd

    from driftloop.core.task_types import MULTICLASS, REGRESSION

    rows = rows.sort_values(["logged_at", "request_id", "row_index"], kind="stable")
    rows = rows.drop_duplicates("entity_id", keep="last").reset_index(drop=True)
    features = pd.DataFrame.from_records(
        [orjson.loads(text) for text in rows["features"]], columns=cfg.features
    )
    features.insert(0, cfg.id_column, rows["entity_id"].astype(str).to_numpy())
    prediction = (
        rows["prediction"].astype(float) if decision.task == REGRESSION else rows["prediction"].astype(str)
    )
    outputs = {
        bus.PREDICTION_COLUMN: prediction.to_numpy(),
        bus.SCORE_COLUMN: rows["score"].astype(float).to_numpy(),
    }
    if decision.task == MULTICLASS:
        probabilities = [orjson.loads(text) if text else {} for text in rows["probabilities"]]
        for label in decision.classes:
            outputs[bus.proba_column(label)] = np.array(
                [p.get(label, np.nan) for p in probabilities], dtype=float
            )
    return features, outputs


def _write_parquet(frame: Any, path: StoragePath, schema: Any = None) -> str:
    """Write ``frame`` whole (a local temporary file, then a rename or one upload); returns its sha256."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, schema=schema)
        return hashlib.sha256(tmp.read_bytes()).hexdigest()


def _export_window(
    cfg: DatasetConfig,
    settings: Settings,
    client: Any,
    batch_id: str,
    window_start_s: float,
    version: str,
    rows: Any,
) -> ExportedWindow:
    import mlflow
    import pandas as pd

    from driftloop.core.task_types import read_decision
    from driftloop.data.contract import arrow_schema, load_contract
    from driftloop.serving.batch_scoring import predictions_files, summarize_outputs

    contract = load_contract(cfg)
    paths = StatePaths.for_dataset(cfg, settings)
    registered = client.get_model_version(cfg.registered_model_name, version)
    decision = read_decision(cfg, registered.tags)
    features, outputs = _frames(cfg, rows, decision)
    batch_path = paths.batches_dir / f"{batch_id}.parquet"
    batch_sha256 = _write_parquet(
        features, batch_path, arrow_schema(contract, [cfg.id_column, *cfg.features])
    )
    model_run_id = registered.run_id
    scored_at = datetime.fromtimestamp(window_start_s + cfg.serving.window_s, UTC).isoformat(
        timespec="seconds"
    )
    lineage = {
        "model_name": cfg.registered_model_name,
        "model_version": version,
        "model_run_id": model_run_id,
    }
    predictions = pd.DataFrame(
        {
            cfg.id_column: features[cfg.id_column],
            **outputs,
            **{column: lineage[column] for column in bus.PREDICTION_LINEAGE_COLUMNS},
            bus.SCORED_AT_COLUMN: scored_at,
        }
    )
    predictions_path, predictions_manifest = predictions_files(paths, batch_id)
    predictions_sha256 = _write_parquet(predictions, predictions_path)
    batch_uri, predictions_uri = path_to_uri(batch_path), path_to_uri(predictions_path)
    output_metrics = summarize_outputs(decision, outputs[bus.PREDICTION_COLUMN])
    write_json(
        predictions_manifest,
        {
            "batch_id": batch_id,
            "batch_uri": batch_uri,
            "predictions_uri": predictions_uri,
            **lineage,
            "rows": len(predictions),
            "chunks": 1,
            "seconds": 0.0,
            "explain_method": "none",
            "output_metrics": output_metrics,
            "sha256": predictions_sha256,
            "created_at": utc_now(),
        },
    )
    experiment, key = cfg.experiment_name("inference"), {bus.BATCH_ID_TAG: batch_id}
    run = find_finished_run(client, experiment, key)
    if run is None:
        with keyed_run(client, experiment, key, bus.inference_run_name(batch_id), settings) as active:
            mlflow.set_tags(
                {
                    bus.BATCH_URI_TAG: batch_uri,
                    bus.PREDICTIONS_URI_TAG: predictions_uri,
                    bus.MODEL_NAME_TAG: cfg.registered_model_name,
                    bus.MODEL_VERSION_TAG: version,
                    bus.MODEL_RUN_ID_TAG: model_run_id,
                    bus.SERVED_WINDOW_TAG: datetime.fromtimestamp(window_start_s, UTC).isoformat(),
                }
            )
            mlflow.log_metrics({bus.ROWS: len(predictions), **output_metrics})
            run_id = active.info.run_id
    else:
        run_id = run.info.run_id
    manifest: bus.BatchManifest = {
        "batch_id": batch_id,
        "kind": "batch",
        "source_file": SOURCE_NAME,
        "sha256": batch_sha256,
        "rows_received": len(features),
        "rows_accepted": len(features),
        "rows_quarantined": 0,
        "reason_counts": {},
        "quarantine_uri": None,
        "ingested_at": utc_now(),
        "contract": contract.path,
        "original_archived": False,
        "original_removed_reason": "served traffic exported from the prediction log",
        "has_target": False,
        "batch_uri": batch_uri,
    }
    write_json(paths.batches_dir / f"{batch_id}.json", dict(manifest))
    return {
        "batch_id": batch_id,
        "rows": len(features),
        "model_version": version,
        "inference_run_id": run_id,
        "window_start": datetime.fromtimestamp(window_start_s, UTC).isoformat(),
    }
