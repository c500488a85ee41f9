"""Calibration of classification versions: a map from raw scores to probabilities that match outcome rates.

Monitoring estimates a version's performance on an unlabelled batch from its probabilities (CBPE,
:mod:`driftloop.monitoring.estimation`), which is only as good as the probabilities are calibrated. The map is
fitted on out-of-fold scores of the training rows (:func:`driftloop.training.selection.out_of_fold_proba`:
the selected pipeline refitted on ``training.folds`` folds, each scoring the rows it did not see; PyCaret
keeps no out-of-fold predictions), never on the holdout, and applied to the final model's scores.

**Which method** (recorded as ``bus.CALIBRATION_METHOD_TAG``): isotonic and Platt are each cross-fitted on the
out-of-fold scores (the calibrator fitted on four fifths, applied to the fifth it did not see), and the one
with the lower Brier score wins; Platt on a tie (two parameters overfit less than a step curve). Multiclass:
two curves per class, Brier summed over classes: a *top* curve on the rows the version predicts the class
for (its top raw probability) and a *rest* curve on the others (:class:`CalibrationMap`). One curve per
class over every row is biased exactly where CBPE looks: for the rows predicted as a rare class it mixes in
the many rows where the class is second, and under-states how often the prediction is right (hpc_jobs, out
of fold: predicted L right 91 % of the time, one-vs-rest calibrated 81 %; top-label 90 %).

**Regression** versions get a loss model instead (:mod:`driftloop.training.loss_estimator`), so monitoring
can estimate RMSE and MAE before labels.

**How well** (metrics of the training run): expected calibration error of the raw and the calibrated scores,
out of fold (the cross-fitted calibrator) and on the holdout (the final model's scores through the map fitted
on every out-of-fold row).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from driftloop.core import bus
from driftloop.core.calibration_map import (
    ISOTONIC,
    PLATT,
    CalibrationMap,
    Curve,
    expected_calibration_error,
    logit,
)

log = logging.getLogger(__name__)

CROSS_FIT_FOLDS = 5
METHOD_ORDER = (PLATT, ISOTONIC)  # a tie goes to the first
MIN_CURVE_ROWS = 20  # fewer top (or rest) rows of a class: that curve is fitted on all the class's rows


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold outputs of the training rows: encoded truth and the map's input scores.

    Attributes:
        y: Encoded truth (:meth:`Decision.encode`): 0/1 (binary) or class indexes (multiclass).
        scores: Binary: positive-class scores ``(n,)``; multiclass: class probabilities ``(n, k)``.
    """

    y: Any
    scores: Any


def fit_curve(method: str, score: Any, hit: Any) -> Curve:
    """One curve from scores to the probability of ``hit`` (0/1).

    Platt is a logistic regression of ``hit`` on ``logit(score)`` without penalty; a single-valued ``hit``
    gives the constant curve at its (smoothed) rate.
    """
    import numpy as np

    s, t = np.asarray(score, dtype=float), np.asarray(hit).astype(int)
    if method == ISOTONIC:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, t)
        return Curve(ISOTONIC, x=tuple(map(float, iso.X_thresholds_)), y=tuple(map(float, iso.y_thresholds_)))
    if t.min() == t.max():
        rate = (t.sum() + 0.5) / (len(t) + 1.0)
        return Curve(PLATT, a=0.0, b=float(logit(rate)))
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(penalty=None).fit(logit(s).reshape(-1, 1), t)
    return Curve(PLATT, a=float(model.coef_[0, 0]), b=float(model.intercept_[0]))


def fit_map(task: str, classes: tuple[str, ...], method: str, oof: OutOfFold) -> CalibrationMap:
    """The map of one method fitted on every out-of-fold row (multiclass: a top and a rest curve per
    class)."""
    import numpy as np

    y, scores = np.asarray(oof.y).astype(int), np.asarray(oof.scores, dtype=float)
    if task == "binary":
        return CalibrationMap(task, method, tuple(classes), (fit_curve(method, scores, y),))
    top = scores.argmax(axis=1)

    def curve(k: int, rows: Any) -> Curve:
        rows = rows if rows.sum() >= MIN_CURVE_ROWS else np.ones(len(y), dtype=bool)
        return fit_curve(method, scores[rows, k], y[rows] == k)

    ks = range(len(classes))
    rest, tops = tuple(curve(k, top != k) for k in ks), tuple(curve(k, top == k) for k in ks)
    return CalibrationMap(task, method, tuple(classes), rest, top_curves=tops)


def cross_fitted(task: str, classes: tuple[str, ...], method: str, oof: OutOfFold, seed: int) -> Any:
    """Calibrated out-of-fold scores, each fold through a map fitted on the other folds."""
    import numpy as np
    from sklearn.model_selection import KFold

    y, scores = np.asarray(oof.y).astype(int), np.asarray(oof.scores, dtype=float)
    out = np.zeros_like(scores)
    folds = KFold(n_splits=min(CROSS_FIT_FOLDS, len(y)), shuffle=True, random_state=seed)
    for fit_rows, apply_rows in folds.split(scores):
        part = fit_map(task, classes, method, OutOfFold(y[fit_rows], scores[fit_rows]))
        out[apply_rows] = part.calibrate(scores[apply_rows])
    return out


