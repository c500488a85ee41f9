"""Promotion gate and alias resolution against a SQLite MLflow registry.

The module trains real (fast) models once, whose order is known without asking the gate: a logistic regression on
1,500 customers (AUC ~0.84); an unpruned decision tree on the same snapshot (AUC ~0.65, same holdout); the same
logistic regression on that snapshot with its labels shuffled (no signal: AUC ~0.5); and one trained on 40
customers only. Each test registers copies of them under its own fresh model name, so tests never share aliases.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from types import SimpleNamespace

import pytest

from driftloop import bus
from tests.conftest import write_snapshot

FAST_OVERRIDES = {"training": {"models": ["lr"], "folds": 2, "tune_iter": 0, "reference_rows": 500}}
SNAPSHOT_ROWS = 1500
TINY_ROWS = 40


@pytest.fixture(scope="module")
def models(tmp_path_factory, mlflow_uri, telco_frame):
    """A good and a weak model, trained once; the environment stays set for the whole module."""
    from driftloop.config import load_dataset_config
    from driftloop.tracking import get_client
    from driftloop.training import train_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(tmp_path_factory.mktemp("registry-home")))
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        mp.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps(FAST_OVERRIDES))
        mp.setenv("DRIFTLOOP_N_JOBS", "1")
        mp.delenv("DRIFTLOOP_DATASET", raising=False)
        mp.delenv("DRIFTLOOP_CONFIG_DIR", raising=False)
        suffix = uuid.uuid4().hex[:8]
        cfg = dataclasses.replace(
            load_dataset_config("telco_churn"),
            name=f"telco_churn_{suffix}",
            model_name=f"telco-churn-{suffix}",
        )
        frame = telco_frame.sample(SNAPSHOT_ROWS, random_state=11).reset_index(drop=True)
        snapshot_uri = write_snapshot(cfg, frame)["snapshot_uri"]
        good = train_model(cfg, snapshot_uri=snapshot_uri)
        weak_cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, models=("dt",)))
        weak = train_model(weak_cfg, snapshot_uri=snapshot_uri, trigger={"trigger_id": "weak"})
        shuffled_frame = frame.assign(churn=frame["churn"].sample(frac=1.0, random_state=5).to_numpy())
        shuffled_uri = write_snapshot(cfg, shuffled_frame)["snapshot_uri"]
        shuffled = train_model(cfg, snapshot_uri=shuffled_uri, trigger={"trigger_id": "shuffled"})
        tiny_uri = write_snapshot(cfg, frame.head(TINY_ROWS))["snapshot_uri"]
        tiny = train_model(cfg, snapshot_uri=tiny_uri, trigger={"trigger_id": "tiny"})
        yield SimpleNamespace(cfg=cfg, good=good, weak=weak, shuffled=shuffled, tiny=tiny, client=get_client())


def fresh_registry(models, *trained: dict, **gates):
    """A new registered model holding copies of ``trained`` results as versions 1, 2, ...; returns its config."""
    client = models.client
    name = f"{models.cfg.registered_model_name}-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    for result in trained:
        source = client.get_model_version(result["model_name"], result["model_version"]).source
        client.create_model_version(name, source, run_id=result["run_id"])
    cfg = dataclasses.replace(models.cfg, model_name=name)
    if gates:
        cfg = dataclasses.replace(cfg, gates=dataclasses.replace(cfg.gates, **gates))
    return cfg


def alias_version(client, name: str, alias: str) -> str:
    return str(client.get_model_version_by_alias(name, alias).version)


def test_trained_models_differ_as_expected(models):
    assert models.good["metrics"]["holdout_auc"] > 0.78
    assert 0.55 < models.weak["metrics"]["holdout_auc"] < 0.75
    assert models.weak["best_model"] == "DecisionTreeClassifier"
    assert abs(models.shuffled["metrics"]["holdout_auc"] - 0.5) < 0.1
    assert [m["model_version"] for m in (models.good, models.weak, models.shuffled, models.tiny)] == ["1", "2", "3", "4"]


def test_challenger_trained_on_shuffled_labels_is_rejected(models):
    from driftloop.registry import promote_model

    cfg = fresh_registry(models, models.good, models.shuffled)
    name, client = cfg.registered_model_name, models.client
    assert promote_model(cfg, "1")["decision"] == "promoted"
    decision = promote_model(cfg, "2")
    assert (decision["decision"], decision["champion_version"]) == ("rejected", "1")
    assert "< floor 0.75" in decision["reason"]
    assert alias_version(client, name, "champion") == "1"


def test_challenger_clearly_better_than_a_champion_from_a_tiny_sample_is_promoted(models):
    from driftloop.registry import promote_model

    cfg = fresh_registry(models, models.tiny, models.good, floors={"AUC": 0.5})
    name, client = cfg.registered_model_name, models.client
    assert promote_model(cfg, "1")["decision"] == "promoted"  # 40 customers are enough to clear a low floor
    decision = promote_model(cfg, "2")
    assert (decision["decision"], decision["champion_version"]) == ("promoted", "2"), decision
    assert decision["candidate_metric"] > decision["champion_metric"]
    assert alias_version(client, name, "champion") == "2"


def test_resolve_alias_is_none_before_any_champion(models):
    from driftloop.registry import resolve_alias

    cfg = fresh_registry(models, models.good)
    assert resolve_alias(cfg) is None
    assert resolve_alias(dataclasses.replace(cfg, model_name="no-such-model")) is None
    models.client.set_registered_model_alias(cfg.registered_model_name, "challenger", "1")
    challenger = resolve_alias(cfg, "challenger")
    assert challenger == {
        "model_name": cfg.registered_model_name,
        "model_version": "1",
        "run_id": models.good["run_id"],
        "model_uri": f"models:/{cfg.registered_model_name}/1",
    }


def test_first_promotion_sets_champion_and_is_idempotent(models):
    from driftloop.registry import promote_model, resolve_alias

    cfg = fresh_registry(models, models.good)
    decision = promote_model(cfg, "1")
    assert decision["decision"] == "promoted"
    assert (decision["champion_version"], decision["candidate_version"]) == ("1", "1")
    assert decision["candidate_metric"] == pytest.approx(models.good["metrics"]["holdout_auc"])
    assert decision["champion_metric"] is None
    assert "AUC" in decision["reason"] and ">= 0.75" in decision["reason"]
    assert resolve_alias(cfg)["model_version"] == "1"
    assert resolve_alias(cfg)["run_id"] == models.good["run_id"]
    tags = models.client.get_model_version(cfg.registered_model_name, "1").tags
    assert tags[bus.GATE_TAG] == "passed"
    assert tags[bus.GATE_REASON_TAG] == decision["reason"]

    again = promote_model(cfg, "1")
    assert (again["decision"], again["champion_version"], again["reason"]) == (
        "promoted",
        "1",
        decision["reason"],
    )
    assert alias_version(models.client, cfg.registered_model_name, "champion") == "1"


def test_floor_failure_raises_with_numbers_and_leaves_no_champion(models):
    from driftloop.errors import GateRejected
    from driftloop.registry import promote_model, resolve_alias

    cfg = fresh_registry(models, models.weak)
    weak_auc = models.weak["metrics"]["holdout_auc"]
    with pytest.raises(GateRejected) as excinfo:
        promote_model(cfg, "1")
    message = str(excinfo.value)
    assert f"AUC {weak_auc:.4f} < floor 0.75" in message
    assert resolve_alias(cfg) is None
    tags = models.client.get_model_version(cfg.registered_model_name, "1").tags
    assert tags[bus.GATE_TAG] == "rejected"
    assert f"{weak_auc:.4f}" in tags[bus.GATE_REASON_TAG]

    # A strict floor rejects even the good model; the reason names the metric, value and floor.
    strict = fresh_registry(models, models.good, floors={"AUC": 0.99})
    good_auc = models.good["metrics"]["holdout_auc"]
    with pytest.raises(GateRejected, match=rf"AUC {good_auc:.4f} < floor 0\.99"):
        promote_model(strict, "1")
    assert resolve_alias(strict) is None


def test_worse_candidate_stays_challenger_and_champion_does_not_move(models):
    from driftloop.registry import promote_model

    # Floors low enough for the weak model, so the decision comes from the head-to-head comparison.
    cfg = fresh_registry(models, models.good, models.weak, floors={"AUC": 0.4})
    name, client = cfg.registered_model_name, models.client
    promote_model(cfg, "1")
    client.set_registered_model_alias(name, "challenger", "2")

    decision = promote_model(cfg, "2")
    assert decision["decision"] == "rejected"
    assert (decision["champion_version"], decision["candidate_version"]) == ("1", "2")
    # Both score the same holdout, so each equals the metric logged at training time.
    assert decision["candidate_metric"] == pytest.approx(models.weak["metrics"]["holdout_auc"])
    assert decision["champion_metric"] == pytest.approx(models.good["metrics"]["holdout_auc"])
    assert alias_version(client, name, "champion") == "1"
    assert alias_version(client, name, "challenger") == "2"
    tags = client.get_model_version(name, "2").tags
    assert tags[bus.GATE_TAG] == "rejected"
    assert float(tags[bus.GATE_CANDIDATE_METRIC_TAG]) == pytest.approx(
        decision["candidate_metric"], abs=1e-6
    )
    assert float(tags[bus.GATE_CHAMPION_METRIC_TAG]) == pytest.approx(
        decision["champion_metric"], abs=1e-6
    )
    assert tags[bus.GATE_CHAMPION_VERSION_TAG] == "1"
    assert "does not beat champion" in tags[bus.GATE_REASON_TAG]

    again = promote_model(cfg, "2")
    assert (again["decision"], again["champion_version"]) == ("rejected", "1")
    assert again["candidate_metric"] == pytest.approx(decision["candidate_metric"])
    assert alias_version(client, name, "champion") == "1"


def test_candidate_missing_a_floor_is_rejected_without_error_while_a_champion_serves(models):
    from driftloop.registry import promote_model

    cfg = fresh_registry(models, models.good, models.weak)
    name, client = cfg.registered_model_name, models.client
    promote_model(cfg, "1")

    decision = promote_model(cfg, "2")
    assert (decision["decision"], decision["champion_version"]) == ("rejected", "1")
    assert f"AUC {models.weak['metrics']['holdout_auc']:.4f} < floor 0.75" in decision["reason"]
    assert "champion v1 keeps serving" in decision["reason"]
    assert alias_version(client, name, "champion") == "1"
    assert client.get_model_version(name, "2").tags[bus.GATE_TAG] == "rejected"


def test_better_candidate_moves_champion(models):
    from driftloop.registry import promote_model

    cfg = fresh_registry(models, models.weak, models.good)
    name, client = cfg.registered_model_name, models.client
    client.set_registered_model_alias(name, "champion", "1")  # e.g. set by hand in the MLflow UI

    decision = promote_model(cfg, "2")
    assert decision["decision"] == "promoted"
    assert decision["champion_version"] == "2"
    # Both models are scored on the candidate's holdout, so the candidate's score equals its logged metric.
    assert decision["candidate_metric"] == pytest.approx(models.good["metrics"]["holdout_auc"])
    assert decision["champion_metric"] == pytest.approx(models.weak["metrics"]["holdout_auc"])
    assert alias_version(client, name, "champion") == "2"
    assert client.get_model_version(name, "2").tags[bus.GATE_TAG] == "passed"

    again = promote_model(cfg, "2")
    assert (again["decision"], again["champion_version"]) == ("promoted", "2")
    assert alias_version(client, name, "champion") == "2"


def test_min_improvement_margin_decides_ties(models):
    from driftloop.registry import promote_model

    tie = fresh_registry(models, models.good, models.good)
    promote_model(tie, "1")
    decision = promote_model(tie, "2")
    assert decision["candidate_metric"] == pytest.approx(decision["champion_metric"])
    assert (decision["decision"], decision["champion_version"]) == ("promoted", "2")

    margin = fresh_registry(models, models.good, models.good, min_improvement=0.01)
    promote_model(margin, "1")
    decision = promote_model(margin, "2")
    assert (decision["decision"], decision["champion_version"]) == ("rejected", "1")
    assert "min_improvement 0.01" in decision["reason"]


def test_cli_promotes_and_shows_the_alias(models, capsys):
    import argparse

    from driftloop import registry

    cfg = fresh_registry(models, models.good)
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="command", required=True)
    registry.add_cli(subparsers)

    def run(*argv: str) -> tuple[int, str]:
        args = parser.parse_args(list(argv))
        args.dataset = None
        code = args.func(args)
        return code, capsys.readouterr().out

    # The CLI reads the config by name, so point the model name at this test's registry.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "DRIFTLOOP_CONFIG_OVERRIDES",
            json.dumps({**FAST_OVERRIDES, "model_name": cfg.registered_model_name}),
        )
        assert run("alias") == (1, "null\n")
        code, out = run("promote", "1")
        assert code == 0 and json.loads(out)["decision"] == "promoted"
        code, out = run("alias", "champion")
        assert code == 0 and json.loads(out)["model_version"] == "1"
