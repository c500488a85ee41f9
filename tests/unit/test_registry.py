"""Promotion gate and alias resolution against a SQLite MLflow registry.

The module trains real (fast) models once, whose order is known without asking the gate: a logistic regression
on 1,500 customers (AUC ~0.84); an unpruned decision tree on the same snapshot (AUC ~0.65, same holdout); the
same logistic regression on that snapshot with its labels shuffled (no signal: AUC ~0.5); and one trained on
40 customers only. Each test registers copies of them under its own fresh model name, so tests never share
aliases.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from driftloop.core import bus
from tests.unit.conftest import FAST_OVERRIDES, alias_version, fresh_registry


def test_trained_models_differ_as_expected(models):
    assert models.good["metrics"]["holdout_auc"] > 0.78
    assert 0.55 < models.weak["metrics"]["holdout_auc"] < 0.75
    assert models.weak["best_model"] == "DecisionTreeClassifier"
    assert abs(models.shuffled["metrics"]["holdout_auc"] - 0.5) < 0.1
    assert [m["model_version"] for m in (models.good, models.weak, models.shuffled, models.tiny)] == [
        "1",
        "2",
        "3",
        "4",
    ]


def test_challenger_trained_on_shuffled_labels_is_rejected(models):
    from driftloop.governance.promotion import promote_model

    cfg = fresh_registry(models, models.good, models.shuffled)
    name, client = cfg.registered_model_name, models.client
    assert promote_model(cfg, "1")["decision"] == "promoted"
    decision = promote_model(cfg, "2")
    assert (decision["decision"], decision["champion_version"]) == ("rejected", "1")
    assert "< floor 0.75" in decision["reason"]
    assert alias_version(client, name, "champion") == "1"


def test_challenger_clearly_better_than_a_champion_from_a_tiny_sample_is_promoted(models):
    from driftloop.governance.promotion import promote_model

    cfg = fresh_registry(models, models.tiny, models.good, floors={"AUC": 0.5})
    name, client = cfg.registered_model_name, models.client
    assert promote_model(cfg, "1")["decision"] == "promoted"  # 40 customers are enough to clear a low floor
    decision = promote_model(cfg, "2")
    assert (decision["decision"], decision["champion_version"]) == ("promoted", "2"), decision
    assert decision["candidate_metric"] > decision["champion_metric"]
    assert alias_version(client, name, "champion") == "2"


def test_resolve_alias_is_none_before_any_champion(models):
    from driftloop.core.registry import resolve_alias

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
    from driftloop.core.registry import resolve_alias
    from driftloop.governance.promotion import promote_model

    cfg = fresh_registry(models, models.good)
    decision = promote_model(cfg, "1")
    assert decision["decision"] == "promoted"
    assert (decision["champion_version"], decision["candidate_version"]) == ("1", "1")
    assert decision["candidate_metric"] == pytest.approx(models.good["metrics"]["holdout_auc"])
    assert decision["champion_metric"] is None
    assert "AUC" in decision["reason"] and ">= floor 0.75" in decision["reason"]
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
    from driftloop.core.errors import GateRejected
    from driftloop.core.registry import resolve_alias
    from driftloop.governance.promotion import promote_model

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
    from driftloop.governance.promotion import promote_model

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
    assert float(tags[bus.GATE_CANDIDATE_METRIC_TAG]) == pytest.approx(decision["candidate_metric"], abs=1e-6)
    assert float(tags[bus.GATE_CHAMPION_METRIC_TAG]) == pytest.approx(decision["champion_metric"], abs=1e-6)
    assert tags[bus.GATE_CHAMPION_VERSION_TAG] == "1"
    assert "does not beat champion" in tags[bus.GATE_REASON_TAG]

    again = promote_model(cfg, "2")
    assert (again["decision"], again["champion_version"]) == ("rejected", "1")
    assert again["candidate_metric"] == pytest.approx(decision["candidate_metric"])
    assert alias_version(client, name, "champion") == "1"


def test_candidate_missing_a_floor_is_rejected_without_error_while_a_champion_serves(models):
    from driftloop.governance.promotion import promote_model

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
    from driftloop.governance.promotion import promote_model

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


def test_a_tie_is_decided_by_the_rule_not_by_the_point_estimates(models):
    from driftloop.governance.promotion import promote_model

    # The same model twice: equal metrics, a difference of exactly 0 on every row.
    tie = fresh_registry(models, models.good, models.good)  # a manual retrain: superiority
    promote_model(tie, "1")
    decision = promote_model(tie, "2")
    assert decision["candidate_metric"] == pytest.approx(decision["champion_metric"])
    assert (decision["decision"], decision["champion_version"]) == ("rejected", "1")
    assert "superiority: improvement lower bound +0.0000 not > +0.0000" in decision["reason"]

    drift_like = fresh_registry(models, models.good, models.good, rule="non_inferiority")
    promote_model(drift_like, "1")
    decision = promote_model(drift_like, "2")
    assert (decision["decision"], decision["champion_version"]) == ("promoted", "2")
    assert "within margin of champion" in decision["reason"] and "> -0.0100" in decision["reason"]


def test_cli_promotes_moves_rolls_back_and_lists_the_audit(models, capsys):
    from driftloop.cli import main

    cfg = fresh_registry(models, models.good, models.weak)

    def run(*argv: str) -> tuple[int, object]:
        code = main(list(argv))
        out = capsys.readouterr().out
        return code, json.loads(out) if out.strip() else None

    # The CLI reads the config by name, so point the model name at this test's registry.
    with pytest.MonkeyPatch.context() as mp:
        # As fresh_registry: fairness gaps and behavioural cases mean nothing on this small holdout.
        relaxed = {
            "gates": {"behaviour": "", "max_latency_ms_per_row": None, "max_model_size_mb": None},
            "fairness": {"max_equalized_odds_difference": None},
        }
        mp.setenv(
            "DRIFTLOOP_CONFIG_OVERRIDES",
            json.dumps({**FAST_OVERRIDES, **relaxed, "model_name": cfg.registered_model_name}),
        )
        assert run("alias") == (1, None)
        code, out = run("promote", "1")
        assert code == 0 and out["decision"] == "promoted"
        code, out = run("alias", "champion", "--dataset", "telco_churn")
        assert code == 0 and out["model_version"] == "1"
        code, out = run("champion", "2", "--reason", "trying the tree by hand")
        assert code == 0 and out["to_version"] == "2" and out["actor"].startswith("cli:")
        code, out = run("rollback", "--reason", "the tree was worse")
        assert code == 0 and (out["from_version"], out["to_version"]) == ("2", "1")
        code, out = run("audit")
        assert [(e["from_version"], e["to_version"]) for e in out] == [(None, "1"), ("1", "2"), ("2", "1")]
        assert [e["override"] for e in out] == [False, False, False]  # v2 was never judged: not an override


def test_the_light_alias_look_sends_mlflows_basic_auth_and_reads_a_missing_alias_as_none(telco_cfg):
    """The registry watch's look from the triggerer (no MLflow import) against a server that, like compose's
    MLflow, answers only with credentials."""
    import base64
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from driftloop.core.registry import read_alias_version
    from driftloop.core.settings import Settings

    expected = "Basic " + base64.b64encode(b"admin:s3cret").decode()
    aliases = {"champion": "4"}

    class Registry(BaseHTTPRequestHandler):
        def do_GET(self):  # http.server calls this name
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            alias = self.path.split("alias=")[1]
            found = alias in aliases
            body = (
                {"model_version": {"version": aliases[alias]}}
                if found
                else {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no alias"}
            )
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{server.server_port}"}
        auth = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "s3cret"}
        assert read_alias_version(telco_cfg, "champion", Settings.from_env({**env, **auth})) == "4"
        assert read_alias_version(telco_cfg, "challenger", Settings.from_env({**env, **auth})) is None
        with pytest.raises(RuntimeError, match="HTTP 401"):
            read_alias_version(telco_cfg, "champion", Settings.from_env(env))
    finally:
        server.shutdown()
