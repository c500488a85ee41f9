"""A new dataset is a config file: the whole loop runs on every shipped config with no code change.

Binary, multiclass and regression configs go through the package functions the DAG tasks call (the DAG wiring
is covered by test_closed_loop): reference → snapshot → training → gate → scoring in the dataset's own labels
→ drift and live metrics per task → sensor → retraining. Training is shortened (one model family, two folds,
no tuning); everything else is the shipped config.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from driftloop.core import bus
from driftloop.core.catalog import list_config_paths
from driftloop.core.settings import PROJECT_DIR

# Thread method: see tests/integration/test_closed_loop.py.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.datasets,
    pytest.mark.timeout(900, method="thread"),
]

CONFIGS = [
    p.stem for p in list_config_paths(PROJECT_DIR / "include" / "configs")
]  # companions are not configs


def test_shipped_configs_cover_every_task():
    from driftloop.core.config import load_dataset_config

    tasks = {load_dataset_config(name).task for name in CONFIGS}
    assert {"telco_churn", "mlc_churn", "ames_housing", "hpc_jobs"} <= set(CONFIGS)
    assert tasks == {"binary", "multiclass", "regression"}


def fast_training(dataset: str) -> dict:
    """The shipped config with its first model family only, two folds and no tuning."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    first = load_dataset_config(dataset, Settings.from_env({})).training.models[0]  # the file, no overrides
    return {"training": {"models": [first], "folds": 2, "tune_iter": 0}}


def check_predictions(cfg, decision, predictions: pd.DataFrame, labels: pd.Series) -> None:
    """Predictions carry the dataset's own vocabulary (or values), decided the way the version records."""
    predicted = predictions[bus.PREDICTION_COLUMN]
    if cfg.task == "regression":
        assert predicted.dtype.kind == "f"
        assert predicted.between(labels.min() * 0.2, labels.max() * 3).mean() > 0.95
        return
    assert set(predicted) <= {str(v) for v in labels.unique()}
    if cfg.task == "binary":
        positive = predicted == cfg.positive_label
        assert (positive == (predictions[bus.SCORE_COLUMN] >= decision.threshold)).all()
        return
    proba = predictions[[bus.proba_column(c) for c in decision.classes]].to_numpy()
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (np.asarray(decision.classes, dtype=object)[proba.argmax(axis=1)] == predicted.to_numpy()).all()


def expected_live(cfg, decision, predictions, labels) -> dict[str, float]:
    """Live metrics recomputed with sklearn from the scored batch and the label file the test landed."""
    from sklearn import metrics

    ids = predictions[cfg.id_column].astype(str)
    scored = pd.DataFrame({"id": ids, "pred": predictions[bus.PREDICTION_COLUMN]})
    if cfg.task == "binary":
        scored["score"] = predictions[bus.SCORE_COLUMN]
    truth = pd.DataFrame({"id": labels[cfg.id_column].astype(str), "truth": labels[cfg.target]})
    joined = scored.merge(truth, on="id")
    assert len(joined) == 600
    if cfg.task == "regression":
        y, pred = joined["truth"].astype(float), joined["pred"].astype(float)
        return {"live_rmse": float(np.sqrt(metrics.mean_squared_error(y, pred)))}
    y, pred = joined["truth"].astype(str), joined["pred"].astype(str)
    if cfg.task == "binary":
        positive = str(decision.classes[1])
        # Under strong drift F1 can be 0 (no positive predicted); the AUC still ranks the scores.
        return {
            "live_f1": float(metrics.f1_score(y == positive, pred == positive, zero_division=0)),
            "live_auc": float(metrics.roc_auc_score(y == positive, joined["score"])),
        }
    return {"live_macro_f1": float(metrics.f1_score(y, pred, average="macro", zero_division=0))}


def fire_once_labels_are_in_a_snapshot(cfg, first_snapshot_rows):
    """The sensor waits while the drifted period's labels are in no snapshot (a retrain would reproduce the
    champion), fires once data_pipeline's snapshot holds them, and only once."""
    from driftloop.data import snapshots
    from driftloop.monitoring import sensor

    assert sensor.find_drift_trigger(cfg) is None
    assert snapshots.build_snapshot(cfg)["rows"] > first_snapshot_rows
    trigger = sensor.find_drift_trigger(cfg)
    assert trigger is not None and trigger["reason"] in ("drift", "performance")
    sensor.mark_trigger_fired(cfg, trigger["monitoring_run_id"], trigger["trigger_run_id"])
    assert sensor.find_drift_trigger(cfg) is None
    return trigger


