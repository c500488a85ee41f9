"""Fairness per sensitive attribute with fairlearn: group metrics, parity gaps and a plot.

For every attribute in the dataset config's ``sensitive`` list, ``fairlearn.metrics.MetricFrame`` gives per
group the row count, confusion matrix, selection rate, true and false positive rates and precision; the
demographic-parity difference (largest gap in selection rate) and the equalized-odds difference (largest gap
in TPR or FPR) summarise them. Multiclass tasks get per group the accuracy and the selection rate of every
class (the share of the group's rows predicted as that class), summarised by the accuracy gap and the largest
per-class selection-rate gap; regression tasks get per group the mean absolute error and the mean prediction,
summarised by the MAE gap. Numeric attributes are binned by the edges in ``fairness.bins``, or into quartiles
when no edges are configured; rows whose sensitive value is missing form their own group, ``missing``. The
same function serves the gate (on the holdout) and monitoring (on labelled production rows), so a growing gap
is a metric history in MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from driftloop.core.config import DatasetConfig

MIN_GROUP_ROWS = 1
MISSING_GROUP = "missing"
AUTO_BIN_MIN_VALUES = 10  # a numeric attribute with more distinct values than this is cut into quartiles


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


def _metric_functions() -> dict[str, Any]:
    from fairlearn.metrics import count, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import confusion_matrix, precision_score

    def cell(i: int, j: int) -> Any:
        return lambda y_true, y_pred: int(confusion_matrix(y_true, y_pred, labels=[0, 1])[i, j])

    return {
        "count": count,
        "selection_rate": selection_rate,
        "true_positive_rate": true_positive_rate,
        "false_positive_rate": false_positive_rate,
        "precision": lambda y_true, y_pred: precision_score(y_true, y_pred, zero_division=0),
        "tn": cell(0, 0),
        "fp": cell(0, 1),
        "fn": cell(1, 0),
        "tp": cell(1, 1),
    }


def assess_fairness(
    cfg: DatasetConfig, frame: Any, y_true: Any, y_pred: Any, task: str = "binary"
) -> dict[str, Any]:
    """Group metrics and gaps for every sensitive attribute of ``cfg``.

    Binary tasks get fairlearn's demographic-parity and equalized-odds differences; multiclass tasks the
    largest gap in accuracy between groups, regression tasks the largest gap in mean absolute error.

    Args:
        cfg: Dataset config (``sensitive``, ``fairness.bins``).
        frame: Rows holding the sensitive columns, aligned with the labels.
        y_true: True labels: 0/1 (binary), labels (multiclass) or values (regression).
        y_pred: The model's decisions in the same form.
        task: ``binary``, ``multiclass`` or ``regression``.

    Returns:
        ``{attribute: {"groups": {group: {metric: value}}, <gap name>: value, "rows"}}``; empty when the
        config names no sensitive attribute. Gap names are in :data:`GAPS`.
    """
    from fairlearn.metrics import MetricFrame

    report: dict[str, Any] = {}
    for attribute in cfg.sensitive_features:
        groups = sensitive_groups(cfg, frame, attribute).to_numpy()
        if task == "binary":
            entry = _binary_entry(y_true, y_pred, groups)
        else:
            by_group = MetricFrame(
                metrics=_task_functions(task, y_true, y_pred),
                y_true=y_true,
                y_pred=y_pred,
                sensitive_features=groups,
            ).by_group
            entry = {
                "groups": {str(g): {k: float(v) for k, v in row.items()} for g, row in by_group.iterrows()}
            }
            for metric in ("accuracy", "mean_absolute_error"):
                if metric in by_group:
                    entry[f"{metric}_difference"] = float(by_group[metric].max() - by_group[metric].min())
            rates = [c for c in by_group.columns if str(c).startswith("selection_rate.")]
            if rates:
                entry["max_selection_rate_difference"] = float(
                    max(by_group[c].max() - by_group[c].min() for c in rates)
                )
        report[attribute] = {**entry, "rows": int(len(groups))}
    return report


GAPS = (
    "demographic_parity_difference",
    "equalized_odds_difference",
    "accuracy_difference",
    "max_selection_rate_difference",
    "mean_absolute_error_difference",
)


def _task_functions(task: str, y_true: Any, y_pred: Any) -> dict[str, Any]:
    """Per-group metrics of multiclass (accuracy, selection rate per class) and regression (MAE, mean
    prediction)."""
    import numpy as np
    from fairlearn.metrics import count
    from sklearn.metrics import accuracy_score, mean_absolute_error

    if task == "multiclass":
        classes = sorted({str(v) for v in np.asarray(y_true)} | {str(v) for v in np.asarray(y_pred)})
        functions: dict[str, Any] = {
            "count": count,
            "accuracy": lambda t, p: accuracy_score(np.asarray(t).astype(str), np.asarray(p).astype(str)),
        }
        for label in classes:
            functions[f"selection_rate.{label}"] = lambda t, p, label=label: float(
                np.mean(np.asarray(p).astype(str) == label)
            )
        return functions
    return {
        "count": count,
        "mean_absolute_error": mean_absolute_error,
        "mean_prediction": lambda t, p: float(np.mean(np.asarray(p, dtype=float))),
    }


def _binary_entry(y_true: Any, y_pred: Any, groups: Any) -> dict[str, Any]:
    import numpy as np
    from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference

    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    by_group = MetricFrame(
        metrics=_metric_functions(), y_true=y_true, y_pred=y_pred, sensitive_features=groups
    ).by_group
    return {
        "groups": {str(g): {k: float(v) for k, v in row.items()} for g, row in by_group.iterrows()},
        "demographic_parity_difference": float(
            demographic_parity_difference(y_true, y_pred, sensitive_features=groups)
        ),
        "equalized_odds_difference": float(
            equalized_odds_difference(y_true, y_pred, sensitive_features=groups)
        ),
    }


def assess_decisions(
    cfg: DatasetConfig, frame: Any, decision: Any, outputs: dict[str, Any]
) -> dict[str, Any]:
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


def fairness_metrics(report: dict[str, Any]) -> dict[str, float]:
    """MLflow metrics of a fairness report: ``fairness.<attribute>.<gap>`` and per-group selection rates."""
    from driftloop.core import bus

    metrics = {}
    for attribute, entry in report.items():
        for gap in GAPS:
            if gap in entry:
                metrics[bus.fairness_metric(attribute, gap)] = entry[gap]
        for group, values in entry["groups"].items():
            if "selection_rate" in values:
                metrics[bus.fairness_metric(attribute, f"selection_rate.{group}")] = values["selection_rate"]
    return metrics


def plot_fairness(report: dict[str, Any], path: Path, title: str) -> Path | None:
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
