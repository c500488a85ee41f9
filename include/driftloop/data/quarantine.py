"""Quarantine of landed files: rejected rows, whole files with a ``reason.json``, replays and conflicts.

The zones are a local folder or an object-store prefix. The landed file leaving the landing zone is the commit
of a quarantine: ``reason.json`` is written first, so a crash in between leaves the file landed and the rerun
rewrites the same keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, cast

from driftloop.core import bus
from driftloop.core.state import path_to_uri
from driftloop.core.storage import (
    StoragePath,
    is_file,
    is_local,
    list_files,
    move_into,
    read_json,
    remove_file,
    remove_tree,
    store_errors,
    utc_now,
    write_json,
)

REJECTED_ROWS_FILE = "rows.parquet"
# The same rejected rows as CSV for a spreadsheet, formula-looking text prefixed with ' (OWASP CSV injection).
REJECTED_ROWS_CSV = "rows.csv"
REASON_FILE = "reason.json"


class QuarantinedOutcome(TypedDict):
    """A landed file quarantined whole (its ``reason.json`` written, the file moved beside it)."""

    status: Literal["quarantined"]
    batch_id: str
    reason_code: str
    message: str
    quarantine_dir: str
    rows_received: int
    rows_quarantined: int  # all of them: a file quarantined whole has no accepted row


class AcceptedOutcome(TypedDict):
    """A landed file whose rows were accepted (some may be quarantined row by row), with its manifest."""

    status: Literal["accepted"]
    batch_id: str
    manifest: bus.BatchManifest
    recovered: NotRequired[bool]  # True: an earlier attempt wrote the manifest; this one only archived


FileOutcome = QuarantinedOutcome | AcceptedOutcome


def rejected_schema(frame: Any) -> Any:
    """The Arrow schema of rejected rows: ``_row`` as int64, every other column as text."""
    import pyarrow as pa

    return pa.schema([pa.field(c, pa.int64() if c == "_row" else pa.string()) for c in frame.columns])


def quarantine_whole(
    file: StoragePath,
    qdir: StoragePath,
    batch_id: str,
    reason_code: str,
    message: str,
    rows: int,
    **extra: Any,
) -> QuarantinedOutcome:
    """Write ``qdir``'s ``reason.json``, then move ``file`` beside it; returns the quarantine outcome.

    Returns:
        ``{"status": "quarantined", "batch_id", "reason_code", "message", "quarantine_dir", "rows_received",
        "rows_quarantined"}``.
    """
    reason = {
        "batch_id": batch_id,
        "source_file": file.name,
        "reason_code": reason_code,
        "message": message,
        "rows_received": rows,
        "rows_accepted": 0,
        "rows_quarantined": rows,
        "file_uri": path_to_uri(qdir / file.name),
        "quarantined_at": utc_now(),
        **extra,
    }
    write_json(qdir / REASON_FILE, reason)
    move_into(file, qdir)
    return {
        "status": "quarantined",
        "batch_id": batch_id,
        "reason_code": reason_code,
        "message": message,
        "quarantine_dir": str(qdir),
        "rows_received": rows,
        "rows_quarantined": rows,
    }


def set_aside_other_quarantine(qdir: StoragePath, sha: str) -> None:
    """Keep an earlier, different file's quarantine when a new file arrives under the same batch id.

    A partition left by an earlier attempt of this very file (same sha256) is simply overwritten later; one
    from another file goes to ``<batch_id>__superseded-<sha12>`` so its evidence is never deleted. Locally
    the folder is renamed; on object storage each object is moved, ``reason.json`` last, so a crash half-way
    leaves the partition still marked as the earlier file's and the rerun moves the rest.
    """
    reason_path = qdir / REASON_FILE
    if not is_file(reason_path):
        return
    earlier = read_json(reason_path).get("sha256") or ""
    if not earlier or earlier == sha:
        return
    target = qdir.with_name(f"{qdir.name}__superseded-{earlier[:12]}")
    if isinstance(qdir, Path) and isinstance(target, Path):
        remove_tree(target)
        qdir.rename(target)
        return
    for item in sorted(list_files(qdir), key=lambda p: p.name == REASON_FILE):
        move_into(item, target)


def _copied_after_landing(file: StoragePath, archived: StoragePath) -> bool:
    """Whether the archived object is no older than the landed one (object-store times have 1 s steps)."""
    with store_errors(str(file)):
        return bool(file.stat().st_mtime <= archived.stat().st_mtime)


def _finish_archiving(file: StoragePath, archive_dir: StoragePath) -> bool:
    """Complete the archiving of a file whose batch manifest exists; False when ``file`` is a new arrival.

    A crash after the manifest leaves the landed file behind: locally the move is one rename, so the archive
    has no copy yet; on object storage the move is a copy then a delete, so the copy may exist already (no
    older than the landed object, which a later upload of the same bytes would be).
    """
    archived = archive_dir / file.name
    if not is_file(archived):
        move_into(file, archive_dir)
        return True
    if not is_local(file) and _copied_after_landing(file, archived):
        remove_file(file)
        return True
    return False


def replay_outcome(
    file: StoragePath, zones: Any, batch_id: str, sha: str, known: dict[str, dict[str, Any]]
) -> FileOutcome | None:
    """The outcome for a file whose batch id or bytes were seen before, else None (a new file).

    ``zones`` is ingestion's ``_Zones`` of the file's kind (its ``archive_root`` and ``quarantine_root``).
    """
    same_id = known.get(batch_id)
    if same_id is not None:
        replay = same_id["sha256"] == sha
        if (
            replay
            and same_id.get("original_archived", True)
            and _finish_archiving(file, zones.archive_root / batch_id)
        ):
            # A previous attempt wrote the manifest but crashed before archiving: finish it, write nothing
            # new.
            manifest = cast(bus.BatchManifest, same_id)  # as ingestion wrote it
            return {"status": "accepted", "batch_id": batch_id, "manifest": manifest, "recovered": True}
        qid = f"{batch_id}__{'replay' if replay else 'conflict'}-{sha[:12]}"
        message = (
            f"{file.name} has the same bytes as batch {batch_id!r} ingested at {same_id['ingested_at']}"
            if replay
            else f"{file.name} differs from the already ingested batch {batch_id!r} (sha256 {sha[:12]} vs "
            f"{same_id['sha256'][:12]}); rename it to ingest it as a new batch"
        )
        return quarantine_whole(
            file,
            zones.quarantine_root / qid,
            qid,
            "replayed_batch" if replay else "batch_id_conflict",
            message,
            0,
            sha256=sha,
            original_batch_id=batch_id,
        )
    for other in known.values():
        if other["sha256"] == sha:
            message = (
                f"{file.name} has the same bytes as batch {other['batch_id']!r} "
                f"ingested at {other['ingested_at']}"
            )
            return quarantine_whole(
                file,
                zones.quarantine_root / batch_id,
                batch_id,
                "replayed_batch",
                message,
                0,
                sha256=sha,
                original_batch_id=other["batch_id"],
            )
    return None


def write_rejected_csv(qdir: StoragePath) -> None:
    """``rows.csv`` beside ``rows.parquet``: what a person opens, with formula-looking text neutralised."""
    from driftloop.core.storage import atomic_path, read_parquet
    from driftloop.data.contract.text import write_spreadsheet_csv

    with atomic_path(qdir / REJECTED_ROWS_CSV) as tmp:
        write_spreadsheet_csv(read_parquet(qdir / REJECTED_ROWS_FILE), tmp)
