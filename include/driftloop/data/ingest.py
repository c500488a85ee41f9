"""Ingestion: landing zone → validated batches and labels, with every rejected file or row quarantined.

Every file in the landing zone ends in exactly one place: its accepted rows in ``batches/`` (or ``labels/``),
its rejected rows in ``quarantine/<batch_id>/rows.parquet`` with a per-row ``_reason``, and the original file
in ``archive/<batch_id>/`` (accepted) or ``quarantine/<batch_id>/`` (rejected whole, with ``reason.json``). A
manifest (:class:`driftloop.core.bus.BatchManifest`) is written after the data objects, so it marks a batch as
done; reruns find it and never write a batch twice.

The zones are a local folder or an object-store prefix (``DRIFTLOOP_DATA_URI``). A landed file is validated
from a local copy (downloaded into a temporary folder when remote); object stores have no rename, so every
write is one atomic PUT and a rerun after a crash rewrites the same keys.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import BatchQuarantined
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths, path_to_uri
from driftloop.core.storage import (
    ParquetSink,
    StoragePath,
    list_files,
    list_manifests,
    local_copy,
    move_into,
    remove_file,
    remove_tree,
    utc_now,
    write_json,
)
from driftloop.data.contract import (
    Contract,
    ValidationReport,
    arrow_schema,
    load_contract,
    sha256_file,
    validate_file,
)
from driftloop.data.data_results import BatchIngestResult, IngestResult
from driftloop.data.quarantine import (
    REASON_FILE,
    REJECTED_ROWS_FILE,
    AcceptedOutcome,
    FileOutcome,
    quarantine_whole,
    rejected_schema,
    replay_outcome,
    set_aside_other_quarantine,
    write_rejected_csv,
)

log = logging.getLogger(__name__)

LANDING_SUFFIXES = (".csv", ".parquet")
# Files still being written by an uploader (hidden files too): left in the landing zone for the next run.
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", ".uploading")
# Label files live beside batch files in archive/ and quarantine/, under this reserved sub-folder.
LABELS_NAMESPACE = "labels"


def sanitize_batch_id(stem: str) -> str:
    """A file stem made safe as a folder and file name: ``[A-Za-z0-9._-]``, at most 120 characters."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "batch"
    cleaned = cleaned[:120]
    return f"{cleaned}_" if cleaned == LABELS_NAMESPACE else cleaned


def _landed_files(folder: StoragePath) -> list[StoragePath]:
    """Files in ``folder`` ready to ingest, by name: hidden names and uploads in progress are skipped."""
    return [p for p in list_files(folder) if not p.name.lower().endswith(IN_PROGRESS_SUFFIXES)]


@dataclass(frozen=True)
class _Zones:
    """Where one kind of landed file (feature batches or labels) goes."""

    kind: str
    landing_dir: StoragePath
    out_dir: StoragePath
    archive_root: StoragePath
    quarantine_root: StoragePath

    @classmethod
    def of(cls, paths: StatePaths, kind: str) -> _Zones:
        if kind == "labels":
            return cls(
                kind,
                paths.labels_landing_dir,
                paths.labels_dir,
                paths.archive_dir / LABELS_NAMESPACE,
                paths.quarantine_dir / LABELS_NAMESPACE,
            )
        return cls(kind, paths.landing_dir, paths.batches_dir, paths.archive_dir, paths.quarantine_dir)


def _validate_into_partitions(
    cfg: DatasetConfig, contract: Contract, file: Path, zones: _Zones, batch_id: str, settings: Settings
) -> tuple[ValidationReport, bool]:
    """Validate the local ``file``, streaming accepted rows to ``<batch_id>.parquet`` and rejected rows to
    quarantine.

    Returns:
        ``(report, has_rejected_rows)``; nothing is left behind for a file rejected whole except its rows
        file.
    """
    qdir = zones.quarantine_root / batch_id
    accepted_sink = ParquetSink(
        zones.out_dir / f"{batch_id}.parquet", lambda frame: arrow_schema(contract, list(frame.columns))
    )
    rejected_sink = ParquetSink(qdir / REJECTED_ROWS_FILE, rejected_schema)
    try:
        report = validate_file(
            cfg,
            file,
            kind=zones.kind,
            contract=contract,
            on_accepted=accepted_sink,
            on_rejected=rejected_sink,
            settings=settings,
        )
    except BaseException:
        accepted_sink.discard()
        rejected_sink.discard()
        raise
    if not report["ok"]:
        accepted_sink.discard()
    else:
        accepted_sink.commit()
    has_rejected = rejected_sink.commit()
    if has_rejected:
        write_rejected_csv(qdir)
    return report, has_rejected


