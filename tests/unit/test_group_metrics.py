"""Fairness counted with numpy gives fairlearn's numbers: every group metric and every gap, to 1e-12.

The reference is fairlearn 0.13's ``MetricFrame`` with the metric functions the fairness report used before
it counted with numpy (kept here, as they were), on seeded frames: random groups, a group with no positives
and one with no negatives, a one-row group, missing values in the attribute (their own group), a numeric
attribute cut into quartiles, and a class seen only in the decisions (multiclass).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

ROWS = 3000
TOLERANCE = 1e-12
COUNTS = ("count", "tn", "fp", "fn", "tp")


def _binary_functions() -> dict:
    from fairlearn.metrics import count, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import confusion_matrix, precision_score

    def cell(i: int, j: int):
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


def _task_functions(task: str, y_true, y_pred) -> dict:
    from fairlearn.metrics import count
    from sklearn.metrics import accuracy_score, mean_absolute_error

    if task == "multiclass":
        classes = sorted({str(v) for v in np.asarray(y_true)} | {str(v) for v in np.asarray(y_pred)})
        functions: dict = {
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


def _frame(seed: int) -> pd.DataFrame:
    """Sensitive columns: ``region`` (five groups, missing values, one group of one row), ``age`` (numeric,
    quartiles, missing values)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "region": rng.choice(["north", "south", "east", "west"], ROWS, p=[0.5, 0.3, 0.15, 0.05]),
            "age": rng.integers(18, 80, ROWS).astype(float),
        }
    ).astype({"region": object})
    frame.loc[rng.choice(ROWS, 40, replace=False), "region"] = None
    frame.loc[rng.choice(ROWS, 25, replace=False), "age"] = np.nan
    frame.loc[7, "region"] = "island"  # a one-row group
    return frame


def _binary_labels(frame: pd.DataFrame, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    truth = (rng.random(ROWS) < 0.3).astype(int)
    made = (rng.random(ROWS) < np.where(truth == 1, 0.7, 0.2)).astype(int)
    truth[(frame["region"] == "west").to_numpy()] = 0  # a group without positives
    made[(frame["region"] == "east").to_numpy()] = 1  # a group without negative decisions
    return truth, made


@pytest.fixture
def cfg(driftloop_env):
    from driftloop.core.config import load_dataset_config

    base = load_dataset_config("telco_churn")
    return dataclasses.replace(
        base, sensitive_features=("region", "age"), fairness=dataclasses.replace(base.fairness, bins={})
    )


def _labels(task: str, frame: pd.DataFrame, seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    if task == "binary":
        return _binary_labels(frame, seed)
    if task == "multiclass":
        truth = rng.choice(["a", "b", "c"], ROWS).astype(object)
        made = np.where(rng.random(ROWS) < 0.6, truth, rng.choice(["a", "b", "c", "d"], ROWS)).astype(object)
        return truth, made
    truth = rng.gamma(2.0, 50_000.0, ROWS)
    return truth, truth * rng.lognormal(0.0, 0.2, ROWS) + rng.normal(0.0, 1000.0, ROWS)


def _close(ours: float, theirs: float) -> bool:
    return abs(ours - theirs) <= TOLERANCE * max(1.0, abs(theirs))


def _gaps(task: str, by_group: pd.DataFrame) -> dict[str, float]:
    """Each gap from fairlearn's per-group numbers: the largest difference between two groups whose rate is
    defined (a TPR needs positives, an FPR negatives; fairlearn itself counts an undefined rate as 0)."""
    spread = lambda values: float(values.max() - values.min())  # noqa: E731
    if task == "binary":
        positives, negatives = by_group["tp"] + by_group["fn"], by_group["fp"] + by_group["tn"]
        return {
            "demographic_parity_difference": spread(by_group["selection_rate"]),
            "equalized_odds_difference": max(
                spread(by_group.loc[positives > 0, "true_positive_rate"]),
                spread(by_group.loc[negatives > 0, "false_positive_rate"]),
            ),
        }
    if task == "multiclass":
        rates = [c for c in by_group.columns if c.startswith("selection_rate.")]
        return {
            "accuracy_difference": spread(by_group["accuracy"]),
            "max_selection_rate_difference": max(spread(by_group[c]) for c in rates),
        }
    return {"mean_absolute_error_difference": spread(by_group["mean_absolute_error"])}


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_group_metrics_and_gaps_are_fairlearns(cfg, task, seed):
    from fairlearn.metrics import MetricFrame

    from driftloop.governance.fairness import assess_fairness, sensitive_groups

    frame = _frame(seed)
    truth, made = _labels(task, frame, seed)
    report = assess_fairness(cfg, frame, truth, made, task)

    functions = _binary_functions() if task == "binary" else _task_functions(task, truth, made)
    for attribute in cfg.sensitive_features:
        groups = sensitive_groups(cfg, frame, attribute).to_numpy()
        by_group = MetricFrame(
            metrics=functions, y_true=truth, y_pred=made, sensitive_features=groups
        ).by_group
        ours = report[attribute]["groups"]
        assert list(ours) == [str(g) for g in by_group.index]  # the same groups, in the same order
        assert "missing" in ours
        for group, row in by_group.iterrows():
            assert list(ours[str(group)]) == list(row.index)  # the same metrics, in the same order
            for metric, value in row.items():
                got = ours[str(group)][metric]
                if metric in COUNTS:
                    assert type(got) is int and got == int(value), (attribute, group, metric)
                else:
                    assert type(got) is float and _close(got, float(value)), (attribute, group, metric, got)
        for gap, value in _gaps(task, by_group).items():
            assert _close(report[attribute][gap], value), (attribute, gap, report[attribute][gap], value)
            assert report[attribute]["judged"][gap]["value"] == report[attribute][gap]


def test_the_frames_hold_the_edge_cases(cfg):
    """The comparison covers a group without positives, one without negative decisions and a one-row
    group (the reference itself: fairlearn's rates there are 0, 1 and a single row's)."""
    from fairlearn.metrics import MetricFrame

    from driftloop.governance.fairness import sensitive_groups

    frame = _frame(1)
    truth, made = _labels("binary", frame, 1)
    groups = sensitive_groups(cfg, frame, "region").to_numpy()
    by_group = MetricFrame(
        metrics=_binary_functions(), y_true=truth, y_pred=made, sensitive_features=groups
    ).by_group
    assert by_group.loc["west", "tp"] + by_group.loc["west", "fn"] == 0
    assert by_group.loc["west", "true_positive_rate"] == 0.0
    assert by_group.loc["east", "selection_rate"] == 1.0
    assert by_group.loc["island", "count"] == 1
    assert by_group.loc["missing", "count"] == 40
