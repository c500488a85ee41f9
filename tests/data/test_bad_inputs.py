"""Bad-input corpus: each kind of broken file or row, its reason code and the row accounting.

Every case lands one file and runs the real ingestion, once on a local folder and once on a bucket of the test
S3 server (``data_store``). The invariant checked everywhere: rows_accepted + rows_quarantined ==
rows_received, and nothing stored that failed the contract.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop.core.errors import BatchQuarantined
from driftloop.core.state import path_to_uri
from driftloop.data import ingest as ingest_stage
from driftloop.data import snapshots
from tests import zones

# Every case on both stores; data_store is set up before the config and state fixtures read the location.
pytestmark = pytest.mark.usefixtures("data_store")


def ingest(cfg, state, name: str, payload: bytes, labels: bool = False) -> dict:
    folder = state.labels_landing_dir if labels else state.landing_dir
    (folder / name).write_bytes(payload)
    result = (ingest_stage.ingest_labels if labels else ingest_stage.ingest_batches)(cfg)
    assert result["rows_accepted"] + result["rows_quarantined"] == result["rows_received"]
    assert zones.names(folder) == [], "every landed file must leave the landing zone"
    return result


def csv_bytes(frame: pd.DataFrame, **kwargs) -> bytes:
    return frame.to_csv(index=False, **kwargs).encode()


def parquet_bytes(table_or_frame) -> bytes:
    buffer = io.BytesIO()
    if isinstance(table_or_frame, pd.DataFrame):
        table_or_frame.to_parquet(buffer, index=False)
    else:
        pq.write_table(table_or_frame, buffer)
    return buffer.getvalue()


def assert_file_quarantined(cfg, state, result: dict, code: str, rows: int, labels: bool = False) -> dict:
    assert result["accepted"] == []
    assert [q["reason_code"] for q in result["quarantined"]] == [code], result["quarantined"]
    assert (result["rows_received"], result["rows_quarantined"], result["rows_accepted"]) == (rows, rows, 0)
    batch_id = result["quarantined"][0]["batch_id"]
    qdir = (state.quarantine_dir / "labels" if labels else state.quarantine_dir) / batch_id
    reason = json.loads((qdir / "reason.json").read_text())
    assert reason["reason_code"] == code
    assert reason["rows_accepted"] + reason["rows_quarantined"] == reason["rows_received"] == rows
    assert set(reason) >= {"batch_id", "source_file", "reason_code", "message", "rows_received"}
    assert (qdir / reason["source_file"]).is_file(), "the original file is kept in quarantine"
    assert reason["file_uri"] == path_to_uri(qdir / reason["source_file"])
    assert not (state.batches_dir / f"{batch_id}.parquet").exists()
    assert not (state.labels_dir / f"{batch_id}.parquet").exists()
    return reason


def assert_rows_quarantined(state, result: dict, reasons: dict[int, str], rows: int) -> pd.DataFrame:
    """``reasons``: 1-based row number -> a reason item that row's ``_reason`` must contain."""
    assert result["quarantined"] == []
    batch_id = result["accepted"][0]
    assert result["rows_received"] == rows
    assert (result["rows_accepted"], result["rows_quarantined"]) == (rows - len(reasons), len(reasons))
    rejected = zones.frame(state.quarantine_dir / batch_id / "rows.parquet")
    assert rejected["_row"].tolist() == sorted(reasons)
    for row, reason in zip(rejected["_row"], rejected["_reason"], strict=True):
        assert reasons[row] in reason.split(";"), (row, reason)
    manifest = json.loads((state.batches_dir / f"{batch_id}.json").read_text())
    assert manifest["rows_accepted"] + manifest["rows_quarantined"] == manifest["rows_received"] == rows
    return rejected


# ---------------------------------------------------------------------------------------------- whole-file
# rejects


def test_truncated_csv(telco_cfg, state, good):
    payload = csv_bytes(good)
    result = ingest(telco_cfg, state, "b.csv", payload[: payload.rindex(b"\n") - 40])
    assert_file_quarantined(telco_cfg, state, result, "truncated_file", 20)


def test_truncated_inside_quoted_field(telco_cfg, state, good):
    payload = csv_bytes(good, quoting=1)
    cut = payload[: payload.index(b"Electronic check", len(payload) // 2) + 5]
    result = ingest(telco_cfg, state, "b.csv", cut)
    reason = assert_file_quarantined(telco_cfg, state, result, "truncated_file", cut.count(b"\n"))
    assert "cut off" in reason["message"]


def test_truncated_parquet(telco_cfg, state, good):
    payload = parquet_bytes(good)
    assert_file_quarantined(
        telco_cfg, state, ingest(telco_cfg, state, "b.parquet", payload[:-100]), "truncated_file", 0
    )


def test_wrong_delimiter(telco_cfg, state, good):
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good, sep=";"))
    reason = assert_file_quarantined(telco_cfg, state, result, "wrong_delimiter", 20)
    assert "semicolon" in reason["message"]


