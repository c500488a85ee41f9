"""Batch scoring and monitoring on S3 (moto's server) give exactly what they give on a local folder.

The same model scores the same batch once into a local data folder and once into a bucket; the predictions,
and the monitoring run of the scored batch with its late labels (drift, live metrics), must be identical.
"""

from __future__ import annotations

import dataclasses
import uuid

import pandas as pd
import pytest

from driftloop.core import bus
from tests.serving.helpers import fit_pipeline, register_model
from tests.store_fakes import read_store_frame, write_store_batch, write_store_labels, zone_names

BATCH = slice(4000, 4600)
LABELLED = 450
# Differ by store by design: where the rows are, which registered model (one per dataset) and when.
PER_STORE_COLUMNS = ["model_name", "model_run_id", bus.SCORED_AT_COLUMN]


def _unique(cfg, label: str):
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(cfg, name=f"telco_{label}_{suffix}", model_name=f"telco-{label}-{suffix}")


def _score_and_monitor(cfg, model, telco_frame) -> tuple[pd.DataFrame, object]:
    """Register ``model`` as champion, score one batch, land labels for part of it, monitor; returns the
    predictions and the monitoring run."""
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.serving.batch_scoring import score_pending_batches

    register_model(cfg, model, telco_frame, bus.CHAMPION)
    batch = telco_frame.iloc[BATCH]
    write_store_batch(cfg, batch, "b001")
    [scored] = score_pending_batches(cfg)["scored"]
    write_store_labels(cfg, batch.iloc[:LABELLED], "l001")
    result = monitor_predictions(cfg)
    assert result["skipped"] == [], result
    [item] = result["monitored"]
    assert score_pending_batches(cfg)["scored"] == [] and monitor_predictions(cfg)["monitored"] == []
    assert zone_names(cfg, "predictions") == ["b001.json", "b001.parquet"]
    return read_store_frame(scored["predictions_uri"]), get_client().get_run(item["monitoring_run_id"])


def test_a_batch_scored_and_monitored_on_s3_gives_the_local_predictions_and_metrics(
    driftloop_env, s3_env, telco_frame, monkeypatch
):
    from driftloop.core.config import load_dataset_config

    base = load_dataset_config("telco_churn")
    model = fit_pipeline(base, telco_frame)
    monkeypatch.delenv("DRIFTLOOP_DATA_URI", raising=False)
    local_predictions, local_run = _score_and_monitor(_unique(base, "local"), model, telco_frame)
    monkeypatch.setenv("DRIFTLOOP_DATA_URI", f"s3://{s3_env.new_bucket()}/zones")
    s3_predictions, s3_run = _score_and_monitor(_unique(base, "s3"), model, telco_frame)

    assert local_run.data.tags[bus.PREDICTIONS_URI_TAG].startswith("file://")
    assert s3_run.data.tags[bus.PREDICTIONS_URI_TAG].startswith("s3://")
    assert len(s3_predictions) == len(telco_frame.iloc[BATCH])
    pd.testing.assert_frame_equal(
        s3_predictions.drop(columns=PER_STORE_COLUMNS), local_predictions.drop(columns=PER_STORE_COLUMNS)
    )
    local_metrics, s3_metrics = local_run.data.metrics, s3_run.data.metrics
    assert s3_metrics[bus.LABELLED_ROWS] == LABELLED and s3_metrics[bus.ROWS] == len(s3_predictions)
    assert {bus.DRIFT_SHARE, bus.LIVE_F1, bus.LIVE_DROP} <= set(s3_metrics)
    assert set(s3_metrics) == set(local_metrics)
    for name, value in local_metrics.items():
        assert s3_metrics[name] == pytest.approx(value, abs=1e-12), name
    for tag in (bus.CURRENT_SAMPLE_TAG, bus.DRIFTED_COLUMN_NAMES_TAG, bus.DRIFT_METHODS_TAG):
        assert s3_run.data.tags.get(tag) == local_run.data.tags.get(tag), tag
