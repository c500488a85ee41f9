"""Fairness rows and model cards for every task: multiclass and regression frames with NaNs in a sensitive
column.

Tiny scikit-learn models fitted here (no PyCaret); the expected group numbers are computed with pandas in the
test.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from driftloop.core import bus
from driftloop.core.task_types import MULTICLASS, REGRESSION, Decision

ROWS = 240


def _frame(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x1": rng.normal(size=ROWS),
            "x2": rng.normal(size=ROWS),
            "region": rng.choice(["north", "south"], size=ROWS).astype(object),
            "age": rng.integers(18, 80, size=ROWS).astype(float),
        }
    )
    frame.loc[:19, "region"] = np.nan  # 20 rows with a missing sensitive value
    frame.loc[200:209, "age"] = np.nan  # 10 rows
    return frame


def _cfg(base, task_target: str):
    return dataclasses.replace(
        base,
        sensitive_features=("region", "age"),
        fairness=dataclasses.replace(base.fairness, bins={}),
        target=task_target,
    )


@pytest.fixture
def hpc_cfg(driftloop_env):
    from driftloop.core.config import load_dataset_config

    return _cfg(load_dataset_config("hpc_jobs"), "class")


@pytest.fixture
def ames_cfg(driftloop_env):
    from driftloop.core.config import load_dataset_config

    return _cfg(load_dataset_config("ames_housing"), "Sale_Price")


def _facts(cfg, decision: Decision, fairness: dict) -> dict:
    return {
        "version": "3",
        "verdict": bus.GATE_PASSED,
        "reason": "first champion",
        "gate": {
            "candidate_version": "3",
            "champion_version": None,
            "checks": [
                {"name": "floor.x", "passed": True, "value": 0.8, "limit": 0.5, "detail": "ok"},
                {
                    "name": "beats_champion",
                    "passed": False,
                    "value": 0.7,
                    "limit": 0.75,
                    "detail": "no",
                    "difference": -0.05,
                    "ci_low": -0.09,
                    "ci_high": -0.01,
                },
            ],
        },
        "fairness": fairness,
        "fairness_source": "the holdout, by the gate",
        "snapshot": None,
        "history": [],
        "run": {"run_id": "r1", "tags": decision.to_tags(), "metrics": {}},
        "evidence": {},
        "missing": {"snapshot": "not on this machine"},
    }


def test_multiclass_fairness_has_per_class_selection_rates_and_a_missing_group(hpc_cfg):
    from sklearn.tree import DecisionTreeClassifier

    from driftloop.governance.fairness import assess_decisions
    from driftloop.governance.model_card import build_card, render_markdown

    frame = _frame()
    frame["class"] = np.where(frame["x1"] > 0.5, "L", np.where(frame["x2"] > 0, "M", "F"))
    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(frame[["x1", "x2"]], frame["class"])
    predicted = model.predict(frame[["x1", "x2"]])
    decision = Decision(MULTICLASS, ("F", "L", "M"), 0.5)

    report = assess_decisions(hpc_cfg, frame, decision, {bus.PREDICTION_COLUMN: predicted})

    region = report["region"]
    assert set(region["groups"]) == {"north", "south", "missing"}
    assert region["groups"]["missing"]["count"] == 20
    expected = (
        pd.Series(predicted == "L").groupby(frame["region"].fillna("missing").to_numpy()).mean().to_dict()
    )
    for group, rate in expected.items():
        assert region["groups"][group]["selection_rate.L"] == pytest.approx(rate)
    gaps = [
        max(region["groups"][g][f"selection_rate.{c}"] for g in region["groups"])
        - min(region["groups"][g][f"selection_rate.{c}"] for g in region["groups"])
        for c in ("F", "L", "M")
    ]
    assert region["max_selection_rate_difference"] == pytest.approx(max(gaps))
    age = report["age"]  # numeric with 62 distinct values: quartile bins, NaNs their own group
    assert age["groups"]["missing"]["count"] == 10
    assert len(age["groups"]) == 5 and sum(g["count"] for g in age["groups"].values()) == ROWS

    markdown = render_markdown(build_card(hpc_cfg, _facts(hpc_cfg, decision, report)))
    fairness = markdown.split("## Fairness")[1].split("## ")[0]
    assert "| missing | 20 |" in fairness and "selection rate.L" in fairness
    assert "max selection rate difference" in fairness
    gate = markdown.split("## Gate verdict")[1].split("## ")[0]
    assert "| check | result | value | limit | difference | ci_low | ci_high |" in gate
    assert "| beats_champion | **FAIL** | 0.7000 | 0.7500 | -0.0500 | -0.0900 | -0.0100 |" in gate


def test_regression_fairness_reports_mae_per_group_and_the_gap(ames_cfg):
    from sklearn.linear_model import LinearRegression

    from driftloop.governance.fairness import assess_decisions
    from driftloop.governance.model_card import build_card, render_markdown

    frame = _frame(seed=8)
    frame["Sale_Price"] = 3.0 * frame["x1"] + np.where(frame["region"] == "south", 2.0, 0.0)
    model = LinearRegression().fit(frame[["x1"]], frame["Sale_Price"])
    predicted = model.predict(frame[["x1"]])
    decision = Decision(REGRESSION, (), 0.5)

    report = assess_decisions(ames_cfg, frame, decision, {bus.PREDICTION_COLUMN: predicted})

    region = report["region"]
    errors = pd.Series(np.abs(frame["Sale_Price"] - predicted)).groupby(frame["region"].fillna("missing"))
    for group, mae in errors.mean().items():
        assert region["groups"][group]["mean_absolute_error"] == pytest.approx(mae)
    assert region["mean_absolute_error_difference"] == pytest.approx(
        errors.mean().max() - errors.mean().min()
    )
    assert region["groups"]["missing"]["count"] == 20

    markdown = render_markdown(build_card(ames_cfg, _facts(ames_cfg, decision, report)))
    fairness = markdown.split("## Fairness")[1].split("## ")[0]
    assert "mean absolute error" in fairness and "| missing | 20 |" in fairness
    assert "no sensitive attribute declared" not in fairness


def test_a_card_without_fairness_names_what_is_missing_instead_of_claiming_no_attribute(hpc_cfg):
    from driftloop.governance.model_card import build_card, render_markdown

    facts = {**_facts(hpc_cfg, Decision(MULTICLASS, ("F", "L", "M"), 0.5), {}), "gate": None}
    facts["fairness"] = None
    facts["missing"] = {"gate_report": "run r1 logged no gate/gate_report.json", "fairness": "no report"}
    markdown = render_markdown(build_card(hpc_cfg, facts))
    assert "no sensitive attribute declared" not in markdown
    assert "not available for region, age: no report" in markdown
    assert "_not judged yet_ (run r1 logged no gate/gate_report.json)" in markdown


# Fairness gaps as evidence (issue 26, item 7). Rows are built from hand-chosen confusion matrices per group,
# so every rate, gap and count below follows from the counts, not from the code under test.
LIMIT = 0.1  # the default limit of both binary gaps


def _binary_rows(cells: dict[str, tuple[int, int, int, int]]):
    """(frame, y_true, y_pred) holding, per group, ``(tn, fp, fn, tp)`` rows."""
    groups, truth, made = [], [], []
    for group, (tn, fp, fn, tp) in cells.items():
        for t, p, n in ((0, 0, tn), (0, 1, fp), (1, 0, fn), (1, 1, tp)):
            groups += [group] * n
            truth += [t] * n
            made += [p] * n
    return pd.DataFrame({"group": groups}), np.array(truth), np.array(made)


# Group a: TPR 400/500 = 0.8, FPR 100/500 = 0.2. Group b (x times 30 rows): TPR 5/10 = 0.5, FPR 2/20 = 0.1.
# Equalized odds difference: max(0.8 - 0.5, 0.2 - 0.1) = 0.3, three times the limit, at every size of b.
GROUP_A = (400, 100, 100, 400)


def _group_b(times: int) -> tuple[int, int, int, int]:
    return (18 * times, 2 * times, 5 * times, 5 * times)


@pytest.fixture
def binary_cfg(telco_cfg):
    from driftloop.core.config import FairnessConfig

    return dataclasses.replace(telco_cfg, sensitive_features=("group",), fairness=FairnessConfig())


def _judge(cfg, cells):
    from driftloop.governance.fairness import assess_fairness
    from driftloop.governance.gates import fairness_checks

    frame, truth, made = _binary_rows(cells)
    report = assess_fairness(cfg, frame, truth, made)
    return report, {c["name"]: c for c in fairness_checks(cfg, report)}


EO = "fairness.group.equalized_odds_difference"
DP = "fairness.group.demographic_parity_difference"


def test_a_credible_gap_between_large_groups_fails_its_gate_check_with_the_numbers(binary_cfg):
    from statistics import NormalDist

    from fairlearn.metrics import equalized_odds_difference

    report, checks = _judge(binary_cfg, {"a": GROUP_A, "b": _group_b(100)})  # 1,000 and 3,000 rows

    frame, truth, made = _binary_rows({"a": GROUP_A, "b": _group_b(100)})
    assert report["group"]["equalized_odds_difference"] == pytest.approx(0.3)
    assert report["group"]["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(truth, made, sensitive_features=frame["group"])
    )
    check = checks[EO]
    assert (check["passed"], check["value"], check["limit"]) == (False, pytest.approx(0.3), LIMIT)
    # A Wald interval of the TPR gap (the larger one), Bonferroni over the two rates (TPR, FPR): 0.3 - z se.
    z = NormalDist().inv_cdf(1 - 0.05 / 4)
    wald_low = 0.3 - z * (0.8 * 0.2 / 500 + 0.5 * 0.5 / 1000) ** 0.5
    assert check["ci_low"] == pytest.approx(wald_low, abs=0.01) and check["ci_low"] > LIMIT
    assert check["ci_high"] > 0.3 and check["smallest_group_rows"] == 1000
    assert check["outcome"] == "fail"
    detail = check["detail"]
    assert detail.startswith("equalized odds difference for group 0.3000 (limit 0.1): credibly above it")
    assert f"95% interval {check['ci_low']:.4f} to {check['ci_high']:.4f}" in detail
    assert "smallest group 'a' 1,000 rows" in detail
    # Selection rates 500 / 1,000 and 700 / 3,000: demographic parity 0.5 - 7/30, also credibly above 0.1.
    assert (checks[DP]["value"], checks[DP]["passed"]) == (pytest.approx(0.5 - 7 / 30), False)


def test_the_same_gap_with_a_30_row_group_is_undecided_and_does_not_block(binary_cfg):
    report, checks = _judge(binary_cfg, {"a": GROUP_A, "b": _group_b(1)})

    check = checks[EO]
    assert check["value"] == pytest.approx(0.3) and check["value"] > LIMIT
    # 10 positives in b: its TPR of 0.5 could be anywhere from about 0.2 to 0.8, so 0.1 is inside the gap's
    # interval.
    assert check["ci_low"] <= LIMIT < 0.3 < check["ci_high"]
    assert (check["passed"], check["outcome"], check["smallest_group_rows"]) == (None, "undecided", 30)
    assert (
        f"above the limit but its interval (95% interval {check['ci_low']:.4f} to {check['ci_high']:.4f}, "
        "smallest group 'b' 30 rows) is too wide to decide; reported, not enforced"
    ) in check["detail"]
    assert report["group"]["judged"]["equalized_odds_difference"]["outcome"] == "undecided"


def test_the_interval_narrows_as_the_smaller_group_grows(binary_cfg):
    widths, values = [], []
    for times in (1, 10, 100):  # b: 30, 300, 3,000 rows at the same rates
        _, checks = _judge(binary_cfg, {"a": GROUP_A, "b": _group_b(times)})
        widths.append(checks[EO]["ci_high"] - checks[EO]["ci_low"])
        values.append(checks[EO]["value"])
    assert values == [pytest.approx(0.3)] * 3
    assert widths[0] > widths[1] > widths[2]
    # b's TPR standard error shrinks by sqrt(10) per step; a's (500 positives) stays: the width falls by more
    # than half from 30 to 3,000 rows of b.
    assert widths[2] < widths[0] / 2


def test_a_fair_model_passes_every_gap(binary_cfg):
    _, checks = _judge(binary_cfg, {"a": GROUP_A, "b": (800, 200, 200, 800)})  # the same rates, 2,000 rows

    assert set(checks) == {EO, DP}
    for check in checks.values():
        assert (check["passed"], check["outcome"], check["value"]) == (True, "pass", pytest.approx(0.0))
        assert check["ci_low"] == 0.0 and 0 < check["ci_high"] < LIMIT
        assert "within it" in check["detail"]


def test_report_mode_and_null_limits_never_block_and_the_old_keys_are_the_limits(binary_cfg):
    cells = {"a": GROUP_A, "b": _group_b(100)}  # both gaps credibly above 0.1 (first test)
    report_mode = dataclasses.replace(
        binary_cfg, fairness=dataclasses.replace(binary_cfg.fairness, mode="report")
    )
    _, checks = _judge(report_mode, cells)
    assert [c["passed"] for c in checks.values()] == [None, None]
    assert (
        checks[EO]["outcome"] == "fail"
        and "fairness.mode report: reported, not enforced" in checks[EO]["detail"]
    )

    old_keys = dataclasses.replace(
        binary_cfg,
        fairness=dataclasses.replace(
            binary_cfg.fairness, max_equalized_odds_difference=0.35, max_demographic_parity_difference=None
        ),
    )
    _, checks = _judge(old_keys, cells)
    assert (checks[EO]["passed"], checks[EO]["limit"]) == (True, 0.35)  # 0.3 within 0.35
    assert (checks[DP]["passed"], checks[DP]["limit"], checks[DP]["outcome"]) == (None, None, "no limit")


def test_the_card_shows_counts_as_integers_and_each_gap_with_its_interval_and_verdict(binary_cfg):
    from driftloop.core.task_types import BINARY
    from driftloop.governance.model_card import build_card, render_markdown

    decision = Decision(BINARY, ("No", "Yes"), 0.5)
    for cells, verdict in (
        ({"a": GROUP_A, "b": _group_b(100)}, "**FAIL**: credibly above the limit"),
        ({"a": GROUP_A, "b": _group_b(1)}, "**undecided**: above the limit but its interval is too wide"),
    ):
        report, checks = _judge(binary_cfg, cells)
        markdown = render_markdown(build_card(binary_cfg, _facts(binary_cfg, decision, report)))
        fairness = markdown.split("## Fairness")[1].split("## ")[0]
        # count, selection rate, TPR, FPR, precision (400 / 500), tn, fp, fn, tp
        assert "| a | 1,000 | 0.5000 | 0.8000 | 0.2000 | 0.8000 | 400 | 100 | 100 | 400 |" in fairness
        assert "400.0000" not in fairness and "1000.0000" not in fairness
        judged = checks[EO]
        interval = f"{judged['ci_low']:.4f} to {judged['ci_high']:.4f} (95%)"
        smallest = "a (1,000 rows)" if "FAIL" in verdict else "b (30 rows)"
        row = f"| equalized odds difference | 0.3000 | {interval} | 0.1 | {smallest} | {verdict}"
        assert row in fairness, fairness


def test_the_mae_gap_is_judged_against_a_share_of_the_overall_mae(ames_cfg):
    from driftloop.core.config import FairnessConfig
    from driftloop.governance.fairness import assess_fairness
    from driftloop.governance.gates import fairness_checks

    cfg = dataclasses.replace(ames_cfg, sensitive_features=("region",), fairness=FairnessConfig())
    # Errors of 0.5 and 1.5 in north (MAE 1), 1.5 and 2.5 in south (MAE 2), 400 rows each: overall MAE 1.5, so
    # the limit is 0.25 x 1.5 = 0.375 and the gap of 1 is far above it.
    frame = pd.DataFrame({"region": ["north"] * 400 + ["south"] * 400})
    errors = np.tile([0.5, 1.5], 200).tolist() + np.tile([1.5, 2.5], 200).tolist()
    truth = np.zeros(800)
    report = assess_fairness(cfg, frame, truth, truth + np.array(errors), "regression")
    [check] = fairness_checks(cfg, report)
    assert check["value"] == pytest.approx(1.0) and check["limit"] == pytest.approx(0.375)
    assert check["passed"] is False and check["ci_low"] > 0.375
    assert "(limit 0.375 = 0.25 x overall MAE 1.5)" in check["detail"]
