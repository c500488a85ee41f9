"""Statistics of the live model comparison: sample size, fixed-horizon and always-valid tests, paired tests.

Two ways of comparing champion and challenger on labelled served traffic:

* **A/B** (each entity sees one model, sticky): the unit is the entity and the outcome whether its prediction
  was right. :func:`min_entities_per_arm` sizes a fixed horizon with a power analysis;
  :func:`two_proportion_test` is the fixed-horizon z-test (statsmodels), run once on the first ``n`` entities
  of each arm so looking again cannot change it; :func:`msprt_p_value` is an always-valid mixture sequential
  probability ratio test, so the results can be looked at every day without inflating false positives.
  :func:`decide_ab` combines the two with the overall ``alpha`` split between them (Bonferroni), so the
  decision's false-positive rate stays at most ``alpha`` however often it is looked at.
* **Shadow** (both models score the same rows): paired. :func:`mcnemar_test` compares correctness on the same
  rows and :func:`paired_bootstrap_auc` gives an interval for the AUC difference; :func:`decide_shadow`
  decides on the first ``n`` labelled pairs (a fixed horizon again).

Decisions are the :mod:`driftloop.core.bus` constants ``promote_challenger``, ``keep_champion`` and
``not_enough_data``.
"""

from __future__ import annotations

import math
from typing import Any

from driftloop.core import bus

# The sequential test starts once each arm has this many outcomes (its variance is estimated from the data).
SEQUENTIAL_MIN_PER_ARM = 20
BOOTSTRAP_MAX_ROWS = 20_000


def min_entities_per_arm(baseline_rate: float, min_effect: float, alpha: float, power: float) -> int:
    """Entities per arm a two-sided two-proportion z-test needs to detect ``min_effect`` (statsmodels).

    Args:
        baseline_rate: Expected success rate (accuracy) of the champion, e.g. its holdout accuracy.
        min_effect: Smallest absolute difference worth detecting.
        alpha: Two-sided significance level of the test.
        power: Probability of detecting a true difference of ``min_effect``.

    Returns:
        The per-arm sample size, rounded up.
    """
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    base = min(max(baseline_rate, 0.01), 0.99)
    target = base + min_effect if base + min_effect < 1 else base - min_effect
    effect = abs(proportion_effectsize(target, base))
    n = NormalIndPower().solve_power(
        effect_size=effect, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
    )
    return int(math.ceil(n))


def two_proportion_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> dict[str, float]:
    """Two-sided z-test that arm B's success rate differs from arm A's (statsmodels ``proportions_ztest``).

    Returns:
        ``{"rate_a", "rate_b", "diff", "z", "p_value"}``; ``diff`` is B minus A.
    """
    from statsmodels.stats.proportion import proportions_ztest

    rate_a, rate_b = successes_a / n_a, successes_b / n_b
    if successes_a + successes_b in (0, n_a + n_b):  # no variance at all: nothing to tell the arms apart
        return {"rate_a": rate_a, "rate_b": rate_b, "diff": rate_b - rate_a, "z": 0.0, "p_value": 1.0}
    z, p_value = proportions_ztest([successes_b, successes_a], [n_b, n_a], alternative="two-sided")
    return {
        "rate_a": rate_a,
        "rate_b": rate_b,
        "diff": rate_b - rate_a,
        "z": float(z),
        "p_value": float(p_value),
    }


def msprt_p_value(
    arm_b: Any, success: Any, mixture_sd: float, min_per_arm: int = SEQUENTIAL_MIN_PER_ARM
) -> dict[str, float]:
    """Always-valid p-value of a two-proportion comparison: a normal-mixture sequential probability ratio
    test.

    After each outcome (in arrival order) the difference of rates ``d`` is approximately ``N(theta, v)`` with
    ``v`` the plug-in variance. Mixing ``theta ~ N(0, tau^2)`` gives the likelihood ratio
    ``L = sqrt(v / (v + tau^2)) * exp(tau^2 d^2 / (2 v (v + tau^2)))``. The always-valid p-value is
    ``min(1, 1 / max L)`` over every prefix, so it is the same whenever and however often one looks
    (Johari et al., "Always valid inference", 2017).

    Args:
        arm_b: Per outcome, True when it belongs to arm B (challenger), False for arm A, in arrival order.
        success: Per outcome, True when the prediction was right.
        mixture_sd: ``tau``: the scale of differences the test is tuned to (the minimum detectable effect).
        min_per_arm: Prefixes with fewer outcomes in either arm are skipped (the variance is not yet
            estimable).

    Returns:
        ``{"p_value", "max_log_lr", "diff"}`` with ``diff`` the final B minus A rate.
    """
    import numpy as np

    arm_b = np.asarray(arm_b, dtype=bool)
    success = np.asarray(success, dtype=float)
    n_b = np.cumsum(arm_b)
    n_a = np.cumsum(~arm_b)
    s_b = np.cumsum(success * arm_b)
    s_a = np.cumsum(success * ~arm_b)
    usable = (n_a >= min_per_arm) & (n_b >= min_per_arm)
    if not usable.any():
        return {"p_value": 1.0, "max_log_lr": 0.0, "diff": float("nan")}
    n_a, n_b, s_a, s_b = n_a[usable], n_b[usable], s_a[usable], s_b[usable]
    # Rates shrunk half an outcome towards 1/2 keep the variance positive when an arm is all right or all
    # wrong.
    p_a, p_b = (s_a + 0.5) / (n_a + 1), (s_b + 0.5) / (n_b + 1)
    variance = p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b
    diff = s_b / n_b - s_a / n_a
    tau2 = mixture_sd**2
    log_lr = 0.5 * np.log(variance / (variance + tau2)) + tau2 * diff**2 / (2 * variance * (variance + tau2))
    max_log_lr = float(np.max(log_lr))
    return {
        "p_value": float(min(1.0, math.exp(-max_log_lr))),
        "max_log_lr": max_log_lr,
        "diff": float(diff[-1]),
    }


