"""Paired challenger-vs-champion comparison on the same rows: the difference, its interval, the decision rule.

The gate scores both models on the same holdout (and production window), so their errors are paired; a point
difference of 0.0004 AUC on 951 rows is noise, not evidence. This module turns the two models' outputs into
``difference`` (challenger minus champion, in the metric's units), a two-sided ``level`` confidence interval
and the sample size a decision would need, then applies a rule:

* ``superiority``: the improvement's lower bound is above ``min_improvement`` (credibly better);
* ``non_inferiority``: the improvement's lower bound is above ``-margin`` (not credibly worse by the margin).

"Improvement" is the difference for scores (AUC, F1, accuracy, R2) and minus the difference for errors (RMSE,
MAE, MAPE). A two-sided 95% interval makes each rule a one-sided test at ``alpha = 0.025``.

Methods: binary and one-vs-rest AUC by DeLong's test (:mod:`driftloop.governance.delong`); every other
metric by a seeded paired bootstrap. Classification metrics depend on a row only through its (truth,
champion prediction, challenger prediction) cell, so resampling rows is resampling cell counts (one
multinomial draw per resample, exact). Regression rows are resampled in at most ``BOOTSTRAP_UNITS`` random
groups of equal size (each row its own group up to that many rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from driftloop.core import bus, task_types
from driftloop.governance.delong import delong_auc_difference, delong_ovr_difference, z_quantile

SUPERIORITY, NON_INFERIORITY = "superiority", "non_inferiority"
RULES = (SUPERIORITY, NON_INFERIORITY)
POWER = 0.8  # the power the reported ``needed_rows`` is sized for
BOOTSTRAP_UNITS = 2000
BOOTSTRAP_CHUNK = 500  # resamples drawn at a time


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
    sums, nonzero-truth rows. At most ``BOOTSTRAP_UNITS`` random groups of rows of equal size."""
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
    result: Mapping[str, object]  # the difference, its interval, both values, the rows
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
        # The classes are those of the proba_<label> columns. proba_column("") names the empty label
        # (proba_empty), so the prefix is cut from a one-character label's column.
        prefix = bus.proba_column("_")[:-1]
        labels = sorted(
            {k.removeprefix(prefix) for o in (champion, challenger) for k in o if k.startswith(prefix)}
        )
        index = {label: i for i, label in enumerate(labels)}
        unknown = len(
            labels
        )  # a truth label neither model knows: one more class, never predicted (as sklearn)
        y, a, b = (_class_codes(x, index, unknown) for x in (truth, *predicted))
        if method == "delong_ovr":
            zeros = np.zeros(len(y))
            a, b = (
                np.column_stack([o.get(prefix + c, zeros) for c in labels]) for o in (champion, challenger)
            )
            ovr = delong_ovr_difference(np.where(y == unknown, -1, y), a, b)
            half = z_quantile(0.5 + level / 2) * ovr["se"]
            result = {**ovr, "ci_low": ovr["difference"] - half, "ci_high": ovr["difference"] + half}
        else:
            result = bootstrap_difference(metric_key, y, a, b, classes=len(labels) + 1, **options)
    return {**result, "method": method, "level": level}


def _class_codes(values: Any, index: dict[str, int], unknown: int) -> Any:
    """Class codes of ``values`` by their metric-safe names, the names the ``proba_<label>`` columns carry
    (:func:`driftloop.core.bus.metric_safe`); ``unknown`` for a value no column names."""
    import numpy as np

    names, inverse = np.unique(np.asarray(values).astype(str), return_inverse=True)
    return np.array([index.get(bus.metric_safe(n), unknown) for n in names], dtype=int)[inverse]


def needed_rows(se: float, rows: int, effect: float | None, alpha: float, power: float = POWER) -> int | None:
    """Rows a one-sided test at ``alpha`` needs to detect ``effect`` with ``power``, given the per-row
    variance implied by the observed standard error (``se**2 * rows``). None without a positive effect or
    variance."""
    if effect is None or not effect > 0 or not se > 0 or not math.isfinite(se):
        return None
    per_row_var = se**2 * rows
    return int(math.ceil(per_row_var * (z_quantile(1 - alpha) + z_quantile(power)) ** 2 / effect**2))


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
            share of the champion's value (their units depend on the target), otherwise metric units.

    Returns:
        The comparison plus ``{"rule", "passed", "improvement_low", "bound", "margin", "alpha",
        "needed_rows"}``: ``bound`` is what ``improvement_low`` had to exceed; ``needed_rows`` is the rows
        this rule would need for 80% power (superiority: to detect the observed improvement; non-inferiority:
        for equal models).

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
