"""Memory-bounded reads of scored partitions and label files: id hashes, seeded samples, rows by position.

Files are streamed in chunks from a folder or from object storage (:func:`driftloop.core.storage.
iter_parquet_batches`); a store that cannot be read raises :class:`~driftloop.core.errors.StorageError`.
"""

from __future__ import annotations

from typing import Any

from driftloop.core.config import DatasetConfig
from driftloop.core.errors import MonitoringError
from driftloop.core.state import uri_to_path
from driftloop.core.storage import StoragePath, is_file, iter_parquet_batches, read_parquet_schema

SAMPLE_SEED = 42


def iter_batches(uri: str, columns: list[str], cfg: DatasetConfig) -> Any:
    """Yield a parquet file as Arrow record batches of ``cfg.monitoring.chunk_rows`` rows.

    Raises:
        MonitoringError: The file does not exist or lacks one of ``columns``.
    """
    path = uri_to_path(uri)
    if not is_file(path):
        raise MonitoringError(f"file {uri} does not exist")
    missing = [col for col in columns if col not in read_parquet_schema(path).names]
    if missing:
        raise MonitoringError(f"{uri} lacks columns {missing}")
    yield from iter_parquet_batches(path, cfg.monitoring.chunk_rows, columns)


def iter_parquet(uri: str, columns: list[str], cfg: DatasetConfig) -> Any:
    """Yield a parquet file in chunks of ``cfg.monitoring.chunk_rows`` so a huge batch never sits in
    memory."""
    for batch in iter_batches(uri, columns, cfg):
        yield batch.to_pandas()


def scan_predictions(cfg: DatasetConfig, uri: str) -> tuple[Any, Any]:
    """The id hash of every row of a predictions partition (file order) and the positions of each id's last
    row.

    The last row of an id is the one that counts, as when rows are deduplicated keeping the last.
    """
    import numpy as np

    from driftloop.data.contract.ids import text_hashes

    parts = [text_hashes(batch.column(0)) for batch in iter_batches(uri, [cfg.id_column], cfg)]
    hashes = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
    _, first_from_end = np.unique(hashes[::-1], return_index=True)
    return hashes, np.sort(len(hashes) - 1 - first_from_end)


def sample_positions(positions: Any, limit: int) -> tuple[Any, bool]:
    """``positions``, or a seeded random ``limit`` of them (sorted); and whether it was sampled."""
    import numpy as np

    if len(positions) <= limit:
        return positions, False
    chosen = np.random.default_rng(SAMPLE_SEED).choice(positions, size=limit, replace=False)
    return np.sort(chosen), True


def take_rows(cfg: DatasetConfig, uri: str, columns: list[str], positions: Any) -> Any:
    """The rows at sorted ``positions`` of a parquet file, read chunk by chunk."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    parts, offset = [], 0
    for batch in iter_batches(uri, columns, cfg):
        low, high = np.searchsorted(positions, [offset, offset + batch.num_rows])
        if high > low:
            parts.append(batch.take(pa.array(positions[low:high] - offset)).to_pandas())
        offset += batch.num_rows
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _label_batches(cfg: DatasetConfig, label_files: list[StoragePath]) -> Any:
    """Every label file's (id, target) columns as record batches, file by file in order."""
    for path in label_files:
        yield from iter_parquet_batches(path, cfg.monitoring.chunk_rows, [cfg.id_column, cfg.target])


def labelled_positions(cfg: DatasetConfig, label_files: list[StoragePath], scan: tuple[Any, Any]) -> Any:
    """Positions (each id's last row) whose id has a non-null accepted label, from the label files in
    chunks."""
    import numpy as np

    from driftloop.data.contract.ids import text_hashes

    hashes, last = scan
    if not len(last):
        return last
    keys = hashes[last]
    order = np.argsort(keys)
    sorted_keys = keys[order]
    found = np.zeros(len(last), dtype=bool)
    for batch in _label_batches(cfg, label_files):
        ids = batch.column(0).filter(batch.column(1).is_valid())
        label_keys = text_hashes(ids)
        slots = np.minimum(np.searchsorted(sorted_keys, label_keys), len(sorted_keys) - 1)
        found[order[slots[sorted_keys[slots] == label_keys]]] = True
    return last[found]


def labels_for(cfg: DatasetConfig, label_files: list[StoragePath], ids: set[Any]) -> Any:
    """Labels of ``ids`` as a Series indexed by id; a later file's correction wins."""
    import pandas as pd

    frames = []
    for batch in _label_batches(cfg, label_files):
        chunk = batch.to_pandas()
        frames.append(chunk[chunk[cfg.id_column].isin(ids)].dropna(subset=[cfg.target]))
    labels = pd.concat(frames, ignore_index=True).drop_duplicates(cfg.id_column, keep="last")
    return labels[cfg.target].set_axis(labels[cfg.id_column])
