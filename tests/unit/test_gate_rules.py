"""Sharper tests of the gate's checks and of ``judge`` without models or MLflow: the head-to-head checks'
limits and window, latency, fairness and behaviour checks, and judge composing them (models, holdout,
fairness, size and behaviour replaced by fakes; from mutation testing, docs/mutation.md)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from driftloop.core import bus
from driftloop.governance import gates

# --- the head-to-head checks on the holdout and the production window


def _h2h_cfg(window_min_rows=50, min_improvement=0.0):
    return SimpleNamespace(
        target="y",
        task="binary",
        positive_label="Yes",
        id_column="id",
        features=["x"],
        training=SimpleNamespace(seed=0),
        gates=SimpleNamespace(
            primary_metric="AUC",
            confidence=0.95,
            bootstrap_resamples=200,
            min_improvement=min_improvement,
            margin=0.01,
            production_window_min_rows=window_min_rows,
            max_latency_ms_per_row=None,
        ),
    )


def _h2h_outputs(rows=400, seed=3):
    import pandas as pd

    rng = np.random.default_rng(seed)
    truth = rng.random(rows) < 0.4
    holdout = pd.DataFrame({"id": np.arange(rows), "y": np.where(truth, "Yes", "No"), "x": rng.random(rows)})
    sides = []
    for signal in (2.0, 0.3):  # the candidate separates the classes far better than the champion
        score = 1 / (1 + np.exp(-(signal * (truth - 0.5) + rng.normal(0, 1, rows))))
        sides.append({bus.SCORE_COLUMN: score, bus.PREDICTION_COLUMN: np.where(score > 0.5, "Yes", "No")})
    return holdout, (sides[0], sides[1])


def test_the_head_to_head_checks_report_the_champion_delong_interval_and_the_window(monkeypatch):
    from sklearn.metrics import roc_auc_score

    holdout, outputs = _h2h_outputs()
    window = holdout.iloc[:120]
    monkeypatch.setattr(gates, "production_window", lambda cfg, df, settings: window)
    cfg = _h2h_cfg(window_min_rows=100, min_improvement=0.02)
    head, production = gates.champion_checks(cfg, outputs, "7", holdout, None, "superiority")
    truth = holdout["y"] == "Yes"
    candidate_auc = roc_auc_score(truth, outputs[0][bus.SCORE_COLUMN])
    champion_auc = roc_auc_score(truth, outputs[1][bus.SCORE_COLUMN])
    assert head["name"] == "beats_champion" and head["passed"] is True
    assert head["candidate"] == pytest.approx(candidate_auc) and head["value"] == pytest.approx(candidate_auc)
    assert head["champion"] == pytest.approx(champion_auc)
    assert head["limit"] == pytest.approx(champion_auc + 0.02)  # the champion's value plus min_improvement
    assert head["difference"] == pytest.approx(candidate_auc - champion_auc)
    assert (head["rule"], head["method"], head["rows"]) == ("superiority", "delong", 400)
    assert "challenger" not in head
    assert head["detail"].startswith(
        f"AUC on the candidate's holdout (400 rows, delong): candidate {candidate_auc:.4f}"
    )
    assert f"vs champion v7 {champion_auc:.4f}" in head["detail"] and "95% CI" in head["detail"]
    assert " > +0.0200" in head["detail"]
    assert production["name"] == "beats_champion.production" and production["rows"] == 120
    w = truth.iloc[:120]
    assert production["candidate"] == pytest.approx(roc_auc_score(w, outputs[0][bus.SCORE_COLUMN][:120]))
    assert "the latest labelled production window (120 rows" in production["detail"]


def test_a_window_below_its_minimum_rows_is_measured_not_judged(monkeypatch):
    holdout, outputs = _h2h_outputs()
    monkeypatch.setattr(gates, "production_window", lambda cfg, df, settings: holdout.iloc[:99])
    _, production = gates.champion_checks(
        _h2h_cfg(window_min_rows=100), outputs, "7", holdout, None, "superiority"
    )
    assert production == {
        "name": "beats_champion.production",
        "passed": None,
        "value": 99,
        "limit": 100,
        "detail": "99 labelled production rows in the holdout; 100 needed to compare there",
    }
    monkeypatch.setattr(gates, "production_window", lambda cfg, df, settings: holdout.iloc[:100])
    _, judged = gates.champion_checks(
        _h2h_cfg(window_min_rows=100), outputs, "7", holdout, None, "superiority"
    )
    assert judged["rows"] == 100 and "rule" in judged


def test_an_error_metric_limit_is_the_champion_minus_the_improvement(monkeypatch):
    import pandas as pd

    rng = np.random.default_rng(8)
    y = rng.normal(10, 2, 300)
    holdout = pd.DataFrame({"id": np.arange(300), "y": y, "x": y})
    outputs = (
        {bus.PREDICTION_COLUMN: y + rng.normal(0, 0.5, 300)},
        {bus.PREDICTION_COLUMN: y + rng.normal(0, 2, 300)},
    )
    monkeypatch.setattr(gates, "production_window", lambda cfg, df, settings: holdout.iloc[:0])
    cfg = _h2h_cfg(min_improvement=0.1)
    cfg.task, cfg.gates.primary_metric = "regression", "RMSE"
    head, _ = gates.champion_checks(cfg, outputs, "2", holdout, None, "superiority")
    champion_rmse = float(np.sqrt(np.mean((outputs[1][bus.PREDICTION_COLUMN] - y) ** 2)))
    assert head["champion"] == pytest.approx(champion_rmse)
    assert head["limit"] == pytest.approx(champion_rmse - 0.1)
    assert head["passed"] is True and head["difference"] < 0


def test_latency_is_measured_on_a_1000_row_batch_and_judged_against_its_limit():
    import pandas as pd

    seen = []
    decision = SimpleNamespace(predict=lambda model, batch: seen.append(batch))
    holdout = pd.DataFrame({"x": np.arange(30.0), "y": 0})
    cfg = _h2h_cfg()
    unlimited = gates.latencycheck_entry(cfg, None, holdout, decision)
    assert [len(b) for b in seen] == [1000, 1000, 1000] and list(seen[0].columns) == ["x"]
    assert seen[0].index.tolist() == list(range(1000))
    assert (unlimited["name"], unlimited["passed"], unlimited["limit"]) == ("latency", None, None)
    assert unlimited["detail"].endswith(" ms per row on a 1000-row batch (no limit)")
    cfg.gates.max_latency_ms_per_row = 1e6
    assert gates.latencycheck_entry(cfg, None, holdout, decision)["passed"] is True
    cfg.gates.max_latency_ms_per_row = -1.0
    slow = gates.latencycheck_entry(cfg, None, holdout, decision)
    assert slow["passed"] is False and slow["detail"].endswith("(limit -1.0 ms)")


# --- judge: every check in one report, the failing ones named, the evidence on the version


class _JudgeClient:
    def __init__(self):
        self.tags: dict[tuple[str, str], str] = {}

    def get_model_version(self, name, version):
        return SimpleNamespace(run_id=f"run-{version}", tags={"v": version})

    def get_run(self, run_id):
        assert run_id == "run-4"
        return SimpleNamespace(data=SimpleNamespace(metrics={bus.OOF_POSITIVE_RATE: 0.35}))

    def set_model_version_tag(self, name, version, key, value):
        self.tags[(version, key)] = value


@pytest.fixture
def judged(monkeypatch):
    """gates.judge with the model loading, holdout, fairness, size and behaviour replaced by fakes."""
    import pandas as pd

    holdout, outputs = _h2h_outputs()
    by_uri = {"models:/ds-model/4": outputs[0], "models:/ds-model/1": outputs[1]}
    seen = {}

    def predict(model, frame):
        assert list(frame.columns) == ["x"]
        return by_uri[model]

    def read_decision(cfg, tags):
        seen.setdefault("decisions", []).append(tags["v"])
        return SimpleNamespace(task="binary", predict=predict, encode=lambda s: (s == "Yes").astype(int))

    def oof_rate(cfg, decision, outputs, holdout_df, oof):
        seen["oof"] = oof
        return [{"name": "decision.degenerate", "passed": True, "detail": "ok"}]

    behaviour = [
        {"name": "inv", "passed": False, "kind": "invariance", "detail": "3 flips", "pass_share": 0.7,
         "min_pass_share": 0.9},
    ]  # fmt: skip
    monkeypatch.setattr("driftloop.core.registry.load_model", lambda uri, settings=None: uri)
    monkeypatch.setattr(gates, "read_decision", read_decision)

    def load_holdout(client, run_id):
        assert isinstance(client, _JudgeClient) and run_id == "run-4"
        return holdout

    def holdout_metrics(decision, y, outputs_):
        assert decision.task == "binary" and outputs_ is outputs[0] and list(y) == list(holdout["y"] == "Yes")
        return {"holdout_auc": 0.9}

    def assess_decisions(cfg, holdout_df, decision, outputs_):
        assert holdout_df is holdout and decision.task == "binary" and outputs_ is outputs[0]
        return {}

    def run_behaviour_tests(cfg, model, holdout_df, decision):
        assert model == "models:/ds-model/4" and holdout_df is holdout and decision.task == "binary"
        return behaviour

    monkeypatch.setattr(gates.holdout, "load_holdout", load_holdout)
    monkeypatch.setattr(gates.task_types, "holdout_metrics", holdout_metrics)
    monkeypatch.setattr(gates, "decision_checks", oof_rate)
    monkeypatch.setattr("driftloop.governance.fairness.assess_decisions", assess_decisions)
    monkeypatch.setattr(gates, "model_size_mb", lambda uri, settings: 2.5)
    monkeypatch.setattr("driftloop.governance.behaviour.run_behaviour_tests", run_behaviour_tests)
    monkeypatch.setattr(gates, "production_window", lambda cfg, df, settings: pd.DataFrame())
    cfg = _h2h_cfg()
    cfg.registered_model_name = "ds-model"
    cfg.gates.floors = {"AUC": 0.95}
    cfg.gates.max_model_size_mb = None
    cfg.gates.rule_on_new_data = "non_inferiority"
    state = SimpleNamespace(
        rule=lambda cfg: None, to_dict=lambda: {"state": "new"}, describe=lambda: "new data",
        key=lambda cfg, version: f"key-{version}",
    )  # fmt: skip
    return cfg, state, seen


def test_judge_reports_every_check_and_names_the_failing_ones(judged, caplog):
    caplog.set_level("INFO", logger="driftloop.governance.gates")
    cfg, state, seen = judged
    client = _JudgeClient()
    champion = {"model_version": "1", "model_uri": "models:/ds-model/1"}
    report = gates.judge(cfg, 4, champion, client, state=state)
    assert "vs champion v1 " in report["checks"][2]["detail"]
    assert "gate v4 check floor.AUC: FAIL: AUC 0.9000 < floor 0.95" in caplog.messages
    assert (
        "gate v4 check beats_champion.production: measured: " + report["checks"][3]["detail"]
        in caplog.messages
    )
    assert "gate v4 check behaviour.inv: FAIL: invariance: 3 flips" in caplog.messages
    assert "gate v4 check decision.degenerate: pass: ok" in caplog.messages
    names = [c["name"] for c in report["checks"]]
    assert names == [
        "floor.AUC", "decision.degenerate", "beats_champion", "beats_champion.production", "latency", "size",
        "behaviour.inv",
    ]  # fmt: skip
    assert report["failed"] == ["floor.AUC", "behaviour.inv"] and report["passed"] is False
    assert (report["candidate_version"], report["champion_version"], report["rule"]) == (
        "4",
        "1",
        "non_inferiority",
    )
    assert report["metrics"] == {"holdout_auc": 0.9} and report["fairness"] == {}
    assert report["evidence_state"] == {"state": "new", "summary": "new data"}
    assert report["evidence_key"] == "key-4" and seen["oof"] == 0.35 and seen["decisions"] == [4, "1"]
    behaviour = report["checks"][-1]
    assert (behaviour["value"], behaviour["limit"], behaviour["detail"]) == (0.7, 0.9, "invariance: 3 flips")
    assert report["checks"][5]["value"] == 2.5
    assert client.tags[("4", bus.GATE_RULE_TAG)] == "non_inferiority"
    assert client.tags[("4", bus.GATE_METHOD_TAG)] == "delong"
    assert client.tags[("4", bus.GATE_ROWS_TAG)] == "400"


def test_judge_without_a_champion_has_no_rule_and_no_head_to_head(judged):
    cfg, state, _ = judged
    cfg.gates.floors = {"AUC": 0.5}
    client = _JudgeClient()
    report = gates.judge(cfg, "4", None, client, state=state)
    assert [c["name"] for c in report["checks"]] == [
        "floor.AUC", "decision.degenerate", "latency", "size", "behaviour.inv",
    ]  # fmt: skip
    assert (report["rule"], report["champion_version"], report["failed"]) == (None, None, ["behaviour.inv"])
    assert client.tags == {}


def test_fairness_gaps_block_only_when_enforced_and_carry_their_interval(monkeypatch):
    from driftloop.governance import fairness

    monkeypatch.setattr(fairness, "describe_gap", lambda cfg, attribute, gap, judged: f"{attribute}/{gap}")

    def judged(outcome, enforced, value):
        interval = {"ci_low": value - 0.05, "ci_high": value + 0.05, "smallest_group_rows": 40}
        return {"outcome": outcome, "limit": 0.1, "enforced": enforced, "value": value, **interval}

    report = {
        "gender": {
            "judged": {"dp": judged(fairness.FAIL, True, 0.3), "eo": judged(fairness.PASS, True, 0.02)}
        },
        "senior": {
            "judged": {"dp": judged(fairness.FAIL, False, 0.3), "eo": judged(fairness.UNDECIDED, True, 0.12)}
        },
        "region": {},
    }
    checks = gates.fairness_checks(None, report)
    assert [(c["name"], c["passed"]) for c in checks] == [
        ("fairness.gender.dp", False),
        ("fairness.gender.eo", True),
        ("fairness.senior.dp", None),
        ("fairness.senior.eo", None),
    ]
    assert checks[0] == {
        "name": "fairness.gender.dp",
        "passed": False,
        "value": 0.3,
        "limit": 0.1,
        "detail": "gender/dp",
        "ci_low": pytest.approx(0.25),
        "ci_high": pytest.approx(0.35),
        "smallest_group_rows": 40,
        "outcome": fairness.FAIL,
    }


def test_behaviour_cases_become_checks_with_their_share_or_score(monkeypatch):
    seen = []

    def run(cfg, model, holdout_df, decision):
        seen.append((cfg, model, holdout_df, decision))
        return [
            {
                "name": "a",
                "passed": True,
                "kind": "invariance",
                "detail": "ok",
                "pass_share": 1.0,
                "min_pass_share": 0.9,
            },
            {"name": "b", "passed": None, "kind": "minimum", "detail": "d", "score": 0.5},
        ]

    monkeypatch.setattr("driftloop.governance.behaviour.run_behaviour_tests", run)
    checks = gates.behaviour_checks("cfg", "model", "holdout", "decision")
    assert seen == [("cfg", "model", "holdout", "decision")]
    assert checks == [
        {"name": "behaviour.a", "passed": True, "value": 1.0, "limit": 0.9, "detail": "invariance: ok"},
        {"name": "behaviour.b", "passed": None, "value": 0.5, "limit": None, "detail": "minimum: d"},
    ]
