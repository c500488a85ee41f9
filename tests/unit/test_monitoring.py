"""Monitoring and drift-sensor logic against a SQLite MLflow, with the training and inference stages faked.

The fakes write exactly what those stages publish (see docs/architecture.md): a training run with
``reference/reference.parquet`` and holdout metrics registered as the ``champion`` version, and per batch an
accepted batch parquet, a predictions parquet and a FINISHED inference run with the lineage tags.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest

TRAIN_ROWS = slice(0, 4000)
BATCH_ROWS = slice(4000, 6000)
HOLDOUT_ROWS = slice(6000, None)
T0 = 1_800_000_000.0


@pytest.fixture
def cfg(telco_cfg):
    """Telco config under a unique name, so tests sharing the session's MLflow store never see each other."""
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(telco_cfg, name=f"telco_churn_{suffix}", model_name=f"telco-churn-{suffix}")


@pytest.fixture(scope="module")
def scorer(telco_frame):
    """A small logistic regression trained on the first 4,000 customers; returns (predict_proba fn, holdout_f1)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from driftloop.config import Settings, load_dataset_config

    base = load_dataset_config("telco_churn", Settings.from_env({}))
    numeric, categorical = list(base.numeric_features), list(base.categorical_features)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
                ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
            ]
        ),
        LogisticRegression(max_iter=500),
    )
    train = telco_frame.iloc[TRAIN_ROWS]
    model.fit(train[base.features], train[base.target] == base.positive_label)

    def score(frame):
        return model.predict_proba(frame[base.features])[:, 1]

    holdout = telco_frame.iloc[HOLDOUT_ROWS]
    holdout_f1 = f1_score(holdout[base.target] == base.positive_label, score(holdout) >= 0.5)
    return score, float(holdout_f1)


def register_champion(cfg, frame, scorer) -> tuple[str, str]:
    """Fake the training stage: a run with reference.parquet + holdout metrics, registered and aliased champion."""
    from driftloop.tracking import ensure_experiment, get_client

    score, holdout_f1 = scorer
    client = get_client()
    run = client.create_run(ensure_experiment(client, cfg.experiment_name("training")))
    run_id = run.info.run_id
    reference = frame.iloc[TRAIN_ROWS][[cfg.id_column, *cfg.features]].copy()
    reference["score"] = score(reference)
    ref_dir = Path(cfg_home(cfg)) / "tmp_reference"
    ref_dir.mkdir(parents=True, exist_ok=True)
    reference.to_parquet(ref_dir / "reference.parquet", index=False)
    client.log_artifact(run_id, str(ref_dir / "reference.parquet"), artifact_path="reference")
    client.log_metric(run_id, "holdout_f1", holdout_f1)
    client.log_metric(run_id, "holdout_auc", 0.84)
    client.set_terminated(run_id)
    client.create_registered_model(cfg.registered_model_name)  # each test has its own model name
    version = client.create_model_version(
        cfg.registered_model_name, source=f"{run.info.artifact_uri}/model", run_id=run_id
    ).version
    client.set_registered_model_alias(cfg.registered_model_name, "champion", version)
    return str(version), run_id


def cfg_home(cfg) -> Path:
    from driftloop.config import StatePaths

    return StatePaths.for_dataset(cfg).root


def score_batch(cfg, batch_df, batch_id: str, version: str, model_run_id: str, scorer) -> str:
    """Fake the inference stage for one batch; returns the inference run id."""
    from driftloop.config import StatePaths
    from driftloop.tracking import ensure_experiment, get_client

    score, _ = scorer
    paths = StatePaths.for_dataset(cfg)
    paths.batches_dir.mkdir(parents=True, exist_ok=True)
    paths.predictions_dir.mkdir(parents=True, exist_ok=True)
    batch_path = paths.batches_dir / f"{batch_id}.parquet"
    predictions_path = paths.predictions_dir / f"{batch_id}.parquet"
    batch_df[[cfg.id_column, *cfg.features]].to_parquet(batch_path, index=False)
    predictions = batch_df[[cfg.id_column]].copy()
    predictions["score"] = score(batch_df)
    predictions["prediction"] = (predictions["score"] >= cfg.inference.threshold).astype(int)
    predictions["model_name"] = cfg.registered_model_name
    predictions["model_version"] = version
    predictions["model_run_id"] = model_run_id
    predictions["scored_at"] = "2026-11-22T00:00:00Z"
    predictions.to_parquet(predictions_path, index=False)

    client = get_client()
    tags = {
        "driftloop.batch_id": batch_id,
        "driftloop.batch_uri": str(batch_path),
        "driftloop.predictions_uri": str(predictions_path),
        "driftloop.model_version": version,
        "driftloop.model_run_id": model_run_id,
    }
    run = client.create_run(ensure_experiment(client, cfg.experiment_name("inference")), tags=tags)
    client.log_metric(run.info.run_id, "rows", len(predictions))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def write_labels(cfg, batch_df, name: str, flip: bool = False) -> None:
    """Fake the data stage's accepted late labels; ``flip`` swaps Yes/No to simulate concept drift."""
    from driftloop.config import StatePaths

    labels = batch_df[[cfg.id_column, cfg.target]].copy()
    if flip:
        labels[cfg.target] = labels[cfg.target].map({"Yes": "No", "No": "Yes"})
    labels_dir = StatePaths.for_dataset(cfg).labels_dir
    labels_dir.mkdir(parents=True, exist_ok=True)
    labels.to_parquet(labels_dir / f"{name}.parquet", index=False)


