"""Performance estimated before labels on every monitoring run, and the drift sensor firing on it when
``monitoring.retrain_on`` asks (issue 27: a sensor that fires on harm).

The champion is the fakes' logistic regression with a calibration map fitted on its holdout; batches are real
telco customers, so their true labels give the realised metric the estimate is checked against.
"""

from __future__ import annotations

import dataclasses

import pytest

from driftloop.core import bus
from tests.fakes import BATCH_ROWS, HOLDOUT_ROWS, register_champion, score_batch, write_labels


@pytest.fixture
def calibrated_champion(cfg, telco_frame, scorer):
    return register_champion(cfg, telco_frame, scorer, calibrated=True)


def _retrain_on(cfg, *reasons: str):
    return dataclasses.replace(cfg, monitoring=dataclasses.replace(cfg.monitoring, retrain_on=reasons))


def _by_risk(telco_frame, scorer, low: float, high: float):
    """800 customers the model scores in ``[low, high)``: a covariate shift (P(y|x) unchanged)."""
    score, _ = scorer
    pool = telco_frame.iloc[4000:]
    scores = score(pool)
    return pool[(scores >= low) & (scores < high)].head(800)


def test_every_monitoring_run_carries_the_estimate_and_its_band_close_to_the_realised_metric(
    cfg, telco_frame, scorer, calibrated_champion
):
    from sklearn.metrics import f1_score, roc_auc_score

    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions

    version, train_run_id = calibrated_champion
    batch = telco_frame.iloc[BATCH_ROWS]
    score_batch(cfg, batch, "estimated", version, train_run_id, scorer)

    [item] = monitor_predictions(cfg)["monitored"]

    run = get_client().get_run(item["monitoring_run_id"])
    metrics = run.data.metrics
    assert run.data.tags[bus.ESTIMATION_METHOD_TAG] == "cbpe"
    assert metrics[bus.ESTIMATED_ROWS] == 2000
    score, holdout_f1 = scorer
    truth = batch[cfg.target] == "Yes"
    realised = {"f1": f1_score(truth, score(batch) >= 0.5), "auc": roc_auc_score(truth, score(batch))}
    for name, value in realised.items():
        estimate = metrics[bus.estimated_metric(name)]
        lower, upper = (
            metrics[bus.estimated_metric(name, "lower")],
            metrics[bus.estimated_metric(name, "upper")],
        )
        assert lower < estimate < upper and upper - lower < 0.15
        assert abs(estimate - value) < 0.04, (name, estimate, value)
    assert metrics[bus.ESTIMATED_DROP] == pytest.approx((holdout_f1 - metrics["estimated_f1"]) / holdout_f1)
    assert metrics[bus.ESTIMATED_DROP_BEST_CASE] < metrics[bus.ESTIMATED_DROP]
    assert item[bus.estimated_metric("f1")] == metrics[bus.estimated_metric("f1")]


def test_a_version_without_a_calibration_map_is_monitored_without_an_estimate(
    cfg, telco_frame, scorer, champion
):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions

    version, train_run_id = champion
    score_batch(cfg, telco_frame.iloc[BATCH_ROWS], "unestimated", version, train_run_id, scorer)

    [item] = monitor_predictions(cfg)["monitored"]

    run = get_client().get_run(item["monitoring_run_id"])
    assert bus.ESTIMATION_METHOD_TAG not in run.data.tags
    assert not [k for k in run.data.metrics if k.startswith("estimated_")]


def test_the_sensor_fires_on_the_harmful_shift_only_when_it_retrains_on_estimated_performance(
    cfg, telco_frame, scorer, calibrated_champion
):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.monitoring.sensor import crossing_reason, find_drift_trigger

    version, train_run_id = calibrated_champion
    # High-risk customers: the features move, and the model finds churners more easily (F1 rises).
    score_batch(cfg, _by_risk(telco_frame, scorer, 0.45, 1.0), "harmless", version, train_run_id, scorer)
    # Low-risk customers: hardly a predicted positive, the few churners missed (F1 collapses).
    score_batch(cfg, _by_risk(telco_frame, scorer, 0.0, 0.15), "harmful", version, train_run_id, scorer)
    monitored = {i["batch_id"]: i for i in monitor_predictions(cfg)["monitored"]}
    metrics = {b: get_client().get_run(i["monitoring_run_id"]).data.metrics for b, i in monitored.items()}

    threshold = cfg.monitoring.performance_drop_threshold
    assert metrics["harmful"][bus.ESTIMATED_DROP_BEST_CASE] > threshold
    assert metrics["harmless"][bus.ESTIMATED_DROP_BEST_CASE] < threshold
    assert metrics["harmless"][bus.DRIFT_SHARE] >= cfg.monitoring.drift_share_threshold
    assert metrics["harmful"][bus.DRIFT_SHARE] >= cfg.monitoring.drift_share_threshold

    on_drift, on_estimate = _retrain_on(cfg, "drift"), _retrain_on(cfg, "estimated_performance")
    both = _retrain_on(cfg, "drift", "estimated_performance")
    assert [crossing_reason(on_drift, metrics[b]) for b in ("harmless", "harmful")] == ["drift", "drift"]
    assert [crossing_reason(on_estimate, metrics[b]) for b in ("harmless", "harmful")] == [
        None,
        "estimated_performance",
    ]
    assert crossing_reason(both, metrics["harmful"]) == "estimated_performance"

    trigger = find_drift_trigger(on_estimate)
    assert trigger["reason"] == "estimated_performance"
    assert trigger["monitoring_run_id"] == monitored["harmful"]["monitoring_run_id"]
    assert trigger["estimated_drop_best_case"] == pytest.approx(
        metrics["harmful"][bus.ESTIMATED_DROP_BEST_CASE]
    )
    assert "the estimate before labels is" in trigger["detail"] and "cbpe on 800 rows" in trigger["detail"]


def test_labels_that_confirm_the_estimate_keep_it_on_the_run(cfg, telco_frame, scorer, calibrated_champion):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions

    version, train_run_id = calibrated_champion
    batch = telco_frame.iloc[HOLDOUT_ROWS].head(1000)
    score_batch(cfg, batch, "later", version, train_run_id, scorer)
    [first] = monitor_predictions(cfg)["monitored"]
    write_labels(cfg, batch, "later_labels")

    [updated] = monitor_predictions(cfg)["updated_with_labels"]

    metrics = get_client().get_run(first["monitoring_run_id"]).data.metrics
    assert updated["labelled_rows"] == 1000
    assert metrics[bus.estimated_metric("f1")] == first[bus.estimated_metric("f1")]
    assert abs(metrics[bus.estimated_metric("f1")] - metrics[bus.LIVE_F1]) < 0.04
