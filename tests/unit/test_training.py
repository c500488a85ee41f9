"""Training stage: snapshot resolution, holdout metrics, and one real (fast) PyCaret training per module.

The module trains once (logistic regression, 2 folds, no tuning, 1,500 customers, about 20 s) under a unique
dataset and model name, so it never sees other tests' runs in the session's MLflow store.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from types import SimpleNamespace

import pytest

from driftloop.core import bus
from tests.conftest import write_snapshot
from tests.constants import FAST_OVERRIDES

SNAPSHOT_ROWS = 1500
TRIGGER = {
    "reason": "drift",
    "airflow_dag_id": "training_pipeline",
    "airflow_run_id": "asset_triggered__1",
    "monitoring_run_id": "mon-123",
}


def unique_cfg(cfg):
    """``cfg`` under a fresh dataset and model name."""
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(cfg, name=f"telco_churn_{suffix}", model_name=f"telco-churn-{suffix}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mlflow_uri, telco_frame):
    """One fast training on 1,500 customers; the environment stays set for every test of the module."""
    from driftloop.core.config import load_dataset_config
    from driftloop.training.train import train_model

    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("training-home")
        mp.setenv("DRIFTLOOP_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        mp.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps(FAST_OVERRIDES))
        mp.setenv("DRIFTLOOP_N_JOBS", "1")
        mp.delenv("DRIFTLOOP_DATASET", raising=False)
        mp.delenv("DRIFTLOOP_CONFIG_DIR", raising=False)
        cfg = unique_cfg(load_dataset_config("telco_churn"))
        frame = telco_frame.sample(SNAPSHOT_ROWS, random_state=7).reset_index(drop=True)
        manifest = write_snapshot(cfg, frame)
        result = train_model(cfg, trigger=TRIGGER)
        yield SimpleNamespace(cfg=cfg, frame=frame, manifest=manifest, result=result)


@pytest.fixture(scope="module")
def client(trained):
    from driftloop.core.tracking import get_client

    return get_client()


def test_train_registers_version_one_as_challenger(trained, client):
    cfg, result = trained.cfg, trained.result
    name = cfg.registered_model_name
    assert result["model_name"] == name
    assert result["model_version"] == "1"
    assert result["model_uri"] == f"models:/{name}/1"
    assert result["reused"] is False
    assert result["snapshot_hash"] == trained.manifest["snapshot_hash"]
    assert result["best_model"] == "LogisticRegression"
    assert 0.75 < result["metrics"]["holdout_auc"] < 0.95
    assert 0.4 < result["metrics"]["holdout_f1"] < 0.8
    assert set(result["timings"]) == {
        "setup_seconds",
        "compare_seconds",
        "tune_seconds",
        "finalize_seconds",
        "threshold_seconds",
        "logging_seconds",
    }
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "1"
    with pytest.raises(Exception, match="alias"):
        client.get_model_version_by_alias(name, "champion")


def test_train_run_carries_contract_tags_params_and_metrics(trained, client):
    cfg, result = trained.cfg, trained.result
    run = client.get_run(result["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == f"driftloop/{cfg.name}/training"
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    assert tags[bus.SNAPSHOT_HASH_TAG] == trained.manifest["snapshot_hash"]
    assert tags[bus.SNAPSHOT_URI_TAG] == trained.manifest["snapshot_uri"]
    assert tags[bus.TRIGGER_ID_TAG] == "asset_triggered__1"
    assert tags[bus.TRIGGER_REASON_TAG] == "drift"
    assert tags[bus.AIRFLOW_DAG_ID_TAG] == "training_pipeline"
    assert tags[bus.AIRFLOW_RUN_ID_TAG] == "asset_triggered__1"
    assert tags[bus.MONITORING_RUN_ID_TAG] == "mon-123"
    assert tags[bus.GIT_COMMIT_TAG]
    assert bus.EXPLAIN_ERROR_TAG not in tags
    assert metrics["train_rows"] + metrics["holdout_rows"] == 1500
    assert metrics["holdout_rows"] == pytest.approx(300, abs=45)  # 20% by id hash
    # holdout_auc itself is recomputed from the model and the holdout in the test below.
    phases = ("setup_seconds", "compare_seconds", "tune_seconds", "finalize_seconds", "threshold_seconds")
    assert metrics["train_seconds"] == pytest.approx(sum(metrics[p] for p in phases))
    assert metrics["compare_seconds"] > 0 and metrics["finalize_seconds"] > 0
    assert params["models"] == "lr" and params["folds"] == "2" and params["tune_iter"] == "0"
    assert params["best_model"] == "LogisticRegression" and params["seed"] == "42"

    version = client.get_model_version(cfg.registered_model_name, "1")
    assert version.run_id == result["run_id"]
    assert version.tags[bus.SNAPSHOT_HASH_TAG] == trained.manifest["snapshot_hash"]
    assert version.tags[bus.TRIGGER_ID_TAG] == "asset_triggered__1"


def test_train_logs_holdout_reference_leaderboard_and_explanations(trained, client, tmp_path):
    import pandas as pd

    cfg, run_id = trained.cfg, trained.result["run_id"]
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {bus.LEADERBOARD_ARTIFACT, "holdout", "reference", bus.EVIDENCE_DIR} <= top
    assert {a.path for a in client.list_artifacts(run_id, bus.EVIDENCE_DIR)} >= {
        f"{bus.EVIDENCE_DIR}/{bus.SHAP_PLOT_FILENAME}",
        f"{bus.EVIDENCE_DIR}/{bus.SHAP_CSV_FILENAME}",
        bus.EVIDENCE_ARTIFACT,
    }
    holdout = pd.read_parquet(client.download_artifacts(run_id, "holdout/holdout.parquet", str(tmp_path)))
    reference = pd.read_parquet(
        client.download_artifacts(run_id, "reference/reference.parquet", str(tmp_path))
    )
    leaderboard = pd.read_csv(client.download_artifacts(run_id, "leaderboard.csv", str(tmp_path)))
    importance = pd.read_csv(
        client.download_artifacts(run_id, f"{bus.EVIDENCE_DIR}/{bus.SHAP_CSV_FILENAME}", str(tmp_path))
    )

    assert list(holdout.columns) == [cfg.id_column, *cfg.features, cfg.target]
    assert len(holdout) == run_holdout_rows(client, run_id)
    # Split by id hash, not stratified: the churn rate stays close to the snapshot's.
    snapshot_rate = (trained.frame[cfg.target] == "Yes").mean()
    assert (holdout[cfg.target] == "Yes").mean() == pytest.approx(snapshot_rate, abs=0.05)
    assert list(reference.columns) == [cfg.id_column, *cfg.features, bus.PREDICTION_COLUMN, bus.SCORE_COLUMN]
    # The drift reference is the holdout with out-of-sample scores (fewer rows than reference_rows here).
    assert set(reference[cfg.id_column]) == set(holdout[cfg.id_column])
    assert reference["score"].between(0, 1).all() and reference["score"].std() > 0.05
    # Each reference row carries the model's own score for that customer (read from the shared holdout
    # scores).
    from driftloop.core.registry import load_model

    model = load_model(trained.result["model_uri"])
    expected = model.predict_proba(reference[cfg.features])[:, 1]
    assert reference["score"].to_numpy() == pytest.approx(expected, abs=1e-9)
    assert leaderboard["Model"].tolist() == ["Logistic Regression"]
    assert importance["mean_abs_shap"].iloc[0] > 0
    assert sorted(importance["feature"]) == sorted(cfg.features)  # one row per original feature


def test_registered_model_reproduces_logged_holdout_auc(trained, client, tmp_path):
    import pandas as pd
    from sklearn.metrics import f1_score, roc_auc_score

    from driftloop.core.registry import load_model

    cfg, result = trained.cfg, trained.result
    holdout = pd.read_parquet(
        client.download_artifacts(result["run_id"], "holdout/holdout.parquet", str(tmp_path))
    )
    model = load_model(result["model_uri"])
    proba = model.predict_proba(holdout[cfg.features].reset_index(drop=True))[:, 1]
    run = client.get_run(result["run_id"])
    version = client.get_model_version(cfg.registered_model_name, "1")
    # Recomputed here with sklearn from the registered model and the logged holdout rows; the run's metric,
    # the version's tag (what gates and the model card read) and the returned value must all equal it.
    auc = roc_auc_score(holdout[cfg.target] == "Yes", proba)
    assert 0.6 < auc < 1.0, f"a model no better than chance ({auc:.3f}) would make this check meaningless"
    assert run.data.metrics["holdout_auc"] == pytest.approx(auc, abs=1e-6)
    assert float(version.tags[bus.holdout_version_tag("holdout_auc")]) == pytest.approx(auc, abs=1e-6)
    assert result["metrics"]["holdout_auc"] == pytest.approx(auc, abs=1e-6)
    # The logged F1 is the one at the version's recorded threshold, not at 0.5.
    threshold = float(run.data.tags[bus.THRESHOLD_TAG])
    f1 = f1_score(holdout[cfg.target] == "Yes", proba >= threshold)
    assert run.data.metrics["holdout_f1"] == pytest.approx(f1, abs=1e-6)
    assert result["metrics"]["holdout_f1"] == pytest.approx(f1, abs=1e-6)


def test_training_logs_a_calibration_map_that_estimates_unseen_customers(
    trained, client, tmp_path, telco_frame
):
    """Issue 27: the version's calibration map (fitted on out-of-fold scores of the training rows) is logged
    with its method and ECE; applied to the version's scores of the 5,500 customers outside the snapshot,
    CBPE comes close to their realised AUC and F1 (recomputed here with sklearn).

    The tolerances are wider than the issue's 0.03 because this fixture cross-validates on 2 folds of 1,200
    rows: fold models trained on 600 rows are worse than the final model, so a map fitted on their scores
    shrinks the final model's scores and under-states its AUC (by about 0.04 here; 0.015 with the shipped 5
    folds, see tests/unit/test_estimation.py and bench/bench_estimation.py)."""
    from sklearn.metrics import f1_score, roc_auc_score

    from driftloop.core.registry import load_model
    from driftloop.core.task_types import read_decision
    from driftloop.monitoring.estimation import estimate_classification, load_calibration_map

    cfg, run_id = trained.cfg, trained.result["run_id"]
    run = client.get_run(run_id)
    with open(client.download_artifacts(run_id, bus.CALIBRATION_MAP_ARTIFACT, str(tmp_path))) as handle:
        cmap = load_calibration_map(handle.read())
    assert cmap.method == run.data.tags[bus.CALIBRATION_METHOD_TAG] in ("isotonic", "platt")
    assert cmap.classes == ("No", "Yes")
    metrics = run.data.metrics
    assert metrics[bus.CALIBRATION_OOF_ROWS] == metrics[bus.TRAIN_ROWS]  # every training row, out of fold
    assert 0 <= metrics[bus.CALIBRATION_ECE_AFTER] < 0.1 and 0 <= metrics[bus.HOLDOUT_ECE_AFTER] < 0.15
    assert cmap.method == min(("platt", "isotonic"), key=lambda m: metrics[bus.calibration_brier_metric(m)])
    from driftloop.governance.model_card import build_card, gather_facts

    card = build_card(cfg, gather_facts(cfg, client, trained.result["model_version"], []))
    ece = f"{metrics[bus.HOLDOUT_ECE_BEFORE]:.4f} → {metrics[bus.HOLDOUT_ECE_AFTER]:.4f}"
    assert f"Calibration: **{cmap.method}**" in card["evaluation"] and ece in card["evaluation"]

    unseen = telco_frame[~telco_frame[cfg.id_column].isin(trained.frame[cfg.id_column])]
    assert len(unseen) > 5000
    outputs = read_decision(cfg, run.data.tags).predict(
        load_model(trained.result["model_uri"]), unseen[cfg.features]
    )
    truth = unseen[cfg.target].to_numpy() == "Yes"
    auc = roc_auc_score(truth, outputs[bus.SCORE_COLUMN])
    f1 = f1_score(truth, outputs[bus.PREDICTION_COLUMN] == "Yes")
    estimated_auc = estimate_classification(cmap, outputs, "AUC", level=0.95, seed=1)
    estimated_f1 = estimate_classification(cmap, outputs, "F1", level=0.95, seed=1)
    assert estimated_auc.rows == len(unseen)
    assert abs(estimated_auc.estimate - auc) < 0.06, (estimated_auc, auc)
    assert abs(estimated_f1.estimate - f1) < 0.04, (estimated_f1, f1)


def test_registered_model_preprocesses_with_driftloops_pipeline(trained, tmp_path):
    from sklearn.compose import ColumnTransformer

    from driftloop.core.registry import load_model

    model = load_model(trained.result["model_uri"])
    steps = dict(model.steps)
    assert list(steps)[:-1] == ["preprocess"], "PyCaret's own preprocessing steps must not be in the model"
    encode = steps["preprocess"].transformer.named_steps["encode"]
    assert isinstance(encode, ColumnTransformer)
    out = model[:-1].transform(trained.frame[trained.cfg.features].head(50))
    assert {"tenure", "contract_Two year"} <= set(out.columns)


def test_threshold_is_chosen_on_training_folds_and_recorded_on_run_and_version(trained, client):
    cfg, result = trained.cfg, trained.result
    run = client.get_run(result["run_id"])
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    assert tags[bus.TASK_TAG] == "binary" and json.loads(tags[bus.CLASSES_TAG]) == ["No", "Yes"]
    assert tags[bus.THRESHOLD_OBJECTIVE_TAG] == "f1"
    threshold = float(tags[bus.THRESHOLD_TAG])
    assert metrics[bus.THRESHOLD_METRIC] == pytest.approx(threshold, abs=1e-6)
    # Churners are ~27%: the F1-optimal cut sits well below 0.5 on any reasonable model.
    assert 0.1 < threshold < 0.5
    assert 0.5 < metrics[bus.THRESHOLD_OBJECTIVE_VALUE] < 0.8  # out-of-fold F1 at that threshold
    # Out-of-fold scores of the training rows only: every training row, no holdout row.
    assert int(params["threshold_oof_rows"]) == metrics["train_rows"]
    assert tags[bus.SELECTION_TAG] == f"all {int(metrics['train_rows'])} training rows"
    version = client.get_model_version(cfg.registered_model_name, result["model_version"])
    assert version.tags[bus.THRESHOLD_TAG] == tags[bus.THRESHOLD_TAG]
    assert version.tags[bus.CLASSES_TAG] == tags[bus.CLASSES_TAG]


def test_retry_with_same_trigger_reuses_run_and_version(trained, client):
    from driftloop.core.tracking import search_runs
    from driftloop.training.train import train_model

    cfg, first = trained.cfg, trained.result
    again = train_model(cfg, trigger=TRIGGER)
    assert again["reused"] is True
    assert (again["run_id"], again["model_version"]) == (first["run_id"], "1")
    assert again["metrics"] == pytest.approx(first["metrics"])
    versions = client.search_model_versions(f"name = '{cfg.registered_model_name}'")
    assert [str(v.version) for v in versions] == ["1"]
    runs = search_runs(client, cfg.experiment_name("training"), {bus.TRIGGER_ID_TAG: "asset_triggered__1"})
    assert len(runs) == 1


def test_retry_after_crash_past_registration_finishes_without_retraining(trained, client):
    """A run that registered its model but crashed before tagging is completed, not trained again."""
    import mlflow

    from driftloop.core.settings import Settings
    from driftloop.core.tracking import ensure_experiment
    from driftloop.training.keys import training_key
    from driftloop.training.train import train_model

    cfg = unique_cfg(trained.cfg)
    snapshot_hash = trained.manifest["snapshot_hash"]
    experiment_id = ensure_experiment(client, cfg.experiment_name("training"))
    key = training_key(cfg, snapshot_hash, Settings.from_env())
    key_tags = {bus.TRAINING_KEY_TAG: key, bus.TRIGGER_ID_TAG: "crashed__1"}
    crashed = client.create_run(experiment_id, tags=key_tags)
    client.log_metric(crashed.info.run_id, "holdout_auc", 0.81)
    source = client.get_model_version(trained.cfg.registered_model_name, "1").source
    client.create_registered_model(cfg.registered_model_name)
    client.create_model_version(cfg.registered_model_name, source, run_id=crashed.info.run_id)
    client.set_terminated(crashed.info.run_id, status="FAILED")

    result = train_model(
        cfg, snapshot_uri=trained.manifest["snapshot_uri"], trigger={"airflow_run_id": "crashed__1"}
    )

    assert result["reused"] is True
    assert (result["run_id"], result["model_version"]) == (crashed.info.run_id, "1")
    assert len(client.search_model_versions(f"name = '{cfg.registered_model_name}'")) == 1
    assert str(client.get_model_version_by_alias(cfg.registered_model_name, "challenger").version) == "1"
    assert (
        client.get_model_version(cfg.registered_model_name, "1").tags[bus.holdout_version_tag("holdout_auc")]
        == "0.810000"
    )
    assert mlflow.active_run() is None


def test_a_snapshot_on_object_storage_trains_as_a_local_one(
    driftloop_env, s3_data_uri, s3_server, telco_frame, monkeypatch
):
    """Training reads its snapshot from the bucket; the run and the version name it by its ``s3://`` URI."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.tracking import get_client
    from driftloop.training.train import train_model

    monkeypatch.setenv("DRIFTLOOP_N_JOBS", "1")
    cfg = unique_cfg(load_dataset_config("telco_churn"))
    frame = telco_frame.sample(800, random_state=11).reset_index(drop=True)
    manifest = write_snapshot(cfg, frame)
    assert manifest["snapshot_uri"].startswith(f"{s3_data_uri}/{cfg.name}/snapshots/")
    result = train_model(cfg, trigger={"reason": "manual", "airflow_run_id": "manual__s3"})
    assert (result["model_version"], result["snapshot_hash"]) == ("1", manifest["snapshot_hash"])
    run = get_client().get_run(result["run_id"])
    assert run.data.tags[bus.SNAPSHOT_URI_TAG] == manifest["snapshot_uri"]
    assert run.data.metrics["train_rows"] + run.data.metrics["holdout_rows"] == 800
    bucket = s3_data_uri.removeprefix("s3://").split("/", 1)[0]
    assert any(key.endswith(".parquet") for key in s3_server.keys(bucket, f"zones/{cfg.name}/snapshots/"))
    assert not (driftloop_env / "data").exists()  # nothing of the data zones on the local disk


