"""Served traffic in the closed loop: labels joined to predictions, windows exported to monitoring, the drift
sensor's performance trigger on served labels, and the A/B decision with its promotion.
"""

from __future__ import annotations

import dataclasses
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from driftloop.core import bus
from tests.serving.helpers import LiveServer, register_model, split_body


def land_labels(cfg, labels: pd.DataFrame, name: str) -> None:
    """Drop a label file into the landing zone and run the data stage's label ingestion on it."""
    from driftloop.core.state import StatePaths
    from driftloop.data.ingest import ingest_labels

    landing = StatePaths.for_dataset(cfg).labels_landing_dir
    landing.mkdir(parents=True, exist_ok=True)
    labels.to_csv(landing / f"{name}.csv", index=False)
    result = ingest_labels(cfg)
    assert result["quarantined"] == [], result


def serve(cfg, requests: list[dict], labels: list[dict] | None = None) -> list[dict]:
    """Run the service, send ``requests`` (and ``labels`` to POST /labels), stop it; returns the responses."""
    from driftloop.core.settings import Settings
    from driftloop.serving.online.app import create_app

    with (
        LiveServer(create_app(cfg, Settings.from_env())) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        responses = [client.post("/invocations", json=body) for body in requests]
        assert all(r.status_code == 200 for r in responses), [
            r.text for r in responses if r.status_code != 200
        ]
        for body in labels or []:
            assert client.post("/labels", json=body).status_code == 202
    return [r.json() for r in responses]


def test_labels_join_served_predictions_by_entity_and_by_request_id(cfg, serve_env, telco_frame, good_model):
    from driftloop.core.settings import Settings
    from driftloop.serving.online.labels import join_labels, read_accepted_labels
    from driftloop.serving.online.prediction_log import log_uri, read_log

    register_model(cfg, good_model, telco_frame, bus.CHAMPION)
    rows = telco_frame.iloc[3000:3020].reset_index(drop=True)
    with_ids = split_body(cfg, rows.iloc[:10])
    anonymous = [split_body(cfg, rows.iloc[i : i + 1], with_ids=False) for i in range(10, 13)]
    responses = serve(cfg, [with_ids, *anonymous])
    request_ids = [r["request_id"] for r in responses[1:]]
    label_body = {"labels": [{cfg.id_column: cid, cfg.target: "Yes"} for cid in rows[cfg.id_column][:6]]}
    by_request = {
        "labels": [
            {"request_id": request_ids[0], cfg.target: "No"},
            {"request_id": request_ids[2], cfg.target: "Yes"},
        ]
    }
    serve(cfg, [], [label_body, by_request])
    from driftloop.data.ingest import ingest_labels

    assert ingest_labels(cfg)["quarantined"] == []
    log = read_log(log_uri(cfg, Settings.from_env()), cfg.registered_model_name)
    assert len(log) == 13 and set(log["entity_id"]) >= set(request_ids)
    joined = join_labels(log, read_accepted_labels(cfg))
    assert sorted(joined["entity_id"]) == sorted([*rows[cfg.id_column][:6], request_ids[0], request_ids[2]])
    by_entity = joined.set_index("entity_id")["label"]
    assert by_entity[request_ids[0]] == "No" and by_entity[request_ids[2]] == "Yes"
    assert by_entity[rows[cfg.id_column][0]] == "Yes"


def test_served_labels_trigger_a_performance_retrain(cfg, serve_env, telco_frame, good_model):
    """Served window → inference run + batch + predictions → monitoring with live F1 drop → sensor:
    performance."""
    from driftloop.core.tracking import get_client
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.monitoring.sensor import find_drift_trigger
    from driftloop.serving.batch_scoring import pending_batches
    from driftloop.serving.online.export import export_served_windows

    version, train_run_id = register_model(cfg, good_model, telco_frame, bus.CHAMPION)
    served = telco_frame.iloc[3000:3400].reset_index(drop=True)
    flipped = served[[cfg.id_column, cfg.target]].assign(
        **{cfg.target: served[cfg.target].map({"Yes": "No", "No": "Yes"})}
    )  # the world changed: concept drift
    label_body = {"labels": flipped.to_dict(orient="records")}
    serve(cfg, [split_body(cfg, served.iloc[i : i + 50]) for i in range(0, 400, 50)], [label_body])
    from driftloop.data.ingest import ingest_labels

    assert ingest_labels(cfg)["quarantined"] == []

    assert export_served_windows(cfg)["exported"] == []  # the window is still open
    later = time.time() + cfg.serving.window_s + cfg.serving.export_grace_s
    exported = export_served_windows(cfg, now_s=later)
    [window] = exported["exported"]
    assert window["rows"] == 400 and window["model_version"] == version
    assert window["batch_id"].startswith(bus.SERVED_BATCH_PREFIX) and window["batch_id"].endswith(
        f"__v{version}"
    )
    assert export_served_windows(cfg, now_s=later)["exported"] == []  # idempotent
    assert pending_batches(cfg) == []  # inference never re-scores a served window
    run = get_client().get_run(window["inference_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags[bus.MODEL_RUN_ID_TAG] == train_run_id
    assert run.data.tags[bus.SERVED_WINDOW_TAG] == window["window_start"]

    [monitored] = monitor_predictions(cfg)["monitored"]
    assert monitored["batch_id"] == window["batch_id"] and monitored["labelled_rows"] == 400
    assert (
        monitored["drift_share"] < cfg.monitoring.drift_share_threshold
    )  # same population: not a drift trigger
    trigger = find_drift_trigger(cfg)
    assert trigger is not None and trigger["reason"] == "performance", trigger
    assert (
        trigger["monitoring_run_id"] == monitored["monitoring_run_id"]
        and trigger["champion_version"] == version
    )


def simulate_traffic(
    cfg,
    champion: str,
    challenger: str,
    entities: int,
    accuracy: dict[str, float],
    shadow: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """Write an A/B (or shadow) experiment's served rows into the prediction log; returns the true labels."""
    from driftloop.core.settings import Settings
    from driftloop.serving.online.prediction_log import LogEntry, PredictionLogWriter, log_uri

    rng = np.random.default_rng(seed)
    experiment = bus.ab_experiment_id(champion, challenger)
    truth = rng.random(entities) < 0.3
    writer = PredictionLogWriter(
        log_uri(cfg, Settings.from_env()), cfg.registered_model_name, 10 * entities + 10
    )
    writer.start()
    start = time.time() - 3600
    for i in range(entities):
        answering = bus.CHAMPION if shadow or i % 2 == 0 else bus.CHALLENGER
        others = [answering] + ([bus.CHALLENGER] if shadow else [])
        for role, arm in zip(("primary", "shadow"), others, strict=False):
            right = rng.random() < accuracy[arm]
            positive = bool(truth[i] if right else not truth[i])
            score = 0.25 + 0.5 * positive + 0.2 * (rng.random() - 0.5)
            writer.submit(
                LogEntry(
                    start + i,
                    f"req-{i}",
                    role,
                    [0],
                    [f"E-{i:05d}"],
                    [arm],
                    [champion if arm == bus.CHAMPION else challenger],
                    experiment,
                    [score],
                    ["Yes" if positive else "No"],
                    None,
                    5.0 if role == "primary" else None,
                    {"tenure": [1]},
                )
            )
    writer.close()
    return pd.DataFrame(
        {cfg.id_column: [f"E-{i:05d}" for i in range(entities)], cfg.target: np.where(truth, "Yes", "No")}
    )


@pytest.fixture
def two_versions(cfg, serve_env, telco_frame, good_model, flipped_model):
    """(champion version, challenger version) registered for ``cfg``."""
    champion, _ = register_model(cfg, good_model, telco_frame, bus.CHAMPION)
    challenger, _ = register_model(cfg, flipped_model, telco_frame, bus.CHALLENGER)
    return champion, challenger


def test_ab_decision_promotes_a_truly_better_challenger_once(cfg, two_versions):
    from driftloop.core.registry import resolve_alias
    from driftloop.core.tracking import get_client
    from driftloop.serving.online.ab_decision import evaluate_ab

    champion, challenger = two_versions
    labels = simulate_traffic(cfg, champion, challenger, 4000, {bus.CHAMPION: 0.72, bus.CHALLENGER: 0.84})
    land_labels(cfg, labels, "ab-labels")
    manual = dataclasses.replace(cfg, gates=dataclasses.replace(cfg.gates, policy="manual"))
    first = evaluate_ab(manual, actor="test")
    assert first["decision"] == bus.AB_PROMOTE, first["reason"]
    assert first["promotion"] == "ready" and first["ab"]["n_champion"] == 2000
    assert resolve_alias(cfg, bus.CHAMPION)["model_version"] == champion  # manual: a person moves champion
    again = evaluate_ab(manual, actor="test")
    assert again["reused"] and again["run_id"] == first["run_id"]  # the same look is recorded once

    run = get_client().get_run(first["run_id"])
    assert run.data.tags[bus.AB_DECISION_TAG] == bus.AB_PROMOTE
    assert run.data.tags[bus.AB_EXPERIMENT_TAG] == f"v{champion}-vs-v{challenger}"
    assert run.data.metrics[bus.arm_metric("ab_accuracy", bus.CHALLENGER)] > 0.8
    assert run.data.metrics[bus.AB_SEQUENTIAL_P_VALUE] < 0.025


def test_ab_promotion_goes_through_the_auto_policy(cfg, two_versions):
    from driftloop.core.registry import resolve_alias
    from driftloop.serving.online.ab_decision import evaluate_ab

    champion, challenger = two_versions
    labels = simulate_traffic(
        cfg, champion, challenger, 4000, {bus.CHAMPION: 0.72, bus.CHALLENGER: 0.84}, seed=3
    )
    land_labels(cfg, labels, "ab-labels")
    promoted = evaluate_ab(cfg, actor="test")  # auto policy: promotion.promote_version moves champion
    assert promoted["decision"] == bus.AB_PROMOTE and promoted["promotion"] == "moved", promoted["reason"]
    assert resolve_alias(cfg, bus.CHAMPION)["model_version"] == challenger
    assert (
        evaluate_ab(cfg)["decision"] == bus.AB_NO_CHALLENGER
    )  # challenger is champion now: nothing to compare


def test_ab_decision_says_not_enough_data_when_undecidable(cfg, two_versions):
    from driftloop.core.registry import resolve_alias
    from driftloop.serving.online.ab_decision import evaluate_ab

    champion, challenger = two_versions
    labels = simulate_traffic(
        cfg, champion, challenger, 200, {bus.CHAMPION: 0.74, bus.CHALLENGER: 0.78}, seed=1
    )
    land_labels(cfg, labels, "few-labels")
    result = evaluate_ab(cfg, actor="test")
    assert result["decision"] == bus.AB_NOT_ENOUGH_DATA and result["promotion"] == "none", result["reason"]
    assert result["ab"]["min_entities_per_arm"] > 100
    assert resolve_alias(cfg, bus.CHAMPION)["model_version"] == champion


def test_shadow_comparison_is_paired(cfg, two_versions):
    from driftloop.serving.online.ab_decision import evaluate_ab

    champion, challenger = two_versions
    labels = simulate_traffic(
        cfg, champion, challenger, 3000, {bus.CHAMPION: 0.70, bus.CHALLENGER: 0.80}, shadow=True, seed=2
    )
    land_labels(cfg, labels, "shadow-labels")
    result = evaluate_ab(cfg, apply=False)
    assert result["ab"] is None and result["decided_by"] == "mcnemar", result
    assert result["decision"] == bus.AB_PROMOTE and result["promotion"] == "none"
    assert result["shadow"]["pairs"] == 3000 and result["shadow"]["auc"]["diff"] > 0


def test_cli_commands_run_without_airflow(serve_env, capsys):
    import json
    import uuid

    from driftloop.cli import main

    serve_env.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps({"model_name": f"cli-{uuid.uuid4().hex[:8]}"}))

    assert main(["serving-export", "--dataset", "telco_churn"]) == 0
    assert json.loads(capsys.readouterr().out)["exported"] == []
    assert main(["ab-evaluate", "--dataset", "telco_churn", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == bus.AB_NO_CHALLENGER
