"""The data zones as the tests see them, the same way on a local folder and on object storage (``s3://``).

A location is a :class:`pathlib.Path` or a ``UPath``; these helpers land files, list names (hidden ones too)
and read what a stage wrote, whichever the store.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pandas as pd

from driftloop.core.storage import location, read_json, read_parquet


def put(path: Any, payload: bytes) -> None:
    """Write ``payload`` at ``path`` (creating the folder locally)."""
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)


def frame_bytes(frame: pd.DataFrame, name: str) -> bytes:
    """``frame`` as the bytes of a ``.parquet`` or ``.csv`` file named ``name``."""
    if name.endswith(".parquet"):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    return frame.to_csv(index=False).encode()


def names(folder: Any) -> list[str]:
    """Every name directly in ``folder`` (hidden ones too), sorted; [] when it does not exist."""
    try:
        return sorted(p.name for p in folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def frame(path_or_uri: Any, columns: list[str] | None = None) -> pd.DataFrame:
    """A parquet file's rows, from a location or its URI."""
    return read_parquet(location(path_or_uri), columns)


def manifest(path: Any) -> dict[str, Any]:
    """A JSON file's content."""
    return read_json(path)


def is_remote(data_store: str) -> bool:
    """Whether the ``data_store`` fixture's location is object storage."""
    return data_store.startswith("s3://")


def after_store_tick(data_store: str) -> None:
    """On object storage, wait past the store's one-second clock, so that a file landed now is newer than
    the objects written so far (how ingestion tells a later upload from one left by a crash)."""
    if is_remote(data_store):
        time.sleep(1.1)