def test_train_without_snapshot_names_the_folder(data_store, telco_cfg):
    from driftloop.core.errors import SnapshotNotFoundError, Verdict
    from driftloop.training.train import train_model

    with pytest.raises(SnapshotNotFoundError, match=r"no training snapshot in .*snapshots"):
        train_model(telco_cfg)
    with pytest.raises(SnapshotNotFoundError, match="is not a snapshot") as excinfo:
        train_model(telco_cfg, snapshot_uri=f"{data_store}/missing.parquet")
    assert isinstance(excinfo.value, Verdict)  # retrying cannot conjure a snapshot: the task fails fast


def test_one_resolver_finds_snapshots_by_recency_uri_path_and_hash_prefix(
    data_store, telco_cfg, telco_frame, tmp_path
):
    from driftloop.core.errors import SnapshotNotFoundError
    from driftloop.core.state import uri_to_path
    from driftloop.data.snapshots import canonical_hash, read_snapshot_frame, resolve_snapshot

    old = write_snapshot(telco_cfg, telco_frame.head(50), created_at="2026-01-01T00:00:00+00:00")
    new = write_snapshot(telco_cfg, telco_frame.tail(50), created_at="2026-02-01T00:00:00+00:00")
    assert resolve_snapshot(telco_cfg)["snapshot_hash"] == new["snapshot_hash"]
    assert old["snapshot_uri"].startswith("s3://" if data_store.startswith("s3://") else "file://")
    for ref in (old["snapshot_uri"], str(uri_to_path(old["snapshot_uri"])), old["snapshot_hash"][:10]):
        assert resolve_snapshot(telco_cfg, ref)["snapshot_hash"] == old["snapshot_hash"], ref
    # The hash in the manifest is the hash of the rows it stores: one identity, whoever wrote it.
    assert canonical_hash(read_snapshot_frame(telco_cfg, old)) == old["snapshot_hash"]
    # The same rows in another order are the same snapshot.
    again = write_snapshot(telco_cfg, telco_frame.head(50).iloc[::-1])
    assert (again["snapshot_hash"], again["created"]) == (old["snapshot_hash"], False)
    stray = tmp_path / "stray.parquet"
    telco_frame.head(5).to_parquet(stray)
    with pytest.raises(SnapshotNotFoundError, match="not a snapshot"):
        resolve_snapshot(telco_cfg, str(stray))
    with pytest.raises(SnapshotNotFoundError, match="shorter than 8"):
        resolve_snapshot(telco_cfg, "abc")


