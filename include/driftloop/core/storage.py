"""File helpers for the state folder: atomic JSON manifests and parquet written under a temporary name.

A partition becomes visible only when it is complete (write to a hidden temporary file, then rename), so a
crash never leaves a half-written file where a reader would take it for a finished one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def utc_now() -> str:
    """The current UTC time in ISO 8601 with microseconds (manifests sort by it)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def temp_path(path: Path) -> Path:
    """Hidden temporary name beside ``path`` (``.<name>.<pid>.tmp``); ingestion and listings skip it."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_path(path: Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; it is renamed over ``path`` when the block ends.

    The folder is created. If the block raises, the temporary file is removed and ``path`` is left as it was,
    so a reader never sees a half-written file under the final name.

    Args:
        path: The final file.
        fsync: Flush the temporary file to disk before the rename (for files another process picks up).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, content: bytes, fsync: bool = False) -> None:
    """Write ``content`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(content)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON atomically (temp file + rename), creating the folder."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    write_bytes_atomic(path, text.encode())


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON file."""
    payload: dict[str, Any] = json.loads(Path(path).read_text())
    return payload


def list_manifests(folder: Path) -> list[dict[str, Any]]:
    """Manifests (``*.json``) in ``folder``, oldest first (by ``ingested_at`` or ``created_at``)."""
    if not folder.is_dir():
        return []
    manifests = [read_json(p) for p in folder.glob("*.json") if not p.name.startswith(".")]
    return sorted(
        manifests, key=lambda m: (m.get("ingested_at") or m.get("created_at") or "", m.get("batch_id", ""))
    )


def move_into(src: Path, dest_dir: Path) -> Path:
    """Move ``src`` into ``dest_dir`` (created when missing); returns the new path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    shutil.move(str(src), str(dest))
    return dest


class ParquetSink:
    """Streams DataFrame chunks into one parquet file under a temporary name; ``commit`` renames it into
    place."""

    def __init__(self, path: Path, schema_for: Any) -> None:
        self.path = path
        self.tmp = temp_path(path)
        self.schema_for = schema_for
        self.writer: Any = None
        self.rows = 0

    def __call__(self, frame: Any) -> None:
        """Append ``frame`` (the first frame fixes the schema through ``schema_for``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, self.schema_for(frame))
        self.writer.write_table(pa.Table.from_pandas(frame, schema=self.writer.schema, preserve_index=False))
        self.rows += len(frame)

    def close(self) -> None:
        """Close the writer (the file stays under its temporary name)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def commit(self) -> bool:
        """Rename the file into place; returns False (and writes nothing) when no row was written."""
        self.close()
        if self.rows:
            os.replace(self.tmp, self.path)
        return bool(self.rows)

    def discard(self) -> None:
        """Drop what was written."""
        self.close()
        self.tmp.unlink(missing_ok=True)
