"""Request validation and coercion against the contract and the signature, without a server."""

from __future__ import annotations

import hashlib
import hmac
import math

import numpy as np
import orjson
import pytest

from driftloop.serving.online.validation import (
    InputSchema,
    RequestError,
    check_json_content_type,
    coerce_column,
    coerce_ids,
)


def rule(name, dtype, **kwargs):
    from driftloop.data.contract import ColumnRule

    return ColumnRule(name=name, dtype=dtype, **kwargs)


def spec(name, dtype, signature_type=None, **kwargs):
    from driftloop.serving.online.validation import column_spec

    return column_spec(rule(name, dtype, **kwargs), signature_type)


def test_values_are_coerced_to_arrays_of_the_column_kind():
    whole = coerce_column(spec("n", "int64"), [1, 2.0, 3])  # a whole float is an integer
    assert whole.dtype == "int64" and whole.tolist() == [1, 2, 3]
    numbers = coerce_column(spec("x", "float64"), [1, 2.5])
    assert numbers.dtype == "float64" and numbers.tolist() == [1.0, 2.5]
    nullable = coerce_column(spec("x", "float64", nullable=True), [None, 2])
    assert math.isnan(nullable[0]) and nullable[1] == 2.0
    assert spec("n", "int64", nullable=True).kind == "float"  # a null stays a null, as in stored batches
    assert spec("n", "int64", signature_type="double").kind == "float"  # the model signature wins
    text = coerce_column(spec("s", "string", nullable=True, categories=("a", "b")), ["a", None])
    assert text.dtype == object and text[0] == "a" and type(text[1]) is float and math.isnan(text[1])
    big = coerce_column(spec("n", "int64"), [2**62, -(2**62)])  # beyond float64's exact integers
    assert big.tolist() == [2**62, -(2**62)]