def test_trigger_id_prefers_airflow_run_and_hashes_otherwise():
    from driftloop.training.keys import derive_trigger_id

    assert derive_trigger_id({"reason": "drift", "airflow_run_id": "manual__2026"}, "abc") == "manual__2026"
    assert derive_trigger_id({"trigger_id": "t-1", "airflow_run_id": "x"}, "abc") == "t-1"
    manual = derive_trigger_id({}, "abc")
    assert manual == derive_trigger_id({"reason": "manual"}, "abc")
    assert len(manual) == 16
    assert manual != derive_trigger_id({"reason": "drift"}, "abc")
    assert manual != derive_trigger_id({}, "abd")


class _FixedProba:
    """A "model" whose probabilities are given, for metric tests on known values."""

    def __init__(self, proba):
        import numpy as np

        self.proba = np.asarray(proba, dtype=float)

    def predict_proba(self, rows):
        return self.proba[: len(rows)]

    def predict(self, rows):
        return self.proba[: len(rows), 0]


def test_binary_holdout_metrics_on_known_values_at_the_versions_threshold():
    import pandas as pd

    from driftloop.core.task_types import BINARY, Decision, holdout_metrics

    score = [0.9, 0.4, 0.6, 0.1]
    model = _FixedProba([[1 - p, p] for p in score])
    rows = pd.DataFrame({"x": range(4)})
    truth = pd.Series(["Yes", "Yes", "No", "No"])
    at_half = Decision(BINARY, ("No", "Yes"), 0.5)
    metrics = holdout_metrics(at_half, at_half.encode(truth), at_half.predict(model, rows))
    assert metrics == pytest.approx(
        {
            "holdout_auc": 0.75,
            "holdout_precision": 0.5,
            "holdout_recall": 0.5,
            "holdout_f1": 0.5,
            "holdout_accuracy": 0.5,
        }
    )
    lower = Decision(BINARY, ("No", "Yes"), 0.35)
    assert list(lower.predict(model, rows)[bus.PREDICTION_COLUMN]) == ["Yes", "Yes", "Yes", "No"]
    assert holdout_metrics(lower, lower.encode(truth), lower.predict(model, rows))["holdout_recall"] == 1.0


