"""Training snapshots: immutable, content-addressed sets of labelled rows, and the data run that records each
one.

A snapshot is identified by one hash only, :func:`canonical_hash` of its canonical rows (sorted by id, fixed
column order, contract dtypes), so the same data always gives the same snapshot and a replay is a no-op. Every
snapshot is written by :func:`write_snapshot` and found by :func:`resolve_snapshot`; nothing else reads or
writes them.

Snapshots live in the data zones, a local folder or an object-store prefix: the parquet file is written first
and its manifest last (the commit), both named by the hash, so a retry rewrites the same keys with the same
bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import NoLabelledData, SnapshotNotFoundError
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths, path_to_uri, uri_to_path
from driftloop.core.storage import (
    StoragePath,
    atomic_path,
    is_file,
    is_remote_uri,
    list_files,
    list_manifests,
    local_copy,
    read_json,
    read_parquet,
    read_parquet_schema,
    utc_now,
    write_json,
)
from driftloop.data.contract import arrow_schema, load_contract
from driftloop.data.data_results import DataRunResult, SnapshotResult
from driftloop.data.snapshot_stream import build_streamed, canonical_hash, canonicalise

if TYPE_CHECKING:
    from driftloop.data.profiling import ProfileResult

log = logging.getLogger(__name__)

MIN_HASH_PREFIX = 8


class WrittenSnapshot(bus.SnapshotManifest):
    """A snapshot's manifest, and whether :func:`write_snapshot` wrote it."""

    created: bool  # False: a snapshot with the same content existed already


def write_snapshot(
    cfg: DatasetConfig,
    rows: Any,
    settings: Settings | None = None,
    batch_ids: list[str] | None = None,
    label_batch_ids: list[str] | None = None,
    created_at: str | None = None,
    unlabelled_rows_excluded: int = 0,
) -> WrittenSnapshot:
    """Canonicalise ``rows`` and store them as a snapshot unless one with the same content exists.

    Args:
        cfg: Dataset config.
        rows: Labelled rows with at least the id, feature and target columns.
        settings: Process settings.
        batch_ids: Accepted batches the rows came from (lineage).
        label_batch_ids: Accepted label files the rows' labels came from (lineage).
        created_at: Creation time to record (default: now); snapshots are ordered by it.
        unlabelled_rows_excluded: Accepted rows the caller left out because their label is null (recorded).

    Returns:
        The :class:`~driftloop.core.bus.SnapshotManifest` plus ``created`` (False when it already existed).
    """
    contract = load_contract(cfg)
    snapshot = canonicalise(cfg, rows, contract)
    schema = arrow_schema(contract, list(snapshot.columns))
    return _store_snapshot(
        cfg,
        settings,
        canonical_hash(snapshot),
        len(snapshot),
        list(snapshot.columns),
        lambda tmp: snapshot.to_parquet(tmp, index=False, schema=schema),
        batch_ids=batch_ids,
        label_batch_ids=label_batch_ids,
        created_at=created_at,
        unlabelled_rows_excluded=unlabelled_rows_excluded,
    )


def _store_snapshot(
    cfg: DatasetConfig,
    settings: Settings | None,
    snapshot_hash: str,
    rows: int,
    columns: list[str],
    write_data: Callable[[Path], object],
    batch_ids: list[str] | None = None,
    label_batch_ids: list[str] | None = None,
    created_at: str | None = None,
    unlabelled_rows_excluded: int = 0,
) -> WrittenSnapshot:
    """Write the parquet file (``write_data`` fills a local temporary path) then the manifest, both named by
    ``snapshot_hash``, unless the manifest exists already."""
    folder = StatePaths.for_dataset(cfg, settings).snapshots_dir
    data_path, manifest_path = folder / f"{snapshot_hash}.parquet", folder / f"{snapshot_hash}.json"
    if is_file(manifest_path):
        return {**_read_manifest(manifest_path), "created": False}
    with atomic_path(data_path) as tmp:
        write_data(tmp)
    manifest: bus.SnapshotManifest = {
        "snapshot_hash": snapshot_hash,
        "snapshot_uri": path_to_uri(data_path),
        "rows": int(rows),
        "batch_ids": sorted(batch_ids or []),
        "label_batch_ids": sorted(label_batch_ids or []),
        "columns": columns,
        "target": cfg.target,
        "id_column": cfg.id_column,
        "created_at": created_at or utc_now(),
        "unlabelled_rows_excluded": int(unlabelled_rows_excluded),
    }
    write_json(manifest_path, manifest)
    return {**manifest, "created": True}


