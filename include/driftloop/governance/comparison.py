"""Paired challenger-vs-champion comparison on the same rows: the difference, its interval and the decision
rule.

The gate scores both models on the same holdout (and production window), so their errors are paired; a point
difference of 0.0004 AUC on 951 rows is noise, not evidence. This module turns the two models' outputs into
``difference`` (challenger minus champion, in the metric's units), a two-sided ``level`` confidence interval
and
the sample size a decision would need, then applies a rule:

* ``superiority``: the improvement's lower bound is above ``min_improvement`` (credibly better);
* ``non_inferiority``: the improvement's lower bound is above ``-margin`` (not credibly worse than the
margin).

"Improvement" is the difference for scores (AUC, F1, accuracy, R2) and minus the difference for errors (RMSE,
MAE, MAPE). A two-sided 95% interval makes each rule a one-sided test at ``alpha = 0.025``.

Methods: binary AUC by DeLong's test (midranks, O(n log n)); one-vs-rest AUC by DeLong's structural components
per
class, averaged (``delong_ovr``); every other metric by a seeded paired bootstrap. Classification metrics
depend
on a row only through its (truth, champion prediction, challenger prediction) cell, so resampling rows is
resampling cell counts (one multinomial draw per resample, exact). Regression rows are resampled in at most
``BOOTSTRAP_UNITS`` random groups of equal size (each row its own group up to that many rows).
"""

from __future__ import annotations

import math
from typing import Any

from driftloop.core import bus, task_types

SUPERIORITY, NON_INFERIORITY = "superiority", "non_inferiority"
RULES = (SUPERIORITY, NON_INFERIORITY)
POWER = 0.8  # the power the reported ``needed_rows`` is sized for
BOOTSTRAP_UNITS = 2000
BOOTSTRAP_CHUNK = 500  # resamples drawn at a time


def _midranks(scores: Any) -> Any:
    """Average ranks (1-based) along the last axis, ties sharing their mean rank; vectorised over leading
    axes."""
    import numpy as np

    x = np.asarray(scores, dtype=float)
    order = np.argsort(x, axis=-1, kind="stable")
    ordered = np.take_along_axis(x, order, axis=-1)
    n, idx = x.shape[-1], np.arange(x.shape[-1])
    first = np.ones(x.shape, dtype=bool)
    first[..., 1:] = ordered[..., 1:] != ordered[..., :-1]  # a tie group starts here
    last = np.ones(x.shape, dtype=bool)
    last[..., :-1] = first[..., 1:]
    start = np.maximum.accumulate(np.where(first, idx, 0), axis=-1)
    end = np.minimum.accumulate(np.where(last, idx, n - 1)[..., ::-1], axis=-1)[..., ::-1]
    ranks = np.empty(x.shape)
    np.put_along_axis(ranks, order, (start + end) / 2 + 1, axis=-1)
    return ranks