def test_multiclass_and_regression_metrics_on_known_values():
    import pandas as pd

    from driftloop.core.task_types import MULTICLASS, REGRESSION, Decision, holdout_metrics

    proba = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]
    decision = Decision(MULTICLASS, ("F", "M", "VF"))
    rows = pd.DataFrame({"x": range(4)})
    outputs = decision.predict(_FixedProba(proba), rows)
    assert list(outputs[bus.PREDICTION_COLUMN]) == ["F", "M", "VF", "F"]
    assert list(outputs[bus.proba_column("VF")]) == [0.1, 0.1, 0.5, 0.1]
    truth = pd.Series(["F", "M", "VF", "M"])
    metrics = holdout_metrics(decision, decision.encode(truth), outputs)
    assert metrics["holdout_accuracy"] == pytest.approx(0.75)
    # per class F1: F = 2/3 (1 TP, 1 FP), M = 2/3 (1 TP, 1 FN), VF = 1 -> macro 7/9
    assert metrics["holdout_macro_f1"] == pytest.approx(7 / 9)
    # one-vs-rest AUC per class: F 1.0, M 3.5 of 4 pairs (one tie), VF 1.0
    assert metrics["holdout_auc_ovr"] == pytest.approx((1.0 + 0.875 + 1.0) / 3)

    regression = Decision(REGRESSION)
    values = _FixedProba([[110.0], [190.0], [300.0], [400.0]])
    truth = pd.Series([100.0, 200.0, 300.0, 400.0])
    metrics = holdout_metrics(regression, regression.encode(truth), regression.predict(values, rows))
    assert metrics["holdout_rmse"] == pytest.approx((200 / 4) ** 0.5)
    assert metrics["holdout_mae"] == pytest.approx(5.0)
    assert metrics["holdout_mape"] == pytest.approx((0.1 + 0.05) / 4)
    assert metrics["holdout_r2"] == pytest.approx(1 - 200 / 50000)


