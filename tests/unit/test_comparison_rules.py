"""Sharper tests of the paired comparison and the decision checks: each side's metric against sklearn or
scipy, the interval's level, the rule's bound and alpha, degenerate regressors and the binary positive rate
(from mutation testing, docs/mutation.md)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from driftloop.core import bus
from driftloop.governance import comparison, gates

# --- the paired comparison: each side's metric as sklearn computes it, the sign of the difference


def _binary_outputs():
    truth = np.array(["Yes", "No", "Yes", "No", "No", "Yes", "No", "No", "Yes", "No"] * 3)
    champion = np.array(["No"] * 30, dtype=object)
    champion[0] = "Yes"  # one predicted positive: precision's denominator is exactly 1
    challenger = truth.copy()
    challenger[[1, 2, 4, 11]] = ["Yes", "No", "Yes", "No"]
    return truth, {bus.PREDICTION_COLUMN: champion}, {bus.PREDICTION_COLUMN: challenger}


@pytest.mark.parametrize(
    ("key", "score"),
    [
        ("holdout_precision", "precision_score"),
        ("holdout_recall", "recall_score"),
        ("holdout_f1", "f1_score"),
        ("holdout_accuracy", "accuracy_score"),
    ],
)
def test_binary_label_metrics_of_each_side_match_sklearn(key, score):
    from sklearn import metrics

    truth, champion, challenger = _binary_outputs()
    result = comparison.compare_outputs(
        key, "binary", truth, champion, challenger, positive_label="Yes", resamples=50
    )
    kwargs = {} if score == "accuracy_score" else {"pos_label": "Yes", "zero_division": 0}
    expected = [
        getattr(metrics, score)(truth, side[bus.PREDICTION_COLUMN], **kwargs)
        for side in (champion, challenger)
    ]
    assert [result["champion"], result["challenger"]] == pytest.approx(expected, abs=1e-12)
    assert result["difference"] == pytest.approx(expected[1] - expected[0], abs=1e-12)
    assert set(result) == {
        "champion", "challenger", "difference", "ci_low", "ci_high", "se", "rows", "method", "level",
    }  # fmt: skip
    assert (result["method"], result["level"], result["rows"]) == ("paired_bootstrap", 0.95, 30)
    assert result["ci_low"] <= result["difference"] <= result["ci_high"]


def _multiclass_outputs(rng, labels=("a", "b", "c")):
    truth = rng.choice([*labels, "z"], 400, p=[0.3, 0.3, 0.35, 0.05])  # "z": a label neither model knows
    sides = []
    for accuracy in (0.5, 0.7):
        proba = rng.dirichlet(np.ones(len(labels)), 400)
        known = np.isin(truth, labels)
        hit = (rng.random(400) < accuracy) & known
        proba[hit] += 2 * np.eye(len(labels))[np.searchsorted(labels, truth[hit])]
        proba /= proba.sum(axis=1, keepdims=True)
        side = {bus.proba_column(label): proba[:, i] for i, label in enumerate(labels)}
        side[bus.PREDICTION_COLUMN] = np.array(labels)[proba.argmax(axis=1)]
        sides.append(side)
    return truth, sides[0], sides[1]


def test_multiclass_macro_f1_counts_every_label_seen_in_truth_or_predictions_as_sklearn():
    from sklearn.metrics import f1_score

    truth, champion, challenger = _multiclass_outputs(np.random.default_rng(11))
    champion[bus.PREDICTION_COLUMN][:40] = "c"  # a class predicted where the truth never is
    result = comparison.compare_outputs(
        "holdout_macro_f1", "multiclass", truth, champion, challenger, resamples=50
    )
    expected = [f1_score(truth, s[bus.PREDICTION_COLUMN], average="macro") for s in (champion, challenger)]
    assert [result["champion"], result["challenger"]] == pytest.approx(expected, abs=1e-12)
    accuracy = comparison.compare_outputs(
        "holdout_accuracy", "multiclass", truth, champion, challenger, resamples=50
    )
    expected = [np.mean(truth == s[bus.PREDICTION_COLUMN]) for s in (champion, challenger)]
    assert [accuracy["champion"], accuracy["challenger"]] == pytest.approx(expected, abs=1e-12)


def test_one_vs_rest_auc_sides_and_interval_follow_the_normal_approximation():
    from scipy.stats import norm
    from sklearn.metrics import roc_auc_score

    truth, champion, challenger = _multiclass_outputs(np.random.default_rng(12))
    result = comparison.compare_outputs(
        "holdout_auc_ovr", "multiclass", truth, champion, challenger, level=0.9
    )
    known = truth != "z"

    def ovr(side):
        return np.mean([roc_auc_score(truth[known] == c, side[bus.proba_column(c)][known]) for c in "abc"])

    assert (result["champion"], result["challenger"]) == pytest.approx((ovr(champion), ovr(challenger)))
    assert (result["method"], result["rows"]) == ("delong_ovr", int(known.sum()))
    half = norm.ppf(0.95) * result["se"]
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(
        (result["difference"] - half, result["difference"] + half)
    )


@pytest.mark.parametrize(
    ("key", "score"),
    [
        ("holdout_mae", "mean_absolute_error"),
        ("holdout_mape", "mean_absolute_percentage_error"),
        ("holdout_r2", "r2_score"),
    ],
)
def test_regression_metrics_of_each_side_match_sklearn(key, score):
    from sklearn import metrics

    rng = np.random.default_rng(13)
    y = rng.normal(50, 10, 300)
    champion, challenger = y + rng.normal(0, 4, 300), y + rng.normal(1, 3, 300)
    result = comparison.compare_outputs(
        key,
        "regression",
        y,
        {bus.PREDICTION_COLUMN: champion},
        {bus.PREDICTION_COLUMN: challenger},
        resamples=100,
    )
    expected = [getattr(metrics, score)(y, side) for side in (champion, challenger)]
    assert [result["champion"], result["challenger"]] == pytest.approx(expected, rel=1e-9)
    assert result["ci_low"] <= result["difference"] <= result["ci_high"]


def test_a_decision_reports_its_rule_bound_and_one_sided_alpha():
    compared = {
        "champion": 0.8, "challenger": 0.85, "difference": 0.05, "ci_low": 0.01, "ci_high": 0.09,
        "se": 0.02, "rows": 500, "method": "delong", "level": 0.9,
    }  # fmt: skip
    verdict = comparison.decide(compared, "holdout_auc", "superiority", min_improvement=0.005, margin=0.02)
    assert set(verdict) == set(compared) | {
        "rule", "passed", "improvement_low", "bound", "margin", "alpha", "needed_rows",
    }  # fmt: skip
    assert (verdict["rule"], verdict["passed"], verdict["bound"]) == ("superiority", True, 0.005)
    assert verdict["alpha"] == pytest.approx(0.05)
    vectorised = {**compared, "ci_low": np.array([0.01, -0.01]), "ci_high": np.array([0.09, 0.07])}
    many = comparison.decide(vectorised, "holdout_auc", "superiority", min_improvement=0.0, margin=0.02)
    assert many["passed"].tolist() == [True, False]
    assert (many["rule"], many["bound"], many["alpha"]) == ("superiority", 0.0, pytest.approx(0.05))
    unknown = {**compared, "ci_low": float("nan")}
    undecided = comparison.decide(unknown, "holdout_auc", "superiority", min_improvement=0.0, margin=0.02)
    assert (undecided["passed"], undecided["needed_rows"]) == (False, None)


# --- the decisions themselves: degenerate regressors, named checks


def _decision(task, classes=None):
    return SimpleNamespace(task=task, classes=classes, threshold=0.5)


def test_a_regressor_predicting_one_value_is_degenerate_and_any_spread_is_not():
    one = gates.decision_checks(None, _decision("regression"), {bus.PREDICTION_COLUMN: [3, 3, 3]}, None, None)
    assert one == [
        {
            "name": "decision.degenerate",
            "passed": False,
            "value": 0.0,
            "limit": 0,
            "detail": "predictions on 3 holdout rows range over 0 (one value)",
        }
    ]
    (spread,) = gates.decision_checks(
        None, _decision("regression"), {bus.PREDICTION_COLUMN: [3, 4.5, 3]}, None, None
    )
    assert (spread["passed"], spread["value"]) == (True, 1.5)
    assert spread["detail"] == "predictions on 3 holdout rows range over 1.5"


def test_the_binary_positive_rate_is_reported_beside_the_out_of_fold_rate(telco_cfg):
    import pandas as pd

    from driftloop.core.task_types import Decision
    from driftloop.governance.decision_checks import decision_checks

    truth = ["No"] * 60 + ["Yes"] * 40
    predicted = np.array(["No"] * 75 + ["Yes"] * 25)
    holdout = pd.DataFrame({telco_cfg.target: truth})
    checks = decision_checks(
        telco_cfg, Decision("binary", ["No", "Yes"], 0.5), {bus.PREDICTION_COLUMN: predicted}, holdout, 0.3
    )
    assert [c["name"] for c in checks] == ["decision.degenerate", "decision.positive_rate"]
    rate = checks[1]
    assert (rate["passed"], rate["value"], rate["limit"]) == (None, 0.25, 0.3)
    assert (rate["holdout_positive_rate"], rate["oof_positive_rate"], rate["flagged"]) == (0.25, 0.3, False)
    assert rate["detail"] == "threshold 0.5 predicts 25.0% of holdout rows positive; out of fold 30.0%"
    unrecorded = decision_checks(
        telco_cfg, Decision("binary", ["No", "Yes"], 0.5), {bus.PREDICTION_COLUMN: predicted}, holdout, None
    )[1]
    assert unrecorded["detail"].endswith("out of fold not recorded") and unrecorded["flagged"] is False


def _degenerate(cfg, task, classes, truth, predicted, max_share):
    from dataclasses import replace

    import pandas as pd

    from driftloop.core.task_types import Decision
    from driftloop.governance.decision_checks import decision_checks

    cfg = replace(cfg, task=task, gates=replace(cfg.gates, unpredicted_class_max_share=max_share))
    decision = Decision(task, classes, 0.5) if task == "binary" else Decision(task, classes)
    holdout = pd.DataFrame({cfg.target: truth})
    checks = decision_checks(cfg, decision, {bus.PREDICTION_COLUMN: np.array(predicted)}, holdout, None)
    return checks[0]


def test_a_small_unpredicted_class_is_tolerated_by_its_share_of_the_holdout(cfg):
    truth = ["a"] * 50 + ["b"] * 18 + ["c"] * 2 + ["d"] * 30
    predicted = ["a"] * 50 + ["b"] * 18 + ["a"] * 32  # c (2 %) and d (30 %) never predicted
    check = _degenerate(cfg, "multiclass", ["a", "b", "c", "d"], truth, predicted, 0.1)
    assert check["passed"] is False and check["unpredicted_rows"] == {"d": 30}
    assert "; tolerated unpredicted ['c'] (at most 10.0%)" in check["detail"]
    assert (
        "(gates.unpredicted_class_max_share 0.1 tolerates classes up to that share of the holdout; "
        "these reach 30.0%)" in check["detail"]
    )


def test_two_missed_rows_are_all_missed_and_a_binary_check_names_no_class_share(cfg):
    truth = ["No"] * 30 + ["Yes"] * 2
    check = _degenerate(cfg, "binary", ["No", "Yes"], truth, ["No"] * 32, 0.1)
    assert check["passed"] is None and check["rows"] == 2
    assert "would miss all 2 rows with chance" in check["detail"]
    assert "unpredicted_class_max_share" not in check["detail"]


def test_a_class_only_one_model_knows_counts_for_both_sides_as_sklearn():
    from sklearn.metrics import f1_score, roc_auc_score

    rng = np.random.default_rng(21)
    truth = rng.choice(["a", "b", "c"], 300)
    champion = {bus.proba_column(c): rng.random(300) for c in "abc"}
    champion[bus.PREDICTION_COLUMN] = truth.copy()
    champion[bus.PREDICTION_COLUMN][:30] = "d"  # a class the truth never holds
    champion[bus.proba_column("d")] = rng.random(300)
    challenger = {bus.proba_column(c): rng.random(300) + (truth == c) for c in "abc"}  # no column for d
    challenger[bus.PREDICTION_COLUMN] = truth.copy()
    f1 = comparison.compare_outputs(
        "holdout_macro_f1", "multiclass", truth, champion, challenger, resamples=50
    )
    expected = [f1_score(truth, s[bus.PREDICTION_COLUMN], average="macro") for s in (champion, challenger)]
    assert [f1["champion"], f1["challenger"]] == pytest.approx(expected, abs=1e-12)
    auc = comparison.compare_outputs("holdout_auc_ovr", "multiclass", truth, champion, challenger)
    ovr = np.mean([roc_auc_score(truth == c, challenger[bus.proba_column(c)]) for c in "abc"])
    assert auc["challenger"] == pytest.approx(ovr)  # d: never true, so it adds no one-vs-rest term
