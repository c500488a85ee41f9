"""Lineage from all three ends, against a real (SQLite) MLflow with a tiny registered sklearn model."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from driftloop.core import bus
from driftloop.core.config import load_dataset_config
from driftloop.core.state import StatePaths, path_to_uri
from driftloop.core.storage import location, read_parquet
from driftloop.data import ingest, snapshots
from driftloop.governance import lineage
from tests.fakes import put_csv, put_parquet


@pytest.fixture(scope="module", params=["local", "s3"])
def cfg(request, mlflow_uri, tmp_path_factory):
    """Telco config with a model name of its own, so registry state of other tests cannot interfere; its data
    zones once in a folder and once in a bucket of the test S3 server (with an MLflow store of its own: the
    same rows make the same snapshot hash, which would find the other variant's runs)."""
    root = tmp_path_factory.mktemp("lineage")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRIFTLOOP_HOME", str(root / "home"))
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        patch.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps({"model_name": "lineage-test-telco"}))
        patch.setenv("DRIFTLOOP_PROFILE_MAX_ROWS", "0")
        patch.delenv("DRIFTLOOP_DATASET", raising=False)
        patch.delenv("DRIFTLOOP_CONFIG_DIR", raising=False)
        if request.param == "s3":
            server = request.getfixturevalue("s3_server")
            for key, value in server.env().items():
                patch.setenv(key, value)
            patch.setenv("DRIFTLOOP_DATA_URI", f"s3://{server.new_bucket()}/zones")
            patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        yield load_dataset_config("telco_churn")


