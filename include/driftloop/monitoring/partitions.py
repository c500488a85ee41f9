"""Memory-bounded reads of scored partitions and batches: whole files in chunks, with their columns checked.

Files are streamed in chunks from a folder or from object storage (:func:`driftloop.core.storage.
iter_parquet_batches`); a store that cannot be read raises :class:`~driftloop.core.errors.StorageError`.
"""

from __future__ import annotations

from typing import Any

from driftloop.core.config import DatasetConfig
from driftloop.core.errors import MonitoringError
from driftloop.core.state import uri_to_path
from driftloop.core.storage import StoragePath, is_file, iter_parquet_batches, read_parquet_schema


def check_columns(uri: str, columns: list[str]) -> StoragePath:
    """The file at ``uri``, checked to exist and to hold ``columns``.

    Raises:
        MonitoringError: The file does not exist or lacks one of ``columns``.
    """
    path = uri_to_path(uri)
    if not is_file(path):
        raise MonitoringError(f"file {uri} does not exist")
    missing = [col for col in columns if col not in read_parquet_schema(path).names]
    if missing:
        raise MonitoringError(f"{uri} lacks columns {missing}")
    return path


def iter_batches(uri: str, columns: list[str], cfg: DatasetConfig) -> Any:
    """Yield a parquet file as Arrow record batches of ``cfg.monitoring.chunk_rows`` rows.

    Raises:
        MonitoringError: The file does not exist or lacks one of ``columns``.
    """
    yield from iter_parquet_batches(check_columns(uri, columns), cfg.monitoring.chunk_rows, columns)


def iter_parquet(uri: str, columns: list[str], cfg: DatasetConfig) -> Any:
    """Yield a parquet file in chunks of ``cfg.monitoring.chunk_rows`` so a huge batch never sits in
    memory."""
    for batch in iter_batches(uri, columns, cfg):
        yield batch.to_pandas()
