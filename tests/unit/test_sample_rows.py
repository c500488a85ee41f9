"""The sampler's Arrow helpers give what the slower paths they replace give: the contract's id hashes (its
one-width path), the dtypes of a whole range turned to pandas, id equality with nulls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from driftloop.data.contract.ids import text_hashes


def _ids(rng: np.random.Generator, n: int, width: int) -> list[str]:
    """``n`` ids of ``width`` bytes, some with a two-byte character."""
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789-"))
    ids = ["".join(rng.choice(alphabet, width)) for _ in range(n)]
    return [("é" + v[2:]) if width >= 2 and i % 3 == 0 else v for i, v in enumerate(ids)]


@pytest.mark.parametrize("width", [0, 1, 10, 36, 300])
def test_ids_of_one_width_hash_as_the_general_path_hashes_them(width):
    """text_hashes sums one-width ids column by column; beside an id of another length (the general path)
    each id keeps its hash."""
    rng = np.random.default_rng(width)
    values = _ids(rng, 500, width)
    for array in (pa.array(values), pa.array(values, pa.large_string()), pa.array(values).slice(7, 300)):
        ours = text_hashes(array)
        assert ours.dtype == np.uint64
        general = text_hashes(pa.array([*array.to_pylist(), "x" * (width + 1)]))[:-1]
        assert (ours == general).all()
    chunked = pa.chunked_array([values[:200], values[200:]])
    assert (text_hashes(chunked) == text_hashes(pa.array([*values, "x" * (width + 1)]))[:-1]).all()
    if width:
        assert len(set(text_hashes(pa.array(values)).tolist())) == len(set(values))
    with_null = text_hashes(pa.array([*values[:3], None]))  # a null: the general path
    assert (with_null[:3] == text_hashes(pa.array(values[:3]))).all()


def test_a_few_rows_convert_with_the_whole_tables_dtypes():
    from driftloop.monitoring.sample_rows import as_whole_converts

    whole = pa.table(
        {
            "n": pa.array([1, 2, None, 4]),
            "b": pa.array([True, None, False, True]),
            "s": pa.array(["a", "b", None, "d"]),
            "f": pa.array([1.5, 2.5, 3.5, 4.5]),
            "k": pa.array([7, 8, 9, 10]),
        }
    )
    for rows in ([0, 3], [1, 2], []):
        subset = whole.take(pa.array(rows, pa.int64()))
        expected = whole.to_pandas().iloc[rows].reset_index(drop=True)
        pd.testing.assert_frame_equal(as_whole_converts(subset, whole), expected)
    assert whole.take(pa.array([0, 3])).to_pandas()["n"].dtype == np.int64  # what the helper corrects


def test_extension_dtypes_from_pandas_metadata_are_kept():
    from driftloop.monitoring.sample_rows import as_whole_converts

    frame = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64"), "b": pd.array([True, None, False])})
    whole = pa.Table.from_pandas(frame, preserve_index=False)
    converted = as_whole_converts(whole.take(pa.array([0, 2])), whole)
    assert str(converted["n"].dtype) == "Int64" and str(converted["b"].dtype) == "boolean"


def test_same_ids_compares_text_and_treats_nulls_as_equal():
    from driftloop.monitoring.sample_rows import same_ids

    ours = pa.array(["a", "b", None, "d", None])
    theirs = pa.array(["a", "x", None, None, "e"], pa.large_string())
    assert same_ids(ours, theirs).tolist() == [True, False, True, False, False]