def test_equal_text_values_become_one_object_so_a_call_pickles_each_distinct_value_once():
    import pickle

    values = ["".join(["Fiber", " optic"]) for _ in range(300)] + ["DSL", None] * 100  # 300 equal objects
    assert values[0] is not values[1]
    text = coerce_column(spec("s", "string", nullable=True, max_length=20), values)
    assert text.tolist()[:300] == ["Fiber optic"] * 300 and text[300] == "DSL" and math.isnan(text[301])
    assert text[0] is text[299] and text[300] is text[498]
    one_object_per_value = np.array([math.nan if v is None else v for v in values], dtype=object)
    as_sent = pickle.dumps(text, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(as_sent) < len(pickle.dumps(one_object_per_value, protocol=pickle.HIGHEST_PROTOCOL)) / 2
    with pytest.raises(RequestError, match="row 300, is longer than 2 characters"):
        coerce_column(spec("s", "string", nullable=True, max_length=2), ["ab"] * 300 + ["abc"])
    with pytest.raises(RequestError, match="row 2, is not one of the contract's categories"):
        coerce_column(spec("s", "string", categories=("a", "b")), ["a", "b", "c", "a"])


def test_a_range_check_names_the_first_row_outside_it():
    column = spec("x", "float64", nullable=True, min=0, max=10)
    assert coerce_column(column, [None, 0, 10]).tolist()[1:] == [0.0, 10.0]  # bounds are inclusive
    with pytest.raises(RequestError) as excinfo:
        coerce_column(column, [1, None, 11, -1])
    assert "row 2," in excinfo.value.message and "[0, 10]" in excinfo.value.message


@pytest.mark.parametrize(
    ("values", "column", "message"),
    [
        ([1, "2"], spec("n", "int64"), "row 1, must be a number, got text"),
        ([True], spec("n", "int64"), "got a boolean"),
        ([1.5], spec("n", "int64"), "whole number"),
        ([2**70], spec("n", "int64"), "outside the allowed range"),
        ([1, 2**64 - 1], spec("n", "int64"), "row 1, is outside the allowed range"),
        ([1, [2]], spec("x", "float64"), "row 1, must be a number, got a list"),
        (["x1", {"b": 1}], spec("s", "string", categories=("x1", "b")), "row 1, must be text, got an object"),
        (["ok", "x" * 9], "ids", "row 1, must be a non-empty text id"),
        ([7, None], "ids", "row 1, must be a non-empty text id"),
        ([77], spec("n", "int64", min=0, max=3), "[0, 3]"),
        ([None], spec("n", "int64"), "not nullable"),
        (["zebra"], spec("s", "string", categories=("a", "b")), "categories"),
        (["toolongvalue"], spec("s", "string", max_length=3), "longer than 3"),
        ([["a"]], spec("s", "string"), "got a list"),
    ],
)
def test_bad_values_name_column_and_row_but_not_the_value(values, column, message):
    with pytest.raises(RequestError) as excinfo:
        if column == "ids":
            coerce_ids(values, "customer_id", 8)
        else:
            coerce_column(column, values)
    assert excinfo.value.status == 422 and message in excinfo.value.message
    assert all(str(v) not in excinfo.value.message for v in values if v not in (None, True))


def test_pii_hash_columns_are_hashed_like_ingestion_does(telco_cfg):
    import dataclasses

    from driftloop.data.contract import load_contract

    contract = load_contract(telco_cfg)
    columns = dict(contract.columns)
    columns["payment_method"] = dataclasses.replace(
        columns["payment_method"], pii="hash", categories=None, nullable=True
    )
    contract = dataclasses.replace(contract, columns=columns)
    schema = InputSchema.build(telco_cfg, contract, None, 100, pii_salt="pepper")
    record = {name: (0 if spec_.kind != "str" else "x") for name, spec_ in schema.specs.items()}
    record.update(contract="One year", internet_service="DSL", payment_method="Electronic check")
    for name in (
        "multiple_lines",
        "online_security",
        "online_backup",
        "device_protection",
        "tech_support",
        "streaming_tv",
        "streaming_movies",
    ):
        record[name] = "No"
    parsed = schema.parse(orjson.dumps({"dataframe_records": [record, {**record, "payment_method": None}]}))
    # Computed here, not by the function under test: what ingestion stores for this value (h2 scheme).
    expected = "h2:" + hmac.new(b"pepper", b"Electronic check", hashlib.sha256).hexdigest()
    hashed, null = parsed.columns["payment_method"]
    assert hashed == expected
    assert type(null) is float and math.isnan(null)  # a null stays a null (NaN, as the model expects it)


def test_example_rows_are_valid_input(telco_cfg):
    from driftloop.data.contract import load_contract

    schema = InputSchema.build(telco_cfg, load_contract(telco_cfg))
    rows = schema.example_columns()
    body = {
        "dataframe_split": {
            "columns": list(rows),
            "data": [list(r) for r in zip(*rows.values(), strict=True)],
        }
    }
    parsed = schema.parse(orjson.dumps(body))
    assert parsed.n_rows == 2 and parsed.entity_ids == [None, None]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8"]
)
def test_json_content_types_are_accepted(content_type):
    check_json_content_type(content_type)


def test_a_null_text_value_reaches_the_model_as_nan_as_in_training():
    """The workers skip ``model_input``: what validation builds must already be what training fed the model.
    A ``None`` would pass the imputer and reach the encoder as a category of its own."""
    import numpy as np
    import pandas as pd
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from driftloop.core import bus
    from driftloop.core.task_types import Decision, model_input
    from driftloop.serving.online.workers import build_frame

    column = spec("s", "string", nullable=True, categories=("a", "b"))
    served = build_frame({"s": coerce_column(column, ["a", None, "b"])}, {"s": "object"})
    assert served["s"].isna().tolist() == [False, True, False]
    assert not any(v is None for v in served["s"])
    train = pd.DataFrame({"s": ["a", "b", "b", np.nan, "a", "b"]})
    model = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore"), LogisticRegression()
    ).fit(train, [1, 0, 0, 0, 1, 0])
    decision = Decision("binary", ("no", "yes"), 0.5)
    stored = pd.DataFrame({"s": pd.Series(["a", None, "b"], dtype=object)})  # as Parquet gives a batch
    batch = decision.predict(model, stored)
    online = decision.predict_rows(model, served)
    assert np.allclose(online[bus.SCORE_COLUMN], batch[bus.SCORE_COLUMN])
    assert model_input(stored)["s"].isna().tolist() == served["s"].isna().tolist()
