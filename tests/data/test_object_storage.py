"""The data stage on S3-compatible object storage (moto's S3 server): the objects it writes, reruns after a
crash between two writes, content-addressed snapshots, and a store that is missing or unreachable.

Object stores have no rename: every object is one PUT, the manifest comes after the data and is the commit,
and a rerun rewrites the same keys. The tests look at the bucket itself (``S3Server.keys``).
"""

from __future__ import annotations

import json
import socket
import uuid

import pandas as pd
import pytest

from driftloop.core.errors import SnapshotNotFoundError, StorageError
from driftloop.core.state import StatePaths
from driftloop.data import ingest, quarantine, simulate, snapshots
from tests import zones


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bucket_of(uri: str) -> str:
    return uri.removeprefix("s3://").split("/", 1)[0]


def dataset_keys(s3_env, uri: str) -> list[str]:
    """Every object key of the telco dataset, relative to its root (``batches/b001.json`` ...)."""
    prefix = "zones/telco_churn/"
    return [key.removeprefix(prefix) for key in s3_env.keys(bucket_of(uri), prefix)]


def land(paths: StatePaths, name: str, frame: pd.DataFrame) -> None:
    zones.put(paths.landing_dir / name, zones.frame_bytes(frame, name))


@pytest.fixture
def s3_state(s3_data_uri, telco_cfg):
    """The telco zones in a fresh bucket (``DRIFTLOOP_DATA_URI=s3://<bucket>/zones``)."""
    paths = StatePaths.for_dataset(telco_cfg)
    assert str(paths.root) == f"{s3_data_uri}/telco_churn"
    return paths


def test_an_ingest_writes_exactly_these_objects_and_accounts_for_every_row(
    s3_data_uri, s3_env, telco_cfg, telco_frame, s3_state
):
    batch = telco_frame.iloc[:50].copy()
    batch["tenure"] = batch["tenure"].astype(object)
    batch.loc[batch.index[:2], "tenure"] = -1
    land(s3_state, "b001.csv", batch)
    land(s3_state, "b002.parquet", telco_frame.iloc[50:80].drop(columns="churn"))
    zones.put(s3_state.landing_dir / "b003.csv", b"")
    zones.put(s3_state.landing_dir / "b004.csv.part", b"still uploading")
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == ["b001", "b002"] and result["quarantined"][0]["batch_id"] == "b003"
    assert (result["rows_received"], result["rows_accepted"], result["rows_quarantined"]) == (80, 78, 2)
    assert dataset_keys(s3_env, s3_data_uri) == [
        "archive/b001/b001.csv",
        "archive/b002/b002.parquet",
        "batches/b001.json",
        "batches/b001.parquet",
        "batches/b002.json",
        "batches/b002.parquet",
        "landing/batches/b004.csv.part",
        "quarantine/b001/reason.json",
        "quarantine/b001/rows.csv",
        "quarantine/b001/rows.parquet",
        "quarantine/b003/b003.csv",
        "quarantine/b003/reason.json",
    ]
    manifest = zones.manifest(s3_state.batches_dir / "b001.json")
    assert manifest["batch_uri"] == f"{s3_data_uri}/telco_churn/batches/b001.parquet"
    assert manifest["quarantine_uri"] == f"{s3_data_uri}/telco_churn/quarantine/b001/rows.parquet"
    assert manifest["rows_accepted"] + manifest["rows_quarantined"] == manifest["rows_received"] == 50
    assert (s3_state.archive_dir / "b001" / "b001.csv").read_bytes() == zones.frame_bytes(batch, "b.csv")
    reason = zones.manifest(s3_state.quarantine_dir / "b003" / "reason.json")
    assert reason["file_uri"] == f"{s3_data_uri}/telco_churn/quarantine/b003/b003.csv"


