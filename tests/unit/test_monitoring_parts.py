"""Monitoring fanned out: a scored batch read in parts (one mapped task each), the parts' samples merged.

The sample is chosen by id hash, so it must not depend on how the batch is cut; rows must be joined to their
own features and labels even when the predictions are not in the batch's order; and the three steps (plan,
sample each part, commit) must be safe to retry and to repeat. Training and inference are faked
(``tests/fakes.py``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from driftloop.core import bus
from tests.fakes import BATCH_ROWS, monitoring_runs, put_parquet, score_batch, write_labels


def _part_rows(cfg, rows: int):
    return dataclasses.replace(cfg, monitoring=dataclasses.replace(cfg.monitoring, part_rows=rows))


def _facts(cfg, train_run_id):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.live import read_version_facts

    return read_version_facts(cfg, get_client(), train_run_id)


def _sample(cfg, inference_run_id, facts, part_rows: int, max_rows: int, max_live_rows: int):
    """The batch's merged sample when cut into parts of ``part_rows`` rows (as the mapped tasks draw it)."""
    from driftloop.core.state import StatePaths, path_to_uri
    from driftloop.core.storage import list_files
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.samples import cut_parts, draw_part_sample, merge_samples

    tags = get_client().get_run(inference_run_id).data.tags
    labels = tuple(path_to_uri(p) for p in list_files(StatePaths.for_dataset(cfg).labels_dir, "*.parquet"))
    parts = cut_parts(
        _part_rows(cfg, part_rows),
        inference_run_id=inference_run_id,
        batch_id=tags[bus.BATCH_ID_TAG],
        batch_uri=tags[bus.BATCH_URI_TAG],
        predictions_uri=tags[bus.PREDICTIONS_URI_TAG],
        output_columns=facts.output_columns,
        scored_columns=facts.scored_columns,
        max_rows=max_rows,
        max_live_rows=max_live_rows,
        label_uris=labels,
    )
    samples = [draw_part_sample(cfg, part, with_drift=True) for part in parts]
    return len(parts), merge_samples(samples, max_rows, max_live_rows)


def test_the_sample_is_the_same_however_the_batch_is_cut_and_rows_keep_their_own_values(
    cfg, telco_frame, scorer, champion
):
    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS].reset_index(drop=True)
    run_id = score_batch(cfg, batch, "cut", version, train_run_id, scorer)
    write_labels(cfg, batch.iloc[:1500], "a_first", flip=True)
    write_labels(cfg, batch.iloc[:900], "b_second")  # corrects the first 900 only
    facts = _facts(cfg, train_run_id)

    drawn = {rows: _sample(cfg, run_id, facts, rows, 500, 400) for rows in (5000, 333, 64)}

    assert [parts for parts, _ in drawn.values()] == [1, 7, 32]
    samples = [sample for _, sample in drawn.values()]
    for sample in samples:
        assert (sample.rows, sample.labelled_rows) == (2000, 1500)
        assert len(sample.current) == 500 and len(sample.labelled) == 400
        assert sample.current[cfg.id_column].is_unique and sample.labelled[cfg.id_column].is_unique
    first = samples[0]
    for other in samples[1:]:
        pd.testing.assert_frame_equal(other.current, first.current)
        pd.testing.assert_frame_equal(other.labelled, first.labelled)

    # Each sampled row carries its own features, score and label (the later label file wins).
    by_id = batch.set_index(cfg.id_column)
    current = first.current.set_index(cfg.id_column)
    pd.testing.assert_frame_equal(
        current[list(cfg.features)], by_id.loc[current.index, list(cfg.features)], check_dtype=False
    )
    score, _ = scorer
    np.testing.assert_allclose(current[bus.SCORE_COLUMN], score(by_id.loc[current.index].reset_index()))
    labelled = first.labelled.set_index(cfg.id_column)
    truth = by_id.loc[labelled.index, cfg.target]
    corrected = labelled.index.isin(batch[cfg.id_column].iloc[:900])
    flipped = truth.map({"Yes": "No", "No": "Yes"})
    expected = truth.where(corrected, flipped)
    assert (labelled[cfg.target] == expected).all()
    assert 0 < corrected.sum() < len(labelled)  # both files are represented in the sample
    # Not the first rows of the file: the ids are spread over the whole batch.
    positions = batch.reset_index().set_index(cfg.id_column).loc[current.index, "index"]
    assert positions.min() < 200 and positions.max() > 1800


def test_predictions_out_of_the_batch_order_are_joined_to_their_own_features(
    cfg, telco_frame, scorer, champion
):
    from driftloop.core.state import uri_to_path
    from driftloop.core.tracking import get_client

    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS].reset_index(drop=True)
    run_id = score_batch(cfg, batch, "shuffled", version, train_run_id, scorer)
    predictions_uri = get_client().get_run(run_id).data.tags[bus.PREDICTIONS_URI_TAG]
    in_order = pd.read_parquet(uri_to_path(predictions_uri))
    put_parquet(in_order.iloc[::-1].reset_index(drop=True), uri_to_path(predictions_uri))
    facts = _facts(cfg, train_run_id)

    _, sample = _sample(cfg, run_id, facts, 300, 3000, 100)

    assert len(sample.current) == 2000
    current = sample.current.set_index(cfg.id_column)
    by_id = batch.set_index(cfg.id_column)
    pd.testing.assert_frame_equal(
        current[list(cfg.features)], by_id.loc[current.index, list(cfg.features)], check_dtype=False
    )


