"""Data stage: ingestion accounting, replays, idempotent reruns, snapshots and the MLflow data run.

The tests whose outcome depends on the store run twice (``data_store``): on a local folder and on a bucket of
the test S3 server.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from driftloop.core import bus
from driftloop.core.errors import BatchQuarantined, NoLabelledData
from driftloop.core.state import StatePaths, path_to_uri
from driftloop.data import ingest, snapshots
from tests import zones


def land(paths: StatePaths, name: str, frame: pd.DataFrame, labels: bool = False) -> None:
    folder = paths.labels_landing_dir if labels else paths.landing_dir
    zones.put(folder / name, zones.frame_bytes(frame, name))


def assert_accounting(result: dict) -> None:
    assert result["rows_accepted"] + result["rows_quarantined"] == result["rows_received"]


def test_ingest_splits_scoring_and_labelled_batches_and_archives_originals(
    data_store, telco_cfg, telco_frame, state
):
    land(state, "b001_reference.csv", telco_frame.iloc[:300])
    land(state, "b002.parquet", telco_frame.iloc[300:400].drop(columns="churn"))
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == ["b001_reference", "b002"]
    assert result["labelled_batch_ids"] == ["b001_reference"]
    assert result["scoring_batch_ids"] == ["b002"]
    assert result["quarantined"] == []
    assert (result["rows_received"], result["rows_accepted"]) == (400, 400)
    manifest = json.loads((state.batches_dir / "b002.json").read_text())
    assert manifest["has_target"] is False and manifest["rows_accepted"] == 100
    assert manifest["batch_uri"] == path_to_uri(state.batches_dir / "b002.parquet")
    assert manifest["batch_uri"].startswith("s3://" if zones.is_remote(data_store) else "file://")
    stored = zones.frame(manifest["batch_uri"])
    assert list(stored.columns) == [telco_cfg.id_column, *telco_cfg.features]
    assert stored["tenure"].dtype == "int64"
    assert (state.archive_dir / "b002" / "b002.parquet").is_file()
    assert zones.names(state.landing_dir) == []


def test_bad_rows_are_quarantined_with_reasons_and_good_rows_proceed(
    data_store, telco_cfg, telco_frame, state
):
    batch = telco_frame.iloc[:50].copy()
    batch["tenure"] = batch["tenure"].astype(object)
    batch.loc[batch.index[:3], "tenure"] = -1
    land(state, "b001.csv", batch)
    result = ingest.ingest_batches(telco_cfg)
    assert_accounting(result)
    assert (result["rows_accepted"], result["rows_quarantined"]) == (47, 3)
    rows = zones.frame(state.quarantine_dir / "b001" / "rows.parquet")
    assert rows["_reason"].tolist() == ["out_of_range:tenure"] * 3
    assert rows["_row"].tolist() == [1, 2, 3]
    reason = json.loads((state.quarantine_dir / "b001" / "reason.json").read_text())
    assert reason["reason_code"] == "rejected_rows" and reason["rows_quarantined"] == 3
    assert zones.names(state.quarantine_dir / "b001") == ["reason.json", "rows.csv", "rows.parquet"]
    assert "out_of_range:tenure" in (state.quarantine_dir / "b001" / "rows.csv").read_text()
    manifest = json.loads((state.batches_dir / "b001.json").read_text())
    assert manifest["quarantine_uri"] == path_to_uri(state.quarantine_dir / "b001" / "rows.parquet")
    assert len(zones.frame(manifest["batch_uri"])) == 47


def test_good_batch_beside_bad_one_proceeds_and_run_fails_with_reasons(
    data_store, telco_cfg, telco_frame, state
):
    land(state, "b001.csv", telco_frame.iloc[:100])
    zones.put(state.landing_dir / "b002.csv", b"PK\x03\x04 not a csv")
    land(state, "b003.csv", telco_frame.iloc[100:150].drop(columns=["tenure"]))
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == ["b001"]
    assert [(q["batch_id"], q["reason_code"]) for q in result["quarantined"]] == [
        ("b002", "wrong_format"),
        ("b003", "missing_columns"),
    ]
    assert_accounting(result)
    assert (state.quarantine_dir / "b003" / "b003.csv").is_file()
    reason = json.loads((state.quarantine_dir / "b003" / "reason.json").read_text())
    assert reason["rows_received"] == 50
    assert reason["file_uri"] == path_to_uri(state.quarantine_dir / "b003" / "b003.csv")
    assert zones.names(state.landing_dir) == []
    with pytest.raises(BatchQuarantined, match=r"(?s)b002: wrong_format.*b003: missing_columns.*tenure"):
        ingest.raise_for_quarantine(result)
    ingest.raise_for_quarantine({"accepted": ["b001"], "quarantined": []})


def test_too_many_bad_rows_quarantines_the_whole_batch(data_store, telco_cfg, telco_frame, state):
    batch = telco_frame.iloc[:10].copy()
    batch["contract"] = ["Lifetime"] * 3 + batch["contract"].tolist()[3:]
    land(state, "b001.csv", batch)
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == []
    assert result["quarantined"][0]["reason_code"] == "too_many_bad_rows"
    assert "3 of 10 rows (30.0%)" in result["quarantined"][0]["message"]
    assert (result["rows_accepted"], result["rows_quarantined"], result["rows_received"]) == (0, 10, 10)
    assert not (state.batches_dir / "b001.parquet").exists()
    assert len(zones.frame(state.quarantine_dir / "b001" / "rows.parquet")) == 3


def test_replayed_batch_is_quarantined_and_nothing_else_is_written(data_store, telco_cfg, telco_frame, state):
    land(state, "b001.csv", telco_frame.iloc[:100])
    ingest.ingest_batches(telco_cfg)
    before = zones.names(state.batches_dir)
    manifest = (state.batches_dir / "b001.json").read_text()
    zones.after_store_tick(data_store)  # the replay lands later than the first ingestion
    land(state, "b001_again.csv", telco_frame.iloc[:100])
    land(state, "b001.csv", telco_frame.iloc[:100])
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == []
    assert {q["reason_code"] for q in result["quarantined"]} == {"replayed_batch"}
    assert zones.names(state.batches_dir) == before == ["b001.json", "b001.parquet"]
    assert (state.batches_dir / "b001.json").read_text() == manifest
    assert (result["rows_received"], result["rows_quarantined"]) == (0, 0)
    assert zones.names(state.landing_dir) == []
    assert zones.names(state.archive_dir) == ["b001"]
    replays = [n for n in zones.names(state.quarantine_dir) if n != "b001_again"]
    assert [n.split("-")[0] for n in replays] == ["b001__replay"]
    assert zones.names(state.quarantine_dir / replays[0]) == ["b001.csv", "reason.json"]


def test_same_name_different_content_is_a_conflict(data_store, telco_cfg, telco_frame, state):
    land(state, "b001.csv", telco_frame.iloc[:100])
    ingest.ingest_batches(telco_cfg)
    land(state, "b001.csv", telco_frame.iloc[100:200])
    result = ingest.ingest_batches(telco_cfg)
    assert result["quarantined"][0]["reason_code"] == "batch_id_conflict"
    assert len(zones.frame(state.batches_dir / "b001.parquet")) == 100
    first, second = (zones.frame_bytes(telco_frame.iloc[i : i + 100], "b.csv") for i in (0, 100))
    assert (state.archive_dir / "b001" / "b001.csv").read_bytes() == first, "the accepted original is kept"
    [conflict] = zones.names(state.quarantine_dir)
    assert conflict.startswith("b001__conflict-")
    assert (state.quarantine_dir / conflict / "b001.csv").read_bytes() == second


def test_rerun_after_crash_before_archiving_completes_without_duplicates(
    data_store, telco_cfg, telco_frame, state
):
    land(state, "b001.csv", telco_frame.iloc[:100])
    ingest.ingest_batches(telco_cfg)
    archived = state.archive_dir / "b001" / "b001.csv"
    zones.put(state.landing_dir / "b001.csv", archived.read_bytes())  # as if the move never happened
    archived.unlink()
    manifest_before = (state.batches_dir / "b001.json").read_text()
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == ["b001"] and result["quarantined"] == []
    assert (result["rows_received"], result["rows_accepted"]) == (0, 0), "rows are counted once, earlier"
    assert (state.batches_dir / "b001.json").read_text() == manifest_before
    assert archived.is_file()
    assert zones.names(state.landing_dir) == [] and zones.names(state.quarantine_dir) == []


def test_ingest_is_a_noop_on_an_empty_landing_zone_and_skips_files_in_progress(
    data_store, telco_cfg, telco_frame, state
):
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == [] and result["quarantined"] == [] and result["rows_received"] == 0
    land(state, ".b001.csv", telco_frame.iloc[:10])
    land(state, "b002.csv.part", telco_frame.iloc[:10])
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == [] and result["quarantined"] == [] and result["rows_received"] == 0
    assert zones.names(state.landing_dir) == [".b001.csv", "b002.csv.part"]
    assert zones.names(state.batches_dir) == []


def test_labels_ingest_and_snapshot_joins_latest_label(data_store, telco_cfg, telco_frame, state):
    land(state, "b001_reference.csv", telco_frame.iloc[:200])
    land(state, "b002.csv", telco_frame.iloc[200:260].drop(columns="churn"))
    ingest.ingest_batches(telco_cfg)
    labels = telco_frame.iloc[200:240][["customer_id", "churn"]].copy()
    land(state, "l001.csv", labels, labels=True)
    flipped = labels.iloc[:5].copy()
    flipped["churn"] = flipped["churn"].map({"Yes": "No", "No": "Yes"})
    land(state, "l002.csv", flipped, labels=True)
    label_result = ingest.ingest_labels(telco_cfg)
    assert label_result["accepted"] == ["l001", "l002"]
    assert_accounting(label_result)
    snap = snapshots.build_snapshot(telco_cfg)
    assert snap["created"] is True
    assert snap["rows"] == 240
    assert snap["batch_ids"] == ["b001_reference", "b002"]
    assert snap["label_batch_ids"] == ["l001", "l002"]
    assert snap["snapshot_uri"] == path_to_uri(state.snapshots_dir / f"{snap['snapshot_hash']}.parquet")
    frame = zones.frame(snap["snapshot_uri"])
    assert list(frame.columns) == [telco_cfg.id_column, *telco_cfg.features, telco_cfg.target]
    assert frame[telco_cfg.id_column].is_monotonic_increasing
    got = frame.set_index("customer_id").loc[flipped["customer_id"], "churn"].tolist()
    assert got == flipped["churn"].tolist()
    again = snapshots.build_snapshot(telco_cfg)
    assert again["snapshot_hash"] == snap["snapshot_hash"] and again["created"] is False
    assert zones.names(state.snapshots_dir) == [
        f"{snap['snapshot_hash']}.{ext}" for ext in ("json", "parquet")
    ]
    for ref in (None, snap["snapshot_hash"], snap["snapshot_hash"][:8], snap["snapshot_uri"]):
        assert snapshots.resolve_snapshot(telco_cfg, ref)["snapshot_hash"] == snap["snapshot_hash"], ref
    manifest = snapshots.resolve_snapshot(telco_cfg, snap["snapshot_uri"])
    read = snapshots.read_snapshot_frame(telco_cfg, manifest, ["customer_id", "churn"])
    assert read.equals(frame[["customer_id", "churn"]])


def test_snapshot_hash_depends_on_content_not_batch_order(
    data_store, telco_cfg, telco_frame, state, monkeypatch
):
    land(state, "a.csv", telco_frame.iloc[:100])
    land(state, "b.csv", telco_frame.iloc[100:200])
    ingest.ingest_batches(telco_cfg)
    first = snapshots.build_snapshot(telco_cfg)
    monkeypatch.setenv("DRIFTLOOP_DATA_URI", f"{data_store}-other")
    other = StatePaths.for_dataset(telco_cfg)
    assert other.root != state.root
    land(other, "x.csv", telco_frame.iloc[100:200].sample(frac=1, random_state=1))
    land(other, "y.parquet", telco_frame.iloc[:100])
    ingest.ingest_batches(telco_cfg)
    second = snapshots.build_snapshot(telco_cfg)
    assert second["snapshot_hash"] == first["snapshot_hash"] and second["created"] is True
    assert zones.frame(second["snapshot_uri"]).equals(zones.frame(first["snapshot_uri"]))
    land(other, "z.csv", telco_frame.iloc[200:201])
    ingest.ingest_batches(telco_cfg)
    assert snapshots.build_snapshot(telco_cfg)["snapshot_hash"] != first["snapshot_hash"]


def test_build_snapshot_without_labelled_rows_raises(data_store, telco_cfg, telco_frame, state):
    land(state, "b001.csv", telco_frame.iloc[:50].drop(columns="churn"))
    ingest.ingest_batches(telco_cfg)
    with pytest.raises(NoLabelledData, match="no accepted labelled rows"):
        snapshots.build_snapshot(telco_cfg)
    assert snapshots.list_snapshots(telco_cfg) == []


def test_record_snapshot_logs_one_data_run_per_snapshot(data_store, telco_cfg, telco_frame, monkeypatch):
    import dataclasses
    import uuid

    from driftloop.core import tracking

    # Its own dataset name: the session's MLflow store is shared, and the other store's variant records the
    # same snapshot hash.
    telco_cfg = dataclasses.replace(telco_cfg, name=f"telco_churn_{uuid.uuid4().hex[:8]}")
    state = StatePaths.for_dataset(telco_cfg)
    monkeypatch.setenv("DRIFTLOOP_PROFILE_MAX_ROWS", "150")
    land(state, "b001.csv", telco_frame.iloc[:300])
    ingest.ingest_batches(telco_cfg)
    snap = snapshots.build_snapshot(telco_cfg)
    first = snapshots.record_snapshot(telco_cfg, snap["snapshot_hash"])
    second = snapshots.record_snapshot(telco_cfg, snap["snapshot_hash"])
    assert first["reused"] is False and second["reused"] is True
    assert first["data_run_id"] == second["data_run_id"]
    assert first["profile_sampled"] is True
    client = tracking.get_client()
    run = client.get_run(first["data_run_id"])
    assert run.data.tags[bus.SNAPSHOT_HASH_TAG] == snap["snapshot_hash"]
    assert run.data.tags[bus.SNAPSHOT_URI_TAG] == snap["snapshot_uri"]
    assert run.data.tags[bus.PROFILE_SAMPLED_TAG] == "true"
    assert run.data.tags[bus.PROFILE_HTML_TAG] == "logged"
    assert run.data.metrics["rows"] == 300
    assert (run.data.metrics["source_rows_received"], run.data.metrics["source_rows_quarantined"]) == (300, 0)
    assert 0 < run.data.metrics["positive_rate"] < 1
    assert run.inputs.dataset_inputs[0].tags[0].value == "training"
    artifacts = {a.path for a in client.list_artifacts(first["data_run_id"], "profile")}
    assert artifacts == {
        f"profile/profile-{snap['snapshot_hash'][:12]}.html",
        f"profile/quality-{snap['snapshot_hash'][:12]}.json",
    }
    runs = tracking.search_runs(
        client, telco_cfg.experiment_name("data"), {bus.SNAPSHOT_HASH_TAG: snap["snapshot_hash"]}
    )
    assert len(runs) == 1
    short = snap["snapshot_hash"][:12]
    assert zones.names(state.reports_dir / "profiles") == [f"profile-{short}.html", f"quality-{short}.json"]


def test_original_with_pii_is_not_archived_and_stored_rows_are_treated(
    data_store, telco_cfg, telco_frame, state, monkeypatch
):
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
    monkeypatch.setenv("DRIFTLOOP_PII_SALT", "pepper")
    frame = telco_frame.iloc[:20].copy()
    frame["email"] = "someone@example.com"
    frame.loc[0, "contract"] = "Lifetime"
    land(state, "b001.csv", frame)
    result = ingest.ingest_batches(cfg)
    assert (result["rows_accepted"], result["rows_quarantined"]) == (19, 1)
    manifest = json.loads((state.batches_dir / "b001.json").read_text())
    assert manifest["original_archived"] is False and "email" in manifest["original_removed_reason"]
    assert zones.names(state.archive_dir) == [] and zones.names(state.landing_dir) == []
    stored = zones.frame(state.batches_dir / "b001.parquet")
    rejected = zones.frame(state.quarantine_dir / "b001" / "rows.parquet")
    for frame_ in (stored, rejected):
        assert "email" not in frame_.columns
        assert frame_["customer_id"].str.fullmatch(r"h2:[0-9a-f]{64}").all()
    land(state, "b001.csv", frame)
    assert ingest.ingest_batches(cfg)["quarantined"][0]["reason_code"] == "replayed_batch"


def test_profile_samples_large_snapshots_and_says_so(telco_cfg, telco_frame, state):
    from driftloop.data import profiling

    frame = telco_frame.iloc[:400]
    result = profiling.profile_snapshot(telco_cfg, "ab" * 32, frame=frame, max_rows=120)
    assert (result["rows"], result["profiled_rows"], result["sampled"]) == (400, 120, True)
    html = open(result["profile_path"], encoding="utf-8").read()
    assert "profiled on a random sample of 120 rows" in html
    summary = json.loads(open(result["summary_path"]).read())
    assert summary["rows"] == 400 and summary["sampled"] is True and summary["sample_seed"] == 0
    tenure = summary["columns"]["tenure"]
    assert (tenure["min"], tenure["max"]) == (float(frame["tenure"].min()), float(frame["tenure"].max()))
    assert summary["columns"]["total_charges"]["null_share"] == frame["total_charges"].isna().mean()
    assert summary["columns"]["contract"]["distinct"] == 3


def test_profile_html_can_be_switched_off(telco_cfg, telco_frame, state, monkeypatch):
    from driftloop.data import profiling

    monkeypatch.setenv("DRIFTLOOP_PROFILE_MAX_ROWS", "0")
    result = profiling.profile_snapshot(telco_cfg, "cd" * 32, frame=telco_frame.iloc[:50])
    assert result["profile_path"] is None and result["sampled"] is False
    assert json.loads(open(result["summary_path"]).read())["html_report"] is False


def test_profile_past_its_time_budget_keeps_the_summary(telco_cfg, telco_frame, state, monkeypatch):
    from driftloop.data import profiling

    monkeypatch.setenv("DRIFTLOOP_PROFILE_TIMEOUT_S", "0.01")
    result = profiling.profile_snapshot(telco_cfg, "ef" * 32, frame=telco_frame.iloc[:200])
    assert result["timed_out"] is True and result["profile_path"] is None
    summary = json.loads(open(result["summary_path"]).read())
    assert summary["html_timed_out"] is True and summary["rows"] == 200
    assert not list((state.reports_dir / "profiles").glob("*.html")), "a stopped render leaves no HTML"


def test_profile_time_limit_leaves_the_callers_alarm_alone(telco_cfg, telco_frame, state, monkeypatch):
    import signal

    from driftloop.data import profiling

    fired = []

    def on_alarm(signum, frame):
        fired.append(signum)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 600)
        for timeout_s in ("0.01", "300"):  # stopped by its limit, and finished within it
            monkeypatch.setenv("DRIFTLOOP_PROFILE_TIMEOUT_S", timeout_s)
            profiling.profile_snapshot(telco_cfg, "ef" * 32, frame=telco_frame.iloc[:50])
            remaining_s, _ = signal.getitimer(signal.ITIMER_REAL)
            assert 0 < remaining_s <= 600, f"the caller's alarm was cancelled (timeout {timeout_s} s)"
            assert signal.getsignal(signal.SIGALRM) is on_alarm, "the caller's SIGALRM handler was replaced"
        assert fired == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_fixed_file_under_the_same_name_keeps_the_earlier_quarantine(
    data_store, telco_cfg, telco_frame, state
):
    bad = telco_frame.iloc[:30].to_csv(index=False, sep=";")
    zones.put(state.landing_dir / "b001.csv", bad.encode())
    assert ingest.ingest_batches(telco_cfg)["quarantined"][0]["reason_code"] == "wrong_delimiter"
    land(state, "b001.csv", telco_frame.iloc[:30])
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == ["b001"] and result["rows_accepted"] == 30
    [kept] = [n for n in zones.names(state.quarantine_dir) if n.startswith("b001__superseded-")]
    assert zones.names(state.quarantine_dir) == [kept]
    assert zones.names(state.quarantine_dir / kept) == ["b001.csv", "reason.json"]
    assert (state.quarantine_dir / kept / "b001.csv").read_text() == bad
    assert (
        json.loads((state.quarantine_dir / kept / "reason.json").read_text())["reason_code"]
        == "wrong_delimiter"
    )
    assert not (state.quarantine_dir / "b001").exists()


def test_profile_renders_in_a_process_whose_main_module_cannot_run_again(tmp_path):
    """A task under a scheduler: ``__main__`` is Airflow's CLI, which fails if a child process re-runs it
    (spawned multiprocessing children do), and the task used to wait forever. Here the main script refuses
    to run twice; the HTML must still be written."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    script = tmp_path / "task_main.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            if __name__ != "__main__":
                sys.exit("the task's main module was run a second time")
            sys.path[:0] = [{str(repo)!r}, {str(repo / "include")!r}]
            import pandas as pd
            from driftloop.data import profiling

            frame = pd.DataFrame({{"tenure": list(range(40)), "contract": ["month", "year"] * 20}})
            out = __import__("pathlib").Path(sys.argv[1])
            assert profiling._render_within(120, frame, "a title", out)
            print(out.stat().st_size)
            """
        )
    )
    html = tmp_path / "profile.html"
    done = subprocess.run(
        [sys.executable, str(script), str(html)], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "a title" in html.read_text(encoding="utf-8")
