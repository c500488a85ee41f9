"""The snapshot is built streamed, in bounded memory, and keeps the content and hash of the in-memory build.

The history below mixes labelled and scoring batches, ids seen in several batches, labels relabelled by a
later label file, scoring rows whose id has no label, and labelled rows with a null target. Its hash was
computed by the in-memory build (commit e6fa4e2) before the build was streamed; the streamed build is run
with buckets of a few dozen rows so that every id range, bucket edge and the merge across buckets is used.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from driftloop.core.errors import NoLabelledData
from driftloop.core.state import StatePaths, path_to_uri
from driftloop.data import contract as dc
from driftloop.data import ingest, snapshot_stream, snapshots
from tests import zones

# canonical_hash of this history as the in-memory build (e6fa4e2) computed it; a snapshot's id must not move
IN_MEMORY_HASH = "225fb08eabaf1bd2a21dfd676b88b2e29a71a96130348a5f5fc1e5dd2c53cedf"
IN_MEMORY_ROWS = 420
IN_MEMORY_EXCLUDED = 0  # ingestion quarantines a labelled row without its label


def land(paths: StatePaths, name: str, frame: pd.DataFrame, labels: bool = False) -> None:
    folder = paths.labels_landing_dir if labels else paths.landing_dir
    zones.put(folder / name, zones.frame_bytes(frame, name))


def land_history(state: StatePaths, telco_cfg, telco_frame: pd.DataFrame) -> None:
    """Five batches and two label files, ingested in order."""
    target = telco_cfg.target
    land(state, "b001_reference.csv", telco_frame.iloc[:300])
    ingest.ingest_batches(telco_cfg)
    land(state, "b002.csv", telco_frame.iloc[250:400].drop(columns=target))
    ingest.ingest_batches(telco_cfg)
    changed = telco_frame.iloc[350:420].copy()
    changed["tenure"] = changed["tenure"] + 1  # the later batch's features must win
    changed.loc[changed.index[:10], target] = None  # labelled batch rows without a label
    land(state, "b003.parquet", changed)
    ingest.ingest_batches(telco_cfg)
    land(state, "b004.csv", telco_frame.iloc[0:40].drop(columns=target))  # ids seen in b001, some relabelled
    ingest.ingest_batches(telco_cfg)
    labels = telco_frame.iloc[240:380][[telco_cfg.id_column, target]].copy()
    land(state, "l001.csv", labels, labels=True)
    ingest.ingest_labels(telco_cfg)
    flipped = pd.concat([telco_frame.iloc[0:20], telco_frame.iloc[300:330]])[[telco_cfg.id_column, target]]
    flipped[target] = flipped[target].map({"Yes": "No", "No": "Yes"})
    land(state, "l002.csv", flipped, labels=True)
    ingest.ingest_labels(telco_cfg)
    land(state, "b005.csv", telco_frame.iloc[410:430].drop(columns=target))  # after the labels, none match
    ingest.ingest_batches(telco_cfg)


@pytest.fixture(params=[10**6, 37], ids=["one-bucket", "37-row-buckets"])
def bucket_rows(request, monkeypatch) -> int:
    monkeypatch.setattr(snapshot_stream, "BUCKET_ROWS", request.param)
    return int(request.param)


def test_streamed_build_keeps_the_in_memory_hash_and_rows(
    data_store, telco_cfg, telco_frame, state, bucket_rows
):
    land_history(state, telco_cfg, telco_frame)
    snap = snapshots.build_snapshot(telco_cfg)
    assert snap["snapshot_hash"] == IN_MEMORY_HASH
    assert (snap["rows"], snap["unlabelled_rows_excluded"]) == (IN_MEMORY_ROWS, IN_MEMORY_EXCLUDED)
    assert snap["batch_ids"] == ["b001_reference", "b002", "b003", "b004"]  # b005's rows have no label
    assert snap["label_batch_ids"] == ["l001", "l002"]
    frame = zones.frame(snap["snapshot_uri"])
    assert snapshots.canonical_hash(frame) == IN_MEMORY_HASH  # the file holds the hashed rows
    assert list(frame.columns) == [telco_cfg.id_column, *telco_cfg.features, telco_cfg.target]
    assert frame[telco_cfg.id_column].tolist() == sorted(telco_frame[telco_cfg.id_column].iloc[:420])
    by_id = frame.set_index(telco_cfg.id_column)
    source = telco_frame.set_index(telco_cfg.id_column)
    flipped = source.index[list(range(0, 20)) + list(range(300, 330))]
    assert (by_id.loc[flipped, "churn"] != source.loc[flipped, "churn"]).all()  # l002 relabelled them
    later = source.index[360:420]  # b003's rows replaced b002's (b003's first ten had no label: quarantined)
    assert (by_id.loc[later, "tenure"] == source.loc[later, "tenure"] + 1).all()
    assert (by_id.loc[source.index[350:360], "tenure"] == source.loc[source.index[350:360], "tenure"]).all()


def test_every_row_read_is_kept_or_counted_as_dropped(data_store, telco_cfg, telco_frame, state, tmp_path):
    land_history(state, telco_cfg, telco_frame)
    snapshot_stream.BUCKET_ROWS, before = 53, snapshot_stream.BUCKET_ROWS
    try:
        built = snapshot_stream.build_streamed(telco_cfg, None, tmp_path)
    finally:
        snapshot_stream.BUCKET_ROWS = before
    names = [n for n in zones.names(state.batches_dir) if n.endswith(".json")]
    accepted = [zones.manifest(state.batches_dir / n) for n in names]
    assert built.rows_read == sum(m["rows_accepted"] for m in accepted) == 300 + 150 + 60 + 40 + 20
    # b002's ids 380-399, b004's 20-39 and all of b005 have no label
    assert built.rows_without_label == 20 + 20 + 20
    # b001's 250-299 and 0-19 and b002's 360-379 were replaced by a later batch
    assert built.duplicate_rows_dropped == 50 + 20 + 20
    assert (built.rows, built.unlabelled_rows_excluded) == (IN_MEMORY_ROWS, 0)
    assert built.snapshot_hash == IN_MEMORY_HASH


def store(state: StatePaths, name: str, frame: pd.DataFrame, labels: bool = False) -> None:
    """Put an accepted file and its manifest in place directly (rows ingestion would refuse)."""
    folder = state.labels_dir if labels else state.batches_dir
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / f"{name}.parquet", index=False)
    manifest = {"ingested_at": f"2026-01-01T00:00:0{len(list(folder.glob('*.json')))}+00:00"}
    manifest["rows_accepted"] = len(frame)
    uri = path_to_uri(folder / f"{name}.parquet")
    if labels:
        manifest.update(label_batch_id=name, labels_uri=uri)
    else:
        manifest.update(batch_id=name, batch_uri=uri, has_target="churn" in frame.columns)
    (folder / f"{name}.json").write_text(json.dumps(manifest))


def test_null_labels_are_left_out_and_counted(telco_cfg, telco_frame, state, bucket_rows):
    batch = telco_frame.iloc[:30].copy()
    batch.loc[batch.index[:4], "churn"] = None
    store(state, "b001", batch)
    store(state, "b002", telco_frame.iloc[30:40].drop(columns="churn"))
    labels = telco_frame.iloc[30:40][["customer_id", "churn"]].copy()
    labels.loc[labels.index[:3], "churn"] = None
    store(state, "l001", labels, labels=True)
    snap = snapshots.build_snapshot(telco_cfg)
    assert (snap["rows"], snap["unlabelled_rows_excluded"]) == (40 - 4 - 3, 4 + 3)
    kept = pd.concat([batch.iloc[4:], telco_frame.iloc[33:40]])
    assert snap["snapshot_hash"] == snapshots.canonical_hash(snapshots.canonicalise(telco_cfg, kept))
    assert snap["batch_ids"] == ["b001", "b002"] and snap["label_batch_ids"] == ["l001"]


def test_all_labels_null_is_refused_with_the_count(telco_cfg, telco_frame, state):
    store(state, "b001", telco_frame.iloc[:5].assign(churn=None))
    with pytest.raises(NoLabelledData, match="all 5 accepted rows have a null 'churn'"):
        snapshots.build_snapshot(telco_cfg)
    assert snapshots.list_snapshots(telco_cfg) == []


def test_scoring_ids_hashed_unlike_the_labels_are_refused(telco_cfg, telco_frame, state):
    def legacy(value: str) -> str:
        return hashlib.sha256(f"k3y\x1f{value}".encode()).hexdigest()

    batch = telco_frame.iloc[:20].drop(columns="churn")
    store(state, "b001", batch.assign(customer_id=batch["customer_id"].map(legacy)))
    labels = telco_frame.iloc[:20][["customer_id", "churn"]]
    store(state, "l001", labels.assign(customer_id=dc.hash_values(labels["customer_id"], "k3y")), labels=True)
    with pytest.raises(ValueError, match="'legacy' cannot join ids hashed with 'h2'"):
        snapshots.build_snapshot(telco_cfg)
