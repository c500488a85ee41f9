"""The drift sensor's decision (a pure read) and its bookkeeping (firing, covering, cooldown), against SQLite
MLflow.

Monitoring runs are produced by the real monitoring stage on batches faked with ``tests/fakes.py``.
"""

from __future__ import annotations

import time

import pytest

from driftloop.core import bus
from tests.fakes import BATCH_ROWS, drift_frame, monitoring_runs, score_batch, write_labels


def all_sensor_tags(cfg) -> list[dict[str, str]]:
    """The sensor tags of every monitoring run (to prove a read wrote nothing)."""
    keys = (bus.SENSOR_FIRED_AT_TAG, bus.SENSOR_SUPPRESSED_TAG, bus.SENSOR_TRIGGER_RUN_ID_TAG)
    return [{k: v for k, v in run.data.tags.items() if k in keys} for run in monitoring_runs(cfg)]


def test_drifted_batch_fires_once_and_a_fired_result_never_fires_again(cfg, telco_frame, scorer, champion):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.monitoring.sensor import find_drift_trigger, mark_trigger_fired

    version, train_run_id = champion
    score_batch(cfg, drift_frame(telco_frame.iloc[BATCH_ROWS]), "b002", version, train_run_id, scorer)
    [item] = monitor_predictions(cfg)["monitored"]
    assert item["drift_share"] >= cfg.monitoring.drift_share_threshold
    metrics = get_client().get_run(item["monitoring_run_id"]).data.metrics
    assert (
        metrics[bus.drift_score_metric("tenure")] > 0.5 and metrics[bus.drift_score_metric("contract")] > 0.3
    )
    assert bus.LIVE_F1 not in metrics  # no labels yet

    trigger = find_drift_trigger(cfg)
    assert find_drift_trigger(cfg) == trigger  # asking again (the trigger polls) changes nothing
    assert all_sensor_tags(cfg) == [{}]
    assert trigger["reason"] == "drift"
    assert trigger["monitoring_run_id"] == item["monitoring_run_id"]
    assert trigger["trigger_run_id"] == f"drift__{item['monitoring_run_id']}"
    assert trigger["champion_version"] == version
    assert trigger["drift_share"] == pytest.approx(item["drift_share"])
    assert trigger["live_drop"] is None
    assert "threshold 0.30" in trigger["detail"] and "b002" in trigger["detail"]

    fired_s = int(time.time())
    fired = mark_trigger_fired(cfg, trigger["monitoring_run_id"], trigger["trigger_run_id"], now_s=fired_s)
    assert fired == {
        "monitoring_run_id": item["monitoring_run_id"],
        "trigger_run_id": trigger["trigger_run_id"],
        "fired_at": fired_s,
        "covered_run_ids": [],
        # What the alert and the run note need: why, with the numbers of the result that fired.
        "reason": "drift",
        "drift_share": pytest.approx(item["drift_share"]),
        "live_drop": None,
        "estimated_drop": None,  # the fakes' champion has no calibration map
        "estimated_drop_best_case": None,
        "champion_version": version,
        "detail": fired["detail"],
    }
    assert "b002" in fired["detail"] and f"drift share {item['drift_share']:.2f}" in fired["detail"]
    tags = get_client().get_run(item["monitoring_run_id"]).data.tags
    assert tags[bus.SENSOR_FIRED_AT_TAG] == str(fired_s)
    assert tags[bus.SENSOR_TRIGGER_RUN_ID_TAG] == trigger["trigger_run_id"]
    retried = mark_trigger_fired(
        cfg, trigger["monitoring_run_id"], trigger["trigger_run_id"], now_s=fired_s + 300
    )
    assert retried["fired_at"] == fired_s  # a task retry keeps the original firing time
    # Even once the cooldown is long over, the same result never fires again.
    client = get_client()
    client.set_tag(
        item["monitoring_run_id"], bus.SENSOR_FIRED_AT_TAG, str(fired_s - 10 * cfg.monitoring.cooldown_s)
    )
    assert find_drift_trigger(cfg) is None

    assert monitor_predictions(cfg) == {"monitored": [], "updated_with_labels": [], "skipped": []}
    assert len(monitoring_runs(cfg)) == 1


