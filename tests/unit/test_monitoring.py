"""Monitoring against a SQLite MLflow, with the training and inference stages faked (see ``tests/fakes.py``).

The fakes write exactly what those stages publish, with the names from :mod:`driftloop.core.bus`: a training
run with the drift reference and holdout metrics registered as the ``champion`` version, and per batch an
accepted batch parquet, a predictions parquet and a FINISHED inference run with the lineage tags. The tests
whose reads matter run on a local folder and on S3 (``data_store``; requested after ``champion``, whose fake
training run writes its reference to a local folder).
"""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.core import bus
from tests.fakes import BATCH_ROWS, HOLDOUT_ROWS, drift_frame, monitoring_runs, score_batch, write_labels
from tests.store_fakes import is_s3, score_store_batch, write_store_labels, zone_names


def test_clean_batch_is_not_drift_and_does_not_fire(cfg, telco_frame, scorer, champion, data_store):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.monitoring.sensor import find_drift_trigger

    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS]
    inference_run_id = score_store_batch(cfg, batch, "b001", version, train_run_id, scorer)
    write_store_labels(cfg, batch, "l001")

    result = monitor_predictions(cfg)

    assert result["updated_with_labels"] == [] and result["skipped"] == []
    [item] = result["monitored"]
    assert item["batch_id"] == "b001" and item["inference_run_id"] == inference_run_id
    assert item["drift_share"] < 0.3
    assert item["drifted_columns"] == round(item["drift_share"] * 19)
    run = get_client().get_run(item["monitoring_run_id"])
    tags, metrics = run.data.tags, run.data.metrics
    assert tags[bus.INFERENCE_RUN_ID_TAG] == inference_run_id
    assert tags[bus.CHAMPION_VERSION_TAG] == version
    assert tags[bus.REFERENCE_RUN_ID_TAG] == train_run_id
    assert tags[bus.PREDICTIONS_URI_TAG].startswith("s3://" if is_s3(data_store) else "file://")
    assert tags[bus.CURRENT_SAMPLE_TAG] == "all 2000 rows"
    assert metrics["rows"] == 2000 and metrics["rows_compared"] == 2000 and metrics["reference_rows"] == 4000
    assert {f"drift_score.{col}" for col in cfg.features} <= set(metrics)
    assert metrics["drift_score.tenure"] < 0.1  # normed Wasserstein; the threshold is 0.1
    assert metrics["prediction_drifted"] == 0.0 and metrics["prediction_drift_score"] < 0.1
    # Same customers' true labels: live F1 close to the holdout F1 of the same model.
    assert metrics["labelled_rows"] == 2000
    assert 0.45 < metrics["live_f1"] < 0.75 and 0.75 < metrics["live_auc"] < 0.95
    assert abs(metrics["live_drop"]) < cfg.monitoring.performance_drop_threshold
    assert abs(metrics["live_drop"] - (scorer[1] - metrics["live_f1"]) / scorer[1]) < 1e-9
    artifacts = [a.path for a in get_client().list_artifacts(run.info.run_id)]
    assert artifacts == ["drift_report.html", "drift_summary.json"]
    assert tags[bus.DRIFT_METHODS_TAG] == "Jensen-Shannon distance,Wasserstein distance (normed)"
    # The report is written to a local folder before MLflow logs it: the data folder's reports zone, or a
    # temporary folder when the zones are on object storage (nothing written there).
    reports = zone_names(cfg, "reports/monitoring/b001")
    assert reports == ([] if is_s3(data_store) else ["drift_report.html"])
    assert monitor_predictions(cfg) == {"monitored": [], "updated_with_labels": [], "skipped": []}

    assert find_drift_trigger(cfg) is None
    untagged = get_client().get_run(item["monitoring_run_id"]).data.tags
    assert bus.SENSOR_SUPPRESSED_TAG not in untagged and bus.SENSOR_FIRED_AT_TAG not in untagged


def test_large_batch_is_sampled_and_tagged(cfg, telco_frame, scorer, champion):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions

    version, train_run_id = champion
    score_batch(cfg, telco_frame.iloc[BATCH_ROWS], "big", version, train_run_id, scorer)

    [item] = monitor_predictions(cfg, max_rows=500)["monitored"]

    run = get_client().get_run(item["monitoring_run_id"])
    assert run.data.tags[bus.CURRENT_SAMPLE_TAG] == "500 of 2000 rows with the smallest id hashes"
    assert run.data.metrics["rows_compared"] == 500 and run.data.metrics["rows"] == 2000


