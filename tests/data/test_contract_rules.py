"""Sharper tests of the data contract: id hashing against a reference implementation, row numbers across
chunks, the report's exact fields, the bootstrap's contract and text (from mutation testing, see
docs/mutation.md)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from driftloop.data import contract as dc
from driftloop.data.contract.bootstrap import format_bootstrap_report
from driftloop.data.contract.ids import duplicate_positions, text_hashes
from driftloop.data.contract.schema import DEFAULT_MAX_BAD_ROW_SHARE, DEFAULT_MAX_TEXT_LENGTH

MASK = 2**64 - 1


def _reference_hash(value: str | None) -> int:
    """The id hash of ids.text_hashes written out in plain integers (its docstring's recipe)."""
    data = b"" if value is None else value.encode("utf-8")
    h = 0
    for position, byte in enumerate(data):
        weight = pow(0x9E3779B97F4A7C15, position % 256 + 1, 2**64)
        h = (h + (byte + 1) * weight) & MASK
    h ^= ((len(data) + 1) * 0xBF58476D1CE4E5B9) & MASK
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & MASK
    return h ^ (h >> 31)


IDS = ["7590-VHVEG", "", "é-ü-漢字", None, "x" * 300, "ab", "ba", "TC-000042"]


def test_id_hashes_match_the_reference_recipe_also_on_a_sliced_array():
    whole = pa.array(IDS, type=pa.string())
    assert [int(h) for h in text_hashes(whole)] == [_reference_hash(v) for v in IDS]
    # A slice starts inside the shared buffers: offsets no longer begin at 0.
    sliced = whole.slice(2, 5)
    assert [int(h) for h in text_hashes(sliced)] == [_reference_hash(v) for v in IDS[2:7]]
    chunked = pa.chunked_array([whole.slice(0, 3), whole.slice(3)])
    assert [int(h) for h in text_hashes(chunked)] == [_reference_hash(v) for v in IDS]


def test_duplicates_across_chunks_keep_every_earlier_hash_exactly():
    seen: list[object] = []
    first = pd.Series(["a", "b", "a", None, None])
    assert duplicate_positions(first, seen).tolist() == [2]  # nulls are never duplicates
    (earlier,) = seen
    assert earlier.dtype == np.uint64
    assert [int(h) for h in earlier] == sorted(_reference_hash(v) for v in ("a", "b"))
    second = pd.Series(["c", "b", "c", "d"])
    assert duplicate_positions(second, seen).tolist() == [1, 2]
    assert [int(h) for h in seen[0]] == sorted(_reference_hash(v) for v in "abcd")


def test_hashed_ids_join_on_the_id_column_only():
    left = pd.DataFrame({"id": ["h2:" + "a" * 64, "h2:" + "b" * 64], "value": [1, 2]})
    right = pd.DataFrame({"id": ["h2:" + "b" * 64, "h2:" + "a" * 64], "value": [20, 10]})
    joined = dc.join_hashed_ids(left, right, "id")
    assert list(joined.columns) == ["id", "value_x", "value_y"]
    assert sorted(zip(joined["value_x"], joined["value_y"], strict=True)) == [(1, 10), (2, 20)]


def test_an_empty_file_is_rejected_with_a_complete_report(telco_cfg, telco_frame, tmp_path):
    path = tmp_path / "empty.csv"
    telco_frame.iloc[:0].to_csv(path, index=False)
    report = dc.validate_file(telco_cfg, path)
    assert set(report) == {
        "path", "kind", "ok", "reason_code", "message", "file_level", "rows_received", "rows_accepted",
        "rows_quarantined", "reason_counts", "has_label", "sha256", "format", "columns", "problems", "chunks",
    }  # fmt: skip
    assert (report["path"], report["kind"], report["ok"], report["reason_code"]) == (
        str(path),
        "batch",
        False,
        "empty_file",
    )
    assert report["message"] == "empty.csv has a header but 0 data rows"
    assert (report["rows_received"], report["rows_accepted"], report["rows_quarantined"]) == (0, 0, 0)
    assert report["file_level"] is True
    assert report["problems"] == ["FILE empty_file: empty.csv has a header but 0 data rows"]


def test_an_empty_parquet_is_rejected_once_every_chunk_is_counted(telco_cfg, telco_frame, tmp_path):
    path = tmp_path / "empty.parquet"
    telco_frame.iloc[:0].to_parquet(path, index=False)
    report = dc.validate_file(telco_cfg, path)
    assert (report["reason_code"], report["message"]) == ("empty_file", "empty.parquet has 0 data rows")
    assert report["format"] == "parquet" and report["rows_quarantined"] == 0


def test_rejected_rows_carry_their_row_number_in_the_file_across_chunks(telco_cfg, good, tmp_path):
    good.loc[9, "tenure"] = -5  # the 10th data row, in the third chunk of 4 rows
    good.loc[2, "monthly_charges"] = -1.0  # the 3rd, in the first
    path = tmp_path / "b.csv"
    good.to_csv(path, index=False)
    rejected: list[pd.DataFrame] = []
    report = dc.validate_file(telco_cfg, path, chunk_rows=4, on_rejected=rejected.append)
    rows = pd.concat(rejected, ignore_index=True)
    assert rows["_row"].tolist() == [3, 10]
    assert (report["ok"], report["reason_code"], report["message"], report["file_level"]) == (
        True,
        None,
        "",
        False,
    )
    assert rows["customer_id"].tolist() == [good.loc[2, "customer_id"], good.loc[9, "customer_id"]]
    assert (report["rows_received"], report["rows_accepted"], report["rows_quarantined"]) == (20, 18, 2)


def test_an_unreadable_parquet_counts_its_footer_rows_as_quarantined(telco_cfg, good, tmp_path):
    path = tmp_path / "b.parquet"
    good.to_parquet(path, index=False)
    data = bytearray(path.read_bytes())
    data[4:200] = b"\0" * 196  # column chunks corrupt, footer intact
    path.write_bytes(bytes(data))
    report = dc.validate_file(telco_cfg, path)
    assert report["reason_code"] == "unreadable_file" and report["message"].startswith("b.parquet: ")
    assert (report["rows_received"], report["rows_quarantined"]) == (20, 20)


def test_bootstrapped_contract_names_label_share_and_a_reason_per_column(telco_cfg, tmp_path):
    out = tmp_path / "deep" / "er" / "contract.yaml"  # missing parents are created
    result = dc.bootstrap_contract(telco_cfg, out)
    written = yaml.safe_load(out.read_text())
    assert written["label_column"] == telco_cfg.target == "churn"
    assert written["max_bad_row_share"] == DEFAULT_MAX_BAD_ROW_SHARE
    assert written["id_column"] == "customer_id" and written["dataset"] == telco_cfg.name
    for entry in result["report"]:
        assert set(entry) == {"column", "role", "source_dtype", "dtype", "nullable", "rule", "why"}
        assert entry["why"], entry
    by_column = {e["column"]: e for e in result["report"]}
    assert by_column["customer_id"]["role"] == "id"
    assert re.fullmatch(r"max_length \d+, unique", by_column["customer_id"]["rule"])
    assert by_column["tenure"]["rule"].startswith("[0, ")
    assert by_column["contract"]["rule"] == "3 categories"
    assert "min 0 (no negatives)" in by_column["tenure"]["why"]


def test_bootstrap_roles_and_text_rules_of_an_unconfigured_column(telco_cfg):
    from driftloop.data.contract.bootstrap import column_role, infer_column_rule

    assert column_role(telco_cfg, "customer_id") == "id"
    assert column_role(telco_cfg, "churn") == "label"
    assert column_role(telco_cfg, "contract") == "categorical"
    assert column_role(telco_cfg, "tenure") == "numeric"
    assert column_role(telco_cfg, "notes") == "text"
    rule, reasons = infer_column_rule(telco_cfg, "notes", pd.Series(["short", None, "x" * 300]))
    assert rule == {"dtype": "string", "nullable": True, "max_length": max(DEFAULT_MAX_TEXT_LENGTH, 600)}
    assert any("free text" in r for r in reasons)
    assert any("(300)" in r for r in reasons)
    empty_rule, empty_reasons = infer_column_rule(telco_cfg, "notes", pd.Series(["", ""]))
    assert empty_rule["max_length"] == DEFAULT_MAX_TEXT_LENGTH
    assert any("longest value seen (0)" in r for r in empty_reasons)


def _bootstrap_result(check: dict[str, object]) -> dict[str, object]:
    report = [
        {
            "column": "id",
            "role": "id",
            "source_dtype": "object",
            "dtype": "string",
            "nullable": False,
            "rule": "max_length 64, unique",
            "why": "ids",
        },
        {
            "column": "age",
            "role": "numeric",
            "source_dtype": "int64",
            "dtype": "int64",
            "nullable": True,
            "rule": "[0, 200]",
            "why": "ages",
        },
    ]
    return {
        "contract_path": "c.yaml",
        "columns": 2,
        "rows_profiled": 7,
        "report": report,
        "source_check": check,
    }


def test_bootstrap_report_text_is_laid_out_column_by_column():
    text = format_bootstrap_report(_bootstrap_result({}))
    assert text == (
        "Wrote c.yaml: 2 columns from 7 reference rows. Review it before use.\n"
        "column  role     source  dtype   null  rule                   why\n"
        "id      id       object  string  no    max_length 64, unique  ids\n"
        "age     numeric  int64   int64   yes   [0, 200]               ages\n"
        "Source check: the written contract accepts all 7 source rows\n"
    )


def test_bootstrap_report_names_the_source_check_and_a_mostly_null_label():
    check = {
        "rows": 10,
        "rejected": {"formula:name": 2},
        "adjusted": ["name: formula_check false"],
        "label_null_rows": 6,
    }
    lines = format_bootstrap_report(_bootstrap_result(check)).splitlines()
    assert lines[4:] == [
        "Source check: the written contract accepts all 10 source rows; as first inferred it rejected "
        "formula:name (2 rows)",
        "  adjusted name: formula_check false",
        "  WARNING: the label is mostly null; 6 of 10 source rows (60%) have no label: they are ingested but "
        "excluded from training snapshots (counted in the snapshot manifest)",
    ]
    few = format_bootstrap_report(_bootstrap_result({"rows": 10, "label_null_rows": 1})).splitlines()
    assert few[-1].startswith("  1 of 10 source rows (10%) have no label")


def test_bootstrap_numeric_reasons_say_where_each_bound_comes_from(telco_cfg):
    from driftloop.data.contract.bootstrap import infer_column_rule

    _, positive = infer_column_rule(telco_cfg, "tenure", pd.Series([3, 12]))
    assert positive[-1].startswith("seen 3..12: min 0 (no negatives), max ")
    _, negative = infer_column_rule(telco_cfg, "tenure", pd.Series([-3.5, -1.0]))
    assert negative[-1].startswith("seen -3.5..-1: min ") and negative[-1].endswith(", max 0 (no positives)")


def test_bootstrap_takes_a_text_source_of_a_numeric_column_as_text_and_says_so(telco_cfg):
    from driftloop.data.contract.bootstrap import infer_column_rule

    rule, reasons = infer_column_rule(telco_cfg, "tenure", pd.Series(["12", "n/a"]))
    assert rule["dtype"] == "string"
    assert reasons[0] == "source dtype object, text although the config calls it numeric: check the source"


def test_bootstrap_keeps_numeric_categories_as_numbers(telco_cfg):
    from driftloop.data.contract.bootstrap import infer_column_rule

    floats, _ = infer_column_rule(telco_cfg, "contract", pd.Series([2.5, 1.0, None, 2.5]))
    assert floats["categories"] == [1.0, 2.5] and floats["nullable"] is True
    ints, reasons = infer_column_rule(telco_cfg, "contract", pd.Series([3, 1, 3]))
    assert ints["categories"] == [1, 3] and reasons[-1] == "the 2 values seen"


def test_a_hashing_contract_without_a_salt_refuses_with_what_to_do(telco_cfg, good):
    from dataclasses import replace

    cfg = replace(
        telco_cfg,
        contract={"path": telco_cfg.contract["path"], "columns": {"customer_id": {"pii": "hash"}}},
    )
    with pytest.raises(dc.ContractError) as refused:
        dc.validate_frame(cfg, good, pii_salt="")
    assert str(refused.value) == (
        "the contract hashes PII columns ['customer_id'] but DRIFTLOOP_PII_SALT is not set; "
        "set it to a secret (the same value for every run, or ids stop joining)"
    )


def test_categories_of_a_text_column_written_as_numbers_match_their_text(telco_cfg, good):
    from dataclasses import replace

    contract = dc.load_contract(telco_cfg)
    rule = contract.columns["contract"]
    assert rule.dtype == "string"
    columns = {**contract.columns, "contract": replace(rule, categories=(1, 2))}
    numbered = replace(contract, columns=columns, stored_columns=contract.stored_columns)
    good["contract"] = ["1", "2"] * 10
    good.loc[3, "contract"] = "3"
    accepted, rejected = dc.validate_frame(telco_cfg, good, contract=numbered, pii_salt="s")
    assert (len(accepted), len(rejected)) == (19, 1)
    assert rejected["_reason"].tolist() == ["unknown_category:contract"]
