"""The statistics of the live comparison, checked against simulations and against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.core import bus
from driftloop.serving.online import ab_stats


def test_power_analysis_matches_the_textbook_formula():
    from scipy.stats import norm

    p1, p2, alpha, power = 0.75, 0.80, 0.05, 0.8
    h = 2 * np.arcsin(np.sqrt(p2)) - 2 * np.arcsin(
        np.sqrt(p1)
    )  # Cohen's h; each arm's transform has variance 1/n
    expected = (
        2 * ((norm.ppf(1 - alpha / 2) + norm.ppf(power)) / h) ** 2
    )  # (392 per arm at h = 0.2, Cohen's table)
    assert ab_stats.min_entities_per_arm(p1, 0.05, alpha, power) == int(np.ceil(expected))
    # A stricter alpha or a smaller effect needs more entities.
    assert ab_stats.min_entities_per_arm(p1, 0.05, 0.025, power) > ab_stats.min_entities_per_arm(
        p1, 0.05, alpha, power
    )
    assert ab_stats.min_entities_per_arm(p1, 0.02, alpha, power) > ab_stats.min_entities_per_arm(
        p1, 0.05, alpha, power
    )


def test_two_proportion_test_agrees_with_a_chi_square_test():
    from scipy.stats import chi2_contingency

    result = ab_stats.two_proportion_test(700, 1000, 760, 1000)
    _, p_chi2, _, _ = chi2_contingency([[700, 300], [760, 240]], correction=False)
    assert result["diff"] == pytest.approx(0.06)
    assert result["p_value"] == pytest.approx(p_chi2, rel=1e-9)  # z-test squared is the 2x2 chi-square


def test_the_sequential_test_stays_valid_when_looked_at_after_every_entity():
    """A/A: 400 experiments of 2,000 entities, peeking after each one, reject at most about alpha of the
    time."""
    rng = np.random.default_rng(7)
    alpha, rejections, experiments = 0.05, 0, 400
    for _ in range(experiments):
        arm = rng.random(2000) < 0.5
        success = rng.random(2000) < 0.75
        rejections += ab_stats.msprt_p_value(arm, success, mixture_sd=0.05)["p_value"] < alpha
    assert rejections / experiments <= alpha  # the always-valid p-value is the min over every look


def test_a_truly_better_challenger_is_promoted():
    rng = np.random.default_rng(11)
    arm = rng.random(6000) < 0.5
    success = np.where(arm, rng.random(6000) < 0.82, rng.random(6000) < 0.74)
    decision = ab_stats.decide_ab(arm, success, alpha=0.05, power=0.8, min_effect=0.05, baseline_rate=0.74)
    assert decision["decision"] == bus.AB_PROMOTE, decision["reason"]
    assert decision["accuracy_challenger"] > decision["accuracy_champion"]


def test_a_worse_challenger_keeps_the_champion():
    rng = np.random.default_rng(12)
    arm = rng.random(6000) < 0.5
    success = np.where(arm, rng.random(6000) < 0.66, rng.random(6000) < 0.76)
    decision = ab_stats.decide_ab(arm, success, alpha=0.05, power=0.8, min_effect=0.05, baseline_rate=0.76)
    assert decision["decision"] == bus.AB_KEEP, decision["reason"]


def test_too_few_entities_is_not_enough_data():
    rng = np.random.default_rng(13)
    arm = rng.random(120) < 0.5
    success = np.where(arm, rng.random(120) < 0.80, rng.random(120) < 0.76)
    decision = ab_stats.decide_ab(arm, success, alpha=0.05, power=0.8, min_effect=0.05, baseline_rate=0.76)
    assert decision["decision"] == bus.AB_NOT_ENOUGH_DATA
    assert decision["min_entities_per_arm"] > 1000 and "needs" in decision["reason"]


def test_no_difference_at_the_fixed_horizon_keeps_the_champion():
    rng = np.random.default_rng(14)
    arm = np.tile([False, True], 2500)
    success = rng.random(5000) < 0.76
    decision = ab_stats.decide_ab(arm, success, alpha=0.05, power=0.8, min_effect=0.05, baseline_rate=0.76)
    assert decision["decision"] == bus.AB_KEEP and decision["decided_by"] == "fixed_horizon", decision[
        "reason"
    ]
    assert decision["fixed_p_value"] >= 0.025


def test_mcnemar_counts_discordant_pairs_and_matches_statsmodels():
    from statsmodels.stats.contingency_tables import mcnemar

    a = np.array([1, 1, 0, 0, 1, 0] * 50, dtype=bool)
    b = np.array([1, 0, 1, 1, 1, 1] * 50, dtype=bool)
    result = ab_stats.mcnemar_test(a, b)
    assert (result["only_a_right"], result["only_b_right"]) == (50, 150)
    expected = mcnemar([[100, 50], [150, 0]], exact=False, correction=True).pvalue
    assert result["p_value"] == pytest.approx(expected)


def test_paired_bootstrap_auc_matches_sklearn_and_covers_the_difference():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.random(3000) < 0.3
    a, b = y * 0.4 + rng.random(3000), y * 0.8 + rng.random(3000)
    result = ab_stats.paired_bootstrap_auc(y, a, b, n_boot=400)
    assert result["auc_a"] == pytest.approx(roc_auc_score(y, a))
    assert result["auc_b"] == pytest.approx(roc_auc_score(y, b))
    assert result["low"] < result["diff"] < result["high"] and result["low"] > 0


def test_shadow_decision_waits_for_its_horizon_then_promotes_a_better_challenger():
    rng = np.random.default_rng(5)
    champion = rng.random(3000) < 0.72
    challenger = np.where(rng.random(3000) < 0.3, True, champion)  # right whenever the champion is, and more
    early = ab_stats.decide_shadow(
        champion[:100], challenger[:100], alpha=0.05, power=0.8, min_effect=0.05, baseline_rate=0.72
    )
    assert early["decision"] == bus.AB_NOT_ENOUGH_DATA
    late = ab_stats.decide_shadow(
        champion, challenger, alpha=0.05, power=0.8, min_effect=0.05, baseline_rate=0.72
    )
    assert late["decision"] == bus.AB_PROMOTE and late["decided_by"] == "mcnemar", late["reason"]