def test_non_utf8_bytes(telco_cfg, state, good):
    good.loc[3, "payment_method"] = "Chèque"
    result = ingest(telco_cfg, state, "b.csv", good.to_csv(index=False).encode("latin-1"))
    reason = assert_file_quarantined(telco_cfg, state, result, "not_utf8", 20)
    assert "byte" in reason["message"]


def test_no_header(telco_cfg, state, good):
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good, header=False))
    assert_file_quarantined(telco_cfg, state, result, "no_header", 20)


def test_extra_columns(telco_cfg, state, good):
    good["social_security_number"] = "123-45-6789"
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good))
    reason = assert_file_quarantined(telco_cfg, state, result, "unexpected_columns", 20)
    assert "social_security_number" in reason["message"]


def test_missing_feature_column(telco_cfg, state, good):
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good.drop(columns=["contract", "tenure"])))
    reason = assert_file_quarantined(telco_cfg, state, result, "missing_columns", 20)
    assert "contract" in reason["message"] and "tenure" in reason["message"]


def test_label_file_without_target(telco_cfg, state, good):
    result = ingest(telco_cfg, state, "l.csv", csv_bytes(good[["customer_id"]]), labels=True)
    reason = assert_file_quarantined(telco_cfg, state, result, "missing_columns", 20, labels=True)
    assert "churn" in reason["message"]


def test_all_null_column(telco_cfg, state, good):
    good["total_charges"] = np.nan  # nullable, so only the whole-column check catches it
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good))
    assert_file_quarantined(telco_cfg, state, result, "all_null_column", 20)


def test_empty_file(telco_cfg, state):
    assert_file_quarantined(telco_cfg, state, ingest(telco_cfg, state, "b.csv", b""), "empty_file", 0)


def test_header_only_file(telco_cfg, state, good):
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good.iloc[:0]))
    assert_file_quarantined(telco_cfg, state, result, "empty_file", 0)


def test_spreadsheet_renamed_csv(telco_cfg, state):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as book:
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    result = ingest(telco_cfg, state, "b.csv", buffer.getvalue())
    reason = assert_file_quarantined(telco_cfg, state, result, "wrong_format", reason_rows(buffer.getvalue()))
    assert "spreadsheet" in reason["message"]


def reason_rows(payload: bytes) -> int:
    lines = payload.count(b"\n") + (0 if payload.endswith(b"\n") else 1)
    return max(lines - 1, 0)


def test_binary_renamed_csv(telco_cfg, state):
    payload = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)) + b"\x00"
    result = ingest(telco_cfg, state, "b.csv", payload)
    assert_file_quarantined(telco_cfg, state, result, "wrong_format", reason_rows(payload))


def test_parquet_renamed_csv(telco_cfg, state, good):
    payload = parquet_bytes(good)
    result = ingest(telco_cfg, state, "b.csv", payload)
    assert_file_quarantined(telco_cfg, state, result, "wrong_format", reason_rows(payload))


def test_parquet_with_a_different_schema(telco_cfg, state, good):
    good["tenure"] = pd.to_datetime("2024-01-01") + pd.to_timedelta(good["tenure"], unit="D")
    result = ingest(telco_cfg, state, "b.parquet", parquet_bytes(good))
    reason = assert_file_quarantined(telco_cfg, state, result, "schema_mismatch", 20)
    assert "tenure" in reason["message"] and "timestamp" in reason["message"]


def test_parquet_with_renamed_columns(telco_cfg, state, good):
    result = ingest(telco_cfg, state, "b.parquet", parquet_bytes(good.rename(columns={"tenure": "Tenure"})))
    assert_file_quarantined(telco_cfg, state, result, "missing_columns", 20)


def test_ragged_rows(telco_cfg, state, good):
    lines = csv_bytes(good).split(b"\n")
    lines[5] += b",extra,fields"
    result = ingest(telco_cfg, state, "b.csv", b"\n".join(lines))
    assert_file_quarantined(telco_cfg, state, result, "malformed_csv", 20)


def test_unsupported_extension(telco_cfg, state, good):
    result = ingest(telco_cfg, state, "b.json", good.to_json().encode())
    assert_file_quarantined(telco_cfg, state, result, "unsupported_file_type", 0)


