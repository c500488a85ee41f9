"""The parts' samples of a fixed synthetic batch are exactly the ones the first implementation drew.

The batch is built from a seeded generator and exercises every path of ``draw_part_sample``: three parts read
in chunks, duplicate ids in the predictions (the last row wins), predictions out of the batch's order across
parts (features looked up in the whole batch), ids missing from the batch, two label files (a later correction
wins, null labels are no labels, labels of unknown ids are ignored), missing sensitive values, integer and
boolean columns with nulls (also in a part where no sampled row has one), and more rows than the drift and
live samples keep. Each frame's digest (columns, dtypes and every cell, row order included) was recorded from
the implementation that converted whole row ranges to pandas (commit 0400247), before the sampled rows were
selected in Arrow first.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop.core import bus

ROWS = 3000
PART_ROWS = 1100
CHUNK_ROWS = 256
MAX_ROWS = 800
MAX_LIVE_ROWS = 500

# (rows, labelled rows, drift rows, labelled sample rows, drift digest, labelled digest): parts, then merged.
RECORDED = {
    "parts": [
        (1000, 649, 318, 500, "e45fbe2ff66e71a4", "c76d5fff764f4fa2"),
        (1000, 646, 310, 500, "167ef0835514811d", "2994632544a89fe1"),
        (1000, 674, 335, 500, "172c92fc151fa3f1", "73c42b26668ed37a"),
    ],
    "merged": (3000, 1969, 800, 500, "36ed58185178a4ee", "db5f4790346acbc8"),
}


def _batch(rng: np.random.Generator, cfg) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Batch, predictions, and two label files of a seeded synthetic batch."""
    ids = np.array([f"c{i:05d}" for i in rng.permutation(ROWS + 40)])
    batch = pd.DataFrame({cfg.id_column: ids[:ROWS]})
    for col in cfg.numeric_features:
        batch[col] = np.round(rng.gamma(2.0, 20.0, ROWS), 2)
    batch["tenure"] = rng.integers(0, 72, ROWS)
    for col in cfg.categorical_features:
        batch[col] = rng.choice(["a", "b", "c"], ROWS)
    batch["female"] = rng.choice([True, False], ROWS)
    batch["senior_citizen"] = rng.choice(["Yes", "No", None], ROWS, p=[0.2, 0.7, 0.1])
    # Nulls in an integer and a boolean column: read without pandas' metadata, a range with nulls gives float
    # and object columns, one without gives int and bool.
    # In the first two parts the nulls are only on rows no prediction asks for (their ids were replaced by
    # rescored rows' below), in the last on rows that are sampled.
    tenure = pd.array(batch["tenure"], dtype="Int64")
    tenure[np.r_[400:430:3, 1400:1430:3, 2200:2500:30]] = pd.NA
    batch["tenure"] = tenure
    female = pd.array(batch["female"], dtype="boolean")
    female[np.r_[405:430:5, 1405:1430:5, 2210:2500:40]] = pd.NA
    batch["female"] = female
    predictions = pd.DataFrame({cfg.id_column: batch[cfg.id_column]})
    predictions[bus.SCORE_COLUMN] = rng.random(ROWS)
    predictions[bus.PREDICTION_COLUMN] = np.where(predictions[bus.SCORE_COLUMN] >= 0.5, "Yes", "No")
    # Out of the batch's order across parts: swap blocks of the first and last part.
    swap = np.r_[0:60, ROWS - 60 : ROWS]
    predictions.iloc[swap] = predictions.iloc[np.r_[ROWS - 60 : ROWS, 0:60]].to_numpy()
    # Ids not in the batch at all.
    predictions.loc[100:119, cfg.id_column] = ids[ROWS : ROWS + 20]
    # Duplicate ids inside a part (rescored later in the file): the last row wins.
    predictions.loc[400:429, cfg.id_column] = predictions.loc[300:329, cfg.id_column].to_numpy()
    predictions.loc[1400:1429, cfg.id_column] = predictions.loc[1300:1329, cfg.id_column].to_numpy()
    first = pd.DataFrame({cfg.id_column: predictions[cfg.id_column].sample(2200, random_state=3).to_numpy()})
    first[cfg.target] = rng.choice(["Yes", "No", None], len(first), p=[0.3, 0.6, 0.1])
    strangers = pd.DataFrame({cfg.id_column: ids[ROWS + 20 :], cfg.target: "Yes"})
    first = pd.concat([first, strangers], ignore_index=True)
    second = first.iloc[:300].copy()
    second[cfg.target] = second[cfg.target].map({"Yes": "No", "No": "Yes", None: "Yes"})
    return batch, predictions, first, second


def digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's columns, dtypes and cells (row order included)."""
    head = repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode()
    cells = pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()
    return hashlib.sha256(head + cells).hexdigest()[:16]


def draw(cfg, folder) -> tuple[list, object]:
    """The parts' samples and the merged sample of the synthetic batch."""
    from driftloop.core.state import path_to_uri
    from driftloop.monitoring.samples import cut_parts, draw_part_sample, merge_samples

    monitoring = dataclasses.replace(cfg.monitoring, part_rows=PART_ROWS, chunk_rows=CHUNK_ROWS)
    cfg = dataclasses.replace(cfg, monitoring=monitoring)
    frames = _batch(np.random.default_rng(20260930), cfg)
    paths = [folder / name for name in ("batch", "predictions", "labels_a", "labels_b")]
    for frame, path in zip(frames, paths, strict=True):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if path == paths[0]:  # no pandas metadata: integers with nulls read as floats, booleans as objects
            table = table.replace_schema_metadata(None)
        pq.write_table(table, path, row_group_size=700)
    uris = [path_to_uri(path) for path in paths]
    parts = cut_parts(
        cfg,
        inference_run_id="ref",
        batch_id="ref",
        batch_uri=uris[0],
        predictions_uri=uris[1],
        output_columns=(bus.SCORE_COLUMN,),
        scored_columns=(bus.PREDICTION_COLUMN, bus.SCORE_COLUMN),
        max_rows=MAX_ROWS,
        max_live_rows=MAX_LIVE_ROWS,
        label_uris=(uris[2], uris[3]),
    )
    samples = [draw_part_sample(cfg, part, with_drift=True) for part in parts]
    return samples, merge_samples(samples, MAX_ROWS, MAX_LIVE_ROWS)


def summary(sample) -> tuple:
    return (
        sample.rows,
        sample.labelled_rows,
        len(sample.current),
        len(sample.labelled),
        digest(sample.current),
        digest(sample.labelled),
    )


def test_the_parts_samples_are_the_recorded_ones(telco_cfg, tmp_path):
    samples, merged = draw(telco_cfg, tmp_path)

    assert [summary(s) for s in samples] == [tuple(p) for p in RECORDED["parts"]]
    assert summary(merged) == tuple(RECORDED["merged"])


def test_the_synthetic_batch_reaches_every_path(telco_cfg, tmp_path):
    """The recorded digests only mean something if the batch takes every branch: checked on the sample."""
    samples, merged = draw(telco_cfg, tmp_path)
    cfg = telco_cfg

    assert len(samples) == 3
    assert merged.rows == ROWS and merged.labelled_rows < 2200
    assert len(merged.current) == MAX_ROWS and len(merged.labelled) == MAX_LIVE_ROWS
    assert merged.labelled["senior_citizen"].isna().any()  # missing sensitive values ride along
    batch, predictions, first, second = _batch(np.random.default_rng(20260930), cfg)
    corrected = second.dropna(subset=[cfg.target]).set_index(cfg.id_column)[cfg.target]
    both = merged.labelled[merged.labelled[cfg.id_column].isin(corrected.index)]
    assert len(both) > 0
    assert (both[cfg.target].to_numpy() == corrected[both[cfg.id_column]].to_numpy()).all()
    # The first and last 60 predictions are the other part's rows: their features come from the whole batch.
    moved = set(predictions[cfg.id_column].iloc[:60]) & set(merged.current[cfg.id_column])
    assert moved
    features = batch.set_index(cfg.id_column).loc[sorted(moved), "monthly_charges"]
    drawn = merged.current.set_index(cfg.id_column).loc[sorted(moved), "monthly_charges"]
    assert (features.to_numpy() == drawn.to_numpy()).all()
    unknown = set(predictions[cfg.id_column].iloc[100:120])
    assert not unknown & set(merged.current[cfg.id_column])  # not in the batch: no features, not drifted on
    kept = merged.labelled[merged.labelled[cfg.id_column].isin(unknown)]
    assert len(kept) and kept["female"].isna().all()  # labelled, without sensitive values


@pytest.mark.parametrize("column", ["female", "senior_citizen"])
def test_digest_sees_a_changed_cell(column):
    frame = pd.DataFrame({"female": [True, False], "senior_citizen": ["Yes", None]})
    changed = frame.copy()
    changed.loc[1, column] = changed.loc[0, column]
    assert digest(frame) != digest(changed)