def build_snapshot(cfg: DatasetConfig, settings: Settings | None = None) -> SnapshotResult:
    """Build the training snapshot from every accepted labelled row; content-addressed and written once.

    Rows are those of labelled batches plus rows of scoring batches whose id has an accepted label (the latest
    label per id wins; the latest batch wins for an id seen in several batches). Rows whose label is null are
    left out and counted (``unlabelled_rows_excluded`` in the manifest and the result): they never reach
    training.

    Returns:
        The snapshot's hash, URI, rows and lineage; ``created`` is False when a snapshot with this content
        already exists (replay or no new data).

    Raises:
        NoLabelledData: No accepted labelled rows exist yet.
    """
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="driftloop-snapshot-") as work:
        built = build_streamed(cfg, settings, Path(work))
        if built.rows_read == built.rows_without_label:
            batches = list_manifests(StatePaths.for_dataset(cfg, settings).batches_dir)
            raise NoLabelledData(
                f"{cfg.name}: no accepted labelled rows ({len(batches)} batch(es), {built.label_files} label "
                f"file(s) accepted); land a batch with the {cfg.target!r} column or labels first"
            )
        excluded = built.unlabelled_rows_excluded
        if excluded:
            log.info(
                "%s: %d of %d accepted rows have no label; left out of the snapshot",
                cfg.name,
                excluded,
                built.rows + excluded,
            )
        if not built.rows:
            raise NoLabelledData(
                f"{cfg.name}: all {excluded} accepted rows have a null {cfg.target!r}; land labels for them "
                "first"
            )
        log.info(
            "%s: %d batch row(s) read = %d kept + %d unlabelled + %d replaced by a later row of their id "
            "+ %d scoring row(s) without a label",
            cfg.name,
            built.rows_read,
            built.rows,
            excluded,
            built.duplicate_rows_dropped,
            built.rows_without_label,
        )
        manifest = _store_snapshot(
            cfg,
            settings,
            built.snapshot_hash,
            built.rows,
            built.columns,
            lambda tmp: shutil.copyfile(built.data_path, tmp),
            batch_ids=built.batch_ids,
            label_batch_ids=built.label_batch_ids,
            unlabelled_rows_excluded=excluded,
        )
    earlier = [m for m in list_snapshots(cfg, settings) if m["snapshot_hash"] != manifest["snapshot_hash"]]
    before = earlier[-1]["rows"] if earlier else 0
    log.info(
        "snapshot %s: %d rows from %d batch(es) and %d label file(s), %d unlabelled row(s) excluded; %s; "
        "previous snapshot %d rows (%+d)",
        manifest["snapshot_hash"][:12],
        manifest["rows"],
        len(manifest["batch_ids"]),
        len(manifest["label_batch_ids"]),
        excluded,
        "new" if manifest["created"] else "same content as before",
        before,
        manifest["rows"] - before,
    )
    return {
        "snapshot_hash": manifest["snapshot_hash"],
        "snapshot_uri": manifest["snapshot_uri"],
        "rows": manifest["rows"],
        "created": manifest["created"],
        "batch_ids": manifest["batch_ids"],
        "label_batch_ids": manifest["label_batch_ids"],
        "unlabelled_rows_excluded": excluded,
    }


def list_snapshots(cfg: DatasetConfig, settings: Settings | None = None) -> list[bus.SnapshotManifest]:
    """Every snapshot manifest of ``cfg``, oldest first."""
    manifests = list_manifests(StatePaths.for_dataset(cfg, settings).snapshots_dir)
    return cast(list[bus.SnapshotManifest], manifests)  # as _store_snapshot wrote them


def _read_manifest(path: StoragePath) -> bus.SnapshotManifest:
    return cast(bus.SnapshotManifest, read_json(path))  # as _store_snapshot wrote it