def test_threshold_objectives_on_known_scores():
    from driftloop.core.task_types import choose_threshold

    y = [1, 1, 1, 0, 1, 0, 0, 0]
    score = [0.95, 0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1]
    # F1 by cut: top-3 -> 6/7, top-5 -> 8/9 (4 TP, 1 FP, 0 FN): the best
    best = choose_threshold(y, score, "f1")
    assert best["threshold"] == pytest.approx(0.6) and best["objective_value"] == pytest.approx(8 / 9)
    # False negatives 10x dearer than false positives: flag everyone down to the last positive (cost 1 FP).
    costly = choose_threshold(y, score, "cost", {"false_positive": 1.0, "false_negative": 10.0})
    assert costly["threshold"] == pytest.approx(0.6) and costly["objective_value"] == pytest.approx(1 / 8)
    # False positives 10x dearer: top-3 (0 FP, 1 FN, cost 1) beats top-5 (1 FP: cost 10).
    cautious = choose_threshold(y, score, "cost", {"false_positive": 10.0, "false_negative": 1.0})
    assert cautious["threshold"] == pytest.approx(0.8) and cautious["objective_value"] == pytest.approx(1 / 8)


def test_gate_metric_names_map_to_holdout_metrics():
    from driftloop.core.task_types import gate_metric_key

    assert gate_metric_key("AUC") == "holdout_auc"
    assert gate_metric_key("F1") == "holdout_f1"
    assert gate_metric_key("Prec.") == "holdout_precision"
    assert gate_metric_key("holdout_recall") == "holdout_recall"
    with pytest.raises(ValueError, match="Kappa"):
        gate_metric_key("Kappa")