def drift_frame(frame):
    """Covariate shift on 3 numeric and 6 categorical features (9 of 19)."""
    drifted = frame.copy()
    drifted["tenure"] = drifted["tenure"] * 3
    drifted["monthly_charges"] = drifted["monthly_charges"] + 50
    drifted["total_charges"] = drifted["total_charges"] * 2.5
    drifted["contract"] = "Month-to-month"
    drifted["internet_service"] = "Fiber optic"
    drifted["payment_method"] = "Electronic check"
    drifted["tech_support"] = "No"
    drifted["online_security"] = "No"
    drifted["paperless_billing"] = 1
    return drifted


def monitoring_runs(cfg) -> list[Any]:
    from driftloop.tracking import get_client, search_runs

    return search_runs(get_client(), cfg.experiment_name("monitoring"))


@pytest.fixture
def champion(cfg, telco_frame, scorer):
    """(version, training run id) of a registered champion for ``cfg``."""
    return register_champion(cfg, telco_frame, scorer)


def test_clean_batch_is_not_drift_and_does_not_fire(cfg, telco_frame, scorer, champion):
    from driftloop.monitoring import find_drift_trigger, monitor_predictions
    from driftloop.tracking import get_client

    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS]
    inference_run_id = score_batch(cfg, batch, "b001", version, train_run_id, scorer)
    write_labels(cfg, batch, "l001")

    result = monitor_predictions(cfg)

    assert result["updated_with_labels"] == [] and result["skipped"] == []
    [item] = result["monitored"]
    assert item["batch_id"] == "b001" and item["inference_run_id"] == inference_run_id
    assert item["drift_share"] < 0.3
    assert item["drifted_columns"] == round(item["drift_share"] * 19)
    run = get_client().get_run(item["monitoring_run_id"])
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["driftloop.inference_run_id"] == inference_run_id
    assert tags["driftloop.champion_version"] == version
    assert tags["driftloop.reference_run_id"] == train_run_id
    assert tags["driftloop.current_sample"] == "all 2000 rows"
    assert metrics["rows"] == 2000 and metrics["rows_compared"] == 2000 and metrics["reference_rows"] == 4000
    assert {f"drift_score.{col}" for col in cfg.features} <= set(metrics)
    assert metrics["drift_score.tenure"] < 0.1  # normed Wasserstein; the threshold is 0.1
    assert metrics["prediction_drifted"] == 0.0 and metrics["prediction_drift_score"] < 0.1
    # Same customers' true labels: live F1 close to the holdout F1 of the same model.
    assert metrics["labelled_rows"] == 2000
    assert 0.45 < metrics["live_f1"] < 0.75 and 0.75 < metrics["live_auc"] < 0.95
    assert abs(metrics["live_f1_drop"]) < cfg.monitoring.f1_drop_threshold
    assert abs(metrics["live_f1_drop"] - (scorer[1] - metrics["live_f1"]) / scorer[1]) < 1e-9
    artifacts = [a.path for a in get_client().list_artifacts(run.info.run_id)]
    assert artifacts == ["drift_report.html", "drift_summary.json"]
    assert tags["driftloop.drift_methods"] == "Jensen-Shannon distance,Wasserstein distance (normed)"

    assert find_drift_trigger(cfg, now_s=T0) is None
    untagged = get_client().get_run(item["monitoring_run_id"]).data.tags
    assert "driftloop.sensor_suppressed" not in untagged and "driftloop.sensor_fired_at" not in untagged