def test_a_crash_before_the_manifest_is_finished_by_the_rerun_on_the_same_keys(
    s3_data_uri, s3_env, telco_cfg, telco_frame, s3_state, monkeypatch
):
    land(s3_state, "b001.csv", telco_frame.iloc[:100])

    def crash_on_manifest(path, payload):
        raise RuntimeError("worker killed before the manifest")

    with monkeypatch.context() as patch:
        patch.setattr(ingest, "write_json", crash_on_manifest)
        with pytest.raises(RuntimeError, match="before the manifest"):
            ingest.ingest_batches(telco_cfg)
    assert dataset_keys(s3_env, s3_data_uri) == ["batches/b001.parquet", "landing/batches/b001.csv"]
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == ["b001"] and result["quarantined"] == []
    assert (result["rows_received"], result["rows_accepted"]) == (100, 100)
    assert dataset_keys(s3_env, s3_data_uri) == [
        "archive/b001/b001.csv",
        "batches/b001.json",
        "batches/b001.parquet",
    ]
    assert len(zones.frame(s3_state.batches_dir / "b001.parquet")) == 100, "rewritten, never appended"
    again = ingest.ingest_batches(telco_cfg)
    assert again["accepted"] == [] and again["quarantined"] == [] and again["rows_received"] == 0


def test_a_crash_between_the_archive_copy_and_the_delete_is_finished_by_the_rerun(
    s3_data_uri, s3_env, telco_cfg, telco_frame, s3_state, monkeypatch
):
    land(s3_state, "b001.csv", telco_frame.iloc[:100])

    def copy_then_crash(src, dest_dir):
        src.fs.copy(src.path, (dest_dir / src.name).path)
        raise RuntimeError("worker killed between the copy and the delete")

    with monkeypatch.context() as patch:
        patch.setattr(ingest, "move_into", copy_then_crash)
        with pytest.raises(RuntimeError, match="between the copy and the delete"):
            ingest.ingest_batches(telco_cfg)
    manifest = (s3_state.batches_dir / "b001.json").read_text()
    assert "landing/batches/b001.csv" in dataset_keys(s3_env, s3_data_uri)
    assert "archive/b001/b001.csv" in dataset_keys(s3_env, s3_data_uri)
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == ["b001"] and result["quarantined"] == []
    assert result["rows_received"] == 0, "the batch's rows were counted by the run that wrote the manifest"
    assert (s3_state.batches_dir / "b001.json").read_text() == manifest
    assert dataset_keys(s3_env, s3_data_uri) == [
        "archive/b001/b001.csv",
        "batches/b001.json",
        "batches/b001.parquet",
    ]


def test_the_same_bytes_landed_again_after_the_ingest_are_a_replay_not_a_leftover(
    s3_data_uri, s3_env, telco_cfg, telco_frame, s3_state
):
    land(s3_state, "b001.csv", telco_frame.iloc[:100])
    ingest.ingest_batches(telco_cfg)
    zones.after_store_tick(s3_data_uri)
    land(s3_state, "b001.csv", telco_frame.iloc[:100])
    result = ingest.ingest_batches(telco_cfg)
    assert [q["reason_code"] for q in result["quarantined"]] == ["replayed_batch"]
    assert result["accepted"] == []
    keys = dataset_keys(s3_env, s3_data_uri)
    assert [k for k in keys if not k.startswith("quarantine/")] == [
        "archive/b001/b001.csv",
        "batches/b001.json",
        "batches/b001.parquet",
    ]
    replay = result["quarantined"][0]["batch_id"]
    assert [k for k in keys if k.startswith("quarantine/")] == [
        f"quarantine/{replay}/b001.csv",
        f"quarantine/{replay}/reason.json",
    ]


