"""Inference: the champion resolved at run time, chunked scoring that matches one-shot scoring,
idempotency, on a local folder and on S3 (moto's server) alike (``data_store``)."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from driftloop.core import bus
from driftloop.core.errors import NoChampionError, Verdict
from driftloop.core.registry import load_model
from driftloop.core.state import StatePaths
from driftloop.core.task_types import BINARY, Decision
from driftloop.serving import batch_scoring, scoring_parts
from tests.fakes import write_batch
from tests.store_fakes import read_store_frame, write_store_batch, zone_names


@pytest.fixture
def private_mlflow(driftloop_env, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv(
        "DRIFTLOOP_CONFIG_OVERRIDES",
        json.dumps({"inference": {"chunk_rows": 128}, "training": {"models": ["lr"]}}),
    )


def _register(cfg, frame, flip: bool = False, threshold: float = 0.5) -> str:
    """Register a small sklearn pipeline on raw features, deciding at ``threshold``; returns its version."""
    import mlflow
    import mlflow.sklearn
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from driftloop.core.tracking import ensure_experiment, get_client, mlflow_scope

    experiment_id = ensure_experiment(get_client(), "tests/inference-models")
    pre = ColumnTransformer(
        [
            ("num", SimpleImputer(), list(cfg.numeric_features)),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(cfg.categorical_features)),
        ]
    )
    y = (frame[cfg.target] == cfg.positive_label).astype(int)
    model = Pipeline([("pre", pre), ("clf", make_pipeline(LogisticRegression(max_iter=300)))])
    model.fit(frame[cfg.features], 1 - y if flip else y)
    # The fluent calls use the settings' tracking URI, as training does (another test may have left a global
    # one).
    with mlflow_scope(), mlflow.start_run(experiment_id=experiment_id), tempfile.TemporaryDirectory() as tmp:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=cfg.registered_model_name,
            serialization_format="cloudpickle",
        )
        reference = Path(tmp) / Path(bus.REFERENCE_ARTIFACT).name
        frame[[cfg.id_column, *cfg.features]].head(500).to_parquet(reference)  # the explainer's background
        mlflow.log_artifact(str(reference), str(Path(bus.REFERENCE_ARTIFACT).parent))
    version = str(info.registered_model_version)
    for key, value in Decision(BINARY, ("No", "Yes"), threshold).to_tags().items():  # what training records
        get_client().set_model_version_tag(cfg.registered_model_name, version, key, value)
    return version


def test_no_champion_is_a_clear_error(private_mlflow, telco_frame):
    from driftloop.core.config import load_dataset_config

    cfg = load_dataset_config("telco_churn")
    write_batch(cfg, telco_frame.head(10), "batch_001")
    with pytest.raises(NoChampionError, match="has alias 'champion'") as excinfo:
        scoring_parts.score_pending_batches(cfg)
    assert isinstance(excinfo.value, Verdict)  # retrying cannot create a champion: the task fails fast


def test_scores_pending_batches_with_the_champion_chunk_by_chunk(data_store, private_mlflow, telco_frame):
    from driftloop.core.config import load_dataset_config
    from driftloop.core.storage import location, read_json
    from driftloop.core.tracking import get_client

    cfg = load_dataset_config("telco_churn")
    version = _register(cfg, telco_frame.head(3000), threshold=0.35)
    client = get_client()
    client.set_registered_model_alias(cfg.registered_model_name, "champion", version)

    batch = telco_frame.iloc[3000:3500]
    batch = batch.set_index(pd.Index([0] * len(batch)))  # duplicate index: must not multiply rows
    write_store_batch(cfg, batch, "batch_001")
    result = scoring_parts.score_pending_batches(cfg)

    assert result["model_version"] == version
    assert [s["batch_id"] for s in result["scored"]] == ["batch_001"]
    predictions_uri = result["scored"][0]["predictions_uri"]
    assert predictions_uri.startswith("s3://" if data_store.startswith("s3://") else "file://")
    # One parquet and its manifest (the commit), no temporary name left behind.
    assert zone_names(cfg, "predictions") == ["batch_001.json", "batch_001.parquet"]
    committed = read_json(StatePaths.for_dataset(cfg).predictions_dir / "batch_001.json")
    assert committed["predictions_uri"] == predictions_uri and committed["rows"] == 500
    assert committed["model_version"] == version and committed["chunks"] == 4
    content = location(predictions_uri).read_bytes()
    assert committed["sha256"] == hashlib.sha256(content).hexdigest()
    predictions = read_store_frame(predictions_uri)
    assert len(predictions) == 500
    assert result["scored"][0]["chunks"] == 4  # ceil(500 / 128) predict calls, never one call for the batch
    assert list(predictions["customer_id"]) == list(batch["customer_id"])
    one_shot = load_model(f"models:/{cfg.registered_model_name}/{version}").predict_proba(
        batch[cfg.features].reset_index(drop=True)
    )[:, 1]
    assert predictions["score"].to_numpy() == pytest.approx(one_shot)
    # The dataset's own labels, decided at the version's recorded threshold (0.35), not the config's 0.5.
    assert set(predictions["prediction"]) == {"Yes", "No"}
    assert ((predictions["score"] >= 0.35) == (predictions["prediction"] == "Yes")).all()
    assert ((predictions["score"] >= 0.35) & (predictions["score"] < 0.5)).any()
    assert set(predictions["model_version"]) == {version}
    # Top-3 reasons per prediction, in the dataset's own feature names, strongest first.
    for rank in (1, 2, 3):
        assert set(predictions[bus.reason_column(rank, "feature")]) <= set(cfg.features)
    strongest = predictions[bus.reason_column(1, "contribution")].abs()
    assert (strongest >= predictions[bus.reason_column(3, "contribution")].abs()).all()
    row = batch.reset_index(drop=True).iloc[0]
    assert predictions[bus.reason_column(1, "value")].iloc[0] == str(
        row[predictions[bus.reason_column(1, "feature")].iloc[0]]
    )

    run = client.get_run(result["scored"][0]["inference_run_id"])
    assert run.data.tags[bus.BATCH_ID_TAG] == "batch_001"
    assert run.data.tags[bus.PREDICTIONS_URI_TAG] == result["scored"][0]["predictions_uri"]
    assert run.data.tags[bus.EXPLAIN_METHOD_TAG] == "linear"
    assert run.data.metrics[bus.ROWS] == 500
    assert run.data.metrics[bus.POSITIVE_RATE] == pytest.approx((predictions["prediction"] == "Yes").mean())

    assert scoring_parts.score_pending_batches(cfg)["scored"] == []  # idempotent: nothing new
    assert zone_names(cfg, "predictions") == ["batch_001.json", "batch_001.parquet"]
    assert location(predictions_uri).read_bytes() == content  # not written again


def test_alias_moved_between_runs_is_used_by_the_next_run(private_mlflow, telco_frame):
    from driftloop.core.config import load_dataset_config
    from driftloop.core.tracking import get_client

    cfg = load_dataset_config("telco_churn")
    v1 = _register(cfg, telco_frame.head(2000))
    v2 = _register(cfg, telco_frame.head(2000), flip=True)
    client = get_client()
    client.set_registered_model_alias(cfg.registered_model_name, "champion", v1)
    write_batch(cfg, telco_frame.iloc[4000:4100], "batch_001")
    first = scoring_parts.score_pending_batches(cfg)
    client.set_registered_model_alias(cfg.registered_model_name, "champion", v2)  # as in the MLflow UI
    write_batch(cfg, telco_frame.iloc[4100:4200], "batch_002")
    second = scoring_parts.score_pending_batches(cfg)
    assert (first["model_version"], second["model_version"]) == (v1, v2)
    scores = pd.read_parquet(second["scored"][0]["predictions_uri"])
    assert set(scores["model_version"]) == {v2}


def test_partition_without_a_manifest_is_scored_again(data_store, private_mlflow, telco_frame):
    from driftloop.core.config import load_dataset_config
    from driftloop.core.storage import write_bytes_atomic
    from driftloop.core.tracking import get_client

    cfg = load_dataset_config("telco_churn")
    version = _register(cfg, telco_frame.head(2000))
    get_client().set_registered_model_alias(cfg.registered_model_name, "champion", version)
    write_store_batch(cfg, telco_frame.iloc[5000:5050], "batch_007")
    paths = StatePaths.for_dataset(cfg)
    # Data without its manifest: a crash (or an older version) left it; it is not committed.
    write_bytes_atomic(paths.predictions_dir / "batch_007.parquet", b"not the predictions of this batch")

    assert [m["batch_id"] for m in batch_scoring.pending_batches(cfg)] == ["batch_007"]
    result = scoring_parts.score_pending_batches(cfg)
    assert len(read_store_frame(result["scored"][0]["predictions_uri"])) == 50
    assert batch_scoring.pending_batches(cfg) == []
    assert zone_names(cfg, "predictions") == ["batch_007.json", "batch_007.parquet"]


def test_committed_predictions_without_a_run_get_their_run_and_are_not_scored_again(
    data_store, private_mlflow, telco_frame, monkeypatch
):
    """A crash after the manifest (the commit) and before the inference run: the rerun records the run from
    the manifest, by the version that scored the batch, and writes no prediction again."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.storage import location, read_json
    from driftloop.core.tracking import find_finished_run, get_client

    cfg = load_dataset_config("telco_churn")
    v1 = _register(cfg, telco_frame.head(2000))
    v2 = _register(cfg, telco_frame.head(2000), flip=True)
    client = get_client()
    client.set_registered_model_alias(cfg.registered_model_name, "champion", v1)
    write_store_batch(cfg, telco_frame.iloc[5000:5300], "batch_008")

    def crash(*args, **kwargs):
        raise RuntimeError("worker killed before the run was recorded")

    with monkeypatch.context() as patched:
        patched.setattr(batch_scoring, "keyed_run", crash)
        with pytest.raises(RuntimeError, match="worker killed"):
            scoring_parts.score_pending_batches(cfg)
    paths = StatePaths.for_dataset(cfg)
    committed = read_json(paths.predictions_dir / "batch_008.json")
    content = location(committed["predictions_uri"]).read_bytes()
    assert (
        find_finished_run(client, cfg.experiment_name("inference"), {bus.BATCH_ID_TAG: "batch_008"}) is None
    )
    assert [m["batch_id"] for m in batch_scoring.pending_batches(cfg)] == ["batch_008"]

    client.set_registered_model_alias(cfg.registered_model_name, "champion", v2)  # moved meanwhile
    monkeypatch.setattr(batch_scoring, "score_frames", crash)  # scoring again would fail the test
    result = scoring_parts.score_pending_batches(cfg)

    [recorded] = result["scored"]
    assert recorded["batch_id"] == "batch_008" and recorded["model_version"] == v1 and recorded["rows"] == 300
    run = client.get_run(recorded["inference_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags[bus.MODEL_VERSION_TAG] == v1  # the version that scored the rows, not today's
    assert run.data.tags[bus.PREDICTIONS_URI_TAG] == committed["predictions_uri"]
    assert run.data.metrics[bus.ROWS] == 300
    assert run.data.metrics[bus.POSITIVE_RATE] == pytest.approx(
        committed["output_metrics"][bus.POSITIVE_RATE]
    )
    assert location(committed["predictions_uri"]).read_bytes() == content
    assert zone_names(cfg, "predictions") == ["batch_008.json", "batch_008.parquet"]
    assert batch_scoring.pending_batches(cfg) == []
    assert scoring_parts.score_pending_batches(cfg)["scored"] == []