def resolve_snapshot(
    cfg: DatasetConfig, ref: str | None = None, settings: Settings | None = None
) -> bus.SnapshotManifest:
    """The manifest of one snapshot: the newest (``ref`` None), a hash or unique hash prefix, or a snapshot
    URI.

    Args:
        cfg: Dataset config.
        ref: None, a full hash, a prefix of at least 8 characters, or the snapshot's parquet URI
            (``file://``, ``s3://``) or path.
        settings: Process settings.

    Returns:
        The :class:`~driftloop.core.bus.SnapshotManifest`.

    Raises:
        SnapshotNotFoundError: No snapshot matches (or a prefix is ambiguous or too short); a parquet file
            without its manifest is not a snapshot.
    """
    folder = StatePaths.for_dataset(cfg, settings).snapshots_dir
    if ref is None:
        manifests = list_snapshots(cfg, settings)
        if not manifests:
            raise SnapshotNotFoundError(
                f"{cfg.name}: no training snapshot in {folder}; land labelled data first"
            )
        return manifests[-1]
    if ref.startswith("file:") or is_remote_uri(ref) or ref.endswith(".parquet"):
        path = uri_to_path(ref)
        manifest_path = path.with_suffix(".json")
        if not is_file(manifest_path):
            raise SnapshotNotFoundError(
                f"{cfg.name}: {ref} is not a snapshot (no manifest {manifest_path.name})"
            )
        return _read_manifest(manifest_path)
    if is_file(folder / f"{ref}.json"):
        return _read_manifest(folder / f"{ref}.json")
    if len(ref) < MIN_HASH_PREFIX:
        raise SnapshotNotFoundError(
            f"snapshot hash prefix {ref!r} is shorter than {MIN_HASH_PREFIX} characters"
        )
    matches = list_files(folder, f"{ref}*.json")
    if len(matches) != 1:
        raise SnapshotNotFoundError(f"{cfg.name}: {len(matches)} snapshots match {ref!r} in {folder}")
    return _read_manifest(matches[0])


def read_snapshot_frame(
    cfg: DatasetConfig, manifest: bus.SnapshotManifest, columns: list[str] | None = None
) -> Any:
    """The rows of the snapshot ``manifest`` describes (``columns`` only, when given).

    Raises:
        SnapshotNotFoundError: The parquet file is gone.
        ValueError: The snapshot lacks some of ``columns``.
    """
    path = uri_to_path(manifest["snapshot_uri"])
    if not is_file(path):
        raise SnapshotNotFoundError(f"{cfg.name}: snapshot file {manifest['snapshot_uri']} does not exist")
    present = read_parquet_schema(path).names
    missing = [c for c in columns or [] if c not in present]
    if missing:
        raise ValueError(f"{cfg.name}: snapshot {manifest['snapshot_uri']} lacks columns {missing}")
    return read_parquet(path, columns=columns)


def target_metrics(cfg: DatasetConfig, target: Any) -> dict[str, float]:
    """The target's distribution in a snapshot: class shares (and the binary positive rate), or the mean
    value."""
    if cfg.task == "regression":
        import pandas as pd

        return {bus.TARGET_MEAN: float(pd.to_numeric(target).mean())}
    balance = target.astype(str).value_counts(normalize=True).sort_index()
    metrics = {bus.class_share_metric(k): float(v) for k, v in balance.items()}
    if cfg.task == "binary":
        metrics[bus.POSITIVE_RATE] = float(balance.get(cfg.positive_label, 0.0))
    return metrics


def _log_profile(profile: ProfileResult) -> None:
    """Log the profile files to the active run (downloaded first when they are on object storage)."""
    import tempfile
    from pathlib import Path

    import mlflow

    with tempfile.TemporaryDirectory(prefix="driftloop-profile-log-") as work:
        for written in (profile["profile_path"], profile["summary_path"]):
            if written:
                mlflow.log_artifact(str(local_copy(uri_to_path(written), Path(work))), bus.PROFILE_DIR)


