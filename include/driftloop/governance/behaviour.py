"""Behavioural model tests, declared per dataset and run by the promotion gate (after Made-With-ML and
CheckList).

A YAML file next to the dataset config (``gates.behaviour``) lists cases of three kinds:

* ``invariance``: changing a feature that must not matter (``swap: [a, b]`` or ``set: value``) moves no row's
  score by more than ``max_score_change`` (on at least ``min_pass_share`` of the rows);
* ``directional``: setting ``feature`` to ``set`` (on rows where it is ``from``, when given) moves the score
  the expected way (``expect``: ``increase``, ``decrease``, ``not_increase``, ``not_decrease``, within
  ``tolerance``);
* ``minimum_functionality``: a hand-written row (the holdout's typical row with the given values) must get
  ``expect: positive`` or ``negative``, or a score within ``min_score`` / ``max_score``.

A score is the version's :meth:`driftloop.core.task_types.Decision.score`: the positive-class probability
(binary, ``expect`` against the version's threshold), the predicted class's probability (multiclass) or the
value (regression). Invariance and directional cases perturb up to ``rows`` holdout rows (seeded). Every case
is reported with its numbers; the gate fails when any case fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from driftloop.core.config import DatasetConfig
from driftloop.core.errors import ConfigError
from driftloop.core.task_types import Decision

KINDS = ("invariance", "directional", "minimum_functionality")
EXPECTATIONS = ("increase", "decrease", "not_increase", "not_decrease")
DEFAULT_ROWS = 300


def behaviour_path(cfg: DatasetConfig) -> Path | None:
    """The behavioural test file of ``cfg`` (relative to the config's folder), or None when it declares
    none."""
    if not cfg.gates.behaviour:
        return None
    path = Path(cfg.gates.behaviour)
    return path if path.is_absolute() else Path(cfg.config_path).parent / path


def load_cases(cfg: DatasetConfig) -> dict[str, Any]:
    """The parsed behaviour file: ``{"rows", "cases"}`` (no cases when the config declares no file).

    Raises:
        ConfigError: The file is missing, a case has an unknown kind or names a column that is not a feature.
    """
    path = behaviour_path(cfg)
    if path is None:
        return {"rows": DEFAULT_ROWS, "cases": []}
    if not path.is_file():
        raise ConfigError(f"{cfg.config_path}: gates.behaviour file {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    cases = raw.get("cases") or []
    for case in cases:
        where = f"{path}: case {case.get('name', '?')!r}"
        if case.get("kind") not in KINDS:
            raise ConfigError(f"{where}: kind must be one of {KINDS}")
        columns = [case["feature"]] if "feature" in case else list(case.get("row") or {})
        unknown = [c for c in columns if c not in cfg.features]
        if unknown:
            raise ConfigError(f"{where}: {unknown} are not features of {cfg.name}")
        if case["kind"] == "directional" and case.get("expect") not in EXPECTATIONS:
            raise ConfigError(f"{where}: expect must be one of {EXPECTATIONS}")
    return {"rows": int(raw.get("rows", DEFAULT_ROWS)), "cases": cases}


def _score(model: Any, frame: Any, decision: Decision) -> Any:
    return decision.score(model, frame)


def _typical_row(frame: Any) -> dict[str, Any]:
    row = {}
    for column in frame.columns:
        series = frame[column].dropna()
        numeric = series.dtype.kind in "iuf" and series.nunique() > 2
        row[column] = series.median() if numeric else series.mode().iloc[0]
    return row


def _perturb(case: dict[str, Any], rows: Any) -> tuple[Any, Any]:
    """(original rows, perturbed copy) for an invariance or directional case."""
    feature = case["feature"]
    if "from" in case:
        rows = rows[rows[feature].astype(str) == str(case["from"])]
    changed = rows.copy()
    if "swap" in case:
        a, b = case["swap"]
        as_text = rows[feature].astype(str)
        changed[feature] = rows[feature].where(
            ~as_text.isin([str(a), str(b)]), as_text.map({str(a): b, str(b): a})
        )
    else:
        changed[feature] = case["set"]
    return rows, changed


def _check_rows(case: dict[str, Any], model: Any, rows: Any, decision: Decision) -> dict[str, Any]:
    import numpy as np

    before_rows, after_rows = _perturb(case, rows)
    if before_rows.empty:
        return {"passed": False, "rows": 0, "detail": "no holdout row matches the case"}
    delta = _score(model, after_rows, decision) - _score(model, before_rows, decision)
    tolerance = float(case.get("tolerance", 0.0))
    if case["kind"] == "invariance":
        limit = float(case.get("max_score_change", 0.05))
        ok = np.abs(delta) <= limit
        detail = f"max |score change| {np.abs(delta).max():.4f} (limit {limit})"
    else:
        ok = {
            "increase": delta > tolerance,
            "decrease": delta < -tolerance,
            "not_increase": delta <= tolerance,
            "not_decrease": delta >= -tolerance,
        }[case["expect"]]
        detail = f"mean score change {delta.mean():+.4f}, expected {case['expect']} (tolerance {tolerance})"
    share = float(ok.mean())
    min_share = float(case.get("min_pass_share", 1.0))
    return {
        "passed": share >= min_share,
        "rows": int(len(delta)),
        "pass_share": share,
        "min_pass_share": min_share,
        "detail": f"{detail}; {share:.1%} of {len(delta)} rows pass (need {min_share:.0%})",
    }


def _check_minimum(
    case: dict[str, Any], model: Any, typical: dict[str, Any], decision: Decision
) -> dict[str, Any]:
    import pandas as pd

    threshold = decision.threshold
    row = pd.DataFrame([{**typical, **case["row"]}])
    score = float(_score(model, row, decision)[0])
    expect = case.get("expect")
    low = float(case.get("min_score", threshold if expect == "positive" else 0.0))
    high = float(case.get("max_score", threshold if expect == "negative" else 1.0))
    passed = low <= score <= high if expect != "negative" else score < high
    closing = "]" if expect != "negative" else ")"
    return {
        "passed": passed,
        "rows": 1,
        "score": score,
        "detail": f"score {score:.3f}, expected in [{low:.2f}, {high:.2f}{closing}",
    }


def run_behaviour_tests(
    cfg: DatasetConfig, model: Any, holdout_df: Any, decision: Decision, seed: int = 42
) -> list[dict[str, Any]]:
    """Run every declared case against ``model``.

    Args:
        cfg: Dataset config (``gates.behaviour``, features).
        model: The fitted pipeline.
        holdout_df: Rows the perturbation cases start from.
        decision: The version's decision: scores are its :meth:`~driftloop.core.task_types.Decision.score`
            (binary: the positive-class probability against the version's threshold; regression: the value).
        seed: Row sampling seed.

    Returns:
        One result per case: ``{"name", "kind", "passed", "rows", "detail", ...}``.
    """
    spec = load_cases(cfg)
    features = holdout_df[cfg.features].reset_index(drop=True)
    rows = features.sample(min(spec["rows"], len(features)), random_state=seed).reset_index(drop=True)
    typical = _typical_row(features)
    results = []
    for case in spec["cases"]:
        if case["kind"] == "minimum_functionality":
            outcome = _check_minimum(case, model, typical, decision)
        else:
            outcome = _check_rows(case, model, rows, decision)
        results.append({"name": case.get("name", case["kind"]), "kind": case["kind"], **outcome})
    return results