def test_an_interrupted_set_aside_of_an_earlier_quarantine_loses_nothing(
    s3_data_uri, s3_env, telco_cfg, telco_frame, s3_state, monkeypatch
):
    bad = telco_frame.iloc[:30].to_csv(index=False, sep=";").encode()
    zones.put(s3_state.landing_dir / "b001.csv", bad)
    assert ingest.ingest_batches(telco_cfg)["quarantined"][0]["reason_code"] == "wrong_delimiter"
    land(s3_state, "b001.csv", telco_frame.iloc[:30])
    real_move = quarantine.move_into
    moves = []

    def move_once_then_crash(src, dest_dir):
        if moves:
            raise RuntimeError("worker killed during the set-aside")
        moves.append(src.name)
        return real_move(src, dest_dir)

    with monkeypatch.context() as patch:
        patch.setattr(quarantine, "move_into", move_once_then_crash)
        with pytest.raises(RuntimeError, match="during the set-aside"):
            ingest.ingest_batches(telco_cfg)
    assert moves == ["b001.csv"], "the evidence moves first, reason.json last"
    assert zones.names(s3_state.quarantine_dir / "b001") == ["reason.json"]
    result = ingest.ingest_batches(telco_cfg)
    assert result["accepted"] == ["b001"] and result["rows_accepted"] == 30
    [kept] = [n for n in zones.names(s3_state.quarantine_dir) if n.startswith("b001__superseded-")]
    assert zones.names(s3_state.quarantine_dir) == [kept]
    assert (s3_state.quarantine_dir / kept / "b001.csv").read_bytes() == bad
    assert zones.manifest(s3_state.quarantine_dir / kept / "reason.json")["reason_code"] == "wrong_delimiter"


def test_snapshots_on_object_storage_are_content_addressed_and_committed_by_their_manifest(
    s3_data_uri, s3_env, telco_cfg, telco_frame, s3_state, monkeypatch
):
    rows = telco_frame.iloc[:120]
    with monkeypatch.context() as patch:

        def crash(path, payload):
            raise RuntimeError("worker killed before the snapshot manifest")

        patch.setattr(snapshots, "write_json", crash)
        with pytest.raises(RuntimeError, match="before the snapshot manifest"):
            snapshots.write_snapshot(telco_cfg, rows)
    [orphan] = dataset_keys(s3_env, s3_data_uri)
    digest = orphan.removeprefix("snapshots/").removesuffix(".parquet")
    orphan_uri = f"{s3_data_uri}/telco_churn/{orphan}"
    for ref in (None, digest, digest[:10], orphan_uri):
        with pytest.raises(SnapshotNotFoundError):
            snapshots.resolve_snapshot(telco_cfg, ref)  # a parquet file without its manifest is no snapshot

    first = snapshots.write_snapshot(telco_cfg, rows)
    second = snapshots.write_snapshot(telco_cfg, rows.sample(frac=1.0, random_state=3))
    assert (first["created"], second["created"]) == (True, False)
    assert first["snapshot_hash"] == second["snapshot_hash"] == digest
    assert first["snapshot_uri"] == orphan_uri
    assert dataset_keys(s3_env, s3_data_uri) == [f"snapshots/{digest}.json", f"snapshots/{digest}.parquet"]
    for ref in (None, digest, digest[:10], orphan_uri):
        assert snapshots.resolve_snapshot(telco_cfg, ref)["snapshot_hash"] == digest
    manifest = snapshots.resolve_snapshot(telco_cfg, digest)
    frame = snapshots.read_snapshot_frame(telco_cfg, manifest, ["customer_id", "churn"])
    assert frame["customer_id"].tolist() == sorted(rows["customer_id"])
    with pytest.raises(ValueError, match="lacks columns"):
        snapshots.read_snapshot_frame(telco_cfg, manifest, ["no_such_column"])
    (s3_state.snapshots_dir / f"{digest}.parquet").unlink()
    with pytest.raises(SnapshotNotFoundError, match=f"{orphan_uri} does not exist"):
        snapshots.read_snapshot_frame(telco_cfg, manifest)


def test_the_quality_summary_of_a_profile_goes_to_the_bucket(
    s3_data_uri, s3_env, telco_cfg, telco_frame, s3_state
):
    from driftloop.data import profiling

    result = profiling.profile_snapshot(telco_cfg, "ab" * 32, frame=telco_frame.iloc[:60], max_rows=0)
    assert result["profile_path"] is None
    assert result["summary_path"] == f"{s3_data_uri}/telco_churn/reports/profiles/quality-{'ab' * 6}.json"
    assert dataset_keys(s3_env, s3_data_uri) == [f"reports/profiles/quality-{'ab' * 6}.json"]
    summary = json.loads((s3_state.reports_dir / "profiles" / f"quality-{'ab' * 6}.json").read_text())
    assert summary["rows"] == 60 and summary["html_report"] is False