def decide_ab(
    arm_b: Any,
    success: Any,
    *,
    alpha: float,
    power: float,
    min_effect: float,
    baseline_rate: float | None = None,
) -> dict[str, Any]:
    """The A/B decision on outcomes in arrival order (one per entity): promote, keep or not enough data yet.

    ``alpha`` is split in half between the always-valid sequential test (which may stop early, either way) and
    the fixed-horizon z-test on the first ``n`` entities of each arm (``n`` from the power analysis at
    ``alpha / 2``). The challenger is promoted only when it is significantly better; at the horizon without a
    significant improvement the champion stays.

    Args:
        arm_b: Per entity, True for the challenger's arm.
        success: Per entity, True when the served prediction matched the label.
        alpha: Overall false-positive rate of the decision.
        power: Power of the fixed-horizon test at ``min_effect``.
        min_effect: Smallest accuracy difference worth detecting (also the mixture scale of the sequential
            test).
        baseline_rate: Expected champion accuracy for the power analysis; default: the observed one.

    Returns:
        ``{"decision", "decided_by", "reason", "n_champion", "n_challenger", "accuracy_champion",
        "accuracy_challenger", "diff", "min_entities_per_arm", "fixed_p_value", "sequential_p_value"}``.
    """
    import numpy as np

    arm_b = np.asarray(arm_b, dtype=bool)
    success = np.asarray(success, dtype=bool)
    n_b, n_a = int(arm_b.sum()), int((~arm_b).sum())
    acc_a = float(success[~arm_b].mean()) if n_a else float("nan")
    acc_b = float(success[arm_b].mean()) if n_b else float("nan")
    half = alpha / 2
    baseline = baseline_rate if baseline_rate is not None else (acc_a if n_a else 0.5)
    horizon = min_entities_per_arm(baseline, min_effect, half, power)
    sequential = msprt_p_value(arm_b, success, mixture_sd=min_effect)
    result: dict[str, Any] = {
        "n_champion": n_a,
        "n_challenger": n_b,
        "accuracy_champion": acc_a,
        "accuracy_challenger": acc_b,
        "diff": acc_b - acc_a if n_a and n_b else float("nan"),
        "min_entities_per_arm": horizon,
        "fixed_p_value": float("nan"),
        "sequential_p_value": sequential["p_value"],
    }
    observed = f"challenger accuracy {acc_b:.3f} on {n_b} entities vs champion {acc_a:.3f} on {n_a}"
    if sequential["p_value"] < half:
        better = sequential["diff"] > 0
        return {
            **result,
            "decision": bus.AB_PROMOTE if better else bus.AB_KEEP,
            "decided_by": "sequential",
            "reason": f"{observed}: always-valid p {sequential['p_value']:.4f} < {half:g}, "
            f"{'challenger' if better else 'champion'} is better",
        }
    if n_a >= horizon and n_b >= horizon:
        first_a, first_b = success[~arm_b][:horizon], success[arm_b][:horizon]
        fixed = two_proportion_test(int(first_a.sum()), horizon, int(first_b.sum()), horizon)
        result["fixed_p_value"] = fixed["p_value"]
        significant = fixed["p_value"] < half
        promote = significant and fixed["diff"] > 0
        verdict = (
            "challenger is better"
            if promote
            else "champion is better"
            if significant
            else "no significant difference: the champion stays"
        )
        return {
            **result,
            "decision": bus.AB_PROMOTE if promote else bus.AB_KEEP,
            "decided_by": "fixed_horizon",
            "reason": f"{observed}; first {horizon} per arm: diff {fixed['diff']:+.3f}, "
            f"p {fixed['p_value']:.4f} (alpha/2 {half:g}): {verdict}",
        }
    return {
        **result,
        "decision": bus.AB_NOT_ENOUGH_DATA,
        "decided_by": "none",
        "reason": f"{observed}: the fixed horizon needs {horizon} labelled entities per arm and the "
        f"always-valid p {sequential['p_value']:.4f} is not below {half:g}",
    }


