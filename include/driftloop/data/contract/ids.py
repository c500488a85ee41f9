"""Entity ids: duplicate detection across the chunks of one file, and salted hashing of PII values."""

from __future__ import annotations

import hashlib
from typing import Any

from driftloop.data.contract.text import arrow_text

# Multipliers of the id hash below (odd 64-bit constants from splitmix64); positions cycle every 256 bytes.
_HASH_SPAN = 256


def text_hashes(values: Any) -> Any:
    """64-bit hash of every string of an Arrow string array, computed on its raw buffers (no Python strings).

    A polynomial hash over the bytes (mod 2**64) mixed with the length and finished with splitmix64, so two
    different ids collide with probability ~n**2 / 2**64 (a collision would quarantine a row as a duplicate,
    never accept a duplicate). Nulls hash to 0.
    """
    import numpy as np
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.large_string())
    n = len(values)
    _, offsets_buf, data_buf = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[values.offset : values.offset + n + 1]
    lengths = np.diff(offsets)
    first, last = int(offsets[0]), int(offsets[-1])
    hashes = np.zeros(n, dtype=np.uint64)
    if last > first:
        data = np.frombuffer(data_buf, dtype=np.uint8)[first:last].astype(np.uint64)
        starts = offsets[:-1] - first
        position = np.arange(last - first, dtype=np.int64) - np.repeat(starts, lengths)
        with np.errstate(over="ignore"):
            weights = np.cumprod(np.full(_HASH_SPAN, 0x9E3779B97F4A7C15, dtype=np.uint64))
            terms = (data + np.uint64(1)) * weights[position % _HASH_SPAN]
            nonempty = lengths > 0
            hashes[nonempty] = np.add.reduceat(terms, starts[nonempty])
    with np.errstate(over="ignore"):
        h = hashes ^ ((lengths.astype(np.uint64) + np.uint64(1)) * np.uint64(0xBF58476D1CE4E5B9))
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def duplicate_positions(ids: Any, seen_ids: list[Any] | None) -> Any:
    """Positions of non-null ids already seen earlier in this frame or in ``seen_ids`` (earlier chunks).

    Ids are compared by a 64-bit hash of their bytes (:func:`text_hashes`), so ``seen_ids`` costs 8 bytes per
    distinct id and the check never materialises Python strings.
    """
    import numpy as np
    import pandas as pd

    values = arrow_text(ids)
    hashes = text_hashes(values)
    present = ~np.asarray(values.is_null(), dtype=bool)
    hashes = hashes[present]  # null ids are reported as null_not_allowed, never as duplicates
    duplicate = pd.Series(hashes).duplicated(keep="first").to_numpy()
    if seen_ids is not None:
        # seen_ids[0] is one sorted array of every earlier chunk's hashes: a binary search per id, and merging
        # two sorted runs (stable sort = timsort) is linear, so a file costs O(n log n), not O(n^2 / chunk).
        earlier = seen_ids[0] if seen_ids else np.empty(0, dtype=np.uint64)
        if len(earlier):
            slots = np.minimum(np.searchsorted(earlier, hashes), len(earlier) - 1)
            duplicate |= earlier[slots] == hashes
        merged = np.concatenate([earlier, np.sort(hashes[~duplicate])])
        merged.sort(kind="stable")
        seen_ids[:] = [merged]
    return np.flatnonzero(present)[duplicate]


def hash_values(series: Any, salt: str) -> Any:
    """Salted sha256 hex digest of every non-null value (nulls stay null)."""
    import pandas as pd

    def digest(value: Any) -> Any:
        return hashlib.sha256(f"{salt}\x1f{value}".encode()).hexdigest()

    return series.map(lambda v: None if pd.isna(v) else digest(v))