def test_replayed_batch(telco_cfg, state, good):
    first = ingest(telco_cfg, state, "b1.csv", csv_bytes(good))
    assert first["accepted"] == ["b1"]
    result = ingest(telco_cfg, state, "b2.csv", csv_bytes(good))
    reason = assert_file_quarantined(telco_cfg, state, result, "replayed_batch", 0)
    assert reason["original_batch_id"] == "b1"
    assert zones.names(state.batches_dir) == ["b1.json", "b1.parquet"]


def test_too_many_bad_rows(telco_cfg, state, good):
    good["tenure"] = good["tenure"].astype(object)
    good.loc[:4, "tenure"] = "n/a"  # 5 of 20 = 25% > 20%
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good))
    reason = assert_file_quarantined(telco_cfg, state, result, "too_many_bad_rows", 20)
    assert "5 of 20 rows (25.0%)" in reason["message"]
    assert reason["reason_counts"] == {"unparsable:tenure": 5}


def test_row_count_above_contract_bound(telco_cfg, state, good, monkeypatch):
    monkeypatch.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps({"contract": {"rows": {"max": 10}}}))
    from driftloop.core.config import load_dataset_config

    cfg = load_dataset_config("telco_churn")
    result = ingest(cfg, state, "b.csv", csv_bytes(good))
    reason = assert_file_quarantined(cfg, state, result, "row_count_out_of_bounds", 20)
    assert "20 rows" in reason["message"]


# ------------------------------------------------------------------------------------------------ row-level
# rejects


def test_wrong_dtype_text_in_integer_column(telco_cfg, state, good):
    good["female"] = good["female"].astype(object)
    good.loc[2, "female"] = "yes"
    good.loc[7, "tenure"] = 12.5
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good))
    assert_rows_quarantined(state, result, {3: "unparsable:female", 8: "not_integer:tenure"}, 20)


def test_out_of_range(telco_cfg, state, good):
    good.loc[0, "monthly_charges"] = 1_000_000.0
    good.loc[1, "total_charges"] = 99_999.0
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good))
    assert_rows_quarantined(
        state, result, {1: "out_of_range:monthly_charges", 2: "out_of_range:total_charges"}, 20
    )


def test_negative_tenure_and_charges(telco_cfg, state, good):
    good.loc[4, "tenure"] = -3
    good.loc[5, "monthly_charges"] = -0.01
    good.loc[6, "total_charges"] = -100.0
    result = ingest(telco_cfg, state, "b.parquet", parquet_bytes(good))
    rejected = assert_rows_quarantined(
        state,
        result,
        {5: "out_of_range:tenure", 6: "out_of_range:monthly_charges", 7: "out_of_range:total_charges"},
        20,
    )
    assert rejected.loc[0, "tenure"] == "-3", "rejected rows keep the value as received"


def test_unseen_category(telco_cfg, state, good):
    good.loc[9, "contract"] = "Lifetime"
    good.loc[10, "partner"] = 2
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good))
    assert_rows_quarantined(
        state, result, {10: "unknown_category:contract", 11: "unknown_category:partner"}, 20
    )


def test_null_where_not_allowed(telco_cfg, state, good):
    good.loc[0, "internet_service"] = None
    good.loc[1, "customer_id"] = None
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good))
    assert_rows_quarantined(
        state, result, {1: "null_not_allowed:internet_service", 2: "null_not_allowed:customer_id"}, 20
    )


def test_nan_and_inf(telco_cfg, state, good):
    frame = good.astype({"monthly_charges": object, "tenure": object})
    frame.loc[0, "monthly_charges"] = "inf"
    frame.loc[1, "monthly_charges"] = "-inf"
    frame.loc[2, "tenure"] = "NaN"
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(frame))
    assert_rows_quarantined(
        state,
        result,
        {1: "non_finite:monthly_charges", 2: "non_finite:monthly_charges", 3: "null_not_allowed:tenure"},
        20,
    )


def test_inf_in_parquet_float_column(telco_cfg, state, good):
    good.loc[3, "total_charges"] = np.inf
    good.loc[4, "total_charges"] = np.nan  # nullable column: NaN is a missing value, accepted
    result = ingest(telco_cfg, state, "b.parquet", parquet_bytes(good))
    assert_rows_quarantined(state, result, {4: "non_finite:total_charges"}, 20)


