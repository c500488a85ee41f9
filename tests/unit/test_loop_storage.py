"""The loop driver's and the catalog's view of the data zones, on a local folder and on the test S3 server."""

from __future__ import annotations

import time

import pytest


def test_the_loop_report_names_files_quarantined_since_it_started(data_store, telco_cfg):
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import write_bytes_atomic, write_json
    from driftloop_ops.loop import quarantine_report

    quarantine = StatePaths.for_dataset(telco_cfg).quarantine_dir
    assert quarantine_report(quarantine) == []  # no zone yet: nothing to say, no error
    write_json(quarantine / "broken" / "reason.json", {"reason_code": "parse", "message": "bad header"})
    write_bytes_atomic(quarantine / "broken" / "rows.parquet", b"whole file: its reason says it all")
    write_bytes_atomic(quarantine / "b002" / "rows.parquet", b"rows of a batch that was accepted")
    lines = quarantine_report(quarantine, since=time.time() - 3600)
    assert lines == [
        f"quarantined {quarantine / 'broken'}: parse: bad header",
        f"rows quarantined: {quarantine / 'b002'} (rows.csv lists each row's _reason)",
    ]
    assert quarantine_report(str(quarantine), since=time.time() + 3600) == []  # its URI works the same


def test_an_unreadable_store_is_one_line_of_the_report_not_a_second_failure(s3_data_uri, monkeypatch):
    from driftloop.core import storage
    from driftloop_ops.loop import quarantine_report

    def refused(folder, pattern="*"):
        raise PermissionError("AccessDenied")

    monkeypatch.setattr(storage, "list_files", refused)
    [line] = quarantine_report(f"{s3_data_uri}/telco_churn/quarantine")
    assert line.startswith(f"quarantine at {s3_data_uri}/telco_churn/quarantine not readable: ")
    assert "refused the credentials" in line


@pytest.mark.parametrize(
    "data_uri", ["", "s3://bucket/zones", "s3://bucket/zones/", "file:///srv/driftloop/data"]
)
def test_the_catalog_names_each_datasets_zones_as_state_paths_does(data_uri, driftloop_env, monkeypatch):
    from driftloop.core.catalog import state_root
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.core.state import StatePaths

    monkeypatch.setenv("DRIFTLOOP_DATA_URI", data_uri)
    settings = Settings.from_env()
    cfg = load_dataset_config("telco_churn", settings)
    assert state_root(cfg, settings) == str(StatePaths.for_dataset(cfg, settings).root)
