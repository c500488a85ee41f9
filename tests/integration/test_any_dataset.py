"""A new dataset is a config file: the whole loop runs on every shipped config with no code change.

Drives the package functions that the DAG tasks call (the DAG wiring itself is covered by test_closed_loop).
"""

from __future__ import annotations

import pytest

from driftloop.catalog import list_config_paths
from driftloop.settings import PROJECT_DIR

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

CONFIGS = [p.stem for p in list_config_paths(PROJECT_DIR / "include" / "configs")]  # companions are not configs


def test_shipped_configs_include_two_datasets():
    assert {"telco_churn", "mlc_churn"} <= set(CONFIGS)


@pytest.mark.parametrize("dataset", CONFIGS)
def test_closed_loop_runs_on_dataset(dataset, driftloop_env, tmp_path, monkeypatch):
    # A private MLflow store: experiment and model names are per dataset, and other tests use them too.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from driftloop import (
        inference,
        ingest,
        monitoring,
        registry,
        retraining,
        sensor,
        simulate,
        snapshots,
        training,
    )
    from driftloop.config import load_dataset_config
    from driftloop.tracking import get_client

    cfg = load_dataset_config(dataset)
    simulate.simulate_reference(cfg)
    ingested = ingest.ingest_batches(cfg)
    assert ingested["labelled_batch_ids"] == ["reference"], ingested
    snapshot = snapshots.build_snapshot(cfg)
    assert retraining.decide_retraining(cfg, snapshot)["train"] is True

    trained = training.train_model(cfg, snapshot["snapshot_uri"], trigger={"reason": "new_data"})
    gate = registry.promote_model(cfg, trained["model_version"])
    assert gate["decision"] == "promoted", gate

    simulate.simulate_batch(cfg, 1, rows=600, drift={"preset": "strong"})
    ingest.ingest_batches(cfg)
    scored = inference.score_pending_batches(cfg)
    assert [s["batch_id"] for s in scored["scored"]] == ["batch_001"]
    assert scored["model_version"] == trained["model_version"]

    monitored = monitoring.monitor_predictions(cfg)
    assert len(monitored["monitored"]) == 1
    assert monitored["monitored"][0]["drift_share"] >= cfg.monitoring.drift_share_threshold

    trigger = sensor.find_drift_trigger(cfg)
    assert trigger is not None and trigger["reason"] == "drift"
    sensor.mark_trigger_fired(cfg, trigger["monitoring_run_id"], trigger["trigger_run_id"])
    assert sensor.find_drift_trigger(cfg) is None

    retrained = training.train_model(cfg, trigger={**trigger, "airflow_run_id": trigger["trigger_run_id"]})
    assert (trained["model_version"], retrained["model_version"]) == ("1", "2")
    client = get_client()
    assert str(client.get_model_version_by_alias(cfg.registered_model_name, "challenger").version) == retrained["model_version"]