def test_a_batch_monitored_in_one_part_or_in_many_gets_the_same_figures(cfg, telco_frame, scorer, champion):
    from driftloop.monitoring.monitor import monitor_predictions

    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS]
    score_batch(cfg, batch, "whole", version, train_run_id, scorer)
    write_labels(cfg, batch.iloc[:1200], "labels")
    [whole] = monitor_predictions(_part_rows(cfg, 10_000), max_rows=700)["monitored"]
    score_batch(cfg, batch, "cut", version, train_run_id, scorer)  # the same rows, scored again
    [cut] = monitor_predictions(_part_rows(cfg, 150), max_rows=700)["monitored"]

    runs = {run.data.tags[bus.BATCH_ID_TAG]: run.data for run in monitoring_runs(cfg)}
    figures = [
        {k: v for k, v in runs[name].metrics.items() if not k.startswith("attribution")}
        for name in ("whole", "cut")
    ]
    assert figures[0] == figures[1]
    assert figures[0][bus.ROWS] == 2000 and figures[0][bus.ROWS_COMPARED] == 700
    assert figures[0][bus.LABELLED_ROWS] == 1200
    assert whole["drift_share"] == cut["drift_share"] and whole["live_f1"] == cut["live_f1"]
    assert runs["whole"].tags[bus.CURRENT_SAMPLE_TAG] == runs["cut"].tags[bus.CURRENT_SAMPLE_TAG]


def test_the_three_steps_retried_and_repeated_log_one_run_and_leave_no_parts(
    cfg, telco_frame, scorer, champion
):
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import list_files
    from driftloop.monitoring.monitor import commit_monitoring, plan_monitoring
    from driftloop.monitoring.samples import sample_part

    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS]
    score_batch(cfg, batch, "steps", version, train_run_id, scorer)
    cut = _part_rows(cfg, 500)
    planned = plan_monitoring(cut)
    assert [p["part"] for p in planned["parts"]] == [0, 1, 2, 3]

    sample_part(cut, planned["parts"][0])
    with pytest.raises(RuntimeError, match="part 2/4 of inference run .* is not sampled yet"):
        commit_monitoring(cut, planned)
    assert monitoring_runs(cfg) == []

    outcomes = [sample_part(cut, values) for values in planned["parts"]]
    assert [o["reused"] for o in outcomes] == [True, False, False, False]
    assert sum(o["rows"] for o in outcomes) == 2000
    assert sample_part(cut, planned["parts"][3])["reused"] is True  # a retried mapped task
    [first] = commit_monitoring(cut, planned)["monitored"]
    [again] = commit_monitoring(cut, planned)["monitored"]  # a retried commit

    assert again["monitoring_run_id"] == first["monitoring_run_id"]
    assert again["drift_share"] == first["drift_share"]
    assert len(monitoring_runs(cfg)) == 1
    parts_dir = StatePaths.for_dataset(cfg).monitoring_parts_dir
    assert list_files(parts_dir, "**/*") == []
    assert plan_monitoring(cut)["parts"] == []


def test_a_part_whose_file_vanished_skips_the_batch_with_the_reason(cfg, telco_frame, scorer, champion):
    from driftloop.core.state import uri_to_path
    from driftloop.core.storage import remove_file
    from driftloop.monitoring.monitor import commit_monitoring, plan_monitoring
    from driftloop.monitoring.samples import sample_part

    version, train_run_id = champion
    score_batch(cfg, telco_frame.iloc[BATCH_ROWS], "vanished", version, train_run_id, scorer)
    planned = plan_monitoring(_part_rows(cfg, 1000))
    remove_file(uri_to_path(planned["parts"][0]["predictions_uri"]))

    outcomes = [sample_part(cfg, values) for values in planned["parts"]]
    result = commit_monitoring(cfg, planned)

    assert all("does not exist" in o["error"] for o in outcomes)
    assert result["monitored"] == [] and len(result["skipped"]) == 1
    assert "does not exist" in result["skipped"][0]["reason"]
    assert monitoring_runs(cfg) == []


@pytest.mark.parametrize("rows, max_rows", [(1_000_000, 50_000), (200_000, 1_000), (60_000, 50_000)])
def test_the_hash_cutoff_keeps_a_little_more_than_the_sample_and_never_less(rows, max_rows):
    from driftloop.monitoring.samples import sample_cutoff

    cutoff = np.uint64(sample_cutoff(rows, max_rows))
    for seed in range(5):
        hashes = np.random.default_rng(seed).integers(0, 2**64, size=rows, dtype=np.uint64)
        kept = int((hashes <= cutoff).sum())
        assert max_rows <= kept <= max_rows + 8 * np.sqrt(max_rows) + 32


def test_a_batch_that_fits_keeps_every_row():
    from driftloop.monitoring.samples import sample_cutoff

    assert sample_cutoff(500, 500) == 2**64 - 1 and sample_cutoff(10, 500) == 2**64 - 1
