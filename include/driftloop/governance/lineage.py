"""Lineage from any end: model version ⇄ training run ⇄ snapshot ⇄ landed batches (with their quarantine
counts).

Everything is read back from what the stages already write: snapshot and batch manifests under the state
folder, MLflow run tags, and model-version tags (``driftloop.snapshot_hash`` and friends, copied from the
training run). Nothing here writes.
"""

from __future__ import annotations

import argparse
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import SnapshotNotFoundError
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths, path_to_uri
from driftloop.core.storage import (
    StoragePath,
    is_local,
    location,
    read_json,
    read_parquet,
    read_parquet_schema,
)
from driftloop.data.snapshots import resolve_snapshot

# Lineage fields read from the model version first, then from its training run.
MODEL_LINEAGE_TAGS = {
    "snapshot_hash": bus.SNAPSHOT_HASH_TAG,
    "snapshot_uri": bus.SNAPSHOT_URI_TAG,
    "airflow_dag_id": bus.AIRFLOW_DAG_ID_TAG,
    "airflow_run_id": bus.AIRFLOW_RUN_ID_TAG,
    "git_commit": bus.GIT_COMMIT_TAG,
    "trigger_reason": bus.TRIGGER_REASON_TAG,
    "trigger_id": bus.TRIGGER_ID_TAG,
    "monitoring_run_id": bus.MONITORING_RUN_ID_TAG,
    "gate": bus.GATE_TAG,
    "gate_reason": bus.GATE_REASON_TAG,
}


class LineageError(LookupError):
    """The thing to trace does not exist (unknown version, snapshot or predictions file)."""


def _batch_lineage(paths: StatePaths, batch_id: str, labels: bool = False) -> dict[str, Any]:
    folder = paths.labels_dir if labels else paths.batches_dir
    try:
        manifest = read_json(folder / f"{batch_id}.json")
    except FileNotFoundError:
        return {"batch_id": batch_id, "missing": True}
    keys = (
        "batch_id",
        "source_file",
        "sha256",
        "rows_received",
        "rows_accepted",
        "rows_quarantined",
        "reason_counts",
        "quarantine_uri",
        "ingested_at",
        "has_target",
    )
    return {k: manifest[k] for k in keys if k in manifest}


def _snapshot_files(cfg: DatasetConfig, snapshot_hash: str, settings: Settings | None) -> dict[str, Any]:
    paths = StatePaths.for_dataset(cfg, settings)
    try:
        manifest = resolve_snapshot(cfg, snapshot_hash, settings)
    except SnapshotNotFoundError as exc:
        raise LineageError(str(exc)) from exc
    snapshot_hash = manifest["snapshot_hash"]
    batches = [_batch_lineage(paths, b) for b in manifest["batch_ids"]]
    label_batches = [_batch_lineage(paths, b, labels=True) for b in manifest["label_batch_ids"]]
    every = [*batches, *label_batches]
    return {
        "snapshot_hash": snapshot_hash,
        "snapshot_uri": manifest["snapshot_uri"],
        "rows": manifest["rows"],
        "created_at": manifest.get("created_at"),
        "batches": batches,
        "label_batches": label_batches,
        "rows_received": sum(b.get("rows_received", 0) for b in every),
        "rows_quarantined": sum(b.get("rows_quarantined", 0) for b in every),
    }


def _aliases_by_version(client: Any, name: str) -> dict[str, list[str]]:
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases or {}
    except MlflowException:
        return {}
    out: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        out.setdefault(str(version), []).append(alias)
    return {v: sorted(a) for v, a in out.items()}


def trace_snapshot(
    cfg: DatasetConfig, snapshot_hash: str, settings: Settings | None = None
) -> dict[str, Any]:
    """The batches and label files a snapshot came from (with quarantine counts) and what was trained on it.

    Args:
        cfg: Dataset config.
        snapshot_hash: Full hash or a unique prefix of at least 8 characters.
        settings: Process settings.

    Returns:
        ``{"snapshot_hash", "snapshot_uri", "rows", "created_at", "batches", "label_batches", "rows_received",
        "rows_quarantined", "data_run_id", "training_runs", "model_versions"}``; each model version is
        ``{"model_version", "run_id", "aliases", "gate"}``.

    Raises:
        LineageError: No such snapshot.
    """
    from driftloop.core.tracking import get_client, search_runs

    result = _snapshot_files(cfg, snapshot_hash, settings)
    full_hash = result["snapshot_hash"]
    client = get_client(settings)
    data_runs = search_runs(client, cfg.experiment_name("data"), {bus.SNAPSHOT_HASH_TAG: full_hash})
    result["data_run_id"] = data_runs[0].info.run_id if data_runs else None
    training = search_runs(client, cfg.experiment_name("training"), {bus.SNAPSHOT_HASH_TAG: full_hash})
    result["training_runs"] = [
        {
            "run_id": r.info.run_id,
            "status": r.info.status,
            "trigger_reason": r.data.tags.get(bus.TRIGGER_REASON_TAG),
        }
        for r in training
    ]
    name = cfg.registered_model_name
    aliases = _aliases_by_version(client, name)
    versions = client.search_model_versions(
        f"name = '{name}' and tags.`{bus.SNAPSHOT_HASH_TAG}` = '{full_hash}'"
    )
    result["model_versions"] = [
        {
            "model_version": str(v.version),
            "run_id": v.run_id,
            "aliases": aliases.get(str(v.version), []),
            "gate": (v.tags or {}).get(bus.GATE_TAG),
        }
        for v in sorted(versions, key=lambda v: int(v.version))
    ]
    return result