def _components(y: Any, scores: Any) -> tuple[Any, Any, Any, Any]:
    """DeLong's structural components of ``scores`` (models x samples x rows) for labels ``y`` (samples x
    rows).

    Ranks within a class come from one ranking with the other class pushed to -inf, so every sample may have
    its
    own labels. Returns ``(v10, v01, positives, negatives)``; a component is 0 on rows of the other class.
    """
    import numpy as np

    m, n = y.sum(axis=-1), (~y).sum(axis=-1)
    ranks = _midranks(scores)
    within_pos = _midranks(np.where(y, scores, -np.inf)) - n[:, None]
    within_neg = _midranks(np.where(~y, scores, -np.inf)) - m[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        v10 = np.where(y, (ranks - within_pos) / n[:, None], 0.0)
        v01 = np.where(~y, 1.0 - (ranks - within_neg) / m[:, None], 0.0)
    return v10, v01, m, n


def delong_auc_difference(
    labels: Any, score_champion: Any, score_challenger: Any, level: float = 0.95
) -> dict[str, Any]:
    """Binary AUC difference (challenger minus champion) with DeLong's variance of the paired difference.

    Vectorised: 2-D inputs (samples x rows, e.g. simulations) give one result per sample, as arrays. Ranks
    within
    each class come from one ranking with the other class pushed to -inf, so every sample may have its own
    labels.

    Args:
        labels: 0/1 (or boolean) truth per row.
        score_champion: The champion's positive-class scores on the same rows.
        score_challenger: The challenger's.
        level: Two-sided level of the normal interval.

    Returns:
        ``{"champion", "challenger", "difference", "se", "ci_low", "ci_high", "rows"}``; NaN when the rows
        hold a
        single class.
    """
    import numpy as np

    y = np.atleast_2d(np.asarray(labels).astype(bool))
    scores = np.stack([np.atleast_2d(np.asarray(s, float)) for s in (score_champion, score_challenger)])
    v10, v01, m, n = _components(y, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = v10.sum(axis=-1) / m
        diff = auc[1] - auc[0]  # also the mean of each class's component differences
        d10, d01 = v10[1] - v10[0] - diff[:, None], v01[1] - v01[0] - diff[:, None]
        var10 = (d10**2 * y).sum(axis=-1) / np.maximum(m - 1, 1) / m
        var01 = (d01**2 * ~y).sum(axis=-1) / np.maximum(n - 1, 1) / n
    champion, challenger, diff, se = np.where(
        (m == 0) | (n == 0), np.nan, [*auc, diff, np.sqrt(var10 + var01)]
    )
    half = _z(0.5 + level / 2) * se
    result = {"champion": champion, "challenger": challenger, "difference": diff, "se": se}
    result.update({"ci_low": diff - half, "ci_high": diff + half})
    if np.ndim(labels) == 1:
        return {**{k: float(v[0]) for k, v in result.items()}, "rows": int(y.shape[1])}
    return {**result, "rows": y.shape[1]}


def delong_ovr_difference(codes: Any, proba_champion: Any, proba_challenger: Any) -> dict[str, float]:
    """Macro one-vs-rest AUC difference over the classes present, with a DeLong-type variance.

    Each row's influence on the macro difference is the average over classes of its structural component (as a
    positive of its own class, as a negative of the others); the variance is the sum of squared influences.

    Args:
        codes: Class index per row (-1: unknown class, left out).
        proba_champion: rows x classes probabilities of the champion.
        proba_challenger: The challenger's, same columns.
    """
    import numpy as np

    y = np.asarray(codes).astype(int)
    keep = y >= 0
    present = [c for c in range(np.asarray(proba_champion).shape[1]) if np.any(y[keep] == c)]
    nan = float("nan")
    if len(present) < 2:
        return {"champion": nan, "challenger": nan, "difference": nan, "se": nan, "rows": int(keep.sum())}
    keep &= np.isin(y, present)
    y = y[keep]
    a, b = np.asarray(proba_champion, float)[keep], np.asarray(proba_challenger, float)[keep]
    influence = np.zeros(len(y))
    aucs = np.zeros(2)
    for c in present:
        positive = y == c
        v10, v01, m, n = _components(positive[None, :], np.stack([a[:, c], b[:, c]])[:, None, :])
        auc = v10.sum(axis=-1)[:, 0] / m[0]
        aucs += auc / len(present)
        d10, d01 = (v[1, 0] - v[0, 0] - (auc[1] - auc[0]) for v in (v10, v01))
        influence += np.where(positive, d10 / m[0], d01 / n[0]) / len(present)
    return {
        "champion": float(aucs[0]),
        "challenger": float(aucs[1]),
        "difference": float(aucs[1] - aucs[0]),
        "se": float(math.sqrt((influence**2).sum() * len(y) / max(len(y) - 1, 1))),
        "rows": int(len(y)),
    }


def _classification_sums(metric_key: str, y: Any, pred_a: Any, pred_b: Any, k: int) -> tuple[Any, Any]:
    """(cell counts, per-cell sufficient statistics) of a label metric; statistics are (tp, fp, fn) per class
    and model (macro-F1, k classes), (tp, fp, fn, correct) per model (binary), or correct per model."""
    import numpy as np

    base = k + 1  # codes -1..k-1 shifted to 0..k
    code = ((y + 1) * base + (pred_a + 1)) * base + (pred_b + 1)
    counts = np.bincount(code, minlength=base**3)
    present = np.flatnonzero(counts)
    counts = counts[present]
    cells = np.stack([present // base**2, present // base % base, present % base], axis=1) - 1
    stats = []
    for model in (1, 2):
        truth, pred = cells[:, 0], cells[:, model]
        if metric_key == "holdout_macro_f1":
            for c in range(k):
                stats += [(truth == c) & (pred == c), (truth != c) & (pred == c), (truth == c) & (pred != c)]
        elif metric_key == "holdout_accuracy":
            stats.append(truth == pred)
        else:
            stats += [(truth == 1) & (pred == 1), (truth == 0) & (pred == 1), (truth == 1) & (pred == 0)]
            stats.append(truth == pred)
    return counts, np.stack(stats, axis=1).astype(float)


def _label_metric(metric_key: str, sums: Any, k: int) -> tuple[Any, Any]:
    """(champion, challenger) metric values from sufficient sums (resamples x statistics)."""
    import numpy as np

    def ratio(num: Any, den: Any) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)

    half = sums.shape[1] // 2
    values = []
    for part in (sums[:, :half], sums[:, half:]):
        if metric_key == "holdout_macro_f1":
            tp, fp, fn = part[:, 0::3], part[:, 1::3], part[:, 2::3]
            seen = (tp + fp + fn) > 0  # sklearn averages over labels in the truth or the predictions
            values.append(
                (ratio(2 * tp, 2 * tp + fp + fn) * seen).sum(axis=1) / np.maximum(seen.sum(axis=1), 1)
            )
            continue
        if metric_key == "holdout_accuracy":
            values.append(part[:, 0])  # correct rows; the caller divides by the rows
            continue
        tp, fp, fn = part[:, 0], part[:, 1], part[:, 2]
        values.append(
            {
                "holdout_f1": ratio(2 * tp, 2 * tp + fp + fn),
                "holdout_precision": ratio(tp, tp + fp),
                "holdout_recall": ratio(tp, tp + fn),
            }.get(metric_key, part[:, 3])
        )
    return values[0], values[1]


def _regression_units(y: Any, pred_a: Any, pred_b: Any, seed: int) -> Any:
    """Per-unit sums (units x 10): rows, then per model squared error, absolute error, APE sum; y and y^2
    sums,
    nonzero-truth rows. At most ``BOOTSTRAP_UNITS`` random groups of rows of equal size."""
    import numpy as np

    nonzero = np.abs(y) > 1e-12
    safe = np.where(nonzero, y, 1.0)
    columns = [np.ones(len(y))]
    for pred in (pred_a, pred_b):
        err = y - pred
        columns += [err**2, np.abs(err), np.where(nonzero, np.abs(err / safe), 0.0)]
    columns += [y, y**2, nonzero.astype(float)]
    per_row = np.stack(columns, axis=1)
    if len(y) <= BOOTSTRAP_UNITS:
        return per_row
    group = np.random.default_rng(seed).permutation(len(y)) % BOOTSTRAP_UNITS
    return np.stack([np.bincount(group, col, minlength=BOOTSTRAP_UNITS) for col in per_row.T], axis=1)


def _regression_metric(metric_key: str, sums: Any) -> tuple[Any, Any]:
    import numpy as np

    rows, y_sum, y2_sum, nonzero = sums[:, 0], sums[:, 7], sums[:, 8], sums[:, 9]
    values = []
    for offset in (1, 4):
        sse, sae, ape = sums[:, offset], sums[:, offset + 1], sums[:, offset + 2]
        if metric_key == "holdout_rmse":
            values.append(np.sqrt(sse / rows))
        elif metric_key == "holdout_mae":
            values.append(sae / rows)
        elif metric_key == "holdout_mape":
            values.append(ape / np.maximum(nonzero, 1))
        else:  # r2
            sst = y2_sum - y_sum**2 / rows
            values.append(1 - sse / np.where(sst > 0, sst, np.nan))
    return values[0], values[1]


def bootstrap_difference(
    metric_key: str,
    truth: Any,
    pred_champion: Any,
    pred_challenger: Any,
    *,
    classes: int = 2,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """Paired bootstrap of a label or regression metric's difference (challenger minus champion).

    Args:
        metric_key: F1, precision, recall, accuracy, macro-F1 (class codes 0..classes-1), RMSE, MAE, MAPE or
        R2.
        truth: Encoded truth (0/1 binary, class codes, or values); predictions are encoded alike.
        pred_champion: The champion's predictions; ``pred_challenger`` the challenger's.
        classes: Number of classes (macro-F1); ``level``: two-sided level of the percentile interval;
            ``resamples``, ``seed``: of the resampling.

    Returns:
        ``{"champion", "challenger", "difference", "se", "ci_low", "ci_high", "rows"}``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    regression = metric_key in ("holdout_rmse", "holdout_mae", "holdout_mape", "holdout_r2")
    if regression:
        y, a, b = (np.asarray(v, float) for v in (truth, pred_champion, pred_challenger))
        stats = _regression_units(y, a, b, seed)
        counts = np.ones(len(stats))
        draw_n, probs = len(stats), None  # units drawn uniformly

        def metric(s: Any) -> tuple[Any, Any]:
            return _regression_metric(metric_key, s)
    else:
        y, a, b = (np.asarray(v).astype(int) for v in (truth, pred_champion, pred_challenger))
        counts, stats = _classification_sums(metric_key, y, a, b, classes)
        draw_n, probs = len(y), counts / counts.sum()

        def metric(s: Any) -> tuple[Any, Any]:
            champion, challenger = _label_metric(metric_key, s, classes)
            if metric_key == "holdout_accuracy":
                return champion / len(y), challenger / len(y)
            return champion, challenger

    champion, challenger = (float(v[0]) for v in metric((counts @ stats)[None, :]))
    diffs = []
    for start in range(0, resamples, BOOTSTRAP_CHUNK):
        size = min(BOOTSTRAP_CHUNK, resamples - start)
        if probs is None:  # a resample's count of each unit: bincount of its drawn indexes, for all at once
            drawn = rng.integers(0, draw_n, size=(size, draw_n)) + draw_n * np.arange(size)[:, None]
            weights = np.bincount(drawn.ravel(), minlength=size * draw_n).reshape(size, draw_n)
        else:
            weights = rng.multinomial(draw_n, probs, size=size)
        ch, cl = metric(weights @ stats)
        diffs.append(cl - ch)
    diffs = np.concatenate(diffs)
    diffs = diffs[np.isfinite(diffs)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail]) if len(diffs) else (float("nan"),) * 2
    return {
        "champion": champion,
        "challenger": challenger,
        "difference": challenger - champion,
        "se": float(diffs.std(ddof=1)) if len(diffs) > 1 else float("nan"),
        "ci_low": float(low),
        "ci_high": float(high),
        "rows": int(len(y)),
    }


def _z(p: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(p))


def compare_outputs(
    metric_key: str,
    task: str,
    truth: Any,
    champion: dict[str, Any],
    challenger: dict[str, Any],
    *,
    positive_label: str = "",
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The paired difference of one metric between two models' outputs on the same labelled rows.

    Args:
        metric_key: A holdout metric key (``holdout_auc``, ``holdout_rmse``, ...).
        task: ``binary``, ``multiclass`` or ``regression``.
        truth: The rows' labels in the dataset's vocabulary (values for regression).
        champion: The champion's :meth:`~driftloop.core.task_types.Decision.predict` outputs on the rows;
            ``challenger`` the challenger's on the same rows in the same order.
        positive_label: Binary: the positive label. ``level``: two-sided level of the interval; ``resamples``,
            ``seed``: of the bootstrap (metrics other than AUC).

    Returns:
        ``{"champion", "challenger", "difference", "ci_low", "ci_high", "se", "rows", "method", "level"}``;
        ``difference`` is challenger minus champion in the metric's units.
    """
    import numpy as np

    options: dict[str, Any] = {"level": level, "resamples": resamples, "seed": seed}
    method = {"holdout_auc": "delong", "holdout_auc_ovr": "delong_ovr"}.get(metric_key, "paired_bootstrap")
    predicted = [o[bus.PREDICTION_COLUMN] for o in (champion, challenger)]
    if task == task_types.REGRESSION:
        y, a, b = (np.asarray(v, float) for v in (truth, *predicted))
        result = bootstrap_difference(metric_key, y, a, b, **options)
    elif task == task_types.BINARY:
        y, a, b = (np.asarray(v).astype(str) == str(positive_label) for v in (truth, *predicted))
        if method == "delong":
            result = delong_auc_difference(y, champion[bus.SCORE_COLUMN], challenger[bus.SCORE_COLUMN], level)
        else:
            result = bootstrap_difference(metric_key, y, a, b, **options)
    else:
        prefix = bus.proba_column("")
        labels = sorted(
            {k.removeprefix(prefix) for o in (champion, challenger) for k in o if k.startswith(prefix)}
        )
        index = {label: i for i, label in enumerate(labels)}
        unknown = len(
            labels
        )  # a truth label neither model knows: one more class, never predicted (as sklearn)
        y, a, b = (
            np.array([index.get(v, unknown) for v in np.asarray(x).astype(str)]) for x in (truth, *predicted)
        )
        if method == "delong_ovr":
            zeros = np.zeros(len(y))
            a, b = (
                np.column_stack([o.get(prefix + c, zeros) for c in labels]) for o in (champion, challenger)
            )
            result = delong_ovr_difference(np.where(y == unknown, -1, y), a, b)
            half = _z(0.5 + level / 2) * result["se"]
            result.update({"ci_low": result["difference"] - half, "ci_high": result["difference"] + half})
        else:
            result = bootstrap_difference(metric_key, y, a, b, classes=len(labels) + 1, **options)
    return {**result, "method": method, "level": level}


def needed_rows(se: float, rows: int, effect: float | None, alpha: float, power: float = POWER) -> int | None:
    """Rows a one-sided test at ``alpha`` needs to detect ``effect`` with ``power``, given the per-row
    variance
    implied by the observed standard error (``se**2 * rows``). None without a positive effect or variance."""
    if effect is None or not effect > 0 or not se > 0 or not math.isfinite(se):
        return None
    per_row_var = se**2 * rows
    return int(math.ceil(per_row_var * (_z(1 - alpha) + _z(power)) ** 2 / effect**2))


def decide(
    comparison: dict[str, Any], metric_key: str, rule: str, *, min_improvement: float, margin: float
) -> dict[str, Any]:
    """Apply a decision rule to a paired comparison (:func:`compare_outputs`).

    Args:
        comparison: The comparison.
        metric_key: The metric compared (its direction decides what an improvement is).
        rule: ``superiority`` or ``non_inferiority``.
        min_improvement: Superiority: the improvement's lower bound must exceed this (metric units).
        margin: Non-inferiority: the improvement's lower bound must exceed minus this; for error metrics a
        share
            of the champion's value (their units depend on the target), otherwise metric units.

    Returns:
        The comparison plus ``{"rule", "passed", "improvement_low", "bound", "margin", "alpha",
        "needed_rows"}``:
        ``bound`` is what ``improvement_low`` had to exceed; ``needed_rows`` is the rows this rule would need
        for 80% power (superiority: to detect the observed improvement; non-inferiority: for equal models).

    Raises:
        ValueError: Unknown rule.
    """
    if rule not in RULES:
        raise ValueError(f"unknown decision rule {rule!r} (known: {list(RULES)})")
    lower_better = task_types.is_lower_better(metric_key)
    low, high, diff = comparison["ci_low"], comparison["ci_high"], comparison["difference"]
    improvement_low = -high if lower_better else low
    improvement = -diff if lower_better else diff
    margin_abs = margin * abs(comparison["champion"]) if lower_better else margin
    bound = min_improvement if rule == SUPERIORITY else -margin_abs
    alpha = (1 - comparison["level"]) / 2
    effect = (improvement - min_improvement) if rule == SUPERIORITY else margin_abs
    import numpy as np

    with np.errstate(invalid="ignore"):
        passed = np.isfinite(improvement_low) & np.isfinite(bound) & (improvement_low > bound)
    if np.ndim(passed):  # a vectorised comparison (simulations): the verdict per sample
        return {**comparison, "rule": rule, "passed": passed, "bound": bound, "alpha": alpha}
    finite = math.isfinite(improvement_low) and math.isfinite(bound)
    return {
        **comparison,
        "rule": rule,
        "passed": bool(passed),
        "improvement_low": improvement_low,
        "bound": bound,
        "margin": margin_abs,
        "alpha": alpha,
        "needed_rows": needed_rows(comparison["se"], comparison["rows"], effect if finite else None, alpha),
    }