@pytest.fixture(scope="module")
def trained(cfg, telco_frame):
    """Two batches (one with a quarantined row), a snapshot, a data run, and a registered model trained on
    it."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from driftloop.core.tracking import get_client, keyed_run

    paths = StatePaths.for_dataset(cfg)
    bad = telco_frame.iloc[100:160].copy()
    bad.loc[bad.index[0], "contract"] = "Lifetime"
    put_csv(telco_frame.iloc[:100], paths.landing_dir / "b001.csv")
    put_csv(bad, paths.landing_dir / "b002.csv")
    ingest.ingest_batches(cfg)
    snapshot = snapshots.build_snapshot(cfg)
    data_run = snapshots.record_snapshot(cfg, snapshot["snapshot_hash"])
    frame = read_parquet(location(snapshot["snapshot_uri"]))
    model = LogisticRegression(max_iter=200).fit(frame[["tenure", "monthly_charges"]], frame["churn"])
    client = get_client()
    tags = {bus.SNAPSHOT_HASH_TAG: snapshot["snapshot_hash"], bus.TRIGGER_ID_TAG: "manual-test"}
    with keyed_run(client, cfg.experiment_name("training"), tags) as run:
        mlflow.set_tags(
            {
                bus.SNAPSHOT_URI_TAG: snapshot["snapshot_uri"],
                bus.AIRFLOW_DAG_ID_TAG: "training_pipeline",
                bus.AIRFLOW_RUN_ID_TAG: "manual__2026-01-01T00:00:00",
                bus.TRIGGER_REASON_TAG: "manual",
            }
        )
        info = mlflow.sklearn.log_model(model, name=bus.MODEL_ARTIFACT)
        run_id = run.info.run_id
    version = mlflow.register_model(info.model_uri, cfg.registered_model_name).version
    for tag in (
        bus.SNAPSHOT_HASH_TAG,
        bus.SNAPSHOT_URI_TAG,
        bus.AIRFLOW_DAG_ID_TAG,
        bus.AIRFLOW_RUN_ID_TAG,
        bus.GIT_COMMIT_TAG,
    ):
        client.set_model_version_tag(
            cfg.registered_model_name, version, tag, client.get_run(run_id).data.tags[tag]
        )
    client.set_registered_model_alias(cfg.registered_model_name, "champion", version)
    predictions = paths.predictions_dir / "b003.parquet"
    put_parquet(
        pd.DataFrame(
            {
                "customer_id": ["A", "B"],
                "score": [0.1, 0.9],
                "prediction": ["No", "Yes"],
                "model_name": cfg.registered_model_name,
                "model_version": str(version),
                "model_run_id": run_id,
            }
        ),
        predictions,
    )
    with keyed_run(client, cfg.experiment_name("inference"), {bus.BATCH_ID_TAG: "b003"}):
        mlflow.set_tag(bus.PREDICTIONS_URI_TAG, path_to_uri(predictions))
    return {
        "snapshot": snapshot,
        "data_run_id": data_run["data_run_id"],
        "run_id": run_id,
        "version": str(version),
        "predictions": predictions,
    }


def test_trace_model_version_reaches_run_dag_commit_snapshot_and_batches(cfg, trained):
    traced = lineage.trace_model_version(cfg, trained["version"])
    assert traced["training_run_id"] == trained["run_id"]
    assert traced["snapshot_hash"] == trained["snapshot"]["snapshot_hash"]
    assert traced["airflow_dag_id"] == "training_pipeline"
    assert traced["airflow_run_id"] == "manual__2026-01-01T00:00:00"
    assert traced["git_commit"] and traced["git_commit"] != "None"
    assert traced["aliases"] == ["champion"]
    batches = {b["batch_id"]: b for b in traced["snapshot"]["batches"]}
    assert set(batches) == {"b001", "b002"}
    assert (batches["b002"]["rows_received"], batches["b002"]["rows_quarantined"]) == (60, 1)
    assert batches["b002"]["reason_counts"] == {"unknown_category:contract": 1}
    assert lineage.trace_model_version(cfg, "champion")["model_version"] == trained["version"]


def test_trace_predictions_reaches_model_version_and_snapshot(cfg, trained):
    traced = lineage.trace_predictions(cfg, trained["predictions"])
    assert traced["rows"] == 2 and traced["batch_id"] == "b003"
    [model] = traced["models"]
    assert (model["model_version"], model["model_run_id"], model["rows"]) == (
        trained["version"],
        trained["run_id"],
        2,
    )
    assert model["lineage"]["snapshot_hash"] == trained["snapshot"]["snapshot_hash"]
    assert model["lineage"]["snapshot"]["rows"] == 159


def test_trace_snapshot_reaches_batches_quarantine_and_models(cfg, trained):
    short = trained["snapshot"]["snapshot_hash"][:10]
    traced = lineage.trace_snapshot(cfg, short)
    assert traced["snapshot_hash"] == trained["snapshot"]["snapshot_hash"]
    assert [b["batch_id"] for b in traced["batches"]] == ["b001", "b002"]
    assert (traced["rows_received"], traced["rows_quarantined"], traced["rows"]) == (160, 1, 159)
    assert traced["data_run_id"] == trained["data_run_id"]
    assert [r["run_id"] for r in traced["training_runs"]] == [trained["run_id"]]
    assert traced["model_versions"] == [
        {
            "model_version": trained["version"],
            "run_id": trained["run_id"],
            "aliases": ["champion"],
            "gate": None,
        }
    ]


def test_lineage_errors_name_what_is_missing(cfg, trained, tmp_path):
    with pytest.raises(lineage.LineageError, match="no version or alias '999'"):
        lineage.trace_model_version(cfg, 999)
    with pytest.raises(lineage.LineageError, match="0 snapshots match"):
        lineage.trace_snapshot(cfg, "deadbeefdeadbeef")
    other = tmp_path / "other.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(other)
    with pytest.raises(lineage.LineageError, match="lacks lineage columns"):
        lineage.trace_predictions(cfg, other)


def test_lineage_cli_from_each_end(cfg, trained, capsys):
    from driftloop.cli import main

    assert main(["lineage", "model", trained["version"]]) == 0
    assert json.loads(capsys.readouterr().out)["training_run_id"] == trained["run_id"]
    assert main(["lineage", "predictions", str(trained["predictions"])]) == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["model_version"] == trained["version"]
    assert main(["lineage", "snapshot", trained["snapshot"]["snapshot_hash"]]) == 0
    assert json.loads(capsys.readouterr().out)["model_versions"][0]["run_id"] == trained["run_id"]
    assert main(["lineage", "snapshot", "0000000000"]) == 1