def test_training_module_imports_no_heavy_libraries():
    import subprocess
    import sys

    code = (
        "import sys, driftloop.training.train, driftloop.core.registry, driftloop.governance.explain, "
        "driftloop.core.holdout; "
        "print(sorted(m for m in ('pandas','numpy','sklearn','pycaret','mlflow','shap') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_pycaret_import_leaves_no_log_file_and_keeps_warnings(tmp_path):
    import subprocess
    import sys

    code = (
        "import os, warnings; os.environ.pop('PYCARET_CUSTOM_LOGGING_PATH', None); before = "
        "warnings.showwarning; "
        "from driftloop.training.pycaret_env import import_experiment; import_experiment(); "
        "import_experiment('regression'); "
        "print(warnings.showwarning is before)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().endswith("True")
    assert not (tmp_path / "logs.log").exists()


def run_holdout_rows(client, run_id: str) -> int:
    return int(client.get_run(run_id).data.metrics["holdout_rows"])


def test_holdout_is_decided_per_id_so_growing_snapshots_never_leak(telco_cfg, telco_frame):
    from driftloop.core.holdout import split_holdout

    small = telco_frame.head(3000)
    grown = telco_frame.head(6000).sample(frac=1.0, random_state=3)  # more rows, another order
    small_train, small_holdout = split_holdout(telco_cfg, small)
    grown_train, grown_holdout = split_holdout(telco_cfg, grown)
    assert len(small_holdout) / len(small) == pytest.approx(telco_cfg.training.test_size, abs=0.02)
    assert set(small_holdout["customer_id"]) <= set(grown_holdout["customer_id"])
    # Nothing an earlier champion trained on is in a later candidate's holdout.
    assert not set(small_train["customer_id"]) & set(grown_holdout["customer_id"])


def test_live_metrics_and_their_drop_per_task_on_known_values():
    import pandas as pd

    from driftloop.core.task_types import (
        BINARY,
        MULTICLASS,
        REGRESSION,
        Decision,
        live_metrics,
        relative_drop,
    )

    regression = Decision(REGRESSION)
    served = pd.DataFrame({bus.PREDICTION_COLUMN: [100.0, 200.0, 300.0, 400.0]})
    live = live_metrics(regression, pd.Series([110.0, 190.0, 330.0, 370.0]), served)
    assert live == pytest.approx({"live_rmse": (2000 / 4) ** 0.5, "live_mae": 20.0})
    # RMSE is an error: live 22.4 against a holdout 20.0 is 11.8% worse (a positive drop).
    assert relative_drop(REGRESSION, live, {"holdout_rmse": 20.0}) == pytest.approx(((500**0.5) - 20) / 20)

    multiclass = Decision(MULTICLASS, ("F", "M", "VF"))
    served = pd.DataFrame({bus.PREDICTION_COLUMN: ["F", "M", "VF", "F"]})
    live = live_metrics(multiclass, pd.Series(["F", "M", "VF", "M"]), served)
    assert live == pytest.approx({"live_macro_f1": 7 / 9, "live_accuracy": 0.75})
    assert relative_drop(MULTICLASS, live, {"holdout_macro_f1": 0.9}) == pytest.approx((0.9 - 7 / 9) / 0.9)

    binary = Decision(BINARY, ("No", "Yes"), 0.3)
    served = pd.DataFrame(
        {bus.PREDICTION_COLUMN: ["Yes", "No", "Yes", "No"], bus.SCORE_COLUMN: [0.9, 0.2, 0.4, 0.1]}
    )
    live = live_metrics(binary, pd.Series(["Yes", "Yes", "No", "No"]), served)
    assert live == pytest.approx({"live_f1": 0.5, "live_auc": 0.75})
    assert relative_drop(BINARY, live, {"holdout_f1": 0.5}) == pytest.approx(0.0)


def test_a_second_trigger_for_the_same_key_registers_nothing_and_is_recorded_on_the_version(trained, client):
    """The twin of issue 26: new_data trained v1; drift asks for the same snapshot, config and code."""
    from driftloop.training.train import train_model

    cfg, first = trained.cfg, trained.result
    drift = {"reason": "drift", "airflow_run_id": "drift__mon-999", "monitoring_run_id": "mon-999"}
    again = train_model(cfg, snapshot_uri=trained.manifest["snapshot_uri"], trigger=drift)
    assert again["reused"] is True and again["model_version"] == first["model_version"]
    assert again["asked_again"] == {
        "trigger_id": "drift__mon-999",
        "reason": "drift",
        "first_reason": "drift",
    }
    versions = client.search_model_versions(f"name = '{cfg.registered_model_name}'")
    assert [str(v.version) for v in versions] == ["1"]
    tags = client.get_model_version(cfg.registered_model_name, "1").tags
    assert tags[bus.asked_by_tag("drift__mon-999")] == "drift: drift__mon-999"
    # Another config is another key: it trains and registers.
    import dataclasses

    other = dataclasses.replace(cfg, gates=dataclasses.replace(cfg.gates, margin=cfg.gates.margin + 0.01))
    assert train_model(other, snapshot_uri=trained.manifest["snapshot_uri"], trigger=drift)["reused"] is False
    # Another seed asked for in the trigger is another training of the same inputs: a new key, a new version.
    reseeded = {"reason": "manual", "trigger_id": "reseed-1", "seed": 7}
    again = train_model(cfg, snapshot_uri=trained.manifest["snapshot_uri"], trigger=reseeded)
    assert again["reused"] is False and again["model_version"] not in ("1", "2"), again


def test_two_triggers_racing_on_one_key_register_one_version(trained, client):
    """Two workers: two processes, each training the same key under its own trigger, started together."""
    import multiprocessing

    cfg = unique_cfg(trained.cfg)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    racers = [
        context.Process(target=_race, args=(cfg, trained.manifest["snapshot_uri"], f"racer-{i}", queue))
        for i in range(2)
    ]
    for racer in racers:
        racer.start()
    results = {}
    for _ in racers:
        trigger_id, result = queue.get(timeout=300)
        results[trigger_id] = result
    for racer in racers:
        racer.join(timeout=60)
    assert all(not isinstance(r, str) for r in results.values()), results
    versions = client.search_model_versions(f"name = '{cfg.registered_model_name}'")
    assert [str(v.version) for v in versions] == ["1"]
    assert {r["model_version"] for r in results.values()} == {"1"}
    assert sorted(r["reused"] for r in results.values()) == [False, True]


def _race(cfg, snapshot_uri, trigger_id, queue) -> None:
    from driftloop.training.train import train_model

    try:
        trigger = {"reason": "manual", "trigger_id": trigger_id}
        queue.put((trigger_id, train_model(cfg, snapshot_uri=snapshot_uri, trigger=trigger)))
    except Exception as exc:  # the parent asserts on it
        queue.put((trigger_id, f"{type(exc).__name__}: {exc}"))