def test_drifted_batch_fires_once_and_second_call_is_noop(cfg, telco_frame, scorer, champion):
    from driftloop.monitoring import find_drift_trigger, mark_trigger_fired, monitor_predictions
    from driftloop.tracking import get_client

    version, train_run_id = champion
    score_batch(cfg, drift_frame(telco_frame.iloc[BATCH_ROWS]), "b002", version, train_run_id, scorer)

    [item] = monitor_predictions(cfg)["monitored"]
    assert item["drift_share"] >= 0.3
    assert item["drifted_columns"] >= 8
    metrics = get_client().get_run(item["monitoring_run_id"]).data.metrics
    assert metrics["drift_score.tenure"] > 0.5 and metrics["drift_score.contract"] > 0.3
    assert "live_f1" not in metrics  # no labels yet

    trigger = find_drift_trigger(cfg, now_s=T0)
    assert trigger is not None
    assert trigger["reason"] == "drift"
    assert trigger["monitoring_run_id"] == item["monitoring_run_id"]
    assert trigger["champion_version"] == version
    assert trigger["drift_share"] == pytest.approx(item["drift_share"])
    assert trigger["live_f1_drop"] is None
    assert "threshold 0.30" in trigger["detail"] and "b002" in trigger["detail"]

    fired = mark_trigger_fired(cfg, trigger["monitoring_run_id"], "manual__retrain_1", now_s=T0)
    assert fired == {
        "monitoring_run_id": item["monitoring_run_id"],
        "trigger_run_id": "manual__retrain_1",
        "fired_at": int(T0),
        "covered_run_ids": [],
    }
    tags = get_client().get_run(item["monitoring_run_id"]).data.tags
    assert tags["driftloop.sensor_fired_at"] == str(int(T0))
    assert tags["driftloop.sensor_trigger_run_id"] == "manual__retrain_1"
    retried = mark_trigger_fired(cfg, trigger["monitoring_run_id"], "manual__retrain_1", now_s=T0 + 300)
    assert retried["fired_at"] == int(T0)  # a task retry keeps the original firing time
    # Long after the cooldown the same result still never fires again.
    assert find_drift_trigger(cfg, now_s=T0 + 10 * cfg.monitoring.cooldown_s) is None

    before = len(monitoring_runs(cfg))
    again = monitor_predictions(cfg)
    assert again == {"monitored": [], "updated_with_labels": [], "skipped": []}
    assert len(monitoring_runs(cfg)) == before == 1


def test_cooldown_suppresses_second_episode_and_allows_third(cfg, telco_frame, scorer, champion):
    from driftloop.monitoring import find_drift_trigger, mark_trigger_fired, monitor_predictions
    from driftloop.tracking import get_client

    version, train_run_id = champion
    drifted = drift_frame(telco_frame.iloc[BATCH_ROWS])
    cooldown_s = cfg.monitoring.cooldown_s

    score_batch(cfg, drifted, "e1", version, train_run_id, scorer)
    monitor_predictions(cfg)
    first = find_drift_trigger(cfg, now_s=T0)
    mark_trigger_fired(cfg, first["monitoring_run_id"], "retrain-1", now_s=T0)

    score_batch(cfg, drifted, "e2", version, train_run_id, scorer)
    [second] = monitor_predictions(cfg)["monitored"]
    assert find_drift_trigger(cfg, now_s=T0 + cooldown_s - 60) is None
    assert (
        get_client().get_run(second["monitoring_run_id"]).data.tags["driftloop.sensor_suppressed"]
        == "cooldown"
    )

    score_batch(cfg, drifted, "e3", version, train_run_id, scorer)
    [third] = monitor_predictions(cfg)["monitored"]
    trigger = find_drift_trigger(cfg, now_s=T0 + cooldown_s + 1)
    assert trigger is not None and trigger["monitoring_run_id"] == third["monitoring_run_id"]


def test_one_episode_fires_once_for_several_crossing_batches(cfg, telco_frame, scorer, champion):
    from driftloop.monitoring import find_drift_trigger, mark_trigger_fired, monitor_predictions
    from driftloop.tracking import get_client

    version, train_run_id = champion
    drifted = drift_frame(telco_frame.iloc[BATCH_ROWS])
    score_batch(cfg, drifted.iloc[:1000], "p1", version, train_run_id, scorer)
    score_batch(cfg, drifted.iloc[1000:], "p2", version, train_run_id, scorer)

    monitored = monitor_predictions(cfg)["monitored"]
    assert [m["batch_id"] for m in monitored] == ["p1", "p2"]  # oldest first
    trigger = find_drift_trigger(cfg, now_s=T0)
    newest = trigger["monitoring_run_id"]
    assert newest == monitored[1]["monitoring_run_id"]

    fired = mark_trigger_fired(cfg, newest, "retrain-9", now_s=T0)
    assert fired["covered_run_ids"] == [monitored[0]["monitoring_run_id"]]
    covered_tags = get_client().get_run(monitored[0]["monitoring_run_id"]).data.tags
    assert covered_tags["driftloop.sensor_suppressed"] == f"covered_by:{newest}"
    assert find_drift_trigger(cfg, now_s=T0 + 10 * cfg.monitoring.cooldown_s) is None


