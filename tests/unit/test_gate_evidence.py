"""The gate's evidence: degenerate decisions fail with their counts, positive rates side by side, the
threshold fallback, and the head-to-head comparison's numbers in the report and on the version (checked
against sklearn and the O(n^2) DeLong formula, not against the gate's own functions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.core import bus
from driftloop.core.task_types import Decision
from tests.oracles import delong_slow, holdout_scores
from tests.unit.conftest import fresh_registry


def by_name(checks):
    return {c["name"]: c for c in checks}


def test_a_constant_binary_predictor_fails_with_the_counts(cfg):
    from driftloop.governance.decision_checks import decision_checks

    holdout_df = pd.DataFrame({cfg.target: ["Yes"] * 30 + ["No"] * 70})
    decision = Decision("binary", ("No", cfg.positive_label), 0.5)
    outputs = {bus.PREDICTION_COLUMN: np.array(["No"] * 100), bus.SCORE_COLUMN: np.full(100, 0.1)}
    checks = by_name(decision_checks(cfg, decision, outputs, holdout_df, oof_positive_rate=0.3))
    degenerate = checks["decision.degenerate"]
    assert degenerate["passed"] is False
    assert "predicted {'No': 100} on 100 holdout rows holding {'No': 70, 'Yes': 30}" in degenerate["detail"]
    assert "never predicts ['Yes']" in degenerate["detail"]
    rates = checks["decision.positive_rate"]
    assert (rates["holdout_positive_rate"], rates["oof_positive_rate"], rates["flagged"]) == (0.0, 0.3, True)


def test_a_multiclass_model_never_predicting_a_present_class_fails_and_a_constant_regressor_too(cfg):
    from dataclasses import replace

    from driftloop.governance.decision_checks import decision_checks

    multi = replace(cfg, task="multiclass")  # 30 rows of c never predicted: enough to tell (14 needed)
    holdout_df = pd.DataFrame({cfg.target: ["a"] * 50 + ["b"] * 40 + ["c"] * 30})
    outputs = {bus.PREDICTION_COLUMN: np.array(["a"] * 70 + ["b"] * 50)}
    [check] = decision_checks(multi, Decision("multiclass", ("a", "b", "c")), outputs, holdout_df, None)
    assert check["passed"] is False and "never predicts ['c']" in check["detail"]
    assert check["truth_counts"] == {"a": 50, "b": 40, "c": 30} and check["value"] == {"a": 70, "b": 50}

    reg = replace(cfg, task="regression")
    flat = {bus.PREDICTION_COLUMN: np.full(12, 3.0)}
    [check] = decision_checks(reg, Decision("regression"), flat, holdout_df, None)
    assert check["passed"] is False and "(one value)" in check["detail"]


def test_a_rare_class_may_go_unpredicted_only_within_the_configured_share(cfg):
    from dataclasses import replace

    from driftloop.governance.decision_checks import decision_checks

    multi = replace(cfg, task="multiclass", gates=replace(cfg.gates, unpredicted_class_max_share=0.05))
    decision = Decision("multiclass", ("a", "b", "c", "d"))
    holdout_df = pd.DataFrame({cfg.target: ["a"] * 250 + ["b"] * 200 + ["c"] * 20 + ["d"] * 30})
    outputs = {bus.PREDICTION_COLUMN: np.array(["a"] * 275 + ["b"] * 225)}
    [check] = decision_checks(multi, decision, outputs, holdout_df, None)
    assert check["passed"] is False  # d holds 6 % > 5 %, on 30 rows (14 needed to tell)
    assert "never predicts ['d']" in check["detail"] and "tolerated unpredicted ['c']" in check["detail"]
    assert "gates.unpredicted_class_max_share 0.05" in check["detail"] and "6.0%" in check["detail"]

    outputs = {bus.PREDICTION_COLUMN: np.array(["a"] * 250 + ["b"] * 220 + ["d"] * 30)}
    [check] = decision_checks(multi, decision, outputs, holdout_df, None)
    assert check["passed"] is True and "tolerated unpredicted ['c']" in check["detail"]

    lenient = replace(multi, gates=replace(multi.gates, unpredicted_class_max_share=0.6))
    constant = {bus.PREDICTION_COLUMN: np.array(["a"] * 500)}  # one class: degenerate whatever the share
    [check] = decision_checks(lenient, decision, constant, holdout_df, None)
    assert check["passed"] is False and "never predicts ['b', 'c', 'd']" in check["detail"]


def test_positive_rates_close_together_are_reported_not_flagged(cfg):
    from driftloop.governance.decision_checks import decision_checks

    holdout_df = pd.DataFrame({cfg.target: ["Yes"] * 25 + ["No"] * 75})
    predicted = np.array(["Yes"] * 28 + ["No"] * 72)
    outputs = {bus.PREDICTION_COLUMN: predicted, bus.SCORE_COLUMN: np.linspace(1, 0, 100)}
    decision = Decision("binary", ("No", cfg.positive_label), 0.5)
    checks = by_name(decision_checks(cfg, decision, outputs, holdout_df, oof_positive_rate=0.25))
    assert checks["decision.degenerate"]["passed"] is True
    rates = checks["decision.positive_rate"]
    assert (rates["passed"], rates["flagged"], rates["holdout_positive_rate"]) == (None, False, 0.28)


def test_a_threshold_that_does_not_transfer_falls_back_to_the_out_of_fold_positive_rate(cfg):
    from driftloop.training.selection import transfer_threshold

    scores = np.random.default_rng(0).uniform(0.4, 1.0, 1000)  # the final model scores everything high
    chosen = {"threshold": 0.45, "oof_positive_rate": 0.2, "objective": "f1"}
    moved = transfer_threshold(cfg, chosen, scores)
    assert (scores >= 0.45).mean() > 0.9  # what the out-of-fold threshold would have done
    assert moved["holdout_positive_rate"] == pytest.approx(0.2, abs=0.002)
    assert (scores >= moved["threshold"]).mean() == pytest.approx(0.2, abs=0.002)
    assert "matches the out-of-fold rate" in moved["fallback"]

    kept = transfer_threshold(cfg, {**chosen, "threshold": 0.88}, scores)  # 20% of uniform(0.4, 1) is >= 0.88
    assert kept["threshold"] == 0.88 and kept["fallback"] == ""


def test_the_head_to_head_carries_difference_interval_rows_rule_and_method_in_report_and_tags(models):
    from statistics import NormalDist

    from driftloop.core.registry import resolve_alias
    from driftloop.governance import gates
    from driftloop.governance.promotion import promote_model

    cfg = fresh_registry(models, models.weak, models.good, floors={"AUC": 0.4})
    client, name = models.client, cfg.registered_model_name
    promote_model(cfg, "1")
    report = gates.judge(cfg, "2", resolve_alias(cfg), client)
    head = by_name(report["checks"])["beats_champion"]

    y, champion = holdout_scores(client, cfg, "1", "2")
    _, candidate = holdout_scores(client, cfg, "2", "2")
    diff, se = delong_slow(y, champion, candidate)
    half = NormalDist().inv_cdf(0.975) * se
    assert head["difference"] == pytest.approx(diff, abs=1e-9)
    assert (head["ci_low"], head["ci_high"]) == pytest.approx((diff - half, diff + half), abs=1e-9)
    assert (head["rows"], head["rule"], head["method"]) == (len(y), "superiority", "delong")
    assert head["passed"] is (diff - half > 0)
    assert head["value"] == pytest.approx(models.good["metrics"]["holdout_auc"])  # existing fields unchanged

    tags = client.get_model_version(name, "2").tags
    assert float(tags[bus.GATE_DIFFERENCE_TAG]) == pytest.approx(diff, rel=1e-5)
    assert float(tags[bus.GATE_CI_LOW_TAG]) == pytest.approx(diff - half, rel=1e-5)
    assert (tags[bus.GATE_ROWS_TAG], tags[bus.GATE_RULE_TAG], tags[bus.GATE_METHOD_TAG]) == (
        str(len(y)),
        "superiority",
        "delong",
    )
    rates = by_name(report["checks"])["decision.positive_rate"]
    predicted_rate = float(
        (candidate >= float(tags.get(bus.THRESHOLD_TAG) or cfg.inference.threshold)).mean()
    )
    assert rates["holdout_positive_rate"] == pytest.approx(predicted_rate)
    assert float(tags[bus.HOLDOUT_POSITIVE_RATE_TAG]) == pytest.approx(predicted_rate, rel=1e-5)
    oof = client.get_run(models.good["run_id"]).data.metrics[bus.OOF_POSITIVE_RATE]
    assert float(tags[bus.OOF_POSITIVE_RATE_TAG]) == pytest.approx(oof, rel=1e-5) and 0 < oof < 1


def test_an_underpowered_production_window_reports_but_only_vetoes_a_credibly_worse_candidate():
    from driftloop.governance.gates import _unless_underpowered

    # The demo's case: 171 rows, non-inferiority at margin 0.01, interval -0.0125..+0.0022, 189 rows needed.
    straddling = {
        "name": "beats_champion.production",
        "passed": False,
        "detail": "AUC ...",
        "rows": 171,
        "needed_rows": 189,
        "ci_low": -0.0125,
        "ci_high": 0.0022,
        "improvement_low": -0.0125,
        "bound": -0.01,
    }
    reported = _unless_underpowered(straddling)
    assert reported["passed"] is None and reported["underpowered"] is True
    assert "171 rows, fewer than the 189 the rule needs" in reported["detail"]
    # Enough rows: the verdict stands.
    assert _unless_underpowered({**straddling, "rows": 400})["passed"] is False
    # Credibly worse (the whole interval below -margin): it still blocks on few rows.
    worse = {**straddling, "ci_low": -0.09, "ci_high": -0.03, "improvement_low": -0.09}
    assert _unless_underpowered(worse)["passed"] is False
    # A passing check is untouched.
    assert _unless_underpowered({**straddling, "passed": True}) == {**straddling, "passed": True}
