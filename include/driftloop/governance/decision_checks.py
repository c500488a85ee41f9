"""Gate check entries, and the checks of a candidate's decision itself: degenerate predictions, positive
rates.

``decision.degenerate`` decides on evidence. A class the model never predicts on the holdout says little when
the holdout holds one row of it: a sound model may miss one row, and the same rule would pass or fail by the
split's seed. The check therefore asks how likely the misses are under a model that is not degenerate, one
that predicts each class for at least ``gates.degenerate_min_recall`` (r, default 0.2) of that class's rows:
such a model predicts none of n rows with chance at most ``(1 - r) ** n``. The rows of every class never
predicted are pooled (one test, so its false-failure rate stays at most alpha however many classes there
are), and the check fails when that chance is at most ``gates.degenerate_alpha`` (default 0.05), that is on
at least ``ceil(log(alpha) / log(1 - r))`` rows: 14 with the defaults (0.8 ** 13 = 5.5 % > 5 %,
0.8 ** 14 = 4.4 % <= 5 %). With fewer rows it reports "not enough rows to tell" with ``passed: None``
(measured, not enforced). The entry gives the rows it needed (``needed_rows``) and had (``rows``, and
``unpredicted_rows`` per class). A model predicting one class for every row of a holdout fails as soon as the
other classes hold that many rows. ``gates.unpredicted_class_max_share`` still tolerates rare multiclass
classes whatever their rows (never when the model predicts a single class).

Only holdout rows count: training logs no per-row out-of-fold predictions (binary threshold selection keeps
only the out-of-fold positive rate; multiclass computes none), and out-of-fold predictions come from the fold
models, not from the model being judged. Regression fails a model predicting one value.
"""

from __future__ import annotations

import math
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


def _needed_rows(alpha: float, min_recall: float) -> int:
    """The fewest rows n with ``(1 - min_recall) ** n <= alpha`` (a tolerance absorbs rounding at whole n)."""
    return max(1, math.ceil(math.log(alpha) / math.log1p(-min_recall) - 1e-9))


def _rows(count: int) -> str:
    return f"{count} row" + "s" * (count != 1)


def _chance(p: float) -> str:
    return f"{p:.1%}" if p >= 0.001 else f"{p:.1e}"


def _degenerate_check(
    cfg: DatasetConfig, decision: Decision, predicted: Any, holdout_df: Any
) -> dict[str, Any]:
    """``decision.degenerate`` of a classifier: classes never predicted, judged on their rows (module doc)."""
    gates, total = cfg.gates, len(holdout_df)
    truth, made = _counts(holdout_df[cfg.target]), _counts(predicted)
    tolerated: list[str] = []
    if decision.task == task_types.BINARY:
        unpredicted = [label for label in decision.classes if label not in made]
    else:
        unpredicted = [label for label in truth if label not in made]
        if len(made) > 1:
            limit = gates.unpredicted_class_max_share
            tolerated = [label for label in unpredicted if truth[label] / max(total, 1) <= limit]
    missing = [label for label in unpredicted if label not in tolerated]
    per_class = {label: truth.get(label, 0) for label in missing}
    rows, needed = sum(per_class.values()), _needed_rows(gates.degenerate_alpha, gates.degenerate_min_recall)
    chance = (1 - gates.degenerate_min_recall) ** rows
    passed: bool | None = True if not missing else (False if rows >= needed else None)
    detail = f"predicted {made} on {total} holdout rows holding {truth}"
    if missing:
        had = ", ".join(f"{_rows(n)} of {label}" for label, n in per_class.items())
        pooled = f"; {rows} together" if len(missing) > 1 else ""
        odds = (
            f"a model predicting each class for at least {gates.degenerate_min_recall:.0%} of its rows would "
            f"miss {'all ' * (rows > 1)}{_rows(rows)} with chance {_chance(chance)}"
        )
        detail += f": never predicts {missing} ({had}{pooled}; {needed} needed to tell)"
        if passed is None:
            detail += f": not enough rows to tell ({odds}, above alpha {gates.degenerate_alpha:g})"
        else:
            detail += f": degenerate ({odds}, at most alpha {gates.degenerate_alpha:g})"
        if decision.task != task_types.BINARY and len(made) > 1 and gates.unpredicted_class_max_share:
            share = max(per_class.values()) / max(total, 1)
            detail += (
                f" (gates.unpredicted_class_max_share {gates.unpredicted_class_max_share:g} tolerates "
                f"classes up to that share of the holdout; these reach {share:.1%})"
            )
    if tolerated:
        detail += f"; tolerated unpredicted {tolerated} (at most {gates.unpredicted_class_max_share:.1%})"
    check = check_entry("decision.degenerate", passed, made, None, detail)
    evidence = {"rows": rows, "needed_rows": needed, "unpredicted_rows": per_class, "miss_chance": chance}
    return {**check, "truth_counts": truth, **evidence}


def decision_checks(
    cfg: DatasetConfig,
    decision: Decision,
    outputs: dict[str, Any],
    holdout_df: Any,
    oof_positive_rate: float | None,
) -> list[dict[str, Any]]:
    """The candidate's decisions on its holdout: never degenerate; binary positive rates side by side.

    ``decision.degenerate`` fails a binary or multiclass model that never predicts classes the holdout holds
    enough rows of to tell (``gates.degenerate_alpha``, ``gates.degenerate_min_recall``; the module doc), and
    reports one with too few rows with ``passed: None``; multiclass classes within
    ``gates.unpredicted_class_max_share`` of the holdout are tolerated unless one class is predicted for
    every row. A regression model fails when it predicts one value. ``decision.positive_rate`` (binary)
    reports the holdout's predicted-positive rate next to the out-of-fold one and flags a rate far from it
    (``gates.positive_rate_max_ratio``); training already fell back in that case.

    Args:
        cfg: Dataset config.
        decision: The candidate's decision (task, classes, threshold).
        outputs: :meth:`Decision.predict` of the candidate on ``holdout_df``.
        holdout_df: The candidate's holdout rows, with the target.
        oof_positive_rate: The out-of-fold predicted-positive rate training logged (binary), or None.

    Returns:
        Check entries (:func:`check_entry`); ``decision.degenerate`` of a classifier also carries
        ``truth_counts``, ``rows`` (holdout rows of the classes never predicted), ``needed_rows``,
        ``unpredicted_rows`` (per class) and ``miss_chance`` (the chance of those misses under a sound model).
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
    checks = [_degenerate_check(cfg, decision, predicted, holdout_df)]
    if decision.task != task_types.BINARY:
        return checks
    made = checks[0]["value"]
    rate = made.get(decision.classes[1], 0) / max(len(holdout_df), 1)
    far = oof_positive_rate is not None and task_types.positive_rate_is_far(
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