def test_cooldown_holds_back_a_second_episode_and_lets_a_later_one_fire(cfg, telco_frame, scorer, champion):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.monitoring.sensor import find_drift_trigger, mark_trigger_fired, suppress_cooldown_runs

    client = get_client()
    version, train_run_id = champion
    drifted = drift_frame(telco_frame.iloc[BATCH_ROWS])
    score_batch(cfg, drifted, "e1", version, train_run_id, scorer)
    monitor_predictions(cfg)
    first = find_drift_trigger(cfg)
    mark_trigger_fired(cfg, first["monitoring_run_id"], first["trigger_run_id"])

    score_batch(cfg, drifted, "e2", version, train_run_id, scorer)
    [second] = monitor_predictions(cfg)["monitored"]
    assert find_drift_trigger(cfg) is None  # crossing, but it started inside the cooldown
    assert client.get_run(second["monitoring_run_id"]).data.tags.get(bus.SENSOR_SUPPRESSED_TAG) is None
    assert suppress_cooldown_runs(cfg) == [second["monitoring_run_id"]]
    tags = client.get_run(second["monitoring_run_id"]).data.tags
    assert tags[bus.SENSOR_SUPPRESSED_TAG] == bus.SUPPRESSED_COOLDOWN
    assert suppress_cooldown_runs(cfg) == []  # nothing left to label

    # The cooldown ends (the firing is now an episode ago): a new crossing result fires, the held one does
    # not.
    long_ago = int(time.time()) - cfg.monitoring.cooldown_s - 5
    client.set_tag(first["monitoring_run_id"], bus.SENSOR_FIRED_AT_TAG, str(long_ago))
    score_batch(cfg, drifted, "e3", version, train_run_id, scorer)
    [third] = monitor_predictions(cfg)["monitored"]
    trigger = find_drift_trigger(cfg)
    assert trigger is not None and trigger["monitoring_run_id"] == third["monitoring_run_id"]


def test_one_episode_fires_once_for_several_crossing_batches(cfg, telco_frame, scorer, champion):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.monitoring.sensor import find_drift_trigger, mark_trigger_fired

    version, train_run_id = champion
    drifted = drift_frame(telco_frame.iloc[BATCH_ROWS])
    score_batch(cfg, drifted.iloc[:1000], "p1", version, train_run_id, scorer)
    score_batch(cfg, drifted.iloc[1000:], "p2", version, train_run_id, scorer)

    monitored = monitor_predictions(cfg)["monitored"]
    assert [m["batch_id"] for m in monitored] == ["p1", "p2"]  # oldest first
    trigger = find_drift_trigger(cfg)
    newest = trigger["monitoring_run_id"]
    assert newest == monitored[1]["monitoring_run_id"]
    assert "2 crossing monitoring run(s)" in trigger["detail"]

    fired = mark_trigger_fired(cfg, newest, trigger["trigger_run_id"])
    assert fired["covered_run_ids"] == [monitored[0]["monitoring_run_id"]]
    covered_tags = get_client().get_run(monitored[0]["monitoring_run_id"]).data.tags
    assert covered_tags[bus.SENSOR_SUPPRESSED_TAG] == f"{bus.SUPPRESSED_COVERED_BY}{newest}"
    assert find_drift_trigger(cfg) is None