def record_snapshot(
    cfg: DatasetConfig, snapshot_hash: str, settings: Settings | None = None
) -> DataRunResult:
    """Log the snapshot to MLflow once: a data run keyed by its hash, with profile, lineage and dataset input.

    A rerun finds the finished run and returns it; an unfinished one (crashed attempt) is completed.

    Returns:
        The data run's id, the snapshot it records, and whether it was recorded before (``reused``).
    """
    import mlflow

    from driftloop.core import tracking
    from driftloop.data import profiling

    settings = settings or Settings.from_env()
    manifest = resolve_snapshot(cfg, snapshot_hash, settings)
    client = tracking.get_client(settings)
    experiment = cfg.experiment_name("data")
    key = {bus.SNAPSHOT_HASH_TAG: snapshot_hash}

    def result(data_run_id: str, reused: bool, profile_sampled: bool) -> DataRunResult:
        return {
            "snapshot_hash": snapshot_hash,
            "snapshot_uri": manifest["snapshot_uri"],
            "rows": manifest["rows"],
            "data_run_id": data_run_id,
            "reused": reused,
            "profile_sampled": profile_sampled,
        }

    existing = tracking.find_finished_run(client, experiment, key)
    if existing is not None:
        log.info("snapshot %s already recorded in data run %s", snapshot_hash[:12], existing.info.run_id)
        sampled = existing.data.tags.get(bus.PROFILE_SAMPLED_TAG) == "true"
        return result(existing.info.run_id, True, sampled)
    frame = read_snapshot_frame(cfg, manifest)
    profile = profiling.profile_snapshot(cfg, snapshot_hash, frame, settings=settings)
    metrics = {
        bus.ROWS: float(manifest["rows"]),
        bus.UNLABELLED_ROWS_EXCLUDED: float(manifest.get("unlabelled_rows_excluded", 0)),
        **target_metrics(cfg, frame[cfg.target]),
    }
    paths = StatePaths.for_dataset(cfg, settings)
    sources = [
        *(paths.batches_dir / f"{b}.json" for b in manifest["batch_ids"]),
        *(paths.labels_dir / f"{b}.json" for b in manifest["label_batch_ids"]),
    ]
    source_manifests = [read_json(p) for p in sources if is_file(p)]
    metrics.update(
        {
            bus.SOURCE_ROWS_RECEIVED: float(sum(m["rows_received"] for m in source_manifests)),
            bus.SOURCE_ROWS_QUARANTINED: float(sum(m["rows_quarantined"] for m in source_manifests)),
        }
    )
    with tracking.keyed_run(client, experiment, key, bus.data_run_name(snapshot_hash), settings) as run:
        mlflow.set_tags(
            {
                bus.SNAPSHOT_URI_TAG: manifest["snapshot_uri"],
                bus.DATASET_TAG: cfg.name,
                bus.BATCH_COUNT_TAG: str(len(manifest["batch_ids"])),
                bus.PROFILE_SAMPLED_TAG: str(profile["sampled"]).lower(),
                bus.PROFILE_HTML_TAG: (
                    "timed_out" if profile["timed_out"] else "logged" if profile["profile_path"] else "off"
                ),
            }
        )
        mlflow.log_params(
            {
                "rows": manifest["rows"],
                "batches": len(manifest["batch_ids"]),
                "label_batches": len(manifest["label_batch_ids"]),
                "columns": frame.shape[1],
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.log_dict(
            {"batch_ids": manifest["batch_ids"], "label_batch_ids": manifest["label_batch_ids"]},
            bus.LINEAGE_BATCHES_ARTIFACT,
        )
        mlflow.log_dict(dict(manifest), bus.LINEAGE_SNAPSHOT_ARTIFACT)
        dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]
            frame,
            source=manifest["snapshot_uri"],
            targets=cfg.target,
            name=f"{cfg.name}-{snapshot_hash[:12]}",
        )
        mlflow.log_input(dataset, context="training")
        _log_profile(profile)
        run_id = run.info.run_id
    log.info(
        "snapshot %s recorded in data run %s: %d rows, profile %s",
        snapshot_hash[:12],
        run_id,
        manifest["rows"],
        "sampled" if profile["sampled"] else "on every row",
    )
    return result(run_id, False, profile["sampled"])
