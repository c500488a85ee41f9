"""Arrow helpers of :mod:`driftloop.monitoring.samples`: a few rows of a table turned to pandas as the whole
table would have been, and id equality with nulls.

A part of 500,000 rows keeps about 50,000 of them, so the sampler selects rows in Arrow and converts only
those to pandas: converting a whole part's 20 columns cost more than the rest of the sampling together.
"""

from __future__ import annotations

from typing import Any


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
