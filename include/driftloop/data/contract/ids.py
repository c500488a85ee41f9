"""Entity ids: duplicate detection across the chunks of one file, and keyed hashing of PII values."""

from __future__ import annotations

import hashlib
import hmac
import re
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
        data = np.frombuffer(data_buf, dtype=np.uint8)[first:last]
        with np.errstate(over="ignore"):
            weights = np.cumprod(np.full(_HASH_SPAN, 0x9E3779B97F4A7C15, dtype=np.uint64))
            if not values.null_count and (lengths == lengths[0]).all():
                # One width (entity ids usually): the same sums column by column, with temporaries one id
                # long instead of 16 bytes per id byte (80 MB for a million 10-byte ids).
                for column, byte in enumerate(data.reshape(n, int(lengths[0])).T):
                    hashes += (byte.astype(np.uint64) + np.uint64(1)) * weights[column % _HASH_SPAN]
            else:
                starts = offsets[:-1] - first
                position = np.arange(last - first, dtype=np.int64) - np.repeat(starts, lengths)
                terms = (data.astype(np.uint64) + np.uint64(1)) * weights[position % _HASH_SPAN]
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


# PII hash schemes. "h2": ``h2:`` + hex HMAC-SHA256 keyed with DRIFTLOOP_PII_SALT (current). "legacy":
# bare hex sha256 of ``salt + "\x1f" + value`` (data stored before h2; still recognised and computable).
HASH_SCHEME = "h2"
LEGACY_SCHEME = "legacy"
_LEGACY_HASH = re.compile(r"[0-9a-f]{64}")
_H2_HASH = re.compile(r"h2:[0-9a-f]{64}")


def _digest(value: Any, key: str, scheme: str) -> str:
    if scheme == HASH_SCHEME:
        return "h2:" + hmac.new(key.encode(), str(value).encode(), hashlib.sha256).hexdigest()
    if scheme == LEGACY_SCHEME:
        return hashlib.sha256(f"{key}\x1f{value}".encode()).hexdigest()
    raise ValueError(f"unknown PII hash scheme {scheme!r} (known: {HASH_SCHEME!r}, {LEGACY_SCHEME!r})")


def hash_values(series: Any, salt: str, scheme: str = HASH_SCHEME) -> Any:
    """Keyed hash of every non-null value (nulls stay null): ``h2:<hex HMAC-SHA256(salt, value)>``.

    Args:
        series: The values.
        salt: The secret key (``Settings.pii_salt``).
        scheme: :data:`HASH_SCHEME` (default) or :data:`LEGACY_SCHEME` (the salted sha256 stored before h2).
    """
    import pandas as pd

    _digest("", salt, scheme)  # an unknown scheme fails even on an all-null column
    return series.map(lambda v: None if pd.isna(v) else _digest(v, salt, scheme))


def hash_scheme(value: Any) -> str | None:
    """The scheme of a stored PII hash (:data:`HASH_SCHEME` or :data:`LEGACY_SCHEME`); None if not a hash."""
    if not isinstance(value, str):
        return None
    if _H2_HASH.fullmatch(value):
        return HASH_SCHEME
    if _LEGACY_HASH.fullmatch(value):
        return LEGACY_SCHEME
    return None


def join_hashed_ids(left: Any, right: Any, id_column: str, how: str = "inner") -> Any:
    """``left.merge(right, on=id_column)``, refusing to join ids hashed under different schemes.

    Equal values join whatever their scheme, so data hashed before h2 (legacy salted sha256) keeps joining
    with legacy-hashed labels. A legacy id never equals an h2 id of the same entity: rather than an empty
    join (labels silently lost), that mix raises.

    Raises:
        ValueError: One side holds legacy hashes and the other h2 hashes.
    """
    schemes: list[set[str]] = []
    for frame in (left, right):
        found = {hash_scheme(v) for v in frame[id_column].dropna().head(1000)}
        schemes.append({s for s in found if s is not None})
    if len(schemes[0]) == len(schemes[1]) == 1 and schemes[0] != schemes[1]:
        (ours,), (theirs,) = schemes
        raise ValueError(
            f"{id_column}: ids hashed with scheme {ours!r} cannot join ids hashed with {theirs!r}; "
            "hash both sides with one scheme (ids.hash_values(..., scheme=...))"
        )
    return left.merge(right, on=id_column, how=how)
