"""The storage layer on a local folder and on a real S3 protocol server (moto): atomic writes, exclusive
creates, listings, moves, and faults that name the URI."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from driftloop.core import storage
from driftloop.core.errors import StorageError
from tests.object_store import S3Server


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> storage.StoragePath:
    """An empty folder, once local and once a prefix in a fresh bucket."""
    if request.param == "local":
        return tmp_path / "zones"
    server: S3Server = request.getfixturevalue("s3_env")
    return storage.location(f"s3://{server.new_bucket()}/zones")


def test_location_and_uri_round_trip(tmp_path: Path) -> None:
    assert storage.location(str(tmp_path)) == tmp_path
    assert storage.location(tmp_path.as_uri()) == tmp_path
    assert storage.to_uri(tmp_path) == tmp_path.as_uri()
    assert storage.to_uri(storage.location("s3://bucket/a/b.json")) == "s3://bucket/a/b.json"
    assert storage.is_remote_uri("s3://bucket/a") and not storage.is_remote_uri("/a/b")
    assert not storage.is_remote_uri("file:///a/b")


def test_write_read_list_move_remove(root: storage.StoragePath) -> None:
    assert storage.list_manifests(root / "m") == []
    storage.write_json(root / "m" / "b.json", {"batch_id": "b", "ingested_at": "2026-01-02"})
    storage.write_json(root / "m" / "a.json", {"batch_id": "a", "ingested_at": "2026-01-01"})
    storage.write_bytes_atomic(root / "m" / ".hidden.json", b"{}")
    assert [m["batch_id"] for m in storage.list_manifests(root / "m")] == ["a", "b"]
    assert [p.name for p in storage.list_files(root / "m")] == ["a.json", "b.json"]

    import pandas as pd

    frame = pd.DataFrame({"id": [1, 2, 3], "x": ["a", "b", None]})
    with storage.atomic_path(root / "p" / "rows.parquet") as tmp:
        assert isinstance(tmp, Path)  # every writer writes a local file
        frame.to_parquet(tmp, index=False)
    pd.testing.assert_frame_equal(storage.read_parquet(root / "p" / "rows.parquet"), frame)
    assert storage.read_parquet_schema(root / "p" / "rows.parquet").names == ["id", "x"]
    assert storage.read_parquet(root / "p" / "rows.parquet", columns=["x"]).columns.tolist() == ["x"]

    moved = storage.move_into(root / "p" / "rows.parquet", root / "archive")
    assert moved.name == "rows.parquet" and moved.exists()
    assert not (root / "p" / "rows.parquet").exists()
    storage.remove_tree(root / "archive")
    assert not moved.exists()
    storage.remove_tree(root / "never-there")  # no error


def test_a_failed_write_leaves_nothing_under_the_final_name(root: storage.StoragePath) -> None:
    target = root / "p" / "half.parquet"
    with pytest.raises(RuntimeError, match="crash"), storage.atomic_path(target) as tmp:
        tmp.write_bytes(b"PAR1 half of a file")
        raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert storage.list_files(root / "p") == []


def test_parquet_sink_commits_whole_files_only(root: storage.StoragePath) -> None:
    import pandas as pd
    import pyarrow as pa

    def schema_for(frame: pd.DataFrame) -> pa.Schema:
        return pa.Schema.from_pandas(frame, preserve_index=False)

    sink = storage.ParquetSink(root / "out" / "rows.parquet", schema_for)
    sink(pd.DataFrame({"a": [1, 2]}))
    sink(pd.DataFrame({"a": [3]}))
    assert not (root / "out" / "rows.parquet").exists()  # nothing visible before the commit
    assert sink.commit()
    assert storage.read_parquet(root / "out" / "rows.parquet")["a"].tolist() == [1, 2, 3]

    empty = storage.ParquetSink(root / "out" / "none.parquet", schema_for)
    assert not empty.commit()
    dropped = storage.ParquetSink(root / "out" / "dropped.parquet", schema_for)
    dropped(pd.DataFrame({"a": [1]}))
    dropped.discard()
    assert [p.name for p in storage.list_files(root / "out")] == ["rows.parquet"]


def test_create_exclusive_has_one_winner_among_racers(root: storage.StoragePath) -> None:
    key = root / "_alerts" / "sent" / "k.json"
    wins: list[bool] = []
    barrier = threading.Barrier(6)

    def claim(i: int) -> None:
        barrier.wait()
        wins.append(storage.create_exclusive(key, f'{{"by": {i}}}'.encode()))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 5 + [True]
    assert not storage.create_exclusive(key, b"{}")
    assert storage.read_json(key)["by"] in range(6)


def test_alert_claims_live_on_the_shared_store(s3_data_uri: str, driftloop_env: Path) -> None:
    from driftloop.core import alert_claims, alerts
    from driftloop.core.settings import Settings

    settings = Settings.from_env()
    alert = alerts.Alert(kind="drift_detected", dataset="telco", title="t", dedupe_key="drift:run-1")
    assert str(alert_claims.sent_dir(settings)).startswith(s3_data_uri)
    assert alert_claims.claim_alert(alert.dedupe_key, alert.to_dict(), settings)
    # A second worker (or a retry) never sends it again.
    assert not alert_claims.claim_alert(alert.dedupe_key, alert.to_dict(), settings)
    assert alert_claims.was_sent("drift:run-1", settings)
    assert not (driftloop_env / "data").exists()  # nothing written on the worker's own disk


def test_a_missing_bucket_is_named(s3_env: S3Server) -> None:
    missing = storage.location("s3://driftloop-no-such-bucket/zones/x.json")
    with pytest.raises(FileNotFoundError):
        storage.read_json(missing)


def test_an_unreachable_store_is_a_fault_naming_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    import s3fs

    from tests.object_store import _free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(StorageError, match=r"s3://bucket/zones/a\.json") as raised:
            storage.write_json(storage.location("s3://bucket/zones/a.json"), {"a": 1})
        assert "unreachable" in str(raised.value)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()


def test_refused_credentials_are_named_as_such() -> None:
    from botocore.exceptions import ClientError

    refused = ClientError(
        {"Error": {"Code": "InvalidAccessKeyId", "Message": "The key does not exist"}}, "PutObject"
    )
    message = storage.describe_error("s3://b/k", refused)
    assert "refused the credentials" in message and "s3://b/k" in message
    assert "unreachable" in storage.describe_error("s3://b/k", ConnectionError("connect timeout"))
    forbidden = ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")
    assert "refused the credentials" in storage.describe_error("s3://b/k", forbidden)
    assert "refused the credentials" in storage.describe_error("s3://b/k", OSError("status code: 403"))
    # The digits 403 inside a port or another number are not a refusal (this once failed on port 40373).
    for text in ('Could not connect to "http://127.0.0.1:40373/b/k"', "read 1403 bytes", "http://h/403x/k"):
        assert "unreachable" in storage.describe_error("s3://b/k", ConnectionError(text)), text
