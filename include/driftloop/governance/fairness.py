"""Fairness per sensitive attribute: group metrics, parity gaps and a plot.

For every attribute in the dataset config's ``sensitive`` list, :mod:`driftloop.governance.group_metrics`
counts per group (fairlearn's ``MetricFrame`` definitions, with numpy: milliseconds on 50,000 rows where
``MetricFrame`` took seconds) the row count, confusion matrix, selection rate, true and false positive rates
and precision; the demographic-parity difference (largest gap in selection rate) and the equalized-odds
difference (largest gap in TPR or FPR) summarise them. Multiclass tasks get per group the accuracy and the
selection rate of every class (the share of the group's rows predicted as that class), summarised by the
accuracy gap and the largest per-class selection-rate gap; regression tasks get per group the mean absolute
error and the mean prediction, summarised by the MAE gap. Numeric attributes are binned by the edges in
``fairness.bins``, or into quartiles when no edges are configured; rows whose sensitive value is missing form
their own group, ``missing``. The same function serves the gate (on the holdout) and monitoring (on labelled
production rows), so a growing gap is a metric history in MLflow.

Every gap is judged as evidence (:func:`judge_gaps`): it gets a ``fairness.confidence`` interval built from
each group's own interval (Wilson for rates, Student t for mean errors; Newcombe's method per pair of groups,
Bonferroni over the pairs), so the smallest group sets how wide it is, and a limit from the config, the same
for every declared attribute. The rule: a gap *passes* when its point value is within the limit, *fails* when
its interval's lower bound is above the limit (credibly above it), and is *undecided* when the point is above
the limit but the lower bound is not. An undecided gap is said on the card and in the gate check's detail but
does not block, like an underpowered production-window comparison: blocking would let the noise of a 30-row
group decide, and would hold back every model of a dataset with a small group whatever it does, while a
credible gap blocks whatever the rows. ``fairness.mode: report`` measures and judges every gap without
blocking.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from driftloop.core.config import DatasetConfig
from driftloop.governance.governance_results import AttributeFairness, FairnessReport, GapJudgement

MIN_GROUP_ROWS = 1
MISSING_GROUP = "missing"
AUTO_BIN_MIN_VALUES = 10  # a numeric attribute with more distinct values than this is cut into quartiles
# The config field holding each gap's limit (None: reported only). The MAE gap's limit is relative: a share of
# the overall MAE, so that one default fits targets in dollars and in degrees alike.
LIMIT_FIELDS = {
    "demographic_parity_difference": "max_demographic_parity_difference",
    "equalized_odds_difference": "max_equalized_odds_difference",
    "accuracy_difference": "max_accuracy_difference",
    "max_selection_rate_difference": "max_selection_rate_difference",
    "mean_absolute_error_difference": "max_relative_mae_difference",
}
PASS, FAIL, UNDECIDED, NO_LIMIT = "pass", "fail", "undecided", "no limit"


def sensitive_groups(cfg: DatasetConfig, frame: Any, attribute: str) -> Any:
    """The group label of every row for ``attribute``.

    Numeric attributes are binned by ``fairness.bins`` (or into quartiles when they have more than
    :data:`AUTO_BIN_MIN_VALUES` distinct values and no edges are configured); a missing value is its own
    group, :data:`MISSING_GROUP`.
    """
    import pandas as pd

    values = frame[attribute].reset_index(drop=True)
    missing = values.isna()
    edges = cfg.fairness.bins.get(attribute)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if edges:
        bins = [-float("inf"), *sorted(edges), float("inf")]
        groups = pd.cut(pd.to_numeric(values, errors="coerce"), bins=bins, right=False).astype(str)
    elif numeric and values[~missing].nunique() > AUTO_BIN_MIN_VALUES:
        groups = pd.qcut(values, q=4, duplicates="drop").astype(str)
    elif numeric:
        present = values[~missing]
        whole = bool(len(present)) and bool((present == present.round()).all())
        groups = (present.astype("int64") if whole else present).astype(str).reindex(values.index)
    else:
        groups = values.astype(str)
    return groups.where(~missing, MISSING_GROUP)


def assess_fairness(
    cfg: DatasetConfig, frame: Any, y_true: Any, y_pred: Any, task: str = "binary"
) -> FairnessReport:
    """Group metrics, gaps and the judgement of each gap for every sensitive attribute of ``cfg``.

    Binary tasks get the demographic-parity and equalized-odds differences (fairlearn's definitions; a group
    without positives has no true positive rate and is left out of that comparison instead of counting as 0);
    multiclass tasks the largest gap in accuracy and in any class's selection rate, regression tasks the
    largest gap in mean absolute error. Each gap gets its interval, limit and outcome from :func:`judge_gaps`.

    Args:
        cfg: Dataset config (``sensitive``, ``fairness``).
        frame: Rows holding the sensitive columns, aligned with the labels.
        y_true: True labels: 0/1 (binary), labels (multiclass) or values (regression).
        y_pred: The model's decisions in the same form.
        task: ``binary``, ``multiclass`` or ``regression``.

    Returns:
        ``{attribute: {"groups": {group: {metric: value}}, <gap name>: value, "judged": {<gap name>:
        judgement}, "rows"}}``; empty when the config names no sensitive attribute. Gap names are in
        :data:`GAPS`, judgements are described in :func:`judge_gaps`; counts (``count``, ``tn``, ...) are
        integers.
    """
    import numpy as np

    from driftloop.governance.group_metrics import group_metrics

    if task == "binary":
        y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    report: FairnessReport = {}
    for attribute in cfg.sensitive_features:
        groups = sensitive_groups(cfg, frame, attribute).to_numpy()
        judged = judge_gaps(cfg, task, (y_true, y_pred), groups)
        entry = {
            "groups": group_metrics(task, y_true, y_pred, groups),
            **{gap: judgement["value"] for gap, judgement in judged.items()},
            "judged": judged,
            "rows": int(len(groups)),
        }
        report[attribute] = cast(AttributeFairness, entry)  # the gap keys are judge_gaps' names (GAPS)
    return report


GAPS = (
    "demographic_parity_difference",
    "equalized_odds_difference",
    "accuracy_difference",
    "max_selection_rate_difference",
    "mean_absolute_error_difference",
)
COUNTS = ("count", "tn", "fp", "fn", "tp")  # group metrics that are numbers of rows


def assess_decisions(
    cfg: DatasetConfig, frame: Any, decision: Any, outputs: dict[str, Any]
) -> FairnessReport:
    """:func:`assess_fairness` of a version's predictions (``decision.predict``) on labelled ``frame``
    rows."""
    import numpy as np

    from driftloop.core import bus

    predicted = np.asarray(outputs[bus.PREDICTION_COLUMN])
    truth = frame[cfg.target].reset_index(drop=True)
    if decision.task == "binary":
        return assess_fairness(
            cfg,
            frame,
            decision.encode(truth).to_numpy(),
            (predicted.astype(str) == decision.classes[1]).astype(int),
        )
    if decision.task == "regression":
        return assess_fairness(
            cfg, frame, decision.encode(truth).to_numpy(), predicted.astype(float), "regression"
        )
    return assess_fairness(cfg, frame, truth.astype(str).to_numpy(), predicted.astype(str), "multiclass")


def fairness_metrics(report: FairnessReport) -> dict[str, float]:
    """MLflow metrics of a fairness report: ``fairness.<attribute>.<gap>`` and per-group selection rates."""
    from driftloop.core import bus

    metrics = {}
    for attribute, entry in report.items():
        for gap, judged in entry["judged"].items():  # the gaps of the report (GAPS' order), with their values
            metrics[bus.fairness_metric(attribute, gap)] = judged["value"]
        for group, values in entry["groups"].items():
            if "selection_rate" in values:
                metrics[bus.fairness_metric(attribute, f"selection_rate.{group}")] = values["selection_rate"]
    return metrics


def plot_fairness(report: FairnessReport, path: Path, title: str) -> Path | None:
    """Grouped bars of selection rate, TPR and FPR per group, one panel per attribute (None: nothing to
    plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not report or "demographic_parity_difference" not in next(iter(report.values())):
        return None  # the plot shows binary rates; other tasks keep their table
    metrics = ("selection_rate", "true_positive_rate", "false_positive_rate")
    with plt.rc_context({"font.family": "DejaVu Sans"}):
        fig, axes = plt.subplots(1, len(report), figsize=(4.5 * len(report), 3.4), squeeze=False)
        for ax, (attribute, entry) in zip(axes[0], report.items(), strict=True):
            groups = list(entry["groups"])
            x = np.arange(len(groups))
            for i, metric in enumerate(metrics):
                ax.bar(
                    x + (i - 1) * 0.27, [entry["groups"][g][metric] for g in groups], width=0.27, label=metric
                )
            ax.set_xticks(x, groups, rotation=20, fontsize=8)
            ax.set_ylim(0, 1)
            ax.set_title(
                f"{attribute}: DP diff {entry['demographic_parity_difference']:.2f}, "
                f"EO diff {entry['equalized_odds_difference']:.2f}",
                fontsize=9,
            )
        axes[0][0].legend(fontsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return path


def judge_gaps(
    cfg: DatasetConfig, task: str, labels: tuple[Any, Any], groups: Any
) -> dict[str, GapJudgement]:
    """Each gap of ``task`` between ``groups``: its value, its interval, its limit and the outcome.

    A gap is the largest difference between two groups' rates (or mean errors), so its interval is built
    from every pair of groups: each group's rate gets a Wilson score interval (a mean error a Student-t
    interval), each pair's difference the interval of Newcombe's hybrid score method (MOVER), and the gap's
    interval runs from the largest lower bound (at least 0) to the largest upper bound of any pair. The
    level is ``fairness.confidence`` for all pairs together (Bonferroni over the ``comparisons``), so a lower
    bound above the limit is credible however many groups an attribute has, and a small group widens every
    pair it is in. The limit is the config's (:data:`LIMIT_FIELDS`; for the MAE gap the relative limit times
    the overall MAE); the outcome is :func:`decide`'s.

    Args:
        cfg: Dataset config (``fairness``).
        task: ``binary``, ``multiclass`` or ``regression``.
        labels: ``(y_true, y_pred)`` as :func:`assess_fairness` takes them (binary as 0/1).
        groups: The group of every row (:func:`sensitive_groups`).

    Returns:
        ``{gap: {"value", "ci_low", "ci_high", "level", "comparisons", "smallest_group",
        "smallest_group_rows", "limit", "outcome", "enforced"}}``, plus ``relative_limit`` and
        ``overall_mae`` for the MAE gap; ``limit`` is None when the config sets none, ``enforced`` is False
        then and under ``fairness.mode: report``.
    """
    import numpy as np

    names, index, sizes = np.unique(np.asarray(groups).astype(str), return_inverse=True, return_counts=True)
    level, smallest = cfg.fairness.confidence, int(np.argmin(sizes))
    scale = 1.0
    if task == "regression":
        errors = np.abs(np.asarray(labels[0], dtype=float) - np.asarray(labels[1], dtype=float))
        scale = float(errors.mean())
        bounds = {"mean_absolute_error_difference": _mae_bounds(errors, index, sizes, level)}
    else:
        bounds = _count_bounds(task, labels, index, sizes, level)
    judged: dict[str, GapJudgement] = {}
    for gap, (value, low, high, comparisons) in bounds.items():
        setting = getattr(cfg.fairness, LIMIT_FIELDS[gap])
        limit = None if setting is None else float(setting) * scale
        judged[gap] = {
            "value": value,
            "ci_low": low,
            "ci_high": high,
            "level": level,
            "comparisons": comparisons,
            "smallest_group": str(names[smallest]),
            "smallest_group_rows": int(sizes[smallest]),
            "limit": limit,
            "outcome": decide(value, low, limit),
            "enforced": limit is not None and cfg.fairness.mode == "enforce",
        }
        if task == "regression":  # the MAE gap's limit is relative to the overall MAE
            judged[gap]["relative_limit"] = cfg.fairness.max_relative_mae_difference
            judged[gap]["overall_mae"] = scale
    return judged


def decide(value: float, ci_low: float, limit: float | None) -> str:
    """The outcome of one gap: :data:`PASS`, :data:`FAIL`, :data:`UNDECIDED` or :data:`NO_LIMIT`.

    Passes when the point is within the limit; fails only when the interval's lower bound is above it (the gap
    is credibly above the limit); undecided when the point is above the limit but the lower bound is not: the
    rows cannot tell a gap above the limit from the noise of the smaller group.
    """
    if limit is None:
        return NO_LIMIT
    if value <= limit + 1e-12:
        return PASS
    return FAIL if ci_low > limit else UNDECIDED


def describe_gap(cfg: DatasetConfig, attribute: str, gap: str, judged: GapJudgement) -> str:
    """One sentence with a judged gap's numbers (the gate check's detail): value, limit, interval, smallest
    group.

    ``equalized odds difference for sex 0.3900 (limit 0.1): above the limit but its interval (95% interval
    0.0800 to 0.6400, smallest group 'f' 30 rows) is too wide to decide; reported, not enforced``.
    """
    value, limit, outcome = judged["value"], judged["limit"], judged["outcome"]
    interval = (
        f"{judged['level']:.0%} interval {judged['ci_low']:.4f} to {judged['ci_high']:.4f}, smallest group "
        f"{judged['smallest_group']!r} {judged['smallest_group_rows']:,} rows"
    )
    head = f"{gap.replace('_', ' ')} for {attribute} {value:.4f}"
    if outcome == NO_LIMIT:
        return f"{head} (no limit; {interval})"
    if judged.get("relative_limit") is not None:
        head += (
            f" (limit {limit:.4g} = {judged['relative_limit']:g} x overall MAE {judged['overall_mae']:.4g})"
        )
    else:
        head += f" (limit {limit:g})"
    sentence = {
        PASS: f"{head}: within it ({interval})",
        FAIL: f"{head}: credibly above it ({interval})",
        UNDECIDED: f"{head}: above the limit but its interval ({interval}) is too wide to decide",
    }[outcome]
    if not judged["enforced"]:
        sentence += f"; fairness.mode {cfg.fairness.mode}: reported, not enforced"
    elif outcome == UNDECIDED:
        sentence += "; reported, not enforced"
    return sentence


Bounds = tuple[float, float, float, int]  # (gap, interval low, interval high, pairwise comparisons)


def _count_bounds(
    task: str, labels: tuple[Any, Any], index: Any, sizes: Any, level: float
) -> dict[str, Bounds]:
    """Binary and multiclass gaps from each group's confusion matrix (truth x decision)."""
    import numpy as np

    if task == "binary":
        truth, made, k = np.asarray(labels[0]).astype(int), np.asarray(labels[1]).astype(int), 2
    else:
        truth, made = (np.asarray(v).astype(str) for v in labels)
        classes = np.unique(np.concatenate([truth, made]))
        truth, made, k = np.searchsorted(classes, truth), np.searchsorted(classes, made), len(classes)
    g = len(sizes)
    cells = np.bincount((index * k + truth) * k + made, minlength=g * k * k).reshape(g, k, k)
    if task == "binary":
        tn, fp, fn, tp = cells[:, 0, 0], cells[:, 0, 1], cells[:, 1, 0], cells[:, 1, 1]
        return {
            "demographic_parity_difference": _proportion_bounds([(fp + tp, sizes)], level),
            "equalized_odds_difference": _proportion_bounds([(tp, tp + fn), (fp, fp + tn)], level),
        }
    chosen = cells.sum(axis=1)  # (group, class): rows predicted as each class
    return {
        "accuracy_difference": _proportion_bounds([(np.trace(cells, axis1=1, axis2=2), sizes)], level),
        "max_selection_rate_difference": _proportion_bounds([(chosen[:, c], sizes) for c in range(k)], level),
    }


def _pairs(defined: Any) -> int:
    count = int(defined.sum())
    return count * (count - 1) // 2


def _proportion_bounds(families: list[tuple[Any, Any]], level: float) -> Bounds:
    """The largest gap between groups in any family of rates ``(successes, trials)`` per group, with its
    simultaneous interval (Wilson per group, Newcombe per pair, Bonferroni over every pair of every
    family)."""
    from statistics import NormalDist

    import numpy as np

    comparisons = sum(_pairs(trials > 0) for _, trials in families)
    z = NormalDist().inv_cdf(1 - (1 - level) / (2 * max(comparisons, 1)))
    found = [0.0, 0.0, 0.0]
    for successes, trials in families:
        n = np.maximum(trials, 1).astype(float)
        p = successes / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        found = [
            max(a, b)
            for a, b in zip(found, _pair_bounds(p, centre - half, centre + half, trials > 0), strict=True)
        ]
    return found[0], found[1], found[2], comparisons


def _mae_bounds(errors: Any, index: Any, sizes: Any, level: float) -> Bounds:
    """The MAE gap with its simultaneous interval (Student t per group, MOVER per pair, Bonferroni)."""
    import numpy as np
    from scipy.special import stdtrit

    comparisons = _pairs(sizes > 0)
    means = np.bincount(index, weights=errors, minlength=len(sizes)) / sizes
    spread = np.bincount(index, weights=(errors - means[index]) ** 2, minlength=len(sizes))
    overall = float(errors.std(ddof=1)) if len(errors) > 1 else 0.0  # a one-row group borrows it
    sd = np.where(sizes > 1, np.sqrt(spread / np.maximum(sizes - 1, 1)), overall)
    t = stdtrit(np.maximum(sizes - 1, 1), 1 - (1 - level) / (2 * max(comparisons, 1)))
    half = t * sd / np.sqrt(sizes)
    value, low, high = _pair_bounds(means, means - half, means + half, sizes > 0)
    return value, low, high, comparisons


def _pair_bounds(value: Any, low: Any, high: Any, defined: Any) -> tuple[float, float, float]:
    """Largest difference between two groups' values, and the largest lower and upper bounds of any pair's
    difference by MOVER (Newcombe's method for proportions): ``d - sqrt((v_a - l_a)^2 + (u_b - v_b)^2)``."""
    import numpy as np

    a, b = value[:, None], value[None, :]
    pairs = defined[:, None] & defined[None, :] & ~np.eye(len(value), dtype=bool)
    if not pairs.any():
        return 0.0, 0.0, 0.0
    difference = a - b
    lower = difference - np.sqrt((a - low[:, None]) ** 2 + (high[None, :] - b) ** 2)
    upper = difference + np.sqrt((high[:, None] - a) ** 2 + (b - low[None, :]) ** 2)
    return float(difference[pairs].max()), max(0.0, float(lower[pairs].max())), float(upper[pairs].max())