def mcnemar_test(correct_a: Any, correct_b: Any) -> dict[str, float]:
    """McNemar's test on paired correctness (same rows scored by both models); exact below 25 discordant
    pairs.

    Returns:
        ``{"pairs", "only_a_right", "only_b_right", "diff", "p_value"}``; ``diff`` is B's accuracy minus A's.
    """
    import numpy as np
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    table = [[int((a & b).sum()), only_a], [only_b, int((~a & ~b).sum())]]
    discordant = only_a + only_b
    p_value = 1.0 if discordant == 0 else float(mcnemar(table, exact=discordant < 25, correction=True).pvalue)
    return {
        "pairs": int(len(a)),
        "only_a_right": only_a,
        "only_b_right": only_b,
        "diff": float(b.mean() - a.mean()) if len(a) else float("nan"),
        "p_value": p_value,
    }


def _auc_rows(labels: Any, scores: Any) -> Any:
    """AUC of each row of ``scores`` (resamples x rows) against the matching row of ``labels``
    (Mann-Whitney)."""
    import numpy as np
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    positives = labels.sum(axis=1)
    negatives = labels.shape[1] - positives
    rank_sum = (ranks * labels).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def paired_bootstrap_auc(
    labels: Any, scores_a: Any, scores_b: Any, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """AUC difference (B minus A) on the same rows with a paired percentile bootstrap interval.

    Rows are resampled together for both models, so the interval reflects the pairing. At most
    ``BOOTSTRAP_MAX_ROWS`` rows are used (a seeded sample above that).

    Returns:
        ``{"auc_a", "auc_b", "diff", "low", "high"}`` (NaN when the labels hold a single class).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    y = np.asarray(labels, dtype=bool)
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if len(y) > BOOTSTRAP_MAX_ROWS:
        keep = rng.choice(len(y), BOOTSTRAP_MAX_ROWS, replace=False)
        y, a, b = y[keep], a[keep], b[keep]
    nan = float("nan")
    if len(y) == 0 or y.all() or not y.any():
        return {"auc_a": nan, "auc_b": nan, "diff": nan, "low": nan, "high": nan}
    auc_a, auc_b = (float(_auc_rows(y[None, :], s[None, :])[0]) for s in (a, b))
    chunk = max(1, 2_000_000 // len(y))  # resamples per step, so memory stays bounded
    diffs = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, len(y), size=(min(chunk, n_boot - start), len(y)))
        diffs.append(_auc_rows(y[idx], b[idx]) - _auc_rows(y[idx], a[idx]))
    diffs = np.concatenate(diffs)
    diffs = diffs[np.isfinite(diffs)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail]) if len(diffs) else (nan, nan)
    return {"auc_a": auc_a, "auc_b": auc_b, "diff": auc_b - auc_a, "low": float(low), "high": float(high)}


def decide_shadow(
    correct_champion: Any,
    correct_challenger: Any,
    *,
    alpha: float,
    power: float,
    min_effect: float,
    baseline_rate: float | None = None,
) -> dict[str, Any]:
    """The shadow decision on labelled pairs in arrival order: McNemar on the first ``n`` pairs.

    ``n`` is the power analysis' per-arm size, which is conservative for a paired design. Before it is reached
    the answer is ``not_enough_data``, so looking every day cannot inflate false positives.

    Returns:
        ``{"decision", "decided_by", "reason", "pairs", "min_pairs", "p_value", "diff", ...}``.
    """
    import numpy as np

    champ, chall = np.asarray(correct_champion, dtype=bool), np.asarray(correct_challenger, dtype=bool)
    baseline = baseline_rate if baseline_rate is not None else (float(champ.mean()) if len(champ) else 0.5)
    horizon = min_entities_per_arm(baseline, min_effect, alpha, power)
    result: dict[str, Any] = {
        "pairs": int(len(champ)),
        "min_pairs": horizon,
        "p_value": float("nan"),
        "diff": float(chall.mean() - champ.mean()) if len(champ) else float("nan"),
    }
    if len(champ) < horizon:
        return {
            **result,
            "decision": bus.AB_NOT_ENOUGH_DATA,
            "decided_by": "none",
            "reason": f"{len(champ)} labelled shadow pairs; McNemar runs on the first {horizon}",
        }
    test = mcnemar_test(champ[:horizon], chall[:horizon])
    significant = test["p_value"] < alpha
    promote = significant and test["diff"] > 0
    verdict = (
        "challenger is better"
        if promote
        else "champion is better"
        if significant
        else "no significant difference: the champion stays"
    )
    return {
        **result,
        **{f"mcnemar_{k}": v for k, v in test.items()},
        "p_value": test["p_value"],
        "decision": bus.AB_PROMOTE if promote else bus.AB_KEEP,
        "decided_by": "mcnemar",
        "reason": f"first {horizon} shadow pairs: challenger right alone {test['only_b_right']}, champion "
        f"right alone {test['only_a_right']}, accuracy diff {test['diff']:+.3f}, McNemar p "
        f"{test['p_value']:.4f} (alpha {alpha:g}): {verdict}",
    }