def test_duplicate_ids(telco_cfg, state, good):
    good.loc[5, "customer_id"] = good.loc[1, "customer_id"]
    good.loc[6, "customer_id"] = good.loc[1, "customer_id"]
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good))
    assert_rows_quarantined(state, result, {6: "duplicate_id:customer_id", 7: "duplicate_id:customer_id"}, 20)
    stored = zones.frame(state.batches_dir / "b.parquet")
    assert stored["customer_id"].is_unique


def test_ten_megabyte_single_field(telco_cfg, state, good):
    good.loc[2, "customer_id"] = "X" * 10_000_000
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good))
    assert_rows_quarantined(state, result, {3: "field_too_long:customer_id"}, 20)
    reason = json.loads((state.quarantine_dir / "b" / "reason.json").read_text())
    assert len(json.dumps(reason)) < 5_000, "the reason file names the problem, it does not copy the value"


def test_formula_injection_strings(telco_cfg, state, good, telco_frame):
    good = pd.concat([good, telco_frame.iloc[20:40]], ignore_index=True)  # 5 bad rows stay under 20%
    good.loc[0, "customer_id"] = "=cmd|' /C calc'!A0"
    good.loc[1, "customer_id"] = "@SUM(1+1)*cmd|' /C calc'!A0"
    good.loc[2, "customer_id"] = '+HYPERLINK("http://evil")'
    good.loc[3, "customer_id"] = "-2+3+cmd|' /C calc'!A0"
    good.loc[4, "payment_method"] = "=1+1"
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(good))
    assert_rows_quarantined(
        state,
        result,
        {
            1: "formula_injection:customer_id",
            2: "formula_injection:customer_id",
            3: "formula_injection:customer_id",
            4: "formula_injection:customer_id",
            5: "formula_injection:payment_method",
        },
        40,
    )


def test_mixed_type_column(telco_cfg, state, good):
    frame = good.astype({"total_charges": object})
    frame.loc[0, "total_charges"] = " "
    frame.loc[1, "total_charges"] = "12.5 USD"
    frame.loc[2, "total_charges"] = "True"
    result = ingest(telco_cfg, state, "b.csv", csv_bytes(frame))
    assert_rows_quarantined(
        state,
        result,
        {1: "unparsable:total_charges", 2: "unparsable:total_charges", 3: "unparsable:total_charges"},
        20,
    )


def test_parquet_with_numbers_stored_as_text(telco_cfg, state, good):
    table = pa.Table.from_pandas(good.astype({"tenure": str}), preserve_index=False)
    frame = table.to_pandas()
    frame.loc[0, "tenure"] = "abc"
    result = ingest(telco_cfg, state, "b.parquet", parquet_bytes(frame))
    assert_rows_quarantined(state, result, {1: "unparsable:tenure"}, 20)
    assert zones.frame(state.batches_dir / "b.parquet")["tenure"].dtype == "int64"


def test_bad_label_values(telco_cfg, state, good):
    labels = good[["customer_id", "churn"]].copy()
    labels.loc[0, "churn"] = "Maybe"
    labels.loc[1, "customer_id"] = None
    labels.loc[2, "customer_id"] = labels.loc[3, "customer_id"]
    result = ingest(telco_cfg, state, "l.csv", csv_bytes(labels), labels=True)
    assert result["accepted"] == ["l"]
    assert (result["rows_accepted"], result["rows_quarantined"]) == (17, 3)
    rejected = zones.frame(state.quarantine_dir / "labels" / "l" / "rows.parquet")
    assert rejected["_reason"].tolist() == [
        "unknown_category:churn",
        "null_not_allowed:customer_id",
        "duplicate_id:customer_id",
    ]


def test_good_batch_beside_bad_batches_still_proceeds(telco_cfg, state, good, telco_frame):
    (state.landing_dir / "a_bad.csv").write_bytes(csv_bytes(good, sep="\t"))
    (state.landing_dir / "b_good.csv").write_bytes(csv_bytes(telco_frame.iloc[100:130]))
    (state.landing_dir / "c_bad.csv").write_bytes(b"")
    result = ingest_stage.ingest_batches(telco_cfg)
    assert result["accepted"] == ["b_good"] and result["labelled_batch_ids"] == ["b_good"]
    assert [q["reason_code"] for q in result["quarantined"]] == ["wrong_delimiter", "empty_file"]
    assert (result["rows_received"], result["rows_accepted"], result["rows_quarantined"]) == (50, 30, 20)
    assert snapshots.build_snapshot(telco_cfg)["rows"] == 30
    with pytest.raises(BatchQuarantined, match="a_bad: wrong_delimiter"):
        ingest_stage.raise_for_quarantine(result)
