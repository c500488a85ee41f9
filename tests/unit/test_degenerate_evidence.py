"""``decision.degenerate`` decides on evidence (issue 26, item 5): a class never predicted fails the gate only
when the holdout holds enough of its rows to tell. The expected numbers are worked by hand here: a model
predicting each class for at least r of its rows misses all n of them with chance at most (1 - r) ** n; with
alpha 0.05 and r 0.2 (the defaults) 0.8 ** 13 = 0.0550 > 0.05 and 0.8 ** 14 = 0.0440 <= 0.05, so 14 rows."""

from __future__ import annotations

from dataclasses import replace
from itertools import count

import numpy as np
import pandas as pd
import pytest

from driftloop.core import bus
from driftloop.core.task_types import Decision

SIX = ("a", "b", "c", "d", "e", "f")


def degenerate(cfg, task, classes, truth, predicted):
    from driftloop.governance.decision_checks import decision_checks

    holdout_df = pd.DataFrame({cfg.target: truth})
    decision = Decision(task, classes, 0.5) if task == "binary" else Decision(task, classes)
    outputs = {bus.PREDICTION_COLUMN: np.array(predicted)}
    checks = decision_checks(replace(cfg, task=task), decision, outputs, holdout_df, None)
    return next(c for c in checks if c["name"] == "decision.degenerate")


def six_class_holdout(rows_of_f: int) -> tuple[list[str], list[str]]:
    """Truth and predictions: a to e with 4 rows each, all predicted right; f never predicted (called a)."""
    truth = [label for label in SIX[:5] for _ in range(4)] + ["f"] * rows_of_f
    return truth, truth[:20] + ["a"] * rows_of_f


def test_one_unpredicted_row_of_a_class_is_not_evidence_and_says_the_rows_needed(cfg):
    # The case: a six-class holdout where one class holds one row the model never predicts.
    truth, predicted = six_class_holdout(1)
    check = degenerate(cfg, "multiclass", SIX, truth, predicted)
    assert check["passed"] is None  # measured, not enforced: it does not block
    assert (check["rows"], check["needed_rows"], check["unpredicted_rows"]) == (1, 14, {"f": 1})
    assert "never predicts ['f'] (1 row of f; 14 needed to tell)" in check["detail"]
    assert "not enough rows to tell" in check["detail"]
    assert check["miss_chance"] == pytest.approx(0.8)


def test_the_same_class_unpredicted_on_40_rows_fails(cfg):
    truth, predicted = six_class_holdout(40)
    check = degenerate(cfg, "multiclass", SIX, truth, predicted)
    assert check["passed"] is False
    assert (check["rows"], check["needed_rows"], check["unpredicted_rows"]) == (40, 14, {"f": 40})
    assert "never predicts ['f'] (40 rows of f; 14 needed to tell)" in check["detail"]
    assert check["miss_chance"] == pytest.approx(0.8**40)


def test_the_boundary_is_14_rows_with_the_defaults(cfg):
    below = degenerate(cfg, "multiclass", SIX, *six_class_holdout(13))
    at = degenerate(cfg, "multiclass", SIX, *six_class_holdout(14))
    assert (below["passed"], at["passed"]) == (None, False)


def test_a_model_predicting_one_class_for_every_row_of_a_200_row_holdout_fails(cfg):
    truth = [label for label in SIX for _ in range(33)] + ["a", "b"]  # 200 rows
    check = degenerate(cfg, "multiclass", SIX, truth, ["a"] * 200)
    assert check["passed"] is False
    assert check["rows"] == 200 - 34  # every row but a's 34
    assert check["unpredicted_rows"] == {"b": 34, "c": 33, "d": 33, "e": 33, "f": 33}
    assert "never predicts ['b', 'c', 'd', 'e', 'f']" in check["detail"]
    # A share tolerance never excuses a model predicting one class.
    lenient = replace(cfg, gates=replace(cfg.gates, unpredicted_class_max_share=0.5))
    assert degenerate(lenient, "multiclass", SIX, truth, ["a"] * 200)["passed"] is False


def test_classes_never_predicted_are_judged_on_their_rows_together(cfg):
    # Two classes of 7 rows each: 0.8 ** 14 <= 0.05 for the pair, though neither alone would tell.
    truth = ["a"] * 40 + ["b"] * 40 + ["c"] * 7 + ["d"] * 7
    check = degenerate(cfg, "multiclass", ("a", "b", "c", "d"), truth, ["a"] * 47 + ["b"] * 47)
    assert check["passed"] is False and (check["rows"], check["needed_rows"]) == (14, 14)
    assert "(7 rows of c, 7 rows of d; 14 together; 14 needed to tell)" in check["detail"]
    truth = ["a"] * 40 + ["b"] * 40 + ["c"] * 7 + ["d"] * 6
    check = degenerate(cfg, "multiclass", ("a", "b", "c", "d"), truth, ["a"] * 47 + ["b"] * 46)
    assert check["passed"] is None and check["rows"] == 13


def test_binary_with_both_classes_predicted_passes_and_a_constant_one_needs_enough_positives(cfg):
    classes = ("No", cfg.positive_label)
    truth = ["No"] * 80 + [cfg.positive_label] * 20
    both = ["No"] * 75 + [cfg.positive_label] * 5 + ["No"] * 10 + [cfg.positive_label] * 10
    check = degenerate(cfg, "binary", classes, truth, both)
    assert check["passed"] is True and check["rows"] == 0 and check["unpredicted_rows"] == {}
    assert degenerate(cfg, "binary", classes, truth, ["No"] * 100)["passed"] is False  # 20 positives >= 14
    few = ["No"] * 95 + [cfg.positive_label] * 5  # 5 positives: 0.8 ** 5 = 33 % is no evidence
    check = degenerate(cfg, "binary", classes, few, ["No"] * 100)
    assert check["passed"] is None and (check["rows"], check["needed_rows"]) == (5, 14)


@pytest.mark.parametrize(
    ("alpha", "min_recall", "needed"),
    [
        (0.05, 0.2, 14),  # 0.8 ** 13 = 0.0550, 0.8 ** 14 = 0.0440
        (0.01, 0.5, 7),  # 0.5 ** 6 = 0.0156, 0.5 ** 7 = 0.0078
        (0.25, 0.5, 2),  # 0.5 ** 2 = 0.25 exactly: at most alpha counts
        (0.05, 0.05, 59),  # 0.95 ** 58 = 0.0510, 0.95 ** 59 = 0.0485
        (0.1, 0.9, 1),  # 0.1 ** 1 = 0.1
    ],
)
def test_the_rows_needed_follow_the_formula_worked_by_hand(cfg, alpha, min_recall, needed):
    # Independent oracle: the smallest n with (1 - r) ** n <= alpha, counted up.
    assert next(n for n in count(1) if (1 - min_recall) ** n <= alpha + 1e-15) == needed
    gates = replace(cfg.gates, degenerate_alpha=alpha, degenerate_min_recall=min_recall)
    tuned = replace(cfg, gates=gates)
    at = degenerate(tuned, "multiclass", SIX, *six_class_holdout(needed))
    assert at["needed_rows"] == needed and at["passed"] is False
    assert f"{needed} needed to tell" in at["detail"]
    if needed > 1:
        assert degenerate(tuned, "multiclass", SIX, *six_class_holdout(needed - 1))["passed"] is None