def _manifest(
    contract: Contract,
    file: StoragePath,
    zones: _Zones,
    batch_id: str,
    sha: str,
    report: ValidationReport,
    has_rejected: bool,
) -> bus.BatchManifest:
    rows_uri = path_to_uri(zones.out_dir / f"{batch_id}.parquet") if report["rows_accepted"] else None
    manifest: bus.BatchManifest = {
        "batch_id": batch_id,
        "source_file": file.name,
        "sha256": sha,
        "kind": zones.kind,
        "rows_received": report["rows_received"],
        "rows_accepted": report["rows_accepted"],
        "rows_quarantined": report["rows_quarantined"],
        "reason_counts": report["reason_counts"],
        "quarantine_uri": path_to_uri(zones.quarantine_root / batch_id / REJECTED_ROWS_FILE)
        if has_rejected
        else None,
        "ingested_at": utc_now(),
        "contract": contract.path,
    }
    if zones.kind == "labels":
        manifest["label_batch_id"], manifest["labels_uri"] = batch_id, rows_uri
    else:
        manifest["has_target"], manifest["batch_uri"] = bool(report["has_label"]), rows_uri
    pii = [c for c in report["columns"] if c in contract.columns and contract.columns[c].pii]
    manifest["original_archived"] = not pii
    if pii:
        manifest["original_removed_reason"] = (
            f"the original holds PII columns {pii}; only treated rows are kept"
        )
    return manifest


def _ingest_file(
    cfg: DatasetConfig,
    contract: Contract,
    zones: _Zones,
    file: StoragePath,
    known: dict[str, dict[str, Any]],
    settings: Settings,
) -> FileOutcome:
    """Ingest one landed file; returns ``{"status": "accepted"|"quarantined", ...}``. Never raises for bad
    data (a store that fails raises :class:`~driftloop.core.errors.StorageError`)."""
    with tempfile.TemporaryDirectory(prefix="driftloop-landed-") as work:
        return _ingest_landed(cfg, contract, zones, file, local_copy(file, Path(work)), known, settings)


def _ingest_landed(
    cfg: DatasetConfig,
    contract: Contract,
    zones: _Zones,
    file: StoragePath,
    local: Path,
    known: dict[str, dict[str, Any]],
    settings: Settings,
) -> FileOutcome:
    """Ingest the landed ``file``, read from ``local`` (the file itself, or its download)."""
    batch_id = sanitize_batch_id(file.stem)
    sha = sha256_file(local)
    qdir = zones.quarantine_root / batch_id
    if file.suffix.lower() not in LANDING_SUFFIXES:
        set_aside_other_quarantine(qdir, sha)
        return quarantine_whole(
            file,
            qdir,
            batch_id,
            "unsupported_file_type",
            f"{file.name}: extension {file.suffix!r} is not .csv or .parquet",
            0,
            sha256=sha,
        )
    replayed = replay_outcome(file, zones, batch_id, sha, known)
    if replayed is not None:
        return replayed
    set_aside_other_quarantine(qdir, sha)
    report, has_rejected = _validate_into_partitions(cfg, contract, local, zones, batch_id, settings)
    rejected_uri = path_to_uri(qdir / REJECTED_ROWS_FILE) if has_rejected else None
    if not report["ok"]:
        return quarantine_whole(
            file,
            qdir,
            batch_id,
            report["reason_code"] or "",
            report["message"],
            report["rows_received"],
            sha256=sha,
            kind=zones.kind,
            reason_counts=report["reason_counts"],
            rejected_rows_uri=rejected_uri,
        )
    if has_rejected:
        write_json(
            qdir / REASON_FILE,
            {
                "batch_id": batch_id,
                "source_file": file.name,
                "reason_code": "rejected_rows",
                "message": (
                    f"{report['rows_quarantined']} of {report['rows_received']} rows fail the contract"
                ),
                "rows_received": report["rows_received"],
                "rows_accepted": report["rows_accepted"],
                "rows_quarantined": report["rows_quarantined"],
                "reason_counts": report["reason_counts"],
                "rejected_rows_uri": rejected_uri,
                "sha256": sha,
                "kind": zones.kind,
                "quarantined_at": utc_now(),
            },
        )
    else:
        remove_tree(qdir)  # a stale partition from an earlier attempt of this very file, if any
    manifest = _manifest(contract, file, zones, batch_id, sha, report, has_rejected)
    write_json(zones.out_dir / f"{batch_id}.json", manifest)
    if manifest["original_archived"]:
        move_into(file, zones.archive_root / batch_id)
    else:
        remove_file(file)
    accepted: AcceptedOutcome = {"status": "accepted", "batch_id": batch_id, "manifest": manifest}
    return accepted