def assert_the_replay_scores_like_the_pipeline(cfg, decision, model_uri: str, snapshot_uri: str) -> None:
    """The online workers' numpy replay of the trained pipeline: it exists for every shipped dataset and gives
    the pipeline's own outputs on the snapshot's rows, with unseen categories and nulls mixed in."""
    from driftloop.core.registry import load_model
    from driftloop.core.task_types import model_input
    from driftloop.serving.replay import compile_model

    model = load_model(model_uri)
    replay = compile_model(model)
    assert replay is not None, [name for name, _ in model.steps]
    rows = model_input(pd.read_parquet(snapshot_uri.removeprefix("file://"), columns=list(cfg.features)))
    for column in cfg.categorical_features:
        if rows[column].dtype == object:
            rows.loc[::7, column] = "never-seen-in-training"
        if rows[column].dtype.kind in "fO":
            rows.loc[3::11, column] = np.nan
    columns = {name: rows[name].to_numpy() for name in rows.columns}
    expected = decision.predict_rows(model, rows)
    got = decision.predict_rows(replay, columns)
    assert set(got) == set(expected)
    for key, want in expected.items():
        if np.asarray(want).dtype.kind == "f":
            np.testing.assert_allclose(got[key], want, rtol=1e-9, atol=1e-12, err_msg=key)
        else:
            assert list(got[key]) == list(want), key


def assert_every_version_has_its_card(client, model_name):
    """Every registered version carries a card naming its gate checks (v2's compares it with the champion)."""
    versions = client.search_model_versions(f"name='{model_name}'")
    assert len(versions) >= 2
    for version_id in sorted(str(v.version) for v in versions):
        card = client.get_model_version(model_name, version_id).description
        assert card and "floor." in card, (version_id, card)
        if version_id != "1":
            assert "beats_champion" in card, (version_id, card)


@pytest.mark.parametrize("dataset", CONFIGS)
def test_closed_loop_runs_on_dataset(dataset, driftloop_env, tmp_path, monkeypatch):
    # A private MLflow store: experiment and model names are per dataset, and other tests use them too.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps(fast_training(dataset)))
    from driftloop.core.config import load_dataset_config
    from driftloop.core.task_types import read_decision
    from driftloop.core.tracking import get_client
    from driftloop.data import ingest, simulate, snapshots
    from driftloop.governance.promotion import promote_model
    from driftloop.monitoring import monitor, retraining
    from driftloop.serving import scoring_parts
    from driftloop.training import train

    cfg = load_dataset_config(dataset)
    simulate.simulate_reference(cfg)
    ingested = ingest.ingest_batches(cfg)
    assert ingested["labelled_batch_ids"] == ["reference"], ingested
    snapshot = snapshots.build_snapshot(cfg)
    assert retraining.decide_retraining(cfg, snapshot)["train"] is True

    trained = train.train_model(cfg, snapshot["snapshot_uri"], trigger={"reason": "new_data"})
    client = get_client()
    version = client.get_model_version(cfg.registered_model_name, trained["model_version"])
    decision = read_decision(cfg, version.tags)
    assert decision.task == cfg.task
    model_uri = f"models:/{cfg.registered_model_name}/{trained['model_version']}"
    assert_the_replay_scores_like_the_pipeline(cfg, decision, model_uri, snapshot["snapshot_uri"])
    gate = promote_model(cfg, trained["model_version"])
    assert gate["decision"] == "promoted", gate

    simulate.simulate_batch(cfg, 1, rows=600, drift={"preset": "strong"})
    batch = ingest.ingest_batches(cfg)
    assert (batch["scoring_batch_ids"], batch["rows_quarantined"]) == (["batch_001"], 0), (
        batch
    )  # drift is not bad
    scored = scoring_parts.score_pending_batches(cfg)
    assert [s["batch_id"] for s in scored["scored"]] == ["batch_001"]
    assert scored["model_version"] == trained["model_version"]
    predictions = pd.read_parquet(scored["scored"][0]["predictions_uri"])
    reference_labels = pd.read_parquet(snapshot["snapshot_uri"].removeprefix("file://"), columns=[cfg.target])
    check_predictions(cfg, decision, predictions, reference_labels[cfg.target])

    landed = pd.read_csv(simulate.simulate_labels(cfg, 1)["path"])
    assert ingest.ingest_labels(cfg)["rows_accepted"] == 600
    monitored = monitor.monitor_predictions(cfg)
    [item] = monitored["monitored"]
    assert item["drift_share"] >= cfg.monitoring.drift_share_threshold
    assert item[bus.LABELLED_ROWS] == 600
    expected = expected_live(cfg, decision, predictions, landed)
    assert {name: item.get(name) for name in expected} == pytest.approx(expected, abs=1e-6)
    assert bus.LIVE_DROP in item

    trigger = fire_once_labels_are_in_a_snapshot(cfg, snapshot["rows"])
    retrained = train.train_model(cfg, trigger={**trigger, "airflow_run_id": trigger["trigger_run_id"]})
    assert (trained["model_version"], retrained["model_version"]) == ("1", "2")
    assert str(client.get_model_version_by_alias(cfg.registered_model_name, "challenger").version) == "2"
    promote_model(cfg, retrained["model_version"])  # judged against v1, whatever the verdict
    assert_every_version_has_its_card(client, cfg.registered_model_name)