def test_late_labels_update_run_and_fire_performance(cfg, telco_frame, scorer, champion):
    from driftloop.monitoring import find_drift_trigger, monitor_predictions
    from driftloop.tracking import get_client

    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS]
    score_batch(cfg, batch, "b003", version, train_run_id, scorer)
    [item] = monitor_predictions(cfg)["monitored"]
    assert "live_f1" not in item
    assert find_drift_trigger(cfg, now_s=T0) is None  # clean features, no labels yet

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
    assert update["live_f1_drop"] == pytest.approx((holdout_f1 - update["live_f1"]) / holdout_f1)
    metrics = get_client().get_run(item["monitoring_run_id"]).data.metrics
    assert metrics["live_f1"] == pytest.approx(update["live_f1"])
    assert len(monitoring_runs(cfg)) == 1

    trigger = find_drift_trigger(cfg, now_s=T0)
    assert trigger["reason"] == "performance"
    assert trigger["live_f1_drop"] == pytest.approx(update["live_f1_drop"])
    assert trigger["drift_share"] < 0.3
    assert "below holdout" in trigger["detail"]

    assert monitor_predictions(cfg) == {"monitored": [], "updated_with_labels": [], "skipped": []}


def test_large_batch_is_sampled_and_tagged(cfg, telco_frame, scorer, champion):
    from driftloop.monitoring import monitor_predictions
    from driftloop.tracking import get_client

    version, train_run_id = champion
    score_batch(cfg, telco_frame.iloc[BATCH_ROWS], "big", version, train_run_id, scorer)

    [item] = monitor_predictions(cfg, max_rows=500)["monitored"]

    run = get_client().get_run(item["monitoring_run_id"])
    assert run.data.tags["driftloop.current_sample"] == "random 500 of 2000 rows (seed 42)"
    assert run.data.metrics["rows_compared"] == 500 and run.data.metrics["rows"] == 2000


def test_broken_inference_run_is_skipped_not_fatal(cfg, telco_frame, scorer, champion):
    from driftloop.config import StatePaths
    from driftloop.monitoring import monitor_predictions

    version, train_run_id = champion
    score_batch(cfg, telco_frame.iloc[BATCH_ROWS], "gone", version, train_run_id, scorer)
    (StatePaths.for_dataset(cfg).predictions_dir / "gone.parquet").unlink()

    result = monitor_predictions(cfg)

    assert result["monitored"] == [] and len(result["skipped"]) == 1
    assert "does not exist" in result["skipped"][0]["reason"]
    assert monitoring_runs(cfg) == []


def test_no_champion_means_no_trigger(cfg):
    from driftloop.monitoring import find_drift_trigger

    assert find_drift_trigger(cfg, now_s=T0) is None


def test_extract_drift_counts_features_only():
    from driftloop.monitoring import extract_drift

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
    }


def test_more_labels_refresh_live_metrics_until_batch_is_fully_labelled(cfg, telco_frame, scorer, champion):
    from driftloop.monitoring import monitor_predictions
    from driftloop.tracking import get_client

    version, train_run_id = champion
    batch = telco_frame.iloc[BATCH_ROWS]
    score_batch(cfg, batch, "b004", version, train_run_id, scorer)
    write_labels(cfg, batch.iloc[:500], "part1")

    [item] = monitor_predictions(cfg)["monitored"]
    assert item["labelled_rows"] == 500
    assert monitor_predictions(cfg) == {"monitored": [], "updated_with_labels": [], "skipped": []}

    write_labels(cfg, batch.iloc[500:], "part2")
    [update] = monitor_predictions(cfg)["updated_with_labels"]
    assert update["monitoring_run_id"] == item["monitoring_run_id"] and update["labelled_rows"] == 2000
    history = get_client().get_metric_history(item["monitoring_run_id"], "labelled_rows")
    assert sorted(m.value for m in history) == [500.0, 2000.0]

    write_labels(cfg, telco_frame.iloc[HOLDOUT_ROWS], "other_customers")  # fully labelled run is left alone
    assert monitor_predictions(cfg) == {"monitored": [], "updated_with_labels": [], "skipped": []}
    assert len(get_client().get_metric_history(item["monitoring_run_id"], "live_f1")) == 2


def test_small_reference_uses_p_values_and_still_separates_clean_from_drifted(telco_cfg, telco_frame, scorer):
    from driftloop.monitoring import compute_drift

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
    from driftloop.monitoring import compute_drift

    score, _ = scorer
    frame = telco_frame.assign(score=score(telco_frame))
    current = frame.iloc[4000:4500].assign(contract=None)

    result = compute_drift(telco_cfg, frame.iloc[:2000], current)

    assert result["empty_columns"] == ["contract"]
    assert "contract" in result["drifted_column_names"] and "contract" not in result["drift_scores"]
    assert result["drift_share"] == pytest.approx(len(result["drifted_column_names"]) / 19)
