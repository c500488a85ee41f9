"""Arrow helpers of :mod:`driftloop.monitoring.samples`: the id hashes of fixed-width ids without temporaries
the size of the id bytes, and a few rows of a table turned to pandas as the whole table would have been.

A part of 500,000 rows keeps about 50,000 of them, so the sampler selects rows in Arrow and converts only
those to pandas: converting a whole part's 20 columns cost more than the rest of the sampling together.
"""

from __future__ import annotations

from typing import Any

_HASH_SPAN = 256  # driftloop.data.contract.ids' polynomial: byte i is weighted by MULTIPLIER ** (i % 256 + 1)
_MULTIPLIER = 0x9E3779B97F4A7C15
_MIX_1, _MIX_2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def fixed_width_hashes(values: Any) -> Any:
    """:func:`driftloop.data.contract.ids.text_hashes` of a string array whose values all have one length and
    no nulls (entity ids usually do), one byte column at a time; None for any other array.

    ``text_hashes`` expands every byte of every id into 64-bit terms and positions (80 MB of temporaries for
    a million 10-byte ids); with one width the bytes form an ``(ids, width)`` matrix, summed column by
    column with the same weights, so the hashes are the same and the temporaries one id long.
    ``tests/unit/test_sample_rows.py`` checks equality with ``text_hashes``.
    """
    import numpy as np
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)) or values.null_count:
        return None
    values = values.cast(pa.large_string())
    n = len(values)
    if n == 0:
        return None
    _, offsets_buf, data_buf = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[values.offset : values.offset + n + 1]
    width = int(offsets[1] - offsets[0])
    if int(offsets[-1] - offsets[0]) != n * width or not (np.diff(offsets) == width).all():
        return None
    first = int(offsets[0])
    data = np.frombuffer(data_buf, dtype=np.uint8)[first : first + n * width].reshape(n, width)
    sums = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        weights = np.cumprod(np.full(_HASH_SPAN, _MULTIPLIER, dtype=np.uint64))
        for column in range(width):  # the sum mod 2**64 is text_hashes' np.add.reduceat, in another order
            term = data[:, column].astype(np.uint64)
            term += np.uint64(1)
            term *= weights[column % _HASH_SPAN]
            sums += term
        h = sums ^ np.uint64(((width + 1) * _MIX_1) % 2**64)
        h = (h ^ (h >> np.uint64(30))) * np.uint64(_MIX_1)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(_MIX_2)
        h ^= h >> np.uint64(31)
    return h


def as_whole_converts(subset: Any, whole: Any) -> Any:
    """``subset`` (rows of the Arrow table ``whole``) as a pandas frame with the dtypes ``whole.to_pandas()``
    gives: an integer or boolean column with nulls anywhere in ``whole`` becomes float or object there even
    when the chosen rows have none, so a sample's dtypes do not depend on which rows it kept."""
    import numpy as np

    frame = subset.to_pandas()
    for name in subset.column_names:
        dtype = frame[name].dtype
        if not isinstance(dtype, np.dtype) or not whole.column(name).null_count:
            continue  # an extension dtype (from pandas' metadata) holds nulls as they are
        if dtype.kind in "iu":
            frame[name] = frame[name].astype("float64")
        elif dtype.kind == "b":
            frame[name] = frame[name].astype(object)
    return frame


def same_ids(ours: Any, theirs: Any) -> Any:
    """Which pairs of ids are equal (numpy booleans), nulls equal to nulls: a hash match that is not the same
    id is a collision, not a match."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ours, theirs = ours.cast(pa.large_string()), theirs.cast(pa.large_string())
    equal = pc.fill_null(pc.equal(ours, theirs), False)
    both_null = pc.and_(pc.is_null(ours), pc.is_null(theirs))
    return pc.or_(equal, both_null).to_numpy(zero_copy_only=False)