def test_broken_inference_run_is_skipped_not_fatal(cfg, telco_frame, scorer, champion, data_store):
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import remove_file
    from driftloop.monitoring.monitor import monitor_predictions

    version, train_run_id = champion
    score_store_batch(cfg, telco_frame.iloc[BATCH_ROWS], "gone", version, train_run_id, scorer)
    remove_file(StatePaths.for_dataset(cfg).predictions_dir / "gone.parquet")

    result = monitor_predictions(cfg)

    assert result["monitored"] == [] and len(result["skipped"]) == 1
    assert "does not exist" in result["skipped"][0]["reason"]
    assert monitoring_runs(cfg) == []


def test_extract_drift_counts_features_only():
    from driftloop.monitoring.drift import extract_drift

    def value_drift(column: str, score: float) -> dict:
        return {"config": {"type": "evidently:metric_v2:ValueDrift", "column": column}, "value": score}

    def drift_test(column: str, status: str) -> dict:
        return {
            "metric_config": {"params": {"type": "evidently:metric_v2:ValueDrift", "column": column}},
            "status": status,
        }

    snapshot = {
        "metrics": [
            {
                "config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
                "value": {"count": 1.0, "share": 0.5},
            },
            value_drift("a", 0.4),
            value_drift("b", 0.01),
            value_drift("score", 0.3),
        ],
        "tests": [drift_test("a", "FAIL"), drift_test("b", "SUCCESS"), drift_test("score", "FAIL")],
    }

    result = extract_drift(snapshot, ["a", "b"])

    assert result == {
        "drift_share": 0.5,
        "drifted_columns": 1.0,
        "drift_scores": {"a": 0.4, "b": 0.01, "score": 0.3},
        "methods": {"a": "", "b": "", "score": ""},
        "drifted_column_names": ["a"],
        "prediction_drift_score": 0.3,
        "prediction_drifted": True,
        "output_columns": ["score"],
    }


def test_more_labels_refresh_live_metrics_until_batch_is_fully_labelled(
    cfg, telco_frame, scorer, champion, data_store
):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions

    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS]
    score_store_batch(cfg, batch, "b004", version, train_run_id, scorer)
    write_store_labels(cfg, batch.iloc[:500], "part1")

    [item] = monitor_predictions(cfg)["monitored"]
    assert item["labelled_rows"] == 500
    assert monitor_predictions(cfg) == {"monitored": [], "updated_with_labels": [], "skipped": []}

    write_store_labels(cfg, batch.iloc[500:], "part2")
    [update] = monitor_predictions(cfg)["updated_with_labels"]
    assert update["monitoring_run_id"] == item["monitoring_run_id"] and update["labelled_rows"] == 2000
    history = get_client().get_metric_history(item["monitoring_run_id"], "labelled_rows")
    assert sorted(m.value for m in history) == [500.0, 2000.0]

    write_store_labels(cfg, telco_frame.iloc[HOLDOUT_ROWS], "other_customers")  # fully labelled: left alone
    assert monitor_predictions(cfg) == {"monitored": [], "updated_with_labels": [], "skipped": []}
    assert len(get_client().get_metric_history(item["monitoring_run_id"], "live_f1")) == 2


def test_small_reference_uses_p_values_and_still_separates_clean_from_drifted(telco_cfg, telco_frame, scorer):
    from driftloop.monitoring.drift import compute_drift

    score, _ = scorer
    frame = telco_frame.assign(score=score(telco_frame))
    reference, current = frame.iloc[:800], frame.iloc[4000:4500]

    clean = compute_drift(telco_cfg, reference, current)
    shifted_current = drift_frame(current)
    shifted_current["score"] = score(shifted_current)
    drifted = compute_drift(telco_cfg, reference, shifted_current)

    assert set(clean["methods"].values()) == {"K-S p_value", "Z-test p_value", "chi-square p_value"}
    assert clean["drift_share"] < 0.3 and not clean["prediction_drifted"]
    shifted = {"tenure", "monthly_charges", "total_charges", "contract", "internet_service", "payment_method"}
    shifted |= {"tech_support", "online_security", "paperless_billing"}
    assert shifted <= set(drifted["drifted_column_names"])
    assert drifted["drift_share"] >= 9 / 19
    assert drifted["drift_scores"]["tenure"] < 1e-6  # a p-value: small means drift
    assert drifted["prediction_drifted"]


def test_feature_empty_in_current_counts_as_drifted(telco_cfg, telco_frame, scorer):
    from driftloop.monitoring.drift import compute_drift

    score, _ = scorer
    frame = telco_frame.assign(score=score(telco_frame))
    current = frame.iloc[4000:4500].assign(contract=None)

    result = compute_drift(telco_cfg, frame.iloc[:2000], current)

    assert result["empty_columns"] == ["contract"]
    assert "contract" in result["drifted_column_names"] and "contract" not in result["drift_scores"]
    assert result["drift_share"] == pytest.approx(len(result["drifted_column_names"]) / 19)


