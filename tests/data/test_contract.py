"""The contract itself: bootstrap, loading, row validation, PII treatment, chunking and the validate CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import pandas as pd
import pytest
import yaml

from driftloop.cli import main
from driftloop.core.config import load_dataset_config
from driftloop.core.settings import Settings
from driftloop.data import contract as dc


def tree(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}


def test_bootstrap_derives_dtypes_ranges_categories_and_refuses_to_overwrite(telco_cfg, tmp_path):
    out = tmp_path / "contract.yaml"
    result = dc.bootstrap_contract(telco_cfg, out)
    assert {k: result[k] for k in ("contract_path", "columns", "rows_profiled")} == {
        "contract_path": str(out),
        "columns": 21,
        "rows_profiled": 7043,
    }
    assert [entry["column"] for entry in result["report"]] == [
        telco_cfg.id_column,
        *telco_cfg.features,
        "churn",
    ]
    raw = yaml.safe_load(out.read_text())
    cols = raw["columns"]
    assert cols["customer_id"] == {"dtype": "string", "nullable": False, "unique": True, "max_length": 64}
    assert cols["tenure"] == {"dtype": "int64", "nullable": False, "min": 0, "max": 150}
    assert cols["total_charges"]["nullable"] is True  # the reference has 11 nulls
    assert cols["contract"]["categories"] == ["Month-to-month", "One year", "Two year"]
    assert cols["female"] == {"dtype": "int64", "nullable": False, "categories": [0, 1]}
    assert cols["churn"]["categories"] == ["No", "Yes"]
    with pytest.raises(dc.ContractError, match="exists"):
        dc.bootstrap_contract(telco_cfg, out)
    assert dc.bootstrap_contract(telco_cfg, out, overwrite=True)["columns"] == 21


def test_shipped_contracts_accept_their_reference_data():
    for name in ("telco_churn", "mlc_churn"):
        cfg = load_dataset_config(name, Settings.from_env({}))
        from driftloop.data.sources import load_source_frame

        frame = load_source_frame(cfg)
        accepted, rejected = dc.validate_frame(cfg, frame)
        assert (len(accepted), len(rejected)) == (len(frame), 0), rejected.head()
        assert list(accepted.columns) == [cfg.id_column, *cfg.features, cfg.target]


def test_contract_problems_are_reported_clearly(telco_cfg, tmp_path):
    bad = {"columns": {"customer_id": {"dtype": "uuid"}}}
    with pytest.raises(dc.ContractError, match="dtype 'uuid'"):
        dc.parse_contract(bad, telco_cfg)
    with pytest.raises(dc.ContractError, match="missing from the contract"):
        dc.parse_contract({"columns": {"customer_id": {"dtype": "string"}}}, telco_cfg)
    from dataclasses import replace

    missing = replace(telco_cfg, contract={"path": str(tmp_path / "nope.yaml")})
    with pytest.raises(dc.ContractError, match="contract bootstrap"):
        dc.load_contract(missing)


def test_validate_frame_accounts_for_every_row_and_keeps_raw_values(telco_cfg, telco_frame):
    frame = telco_frame.iloc[:30].astype(str).replace("nan", None)
    frame.loc[3, "tenure"] = "7 months"
    frame.loc[4, "monthly_charges"] = "-1"
    frame.loc[5, "customer_id"] = frame.loc[6, "customer_id"]
    accepted, rejected = dc.validate_frame(telco_cfg, frame)
    assert len(accepted) + len(rejected) == 30
    assert rejected["_row"].tolist() == [4, 5, 7]
    assert rejected["_reason"].tolist() == [
        "unparsable:tenure",
        "out_of_range:monthly_charges",
        "duplicate_id:customer_id",
    ]
    assert rejected.loc[0, "tenure"] == "7 months"
    assert accepted["tenure"].dtype == "int64" and accepted["monthly_charges"].dtype == "float64"
    assert accepted["total_charges"].dtype == "float64"


def test_formula_pattern_flags_commands_but_not_negative_numbers_in_text(telco_cfg, telco_frame):
    frame = telco_frame.iloc[:10].copy()
    frame.loc[0, "customer_id"] = "-12.5"
    frame.loc[1, "customer_id"] = "+44 20 7946 0000"
    frame.loc[2, "customer_id"] = "-cmd"
    frame.loc[3, "customer_id"] = "\t=1+2"
    accepted, rejected = dc.validate_frame(telco_cfg, frame)
    assert rejected["_row"].tolist() == [3, 4]
    assert set(rejected["_reason"]) == {"formula_injection:customer_id"}


def test_duplicates_across_chunks_are_caught(telco_cfg, telco_frame, tmp_path):
    frame = telco_frame.iloc[:50].copy()
    frame.loc[45, "customer_id"] = frame.loc[2, "customer_id"]
    path = tmp_path / "b.csv"
    frame.to_csv(path, index=False)
    chunks = []
    report = dc.validate_file(telco_cfg, path, chunk_rows=7, on_accepted=chunks.append)
    assert report["ok"] and report["reason_counts"] == {"duplicate_id:customer_id": 1}
    assert (report["rows_accepted"], report["rows_quarantined"], report["rows_received"]) == (49, 1, 50)
    assert len(chunks) == 8 and sum(len(c) for c in chunks) == 49


def test_utf8_bom_and_crlf_line_endings_are_accepted(telco_cfg, telco_frame, tmp_path):
    path = tmp_path / "b.csv"
    path.write_bytes(
        b"\xef\xbb\xbf" + telco_frame.iloc[:10].to_csv(index=False, lineterminator="\r\n").encode()
    )
    report = dc.validate_file(telco_cfg, path)
    assert report["ok"] and report["rows_accepted"] == 10, report


def test_pii_columns_are_dropped_or_hashed_before_storage(telco_cfg, telco_frame, monkeypatch, tmp_path):
    from dataclasses import replace

    cfg = replace(
        telco_cfg,
        contract={
            "path": telco_cfg.contract["path"],
            "columns": {
                "customer_id": {"pii": "hash"},
                "email": {"dtype": "string", "required": False, "nullable": True, "pii": "drop"},
            },
        },
    )
    frame = telco_frame.iloc[:10].copy()
    frame["email"] = [f"person{i}@example.com" for i in range(10)]
    frame.loc[0, "tenure"] = -5
    with pytest.raises(dc.ContractError, match="DRIFTLOOP_PII_SALT"):
        dc.validate_frame(cfg, frame)
    accepted, rejected = dc.validate_frame(cfg, frame, pii_salt="pepper")
    assert "email" not in accepted.columns and "email" not in rejected.columns
    raw_ids = frame.loc[1:, "customer_id"].astype(str).tolist()
    expected = ["h2:" + hmac.new(b"pepper", v.encode(), hashlib.sha256).hexdigest() for v in raw_ids]
    assert accepted["customer_id"].tolist() == expected, "HMAC-SHA256 keyed with the salt, h2: prefix"
    assert "TC-000001" not in rejected["customer_id"].tolist()
    again, _ = dc.validate_frame(cfg, frame, pii_salt="pepper")
    assert again["customer_id"].tolist() == accepted["customer_id"].tolist(), "same salt, same hash: ids join"
    assert (
        dc.validate_frame(cfg, frame, pii_salt="other")[0]["customer_id"].tolist()
        != accepted["customer_id"].tolist()
    )
    # Through the file validator the salt comes from the settings, i.e. from DRIFTLOOP_PII_SALT.
    monkeypatch.setenv("DRIFTLOOP_PII_SALT", "pepper")
    path = tmp_path / "pii.csv"
    frame.to_csv(path, index=False)
    stored = []
    dc.validate_file(cfg, path, on_accepted=stored.append)
    assert stored[0]["customer_id"].tolist() == accepted["customer_id"].tolist()


def test_pii_hash_is_a_versioned_hmac_and_legacy_hashes_stay_recognised():
    values = pd.Series(["alice@example.com", None, "TC-000042"])
    hashed = dc.hash_values(values, "k3y")
    mac = hmac.new(b"k3y", b"alice@example.com", hashlib.sha256).hexdigest()
    assert hashed[0] == f"h2:{mac}" and hashed[1] is None
    assert hashed[2] == "h2:" + hmac.new(b"k3y", b"TC-000042", hashlib.sha256).hexdigest()
    legacy = hashlib.sha256(b"k3y\x1falice@example.com").hexdigest()  # the scheme before h2
    assert dc.hash_values(values, "k3y", scheme=dc.LEGACY_SCHEME)[0] == legacy
    assert [dc.hash_scheme(v) for v in (hashed[0], legacy, "alice@example.com", None)] == [
        dc.HASH_SCHEME,
        dc.LEGACY_SCHEME,
        None,
        None,
    ]
    with pytest.raises(ValueError, match="unknown PII hash scheme"):
        dc.hash_values(pd.Series([None]), "k3y", scheme="h9")


def test_ids_hashed_before_h2_still_join_their_labels_and_a_scheme_mix_is_refused():
    def legacy(v):
        return hashlib.sha256(f"k3y\x1f{v}".encode()).hexdigest()

    rows = pd.DataFrame({"customer_id": [legacy("a"), legacy("b"), legacy("c")], "tenure": [1, 2, 3]})
    labels = pd.DataFrame({"customer_id": [legacy("c"), legacy("a")], "churn": ["yes", "no"]})
    joined = dc.join_hashed_ids(rows, labels, "customer_id").sort_values("tenure")
    assert joined["tenure"].tolist() == [1, 3] and joined["churn"].tolist() == ["no", "yes"]

    new_labels = labels.assign(customer_id=dc.hash_values(pd.Series(["c", "a"]), "k3y"))
    with pytest.raises(ValueError, match="'legacy' cannot join ids hashed with 'h2'"):
        dc.join_hashed_ids(rows, new_labels, "customer_id")


def test_contract_thresholds_can_be_overridden_from_the_config(telco_cfg):
    from dataclasses import replace

    cfg = replace(telco_cfg, contract={**telco_cfg.contract, "max_bad_row_share": 0.01, "rows": {"max": 99}})
    loaded = dc.load_contract(cfg)
    assert (loaded.max_bad_row_share, loaded.max_rows, loaded.min_rows) == (0.01, 99, 1)


def test_validate_cli_passes_a_clean_file_and_writes_nothing(driftloop_env, telco_frame, tmp_path, capsys):
    path = tmp_path / "in" / "b.csv"
    path.parent.mkdir()
    telco_frame.iloc[:40].to_csv(path, index=False)
    before = tree(tmp_path)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PASS:") and "rows received 40, accepted 40, quarantined 0" in out
    assert tree(tmp_path) == before
    assert not driftloop_env.exists()


def test_validate_cli_fails_with_a_per_problem_report(driftloop_env, telco_frame, tmp_path, capsys):
    frame = telco_frame.iloc[:40].copy()
    frame.loc[0, "contract"] = "Lifetime"
    frame.loc[1, "monthly_charges"] = -3.0
    path = tmp_path / "b.csv"
    frame.to_csv(path, index=False)
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "PASS with rejected rows" in out
    assert "ROWS unknown_category in column 'contract': 1 row(s)" in out
    assert "ROWS out_of_range in column 'monthly_charges': 1 row(s)" in out
    assert main(["validate", str(path), "--allow-rejected-rows"]) == 0
    capsys.readouterr()
    (tmp_path / "x.csv").write_text(frame.to_csv(index=False, sep="|"))
    assert main(["--dataset", "telco_churn", "validate", str(tmp_path / "x.csv"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["reason_code"] == "wrong_delimiter" and report["rows_received"] == 40
    (tmp_path / "l.csv").write_text(frame[["customer_id"]].to_csv(index=False))
    assert main(["validate", str(tmp_path / "l.csv"), "--kind", "labels", "--dataset", "telco_churn"]) == 1
    assert "FILE missing_columns" in capsys.readouterr().out


def test_contract_bootstrap_cli(driftloop_env, tmp_path, capsys):
    out = tmp_path / "c.yaml"
    assert main(["--dataset", "mlc_churn", "contract", "bootstrap", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["contract_path"] == str(out)
    assert yaml.safe_load(out.read_text())["id_column"] == "account_id"


def test_ingest_cli_exit_code_reflects_quarantine(data_store, telco_cfg, telco_frame, capsys):
    from driftloop.core.state import StatePaths
    from tests import zones

    paths = StatePaths.for_dataset(telco_cfg)
    zones.put(paths.landing_dir / "b1.csv", telco_frame.iloc[:60].to_csv(index=False).encode())
    assert main(["ingest"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["batches"]["accepted"] == ["b1"] and result["snapshot"]["rows"] == 60
    assert result["snapshot"]["snapshot_uri"].startswith(
        data_store if zones.is_remote(data_store) else "file://"
    )
    zones.put(paths.landing_dir / "b2.csv", b"")
    assert main(["ingest"]) == 1
    captured = capsys.readouterr()
    assert '"reason_code": "empty_file"' in captured.out
    assert "BatchQuarantined" in captured.err and "b2: empty_file" in captured.err
    assert zones.frame(paths.batches_dir / "b1.parquet").shape[0] == 60
    assert zones.names(paths.quarantine_dir / "b2") == ["b2.csv", "reason.json"]


def test_uniqueness_is_only_declared_on_the_id_column(telco_cfg):
    raw = {"columns": {c: {"dtype": "string"} for c in [telco_cfg.id_column, *telco_cfg.features, "churn"]}}
    raw["columns"]["contract"]["unique"] = True
    with pytest.raises(
        dc.ContractError, match=r"unique is supported on the id column only, not on \['contract'\]"
    ):
        dc.parse_contract(raw, telco_cfg)


def test_csv_is_read_in_segments_cut_between_records_only(telco_cfg, telco_frame, tmp_path, monkeypatch):
    from driftloop.data.contract import inspection

    monkeypatch.setattr(inspection, "SEGMENT_BYTES", 300)  # ~2 rows per segment
    frame = telco_frame.iloc[:40].copy()
    frame.loc[::3, "customer_id"] = [f'multi\nline, "quoted" id {i}' for i in range(len(frame.loc[::3]))]
    path = tmp_path / "b.csv"
    frame.to_csv(path, index=False)
    info = dc.inspect_file(path)
    assert len(info["segments"]) > 10
    chunks = []
    report = dc.validate_file(telco_cfg, path, on_accepted=chunks.append, on_rejected=chunks.append)
    assert (report["rows_received"], report["rows_accepted"]) == (40, 40), report["problems"]
    assert report["chunks"] > 10  # a frame per segment of ~2 rows: never the whole file at once
    got = pd.concat(chunks, ignore_index=True)["customer_id"].astype(str).tolist()
    assert got == frame["customer_id"].tolist()
