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
    from driftloop.serving.scoring_parts import score_pending_batches

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


class BrokenModel:
    """A model that fails on every call, as a bad version would."""

    def predict_proba(self, frame):
        raise ValueError("the model broke on these rows")

    predict = predict_proba


@pytest.mark.parametrize("data_store", ["s3"], indirect=True)
def test_a_model_failure_while_streaming_from_s3_stays_the_models_and_writes_nothing(
    data_store, telco_cfg, telco_frame
):
    """The batch is streamed from the store while the model scores it: a model's error is not the store's."""
    from driftloop.core.errors import StorageError
    from driftloop.core.state import StatePaths
    from driftloop.core.task_types import BINARY, Decision
    from driftloop.serving.batch_scoring import score_file

    manifest = write_store_batch(telco_cfg, telco_frame.iloc[:300], "b_broken")
    info = {"model_name": "m", "model_version": "1", "model_run_id": "r"}
    output = StatePaths.for_dataset(telco_cfg).predictions_dir / "b_broken.parquet"
    with pytest.raises(ValueError, match="the model broke") as raised:
        score_file(
            BrokenModel(),
            info,
            telco_cfg,
            StatePaths.for_dataset(telco_cfg).batches_dir / "b_broken.parquet",
            output,
            Decision(BINARY, ("No", "Yes"), 0.5),
        )
    assert not isinstance(raised.value, StorageError)
    assert manifest["batch_uri"].startswith("s3://")
    assert zone_names(telco_cfg, "predictions") == []


@pytest.fixture
def closed_endpoint(driftloop_env, monkeypatch):
    """The data zones on S3 at a port nobody listens on (fsspec's cached clients dropped around the test)."""
    import socket

    import s3fs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for key, value in {
        "AWS_ACCESS_KEY_ID": "driftloop-test-key",
        "AWS_SECRET_ACCESS_KEY": "driftloop-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(key, value)
    uri = "s3://driftloop-closed/zones"
    monkeypatch.setenv("DRIFTLOOP_DATA_URI", uri)
    s3fs.S3FileSystem.clear_instance_cache()
    yield uri
    s3fs.S3FileSystem.clear_instance_cache()


def test_an_unreachable_store_is_a_storage_error_naming_the_uri(closed_endpoint, telco_cfg):
    from driftloop.core.errors import StorageError
    from driftloop.core.state import StatePaths
    from driftloop.monitoring.partitions import iter_batches
    from driftloop.serving.batch_scoring import committed_predictions
    from driftloop.serving.online.labels import read_accepted_labels, write_label_file

    root = f"{closed_endpoint}/{telco_cfg.name}"
    predictions = f"{root}/predictions/b001.parquet"
    with pytest.raises(StorageError, match=f"unreachable .*{predictions}"):
        next(iter_batches(predictions, [telco_cfg.id_column], telco_cfg))
    with pytest.raises(StorageError, match=f"unreachable .*{root}/predictions/b001"):
        committed_predictions(telco_cfg, "b001", None)
    with pytest.raises(StorageError, match=f"unreachable .*{root}/labels"):
        read_accepted_labels(telco_cfg)
    with pytest.raises(StorageError, match=f"unreachable .*{root}/landing/labels/"):
        write_label_file(b"customer_id,churn\n", StatePaths.for_dataset(telco_cfg).labels_landing_dir)
