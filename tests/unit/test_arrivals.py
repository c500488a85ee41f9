"""Arrivals: which landed files are new, and their dedupe keys, on a local folder and on a bucket of the test
S3 server (``data_store``).

The landing watch announces a file once per key; these tests walk the cases the key must get right: hidden
and in-progress uploads, a file left in landing, a file rewritten in place, a file ingested and landed again.
"""

from __future__ import annotations

import json
import uuid

import pytest

from driftloop.core.errors import StorageError
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths
from driftloop.core.storage import move_into, remove_file
from driftloop.data import arrivals
from driftloop.data.arrivals import LandedFile, landed_files, new_arrivals
from tests.zones import put

CSV = b"customer_id,tenure\nc1,3\n"


@pytest.fixture
def paths(data_store, telco_cfg) -> StatePaths:
    return StatePaths.for_dataset(telco_cfg)


def keys(files: list[LandedFile]) -> list[str]:
    return [f"{f.zone}/{f.name}" for f in files]


def test_empty_or_missing_landing_zones_have_nothing(paths, telco_cfg):
    assert landed_files(telco_cfg) == []


def test_visible_files_of_both_zones_are_listed_and_uploads_in_progress_are_not(paths, telco_cfg):
    put(paths.landing_dir / "b2.csv", CSV)
    put(paths.landing_dir / "b1.parquet", CSV + b"c2,4\n")
    put(paths.landing_dir / ".b3.csv.123.tmp", CSV)  # atomic_path's hidden temporary name
    put(paths.landing_dir / "b4.csv.part", CSV)
    put(paths.landing_dir / "b5.csv.TMP", CSV)
    put(paths.labels_landing_dir / "l1.csv", b"customer_id,churn\nc1,1\n")
    files = landed_files(telco_cfg)
    assert keys(files) == ["batches/b1.parquet", "batches/b2.csv", "labels/l1.csv"]
    b1 = files[0]
    assert b1.size == len(CSV) + 5 and b1.uri.endswith("/landing/batches/b1.parquet")
    assert b1.modified and b1.dedupe_key.startswith(f"batches/b1.parquet|{b1.size}|{b1.modified}|")
    assert len({f.dedupe_key for f in files}) == 3
    if b1.uri.startswith("s3://"):
        assert b1.etag, "an object's ETag is part of its key"
    else:
        assert b1.uri.startswith("file://") and b1.etag == ""


def test_a_file_is_announced_once_while_it_stays_as_it_is(paths, telco_cfg):
    put(paths.landing_dir / "b1.csv", CSV)
    first = new_arrivals(landed_files(telco_cfg), frozenset())
    assert keys(first.new) == ["batches/b1.csv"]
    # The next looks see the same file (a run that failed left it in landing): nothing new, ever.
    for _ in range(3):
        again = new_arrivals(landed_files(telco_cfg), first.announced)
        assert again.new == [] and again.announced == first.announced
    # A second file is new on its own.
    put(paths.labels_landing_dir / "l1.csv", b"customer_id,churn\nc1,1\n")
    both = new_arrivals(landed_files(telco_cfg), first.announced)
    assert keys(both.new) == ["labels/l1.csv"] and len(both.announced) == 2


def test_a_file_rewritten_in_place_is_announced_again(paths, telco_cfg):
    put(paths.landing_dir / "b1.csv", CSV)
    first = new_arrivals(landed_files(telco_cfg), frozenset())
    put(paths.landing_dir / "b1.csv", CSV + b"c2,5\n")  # a new size (and time): a new key
    second = new_arrivals(landed_files(telco_cfg), first.announced)
    assert keys(second.new) == ["batches/b1.csv"]
    assert second.announced.isdisjoint(first.announced), "the old key is forgotten with the old content"


def test_an_ingested_file_is_forgotten_and_the_same_name_landing_later_is_new(paths, telco_cfg):
    put(paths.landing_dir / "b1.csv", CSV)
    first = new_arrivals(landed_files(telco_cfg), frozenset())
    move_into(paths.landing_dir / "b1.csv", paths.archive_dir / "b1")  # what ingestion does
    gone = new_arrivals(landed_files(telco_cfg), first.announced)
    assert gone.new == [] and gone.announced == frozenset()
    put(paths.landing_dir / "b1.csv", CSV)  # the same bytes again: ingestion will call it a replay
    assert keys(new_arrivals(landed_files(telco_cfg), gone.announced).new) == ["batches/b1.csv"]


def test_a_file_gone_between_listing_and_look_is_skipped(paths, telco_cfg, monkeypatch):
    put(paths.landing_dir / "b1.csv", CSV)
    put(paths.landing_dir / "b2.csv", CSV)
    real = arrivals.list_files

    def listing_then_ingest(folder):
        found = real(folder)
        if found:
            remove_file(found[0])  # ingestion took it while the watch was looking
        return found

    monkeypatch.setattr(arrivals, "list_files", listing_then_ingest)
    assert keys(landed_files(telco_cfg)) == ["batches/b2.csv"]


def test_the_event_carries_every_key_names_at_most_twenty_files_and_is_json(paths, telco_cfg):
    for index in range(25):
        put(paths.landing_dir / f"b{index:02d}.csv", CSV)
    found = new_arrivals(landed_files(telco_cfg), frozenset())
    event = found.event(telco_cfg.name)
    assert event["status"] == "landed" and event["dataset"] == telco_cfg.name and event["count"] == 25
    assert len(event["files"]) == arrivals.MAX_FILES_PER_EVENT
    assert [f["dedupe_key"] for f in event["files"]] == [f.dedupe_key for f in found.new[:20]]
    assert json.loads(json.dumps(event)) == event
    # The event's own key depends on the files only: the same look elsewhere gives the same key.
    assert new_arrivals(landed_files(telco_cfg), frozenset()).event("x")["dedupe_key"] == event["dedupe_key"]
    assert (
        found.describe().startswith("25 new file(s): batches/b00.csv, ") and "and 20 more" in found.describe()
    )


def test_a_missing_bucket_is_a_storage_error_not_an_empty_landing_zone(s3_env, driftloop_env, monkeypatch):
    from driftloop.core.config import load_dataset_config

    monkeypatch.setenv("DRIFTLOOP_DATA_URI", f"s3://driftloop-missing-{uuid.uuid4().hex[:8]}/zones")
    settings = Settings.from_env()
    with pytest.raises(StorageError, match="no bucket"):
        landed_files(load_dataset_config("telco_churn", settings), settings)


def test_arrival_is_the_default_data_schedule_and_the_poll_must_be_positive():
    from driftloop.core.errors import ConfigError
    from driftloop.core.settings import ON_ARRIVAL

    defaults = Settings.from_env({})
    assert (defaults.data_schedule, defaults.landing_poll_s) == (ON_ARRIVAL, 5.0)
    for value, expected in (("On_Arrival ", ON_ARRIVAL), ("none", None), ("*/10 * * * *", "*/10 * * * *")):
        assert Settings.from_env({"DRIFTLOOP_DATA_SCHEDULE": value}).data_schedule == expected
    assert Settings.from_env({"DRIFTLOOP_LANDING_POKE_S": ""}).landing_poll_s == 5.0
    with pytest.raises(ConfigError, match="DRIFTLOOP_LANDING_POKE_S='0' Input should be greater than 0"):
        Settings.from_env({"DRIFTLOOP_LANDING_POKE_S": "0"})