def _ingest_folder(
    cfg: DatasetConfig, settings: Settings | None, kind: str
) -> tuple[IngestResult, dict[str, list[str]]]:
    """Ingest every landed file of ``kind``; the result, and (feature batches) the accepted ids by bucket."""
    settings = settings or Settings.from_env()
    zones = _Zones.of(StatePaths.for_dataset(cfg, settings), kind)
    contract = load_contract(cfg)
    known: dict[str, dict[str, Any]] = {m["batch_id"]: m for m in list_manifests(zones.out_dir)}
    result: IngestResult = {
        "accepted": [],
        "quarantined": [],
        "rows_received": 0,
        "rows_accepted": 0,
        "rows_quarantined": 0,
    }
    buckets: dict[str, list[str]] = {"scoring_batch_ids": [], "labelled_batch_ids": []}
    for file in _landed_files(zones.landing_dir):
        outcome = _ingest_file(cfg, contract, zones, file, known, settings)
        if outcome["status"] == "quarantined":
            batch_id, code, message = outcome["batch_id"], outcome["reason_code"], outcome["message"]
            result["quarantined"].append({"batch_id": batch_id, "reason_code": code, "message": message})
            result["rows_received"] += outcome["rows_received"]
            result["rows_quarantined"] += outcome["rows_quarantined"]
            log.info(
                "%s %s quarantined whole: %s: %s",
                kind,
                outcome["batch_id"],
                outcome["reason_code"],
                outcome["message"],
            )
            continue
        manifest = outcome["manifest"]
        known[manifest["batch_id"]] = dict(manifest)
        result["accepted"].append(manifest["batch_id"])
        if not outcome.get("recovered"):
            result["rows_received"] += manifest["rows_received"]
            result["rows_accepted"] += manifest["rows_accepted"]
            result["rows_quarantined"] += manifest["rows_quarantined"]
        if kind == "batch" and manifest["rows_accepted"]:
            bucket = "labelled_batch_ids" if manifest["has_target"] else "scoring_batch_ids"
            buckets[bucket].append(manifest["batch_id"])
        log.info(
            "%s %s accepted: %d of %d rows (%d quarantined)",
            kind,
            manifest["batch_id"],
            manifest["rows_accepted"],
            manifest["rows_received"],
            manifest["rows_quarantined"],
        )
    log.info(
        "%s ingest: %d file(s) accepted, %d quarantined; rows received %d, accepted %d, quarantined %d",
        kind,
        len(result["accepted"]),
        len(result["quarantined"]),
        result["rows_received"],
        result["rows_accepted"],
        result["rows_quarantined"],
    )
    return result, buckets


def ingest_batches(cfg: DatasetConfig, settings: Settings | None = None) -> BatchIngestResult:
    """Validate every landed feature batch (name order), store good rows, quarantine the rest.

    Bad files never raise here, so one bad file cannot block the others; call :func:`raise_for_quarantine`
    afterwards to fail the run with the reasons.

    Args:
        cfg: Dataset config.
        settings: Process settings (default: from the environment).

    Returns:
        The accepted and quarantined files, the row counts, and the accepted batches to score
        (``scoring_batch_ids``) and to train on (``labelled_batch_ids``).

    Raises:
        ContractError: The dataset has no valid contract (or hashes PII without a salt).
    """
    result, buckets = _ingest_folder(cfg, settings, "batch")
    return {
        **result,
        "scoring_batch_ids": buckets["scoring_batch_ids"],
        "labelled_batch_ids": buckets["labelled_batch_ids"],
    }


def ingest_labels(cfg: DatasetConfig, settings: Settings | None = None) -> IngestResult:
    """Validate every landed label file (id + target) into ``labels/``, quarantining bad files and rows.

    Returns:
        The accepted label files (their label batch ids), the quarantined ones and the row counts.
    """
    return _ingest_folder(cfg, settings, "labels")[0]


def raise_for_quarantine(*results: IngestResult | None) -> None:
    """Raise :class:`BatchQuarantined` naming every quarantined file and its reason, if there is any.

    Args:
        *results: Results of :func:`ingest_batches` / :func:`ingest_labels`.

    Raises:
        BatchQuarantined: At least one file was quarantined whole.
    """
    given = [result for result in results if result]
    entries = [q for result in given for q in result["quarantined"]]
    if not entries:
        return
    accepted = sum(len(result["accepted"]) for result in given)
    lines = [f"{len(entries)} landed file(s) quarantined ({accepted} accepted and processed):"]
    lines += [f"  - {q['batch_id']}: {q['reason_code']}: {q['message']}" for q in entries]
    lines.append(
        "Inspect quarantine/<batch_id>/reason.json under the dataset's state folder; fix the file and "
        "drop it into the landing zone again under a new name."
    )
    raise BatchQuarantined("\n".join(lines))


def _cmd_ingest(args: Any) -> int:
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config
    from driftloop.core.errors import NoLabelledData
    from driftloop.data import snapshots

    cfg = load_dataset_config(args.dataset)
    batches = ingest_batches(cfg)
    labels = ingest_labels(cfg)
    result: dict[str, Any] = {"batches": batches, "labels": labels}
    try:
        result["snapshot"] = snapshots.build_snapshot(cfg)
        if args.record:
            result["data_run"] = snapshots.record_snapshot(cfg, result["snapshot"]["snapshot_hash"])
    except NoLabelledData as exc:
        result["snapshot"] = {"error": str(exc)}
    print_result(result)
    raise_for_quarantine(batches, labels)
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop ingest``."""
    from driftloop.core.commands import dataset_parent

    ingest = subparsers.add_parser(
        "ingest",
        parents=[dataset_parent()],
        help="ingest landed batches and labels, build the training snapshot",
    )
    ingest.add_argument("--record", action="store_true", help="also log the snapshot to MLflow (data run)")
    ingest.set_defaults(func=_cmd_ingest)