def test_the_simulator_lands_whole_objects_in_the_bucket(s3_data_uri, s3_env, telco_cfg):
    simulate.simulate_reference(telco_cfg)
    simulate.simulate_batch(telco_cfg, 1, rows=100)
    simulate.simulate_labels(telco_cfg, 1)
    assert dataset_keys(s3_env, s3_data_uri) == [
        "landing/batches/batch_001.csv",
        "landing/batches/reference.csv",
        "landing/labels/labels_batch_001.csv",
        "simulator/pending_labels/batch_001.csv",
    ]
    result = ingest.ingest_batches(telco_cfg)
    labels = ingest.ingest_labels(telco_cfg)
    assert (result["accepted"], labels["accepted"]) == (["batch_001", "reference"], ["labels_batch_001"])
    assert result["rows_received"] == result["rows_accepted"] == 3522 + 100
    assert snapshots.build_snapshot(telco_cfg)["rows"] == 3522 + 100


# ------------------------------------------------------------------------ a store that is not there


def test_a_bucket_that_does_not_exist_fails_every_stage_naming_the_uri(
    s3_env, telco_cfg, telco_frame, monkeypatch
):
    uri = f"s3://driftloop-missing-{uuid.uuid4().hex[:8]}/zones"
    monkeypatch.setenv("DRIFTLOOP_DATA_URI", uri)
    for stage in (ingest.ingest_batches, ingest.ingest_labels, snapshots.build_snapshot):
        with pytest.raises(StorageError, match=f"no bucket .*{uri}/telco_churn/"):
            stage(telco_cfg)
    with pytest.raises(StorageError, match=f"no bucket .*{uri}/telco_churn/snapshots"):
        snapshots.resolve_snapshot(telco_cfg)
    with pytest.raises(StorageError, match=f"{uri}/telco_churn/landing/batches/reference.csv"):
        simulate.simulate_reference(telco_cfg)
    with pytest.raises(StorageError, match=f"no bucket .*{uri}/telco_churn/snapshots/"):
        snapshots.write_snapshot(telco_cfg, telco_frame.iloc[:10])
    ref = f"{uri}/telco_churn/snapshots/{'0' * 64}.parquet"
    with pytest.raises(SnapshotNotFoundError, match=ref):
        snapshots.resolve_snapshot(telco_cfg, ref)


@pytest.fixture
def closed_endpoint(driftloop_env, monkeypatch):
    """The AWS variables point at a port nobody listens on; fsspec's cached S3 clients are dropped around the
    test (a cached one would still talk to the test server)."""
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "driftloop-test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "driftloop-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    uri = "s3://driftloop-closed/zones"
    monkeypatch.setenv("DRIFTLOOP_DATA_URI", uri)
    s3fs.S3FileSystem.clear_instance_cache()
    yield uri
    s3fs.S3FileSystem.clear_instance_cache()


def test_an_unreachable_store_fails_with_a_storage_error_naming_the_uri(closed_endpoint, telco_cfg):
    uri = closed_endpoint
    for stage in (ingest.ingest_batches, snapshots.build_snapshot):
        with pytest.raises(StorageError, match=f"unreachable .*{uri}/telco_churn/"):
            stage(telco_cfg)
    with pytest.raises(StorageError, match=f"unreachable .*{uri}/telco_churn/snapshots/x.json"):
        snapshots.resolve_snapshot(telco_cfg, f"{uri}/telco_churn/snapshots/x.parquet")
    with pytest.raises(StorageError, match=f"unreachable .*{uri}/telco_churn/landing/batches/reference.csv"):
        simulate.simulate_reference(telco_cfg)
