"""Gate check entries, and the checks of a candidate's decision itself: degenerate predictions, positive
rates."""

from __future__ import annotations

from typing import Any

from driftloop.core import bus, task_types
from driftloop.core.config import DatasetConfig
from driftloop.core.task_types import Decision


def check_entry(name: str, passed: bool | None, value: Any, limit: Any, detail: str) -> dict[str, Any]:
    """One entry of the gate report: ``passed`` is None for a check measured and reported, not enforced."""
    return {"name": name, "passed": passed, "value": value, "limit": limit, "detail": detail}


def _counts(values: Any) -> dict[str, int]:
    import numpy as np

    labels, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
    return {str(label): int(n) for label, n in zip(labels, counts, strict=True)}


def decision_checks(
    cfg: DatasetConfig,
    decision: Decision,
    outputs: dict[str, Any],
    holdout_df: Any,
    oof_positive_rate: float | None,
) -> list[dict[str, Any]]:
    """The candidate's decisions on its holdout: never degenerate; binary positive rates side by side.

    ``decision.degenerate`` fails a binary model predicting one class for every row, a multiclass model
    predicting one class or never predicting a class the holdout holds (beyond
    ``gates.unpredicted_class_max_share`` of its rows), a regression model predicting one value, with the
    counts. ``decision.positive_rate`` (binary) reports the holdout's predicted-positive rate next to the
    out-of-fold one and flags a rate far from it (``gates.positive_rate_max_ratio``); training already fell
    back in that case.
    """
    import numpy as np

    predicted = outputs[bus.PREDICTION_COLUMN]
    if decision.task == task_types.REGRESSION:
        values = np.asarray(predicted, dtype=float)
        spread = float(np.ptp(values)) if len(values) else 0.0
        detail = f"predictions on {len(values)} holdout rows range over {spread:.6g}"
        return [
            check_entry(
                "decision.degenerate", spread > 0, spread, 0, detail + (" (one value)" * (spread == 0))
            )
        ]
    truth, made = _counts(holdout_df[cfg.target]), _counts(predicted)
    if decision.task == task_types.BINARY:
        missing, tolerated = [label for label in decision.classes if label not in made], []
    else:
        rows, limit = max(len(holdout_df), 1), cfg.gates.unpredicted_class_max_share
        unpredicted = [label for label in truth if label not in made]
        tolerated = [label for label in unpredicted if truth[label] / rows <= limit and len(made) > 1]
        missing = [label for label in unpredicted if label not in tolerated]
    ok = not missing
    detail = f"predicted {made} on {len(holdout_df)} holdout rows holding {truth}"
    if missing:
        detail += f": never predicts {missing}"
        if decision.task != task_types.BINARY and len(made) > 1:
            share = max(truth[label] for label in missing) / max(len(holdout_df), 1)
            detail += (
                f" (gates.unpredicted_class_max_share {cfg.gates.unpredicted_class_max_share:g} tolerates "
                f"classes up to that share of the holdout; these reach {share:.1%})"
            )
    if tolerated:
        detail += f"; tolerated unpredicted {tolerated} (at most {cfg.gates.unpredicted_class_max_share:.1%})"
    checks = [{**check_entry("decision.degenerate", ok, made, None, detail), "truth_counts": truth}]
    if decision.task != task_types.BINARY:
        return checks
    from driftloop.training.selection import positive_rate_is_far

    rate = made.get(decision.classes[1], 0) / max(len(holdout_df), 1)
    far = oof_positive_rate is not None and positive_rate_is_far(
        oof_positive_rate, rate, len(holdout_df), cfg.gates.positive_rate_max_ratio
    )
    oof = "not recorded" if oof_positive_rate is None else f"{oof_positive_rate:.1%}"
    detail = (
        f"threshold {decision.threshold:.4g} predicts {rate:.1%} of holdout rows positive; out of fold {oof}"
        + (f" (flagged: beyond x{cfg.gates.positive_rate_max_ratio:g})" if far else "")
    )
    check = check_entry("decision.positive_rate", None, rate, oof_positive_rate, detail)
    checks.append(
        {**check, "holdout_positive_rate": rate, "oof_positive_rate": oof_positive_rate, "flagged": far}
    )
    return checks