def trace_model_version(
    cfg: DatasetConfig, version: str | int, settings: Settings | None = None
) -> dict[str, Any]:
    """A registered model version's training run, DAG run, git commit and snapshot (down to its batches).

    Args:
        cfg: Dataset config.
        version: Version number, or an alias such as ``champion``.
        settings: Process settings.

    Returns:
        ``{"model_name", "model_version", "aliases", "training_run_id", "training_experiment",
        "snapshot_hash", "snapshot_uri", "airflow_dag_id", "airflow_run_id", "git_commit", "trigger_reason",
        ..., "snapshot"}`` where ``snapshot`` is the snapshot's batch lineage (None when its manifest is not
        in this state folder).

    Raises:
        LineageError: No such version or alias.
    """
    from mlflow.exceptions import MlflowException

    from driftloop.core.tracking import get_client

    client = get_client(settings)
    name = cfg.registered_model_name
    try:
        model_version = (
            client.get_model_version(name, str(version))
            if str(version).isdigit()
            else client.get_model_version_by_alias(name, str(version))
        )
    except MlflowException as exc:
        raise LineageError(f"model {name!r} has no version or alias '{version}'") from exc
    tags = dict(model_version.tags or {})
    run_tags: dict[str, str] = {}
    experiment = None
    if model_version.run_id:
        try:
            run = client.get_run(model_version.run_id)
            run_tags = dict(run.data.tags)
            experiment = client.get_experiment(run.info.experiment_id).name
        except MlflowException:
            run_tags = {}
    result: dict[str, Any] = {
        "model_name": name,
        "model_version": str(model_version.version),
        "aliases": _aliases_by_version(client, name).get(str(model_version.version), []),
        "training_run_id": model_version.run_id,
        "training_experiment": experiment,
        "source": model_version.source,
    }
    for key, tag in MODEL_LINEAGE_TAGS.items():
        result[key] = tags.get(tag) or run_tags.get(tag)
    result["snapshot"] = None
    if result["snapshot_hash"]:
        try:
            result["snapshot"] = _snapshot_files(cfg, result["snapshot_hash"], settings)
        except (LineageError, FileNotFoundError):
            result["snapshot"] = None
    return result


def trace_predictions(
    cfg: DatasetConfig, predictions_path: str | StoragePath, settings: Settings | None = None
) -> dict[str, Any]:
    """The model version(s) behind a predictions file and, through them, the snapshot they were trained on.

    Args:
        cfg: Dataset config.
        predictions_path: A predictions parquet (columns ``model_name``, ``model_version``, ``model_run_id``):
            a local path, a ``file://`` or ``s3://`` URI, or a location.
        settings: Process settings.

    Returns:
        ``{"predictions_path", "rows", "inference_run_id", "batch_id", "models": [{"model_name",
        "model_version", "model_run_id", "rows", "lineage"}]}`` (``lineage`` as :func:`trace_model_version`).

    Raises:
        LineageError: The file does not exist or lacks the model columns.
    """
    from driftloop.core.tracking import get_client, search_runs

    path = location(predictions_path)
    if is_local(path) and not path.is_file():
        raise LineageError(f"no predictions file {path}")
    try:
        names = set(read_parquet_schema(path).names)
    except FileNotFoundError as exc:
        raise LineageError(f"no predictions file {path}") from exc
    missing = [c for c in bus.PREDICTION_LINEAGE_COLUMNS if c not in names]
    if missing:
        raise LineageError(f"{path} lacks lineage columns {missing}; it is not a Driftloop predictions file")
    frame = read_parquet(path, columns=list(bus.PREDICTION_LINEAGE_COLUMNS))
    groups = frame.astype(str).value_counts().sort_index()
    models = []
    for (model_name, model_version, model_run_id), rows in groups.items():
        entry: dict[str, Any] = {
            "model_name": model_name,
            "model_version": model_version,
            "model_run_id": model_run_id,
            "rows": int(rows),
        }
        if model_name == cfg.registered_model_name:
            entry["lineage"] = trace_model_version(cfg, model_version, settings)
        else:
            entry["lineage"] = None  # another dataset's model: trace it with that dataset's config
        models.append(entry)
    client = get_client(settings)
    runs = search_runs(client, cfg.experiment_name("inference"), {bus.PREDICTIONS_URI_TAG: path_to_uri(path)})
    return {
        "predictions_path": str(path),
        "rows": int(len(frame)),
        "inference_run_id": runs[0].info.run_id if runs else None,
        "batch_id": runs[0].data.tags.get(bus.BATCH_ID_TAG) if runs else None,
        "models": models,
    }


# ------------------------------------------------------------------------------------------------------------
# CLI


def _cmd_lineage(args: argparse.Namespace) -> int:
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config

    cfg = load_dataset_config(args.dataset)
    tracers = {"model": trace_model_version, "predictions": trace_predictions, "snapshot": trace_snapshot}
    try:
        result = tracers[args.what](cfg, args.ref)
    except LineageError as exc:
        print(f"lineage: {exc}")
        return 1
    print_result(result)
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop lineage model <version|alias> | predictions <path> | snapshot <hash>``."""
    from driftloop.core.commands import dataset_parent

    parser = subparsers.add_parser(
        "lineage", parents=[dataset_parent()], help="trace a model version, predictions file or snapshot"
    )
    parser.add_argument("what", choices=["model", "predictions", "snapshot"])
    parser.add_argument(
        "ref", help="model version or alias | predictions parquet (path or URI) | snapshot hash (prefix)"
    )
    parser.set_defaults(func=_cmd_lineage)
