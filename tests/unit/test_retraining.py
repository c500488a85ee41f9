"""Retraining policy: new data alone retrains only for the first snapshot or material growth."""

from __future__ import annotations

import pytest

from driftloop.core import bus
from driftloop.monitoring.retraining import decide_retraining


@pytest.fixture
def private_store(driftloop_env, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def _log_training(cfg, snapshot_hash: str, train_rows: int, holdout_rows: int) -> None:
    import mlflow

    from driftloop.core.tracking import ensure_experiment, get_client

    experiment_id = ensure_experiment(get_client(), cfg.experiment_name("training"))
    with mlflow.start_run(experiment_id=experiment_id, tags={bus.SNAPSHOT_HASH_TAG: snapshot_hash}):
        mlflow.log_metrics({"train_rows": train_rows, "holdout_rows": holdout_rows})


def test_first_snapshot_trains(private_store, telco_cfg):
    decision = decide_retraining(telco_cfg, {"snapshot_hash": "a" * 64, "rows": 100, "created": True})
    assert decision == {"train": True, "reason": "first snapshot: no model has been trained yet"}


def test_replayed_snapshot_does_not_train(private_store, telco_cfg):
    decision = decide_retraining(telco_cfg, {"snapshot_hash": "a" * 64, "rows": 100, "created": False})
    assert decision["train"] is False and "is not new" in decision["reason"]


@pytest.mark.parametrize(("rows", "train", "growth"), [(4375, False, "25%"), (6000, True, "71%")])
def test_growth_threshold_decides(private_store, telco_cfg, rows, train, growth):
    _log_training(telco_cfg, "a" * 64, train_rows=2800, holdout_rows=700)
    decision = decide_retraining(telco_cfg, {"snapshot_hash": "b" * 64, "rows": rows, "created": True})
    assert decision["train"] is train
    assert f"grew {growth}" in decision["reason"]


def test_same_snapshot_as_last_training_does_not_train(private_store, telco_cfg):
    _log_training(telco_cfg, "a" * 64, train_rows=2800, holdout_rows=700)
    decision = decide_retraining(telco_cfg, {"snapshot_hash": "a" * 64, "rows": 3500, "created": True})
    assert decision["train"] is False and "already used this snapshot" in decision["reason"]
