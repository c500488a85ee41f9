"""Quarantine of landed files: rejected rows, whole files with a ``reason.json``, replays and conflicts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from driftloop.core.state import path_to_uri
from driftloop.core.storage import move_into, read_json, utc_now, write_json

REJECTED_ROWS_FILE = "rows.parquet"
# The same rejected rows as CSV for a spreadsheet, formula-looking text prefixed with ' (OWASP CSV injection).
REJECTED_ROWS_CSV = "rows.csv"
REASON_FILE = "reason.json"


def rejected_schema(frame: Any) -> Any:
    """The Arrow schema of rejected rows: ``_row`` as int64, every other column as text."""
    import pyarrow as pa

    return pa.schema([pa.field(c, pa.int64() if c == "_row" else pa.string()) for c in frame.columns])


def quarantine_whole(
    file: Path, qdir: Path, batch_id: str, reason_code: str, message: str, rows: int, **extra: Any
) -> dict[str, Any]:
    """Move ``file`` into ``qdir`` with a ``reason.json`` and return the quarantine outcome."""
    qdir.mkdir(parents=True, exist_ok=True)
    dest = move_into(file, qdir)
    reason = {
        "batch_id": batch_id,
        "source_file": file.name,
        "reason_code": reason_code,
        "message": message,
        "rows_received": rows,
        "rows_accepted": 0,
        "rows_quarantined": rows,
        "file_uri": path_to_uri(dest),
        "quarantined_at": utc_now(),
        **extra,
    }
    write_json(qdir / REASON_FILE, reason)
    return {
        "status": "quarantined",
        "batch_id": batch_id,
        "reason_code": reason_code,
        "message": message,
        "quarantine_dir": str(qdir),
    }


def set_aside_other_quarantine(qdir: Path, sha: str) -> None:
    """Keep an earlier, different file's quarantine when a new file arrives under the same batch id.

    A partition left by an earlier attempt of this very file (same sha256) is simply overwritten later; one
    from another file is renamed to ``<batch_id>__superseded-<sha12>`` so its evidence is never deleted.
    """
    reason_path = qdir / REASON_FILE
    if not reason_path.is_file():
        return
    earlier = read_json(reason_path).get("sha256") or ""
    if earlier and earlier != sha:
        target = qdir.with_name(f"{qdir.name}__superseded-{earlier[:12]}")
        if target.exists():
            shutil.rmtree(target)
        qdir.rename(target)


def replay_outcome(
    file: Path, zones: Any, batch_id: str, sha: str, known: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """The outcome for a file whose batch id or bytes were seen before, else None (a new file).

    ``zones`` is ingestion's ``_Zones`` of the file's kind (its ``archive_root`` and ``quarantine_root``).
    """
    same_id = known.get(batch_id)
    if same_id is not None:
        archived = zones.archive_root / batch_id / file.name
        if same_id["sha256"] == sha and not archived.exists() and same_id.get("original_archived", True):
            # A previous attempt wrote the manifest but crashed before archiving: finish it, write nothing
            # new.
            move_into(file, zones.archive_root / batch_id)
            return {"status": "accepted", "batch_id": batch_id, "manifest": same_id, "recovered": True}
        replay = same_id["sha256"] == sha
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


def write_rejected_csv(qdir: Path) -> None:
    """``rows.csv`` beside ``rows.parquet``: what a person opens, with formula-looking text neutralised."""
    import pandas as pd

    from driftloop.core.storage import atomic_path
    from driftloop.data.contract.text import write_spreadsheet_csv

    with atomic_path(qdir / REJECTED_ROWS_CSV) as tmp:
        write_spreadsheet_csv(pd.read_parquet(qdir / REJECTED_ROWS_FILE), tmp)
