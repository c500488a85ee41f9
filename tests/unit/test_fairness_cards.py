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
