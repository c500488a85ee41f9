"""Row ranges of parquet files: how a large file is cut into parts that separate tasks read on their own.

A part is ``[row_start, row_stop)``; its rows are read from the row groups it overlaps only (from a folder, or
as byte ranges of an object), so a mapped task never downloads the whole file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from driftloop.core.storage import StoragePath, open_input


def parquet_rows(path: StoragePath) -> tuple[int, list[int]]:
    """Rows of a parquet file and of each of its row groups, from the footer alone."""
    import pyarrow.parquet as pq

    with open_input(path) as handle:
        metadata = pq.ParquetFile(handle).metadata
        return metadata.num_rows, [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]


def split_rows(rows: int, part_rows: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of at most ``part_rows`` rows covering ``rows`` rows, as even as possible."""
    parts = max(1, math.ceil(rows / part_rows))
    bounds = [round(i * rows / parts) for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def iter_row_range(
    path: StoragePath, start: int, stop: int, batch_rows: int, columns: list[str]
) -> Iterator[Any]:
    """Rows ``[start, stop)`` of a parquet file as Arrow record batches of ``batch_rows`` rows (the last may
    be shorter), reading only the row groups they overlap."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pending: list[Any] = []  # slices not yet yielded: re-cut into batches of exactly batch_rows rows
    pending_rows = 0
    with open_input(path) as handle:
        parquet = pq.ParquetFile(handle)
        metadata = parquet.metadata
        group_rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        offsets = [sum(group_rows[:i]) for i in range(len(group_rows) + 1)]
        groups = [i for i in range(len(group_rows)) if offsets[i] < stop and offsets[i + 1] > start]
        if not groups:
            return
        position = offsets[groups[0]]
        for record_batch in parquet.iter_batches(batch_size=batch_rows, row_groups=groups, columns=columns):
            low, high = max(start - position, 0), min(stop - position, record_batch.num_rows)
            position += record_batch.num_rows
            if high <= low:
                continue
            pending.append(record_batch.slice(low, high - low))
            pending_rows += high - low
            while pending_rows >= batch_rows:
                table = pa.Table.from_batches(pending)
                yield from table.slice(0, batch_rows).combine_chunks().to_batches()
                rest = table.slice(batch_rows)
                pending, pending_rows = rest.combine_chunks().to_batches(), rest.num_rows
    if pending_rows:
        yield from pa.Table.from_batches(pending).combine_chunks().to_batches()