def test_late_labels_update_the_run_and_fire_on_performance(cfg, telco_frame, scorer, champion):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.monitoring.sensor import find_drift_trigger

    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS]
    score_batch(cfg, batch, "b003", version, train_run_id, scorer)
    [item] = monitor_predictions(cfg)["monitored"]
    assert bus.LIVE_F1 not in item
    assert find_drift_trigger(cfg) is None  # clean features, no labels yet

    write_labels(cfg, batch.iloc[:10], "too_few")  # below min_rows: nothing logged
    assert monitor_predictions(cfg) == {"monitored": [], "updated_with_labels": [], "skipped": []}

    write_labels(cfg, batch, "flipped", flip=True)  # the world changed: churners now look like stayers
    result = monitor_predictions(cfg)
    assert result["monitored"] == []
    [update] = result["updated_with_labels"]
    assert update["monitoring_run_id"] == item["monitoring_run_id"]
    assert update["labelled_rows"] == 2000
    assert update["live_f1"] < 0.3 and update["live_auc"] < 0.3
    holdout_f1 = scorer[1]
    assert update["live_drop"] == pytest.approx((holdout_f1 - update["live_f1"]) / holdout_f1)
    metrics = get_client().get_run(item["monitoring_run_id"]).data.metrics
    assert metrics[bus.LIVE_F1] == pytest.approx(update["live_f1"])
    assert len(monitoring_runs(cfg)) == 1

    trigger = find_drift_trigger(cfg)
    assert trigger["reason"] == "performance"
    assert trigger["live_drop"] == pytest.approx(update["live_drop"])
    assert trigger["drift_share"] < cfg.monitoring.drift_share_threshold
    assert (
        f"live_f1 {update['live_f1']:.3f} is {update['live_drop']:.1%} worse than on the holdout"
        in trigger["detail"]
    )
    assert monitor_predictions(cfg) == {"monitored": [], "updated_with_labels": [], "skipped": []}


def test_results_of_another_version_than_the_champion_do_not_fire(cfg, telco_frame, scorer, champion):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.monitoring.sensor import find_drift_trigger

    version, train_run_id = champion
    score_batch(cfg, drift_frame(telco_frame.iloc[BATCH_ROWS]), "old", version, train_run_id, scorer)
    monitor_predictions(cfg)
    assert find_drift_trigger(cfg) is not None
    client = get_client()
    source = client.get_model_version(cfg.registered_model_name, version).source
    newer = client.create_model_version(cfg.registered_model_name, source, run_id=train_run_id).version
    client.set_registered_model_alias(cfg.registered_model_name, bus.CHAMPION, newer)
    assert find_drift_trigger(cfg) is None  # the drift was judged against a model that no longer serves


def test_no_champion_means_no_trigger(cfg):
    from driftloop.monitoring.sensor import find_drift_trigger, suppress_cooldown_runs

    assert find_drift_trigger(cfg) is None
    assert suppress_cooldown_runs(cfg) == []


def test_a_drift_retrain_without_new_labels_waits_for_them_and_registers_nothing(
    cfg, telco_frame, scorer, champion
):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.monitoring.sensor import drift_decision, find_drift_trigger
    from driftloop.training.train import train_model
    from tests.conftest import write_snapshot

    version, train_run_id = champion
    client = get_client()
    trained_on = write_snapshot(cfg, telco_frame.iloc[:1000])  # the snapshot the champion was trained on
    client.set_model_version_tag(
        cfg.registered_model_name, version, bus.SNAPSHOT_HASH_TAG, trained_on["snapshot_hash"]
    )
    score_batch(cfg, drift_frame(telco_frame.iloc[BATCH_ROWS]), "b002", version, train_run_id, scorer)
    [item] = monitor_predictions(cfg)["monitored"]

    decision = drift_decision(cfg)
    assert decision["trigger"] is None and find_drift_trigger(cfg) is None
    assert "waiting for labels of the drifted period" in decision["waiting_for_labels"]
    assert all_sensor_tags(cfg) == [{}]  # held back, not consumed: it fires when labels land

    trigger = {"reason": "drift", "monitoring_run_id": item["monitoring_run_id"], "trigger_id": "t1"}
    result = train_model(cfg, snapshot_uri=trained_on["snapshot_uri"], trigger=trigger)
    assert result["model_version"] is None and result["waiting_for_labels"] is True
    assert "waiting for labels of the drifted period" in result["reason"]
    versions = client.search_model_versions(f"name = '{cfg.registered_model_name}'")
    assert [str(v.version) for v in versions] == [version]  # no duplicate of the champion
    note = client.get_run(item["monitoring_run_id"]).data.tags[bus.RETRAIN_WAITING_TAG]
    assert trained_on["snapshot_hash"][:12] in note

    write_snapshot(cfg, telco_frame.iloc[:1200], created_at="2026-02-01T00:00:00+00:00")  # labels landed
    fired = find_drift_trigger(cfg)
    assert fired is not None and fired["monitoring_run_id"] == item["monitoring_run_id"]