def test_ndcg_is_one_for_the_same_ranking_and_drops_when_the_top_feature_changes():
    from driftloop.monitoring.attribution import ndcg

    reference = {"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.05}
    assert ndcg(reference, {"a": 9, "b": 5, "c": 1, "d": 0}) == pytest.approx(1.0)
    swapped = ndcg(reference, {"c": 9, "b": 5, "a": 1, "d": 0}, k=3)
    ideal = 0.5 + 0.3 / np.log2(3) + 0.1 / 2
    assert swapped == pytest.approx((0.1 + 0.3 / np.log2(3) + 0.5 / 2) / ideal)


def test_drift_is_explained_by_the_champions_importance_and_fairness_is_tracked_on_labels(
    cfg, telco_frame, scorer
):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions
    from tests.fakes import register_champion

    importance = {feature: 0.01 for feature in cfg.features}
    importance.update({"tenure": 0.5, "contract": 0.3})
    version, train_run_id = register_champion(cfg, telco_frame, scorer, importance=importance)
    batch = telco_frame.iloc[BATCH_ROWS]
    score_batch(cfg, drift_frame(batch), "explained", version, train_run_id, scorer)
    write_labels(cfg, batch, "l_explained")

    [item] = monitor_predictions(cfg)["monitored"]
    run = get_client().get_run(item["monitoring_run_id"])
    tags, metrics = run.data.tags, run.data.metrics
    assert tags[bus.DRIFT_ROOT_CAUSE_TAG].startswith("tenure (importance 0.500); contract (importance 0.300)")
    drifted = set(tags[bus.DRIFTED_COLUMN_NAMES_TAG].split(","))
    expected_share = sum(importance[f] for f in drifted) / sum(importance.values())
    assert metrics[bus.DRIFT_IMPORTANCE_SHARE] == pytest.approx(expected_share)
    assert 0.0 < metrics[bus.ATTRIBUTION_NDCG] <= 1.0
    assert set(tags[bus.ATTRIBUTION_TOP_TAG].split(",")) <= set(cfg.features)
    for attribute in ("female", "senior_citizen"):
        for gap in ("demographic_parity_difference", "equalized_odds_difference"):
            assert 0.0 <= metrics[bus.fairness_metric(attribute, gap)] <= 1.0


def _small_chunks(cfg, rows: int):
    import dataclasses

    return dataclasses.replace(cfg, monitoring=dataclasses.replace(cfg.monitoring, chunk_rows=rows))


def test_chunked_label_join_is_exact_and_the_latest_label_wins(
    cfg, telco_frame, scorer, champion, data_store
):
    from sklearn.metrics import f1_score

    from driftloop.monitoring.monitor import monitor_predictions

    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS]
    score_store_batch(cfg, batch, "chunked", version, train_run_id, scorer)
    write_store_labels(cfg, batch.iloc[:1500], "a_first", flip=True)  # corrected by the next file
    write_store_labels(cfg, batch.iloc[:1500], "b_second")

    [item] = monitor_predictions(_small_chunks(cfg, 256))["monitored"]

    score, _ = scorer
    labelled = batch.iloc[:1500]
    expected = f1_score(labelled[cfg.target] == "Yes", score(labelled) >= 0.5)
    assert item["labelled_rows"] == 1500
    assert item["live_f1"] == pytest.approx(expected)


def test_live_metrics_above_the_cap_are_sampled_counted_in_full_and_tagged(
    cfg, telco_frame, scorer, champion, monkeypatch
):
    from driftloop.core.tracking import get_client
    from driftloop.monitoring import monitor

    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS]
    score_batch(cfg, batch, "capped", version, train_run_id, scorer)
    write_labels(cfg, batch.iloc[:1500], "l_capped")
    monkeypatch.setattr(monitor, "MAX_LIVE_ROWS", 600)

    [item] = monitor.monitor_predictions(_small_chunks(cfg, 256), max_rows=700)["monitored"]

    run = get_client().get_run(item["monitoring_run_id"])
    assert run.data.tags[bus.CURRENT_SAMPLE_TAG] == (
        "700 of 2000 rows with the smallest id hashes; "
        "live metrics on the 600 of 1500 labelled rows with the smallest id hashes"
    )
    assert run.data.metrics["rows_compared"] == 700 and run.data.metrics["labelled_rows"] == 1500
    assert 0.45 < item["live_f1"] < 0.75
