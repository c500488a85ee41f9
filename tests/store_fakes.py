"""What the data and inference stages leave in the data zones, written wherever ``DRIFTLOOP_DATA_URI`` says (a
folder or moto's S3 server, see the ``data_store`` fixture), and how a test looks at the zones.

The fakes mirror :mod:`tests.fakes` (same names from :mod:`driftloop.core.bus`) but write through the storage
helpers, so the same test runs on both stores. :func:`zone_names` lists a zone through the store's own API
(the folder's entries, or S3's object keys), not through the code under test, so a temporary name or a
second copy left behind shows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from driftloop.core import bus
from driftloop.core.state import StatePaths, path_to_uri
from tests.fakes import TELCO_DECISION


def write_store_parquet(frame: Any, path: Any) -> None:
    """Write ``frame`` to ``path`` (a folder or object storage) whole, as the stages do."""
    from driftloop.core.storage import atomic_path

    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_store_batch(cfg: Any, frame: Any, batch_id: str) -> dict[str, Any]:
    """An accepted scoring batch: the features parquet, then its manifest."""
    from driftloop.core.storage import write_json

    paths = StatePaths.for_dataset(cfg)
    path = paths.batches_dir / f"{batch_id}.parquet"
    write_store_parquet(frame[[cfg.id_column, *cfg.features]], path)
    manifest: bus.BatchManifest = {
        "batch_id": batch_id,
        "kind": "batch",
        "batch_uri": path_to_uri(path),
        "has_target": False,
        "rows_received": len(frame),
        "rows_accepted": len(frame),
        "rows_quarantined": 0,
        "ingested_at": "2026-11-22T00:00:00+00:00",
    }
    write_json(paths.batches_dir / f"{batch_id}.json", dict(manifest))
    return dict(manifest)


def write_store_labels(cfg: Any, frame: Any, name: str, flip: bool = False) -> str:
    """Accepted late labels: the parquet, then its manifest; ``flip`` swaps Yes/No (concept drift). Returns
    the labels URI."""
    from driftloop.core.storage import write_json

    labels = frame[[cfg.id_column, cfg.target]].reset_index(drop=True)
    if flip:
        labels[cfg.target] = labels[cfg.target].map({"Yes": "No", "No": "Yes"})
    paths = StatePaths.for_dataset(cfg)
    path = paths.labels_dir / f"{name}.parquet"
    write_store_parquet(labels, path)
    manifest = {"batch_id": name, "kind": "labels", "labels_uri": path_to_uri(path), "has_target": True}
    write_json(paths.labels_dir / f"{name}.json", {**manifest, "ingested_at": "2026-11-23T00:00:00+00:00"})
    return path_to_uri(path)


def score_store_batch(
    cfg: Any, batch_df: Any, batch_id: str, version: str, model_run_id: str, scorer: tuple[Any, float]
) -> str:
    """Fake the inference stage for one batch (batch, predictions partition, FINISHED run), as
    :func:`tests.fakes.score_batch` does; returns the run id."""
    from driftloop.core.tracking import ensure_experiment, get_client

    score, _ = scorer
    manifest = write_store_batch(cfg, batch_df, batch_id)
    predictions = batch_df[[cfg.id_column]].copy().reset_index(drop=True)
    for column, values in TELCO_DECISION.predict(score.model, batch_df[cfg.features]).items():
        predictions[column] = values
    lineage = {
        "model_name": cfg.registered_model_name,
        "model_version": version,
        "model_run_id": model_run_id,
    }
    for column in bus.PREDICTION_LINEAGE_COLUMNS:
        predictions[column] = lineage[column]
    predictions[bus.SCORED_AT_COLUMN] = "2026-11-22T00:00:00Z"
    predictions_path = StatePaths.for_dataset(cfg).predictions_dir / f"{batch_id}.parquet"
    write_store_parquet(predictions, predictions_path)

    client = get_client()
    tags = {
        bus.BATCH_ID_TAG: batch_id,
        bus.BATCH_URI_TAG: manifest["batch_uri"],
        bus.PREDICTIONS_URI_TAG: path_to_uri(predictions_path),
        bus.MODEL_VERSION_TAG: version,
        bus.MODEL_RUN_ID_TAG: model_run_id,
    }
    run = client.create_run(ensure_experiment(client, cfg.experiment_name("inference")), tags=tags)
    client.log_metric(run.info.run_id, bus.ROWS, len(predictions))
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def read_store_frame(uri: str) -> Any:
    """A parquet file of the data zones (a folder or object storage) as a DataFrame."""
    from driftloop.core.storage import location, read_parquet

    return read_parquet(location(uri))


def zone_names(cfg: Any, zone: str) -> list[str]:
    """Every name under one zone of ``cfg`` (``predictions``, ``landing/labels`` ...), hidden and temporary
    names included, sorted: the folder's entries, or the object keys through S3's API."""
    from driftloop.core.settings import Settings

    root = Settings.from_env().data_root_uri
    if not root.startswith("s3://"):
        folder = Path(root) / cfg.name / zone
        return sorted(os.listdir(folder)) if folder.is_dir() else []
    from tests.object_store import S3Server

    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    folder = f"{prefix}/{cfg.name}/{zone}/"
    server = S3Server(endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    return [key.removeprefix(folder) for key in server.keys(bucket, folder)]


def is_s3(data_store: str) -> bool:
    """Whether the ``data_store`` fixture's location is the S3 server."""
    return data_store.startswith("s3://")