def brier_score(task: str, y: Any, proba: Any) -> float:
    """Brier score: binary, of the positive-class probability; multiclass, summed over classes per row."""
    import numpy as np

    y, p = np.asarray(y).astype(int), np.asarray(proba, dtype=float)
    if task == "binary":
        return float(np.mean((p - y) ** 2))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(((p - onehot) ** 2).sum(axis=1)))


def fit_calibration(task: str, classes: tuple[str, ...], oof: OutOfFold, seed: int) -> CalibrationMap:
    """The version's calibration map: the method with the lower cross-fitted Brier score, fitted on every
    out-of-fold row.

    Args:
        task: ``binary`` or ``multiclass``.
        classes: The version's classes in model-output order.
        oof: Out-of-fold truth and scores of the training rows.
        seed: Seed of the cross-fitting folds.

    Returns:
        The map; its ``facts`` hold ``oof_rows``, ``brier`` per method, ``ece_oof_before`` and
        ``ece_oof_after`` (of the chosen method, cross-fitted) and ``rule``.

    Raises:
        ValueError: Fewer than two out-of-fold rows.
    """
    if len(oof.y) < 2:
        raise ValueError(f"calibration needs out-of-fold scores: {len(oof.y)} row(s)")
    calibrated = {m: cross_fitted(task, classes, m, oof, seed) for m in METHOD_ORDER}
    brier = {m: brier_score(task, oof.y, calibrated[m]) for m in METHOD_ORDER}
    method = min(METHOD_ORDER, key=lambda m: brier[m])  # min keeps the first of equal values
    chosen = fit_map(task, classes, method, oof)
    facts = {
        "oof_rows": len(oof.y),
        "brier": brier,
        "ece_oof_before": expected_calibration_error(oof.y, oof.scores),
        "ece_oof_after": expected_calibration_error(oof.y, calibrated[method]),
        "rule": f"lower {CROSS_FIT_FOLDS}-fold cross-fitted Brier score; {METHOD_ORDER[0]} on a tie",
    }
    return CalibrationMap(chosen.task, chosen.method, chosen.classes, chosen.curves, facts, chosen.top_curves)


def calibration_metrics(cmap: CalibrationMap, holdout_y: Any, holdout_outputs: Any) -> dict[str, float]:
    """The training run's calibration metrics: ECE before/after, out of fold and on the holdout, and the
    cross-fitted Brier score of each method."""
    raw = cmap.scores_of(holdout_outputs)
    return {
        bus.CALIBRATION_ECE_BEFORE: float(cmap.facts["ece_oof_before"]),
        bus.CALIBRATION_ECE_AFTER: float(cmap.facts["ece_oof_after"]),
        bus.HOLDOUT_ECE_BEFORE: expected_calibration_error(holdout_y, raw),
        bus.HOLDOUT_ECE_AFTER: expected_calibration_error(holdout_y, cmap.calibrate(raw)),
        bus.CALIBRATION_OOF_ROWS: float(cmap.facts["oof_rows"]),
        **{bus.calibration_brier_metric(m): float(v) for m, v in cmap.facts["brier"].items()},
    }


def calibrate_version(
    task: str, classes: tuple[str, ...], oof: OutOfFold, seed: int, holdout_y: Any, holdout_outputs: Any
) -> tuple[CalibrationMap, dict[str, float]]:
    """Fit the version's map (:func:`fit_calibration`) and measure it (:func:`calibration_metrics`); logs one
    line with the numbers."""
    cmap = fit_calibration(task, classes, oof, seed)
    metrics = calibration_metrics(cmap, holdout_y, holdout_outputs)
    log.info(
        "calibration: %s (cross-fitted Brier %s) on %d out-of-fold rows; ECE out of fold %.4f -> %.4f, "
        "holdout %.4f -> %.4f",
        cmap.method, {m: round(v, 5) for m, v in cmap.facts["brier"].items()}, cmap.facts["oof_rows"],
        metrics[bus.CALIBRATION_ECE_BEFORE], metrics[bus.CALIBRATION_ECE_AFTER],
        metrics[bus.HOLDOUT_ECE_BEFORE], metrics[bus.HOLDOUT_ECE_AFTER],
    )  # fmt: skip
    return cmap, metrics


def log_calibration(cmap: CalibrationMap, metrics: dict[str, float]) -> None:
    """Inside the training run: the map as ``bus.CALIBRATION_MAP_ARTIFACT``, its method as a tag, the
    metrics."""
    import mlflow

    mlflow.log_text(cmap.to_json(), bus.CALIBRATION_MAP_ARTIFACT)
    mlflow.set_tag(bus.CALIBRATION_METHOD_TAG, cmap.method)
    mlflow.log_metrics(metrics)
