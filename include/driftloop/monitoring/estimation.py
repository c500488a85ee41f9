"""Estimated performance of a batch before its labels arrive: CBPE for classification, DLE for regression.

Pure functions on arrays and frames (no MLflow, no nannyml): the monitoring run reads the version's
calibration map (``bus.CALIBRATION_MAP_ARTIFACT`` of its training run) and the batch's predictions, and logs
what these return.

* **CBPE** (confidence-based performance estimation): if the calibrated probability ``p_i`` of each row is
  right, the expected confusion matrix of the batch follows from the probabilities and the predictions
  alone. Binary F1 and accuracy at the version's decision (the predicted label of each row), AUC as the
  expected share of correctly ordered (positive, negative) pairs; multiclass macro-F1 and accuracy.
* **DLE** (direct loss estimation): the version's loss model (:class:`~driftloop.core.loss_model.LossModel`,
  fitted at training on out-of-fold errors of the training rows, ``bus.LOSS_MODEL_ARTIFACT``) predicts each
  batch row's expected absolute and squared error from its features and the prediction; MAE is the mean
  expected absolute error, RMSE the root of the mean expected squared error.

**The band** (``level``, e.g. 0.95): CBPE draws the batch's labels from the calibrated probabilities
``draws`` times (seeded) and takes the percentiles of the realised metric over the draws: where the realised
value falls if the probabilities are right. DLE draws each row's loss as its expected loss times the
realised-over-expected loss of a random fitting row, likewise. Neither band covers a wrong calibration map or
loss model.

**What it cannot see**: a change of P(y|x) (concept shift). Under covariate shift (P(x) moves, P(y|x) does
not) the calibrated probabilities stay right and the estimate follows the realised metric; under concept
shift they are wrong and the estimate does not move, so the realised value leaves the band once labels
arrive. Only labels (live metrics) detect that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from driftloop.core import bus
from driftloop.core.calibration_map import CalibrationMap
from driftloop.core.loss_model import LossModel

CBPE, DLE = "cbpe", "dle"
BINARY_METRICS = ("auc", "f1", "accuracy")
MULTICLASS_METRICS = ("macro_f1", "accuracy")
REGRESSION_METRICS = ("rmse", "mae")
METRIC_ALIASES = {"f1_macro": "macro_f1", "acc": "accuracy", "roc_auc": "auc"}
DEFAULT_LEVEL = 0.95
DEFAULT_DRAWS = 400
DRAW_CELLS = 4_000_000  # draws x rows (x classes) held in memory at once


@dataclass(frozen=True)
class PerformanceEstimate:
    """One estimated metric of a batch and its band.

    Attributes:
        metric: ``auc``, ``f1``, ``accuracy``, ``macro_f1``, ``rmse`` or ``mae``.
        estimate: The expected value of the metric.
        lower: Lower end of the band.
        upper: Upper end of the band.
        level: Nominal probability that the realised value falls in the band.
        method: ``cbpe`` or ``dle``.
        rows: Rows the estimate is of.
        draws: Monte-Carlo draws behind the band (labels for CBPE, losses for DLE).
    """

    metric: str
    estimate: float
    lower: float
    upper: float
    level: float
    method: str
    rows: int
    draws: int = 0

    def contains(self, value: float) -> bool:
        """True when ``value`` is within the band."""
        return self.lower <= value <= self.upper

    def to_metrics(self) -> dict[str, float]:
        """The monitoring run's metrics: ``bus.estimated_metric`` of the estimate and both ends."""
        return {
            bus.estimated_metric(self.metric): self.estimate,
            bus.estimated_metric(self.metric, "lower"): self.lower,
            bus.estimated_metric(self.metric, "upper"): self.upper,
        }


def metric_name(name: str, task: str) -> str:
    """The estimation metric of a config's metric name (``AUC``, ``F1``, ``macro_f1``, ``RMSE``, ...).

    Multiclass ``F1`` is macro-F1.

    Raises:
        ValueError: The task has no estimate of that metric (e.g. precision, R2).
    """
    key = METRIC_ALIASES.get(name.strip().lower(), name.strip().lower())
    if task == "multiclass" and key == "f1":
        key = "macro_f1"
    known = {"binary": BINARY_METRICS, "multiclass": MULTICLASS_METRICS, "regression": REGRESSION_METRICS}
    if key not in known.get(task, ()):
        raise ValueError(f"no {task} estimate of {name!r} (estimated: {list(known.get(task, ()))})")
    return key


def load_calibration_map(text: str) -> CalibrationMap:
    """The calibration map of its JSON text (``bus.CALIBRATION_MAP_ARTIFACT``)."""
    return CalibrationMap.from_json(text)


def estimate_classification(
    cmap: CalibrationMap,
    predictions: Any,
    metric: str,
    level: float = DEFAULT_LEVEL,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> PerformanceEstimate:
    """CBPE of a batch scored by a classification version, from its predictions and calibration map.

    Args:
        cmap: The version's map (:func:`load_calibration_map`).
        predictions: The batch's predictions (a frame or dict of columns): ``bus.PREDICTION_COLUMN`` (labels),
            and ``bus.SCORE_COLUMN`` (binary) or the ``bus.proba_column`` of each class (multiclass).
        metric: A config metric name (:func:`metric_name`).
        level: Nominal coverage of the band.
        draws: Monte-Carlo label draws for the band.
        seed: Seed of the draws.
    """
    import numpy as np

    key = metric_name(metric, cmap.task)
    raw = cmap.scores_of(predictions)
    labels = np.asarray(predictions[bus.PREDICTION_COLUMN]).astype(str)
    proba = cmap.calibrate(raw)
    if cmap.task == "binary":
        return estimate_binary(proba, labels == cmap.classes[1], raw, key, level, draws, seed)
    index = {label: i for i, label in enumerate(cmap.classes)}
    predicted = np.array([index.get(label, -1) for label in labels])
    return estimate_multiclass(proba, predicted, key, level, draws, seed)


def estimate_batch(
    cmap: CalibrationMap,
    predictions: Any,
    level: float = DEFAULT_LEVEL,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> list[PerformanceEstimate]:
    """Every CBPE metric of the map's task on one batch (binary AUC, F1, accuracy; multiclass macro-F1,
    accuracy): :func:`estimate_classification` for each, all with the same seed."""
    metrics = BINARY_METRICS if cmap.task == "binary" else MULTICLASS_METRICS
    return [estimate_classification(cmap, predictions, m, level, draws, seed) for m in metrics]


def _band(values: Any, level: float) -> tuple[float, float]:
    import numpy as np

    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _chunks(draws: int, cells_per_draw: int) -> list[int]:
    size = max(1, DRAW_CELLS // max(cells_per_draw, 1))
    return [min(size, draws - start) for start in range(0, draws, size)]


def _check_level(level: float, draws: int) -> None:
    if not 0 < level < 1 or draws < 1:
        raise ValueError(f"level must be in (0, 1) and draws >= 1: level {level}, draws {draws}")


def expected_auc(proba: Any, score: Any) -> float:
    """Expected AUC of ``score`` if row ``i`` is positive with probability ``proba[i]``: expected correctly
    ordered (positive, negative) pairs of distinct rows, ties half, over the expected number of such pairs."""
    import numpy as np

    p, s = np.asarray(proba, dtype=float), np.asarray(score, dtype=float)
    order = np.argsort(s, kind="stable")
    p_sorted, s_sorted, negative = p[order], s[order], 1 - p[order]
    starts = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
    group = np.cumsum(starts) - 1
    negative_per_group = np.bincount(group, weights=negative)
    below = np.r_[0.0, np.cumsum(negative_per_group)[:-1]][group]  # negatives of strictly lower scores
    tied = negative_per_group[group] - negative  # negatives of the same score, other rows
    pairs = p.sum() * negative.sum() - float(np.sum(p * (1 - p)))
    return float(np.sum(p_sorted * (below + 0.5 * tied)) / pairs) if pairs > 0 else float("nan")


def estimate_binary(
    proba: Any,
    predicted_positive: Any,
    score: Any,
    metric: str,
    level: float = DEFAULT_LEVEL,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> PerformanceEstimate:
    """CBPE of a binary metric.

    Args:
        proba: Calibrated positive-class probability of each row.
        predicted_positive: The version's decision of each row (True: predicted positive).
        score: The raw score the decision and the AUC rank by.
        metric: ``auc``, ``f1`` or ``accuracy``.
        level: Nominal coverage of the band.
        draws: Monte-Carlo label draws for the band.
        seed: Seed of the draws.
    """
    import numpy as np
    from scipy.stats import rankdata

    _check_level(level, draws)
    if metric not in BINARY_METRICS:
        raise ValueError(f"no binary estimate of {metric!r} (estimated: {list(BINARY_METRICS)})")
    p = np.asarray(proba, dtype=float)
    pred = np.asarray(predicted_positive).astype(float)
    n, npred = len(p), float(pred.sum())
    tp = float(p @ pred)
    if metric == "auc":
        estimate = expected_auc(p, score)
    elif metric == "f1":
        estimate = 2 * tp / (p.sum() + npred) if p.sum() + npred > 0 else 0.0  # 2TP + FP + FN
    else:
        estimate = float(np.mean(p * pred + (1 - p) * (1 - pred)))
    ranks = rankdata(np.asarray(score, dtype=float))  # midranks: ties count half, as roc_auc_score
    rng = np.random.default_rng(seed)
    values = []
    for size in _chunks(draws, n):
        y = (rng.random((size, n)) < p).astype(float)
        positives = y.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            if metric == "auc":
                negatives = n - positives
                value = (y @ ranks - positives * (positives + 1) / 2) / (positives * negatives)
            elif metric == "f1":
                hits = y @ pred
                value = np.where(positives + npred > 0, 2 * hits / (positives + npred), 0.0)
            else:
                value = (2 * (y @ pred) + n - positives - npred) / n
        values.append(value)
    low, high = _band(np.concatenate(values), level)
    return PerformanceEstimate(metric, float(estimate), low, high, level, CBPE, n, draws)


def _macro_f1(hits: Any, true_counts: Any, predicted_counts: Any) -> Any:
    """Macro-F1 from per-class hits, true and predicted counts (last axis: classes); classes absent from both
    truth and predictions are left out, as scikit-learn's ``f1_score(average="macro")`` does."""
    import numpy as np

    denominator = true_counts + predicted_counts
    present = denominator > 0
    f1 = np.where(present, 2 * hits / np.where(present, denominator, 1), 0.0)
    return f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)


def estimate_multiclass(
    proba: Any,
    predicted: Any,
    metric: str,
    level: float = DEFAULT_LEVEL,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> PerformanceEstimate:
    """CBPE of a multiclass metric.

    Args:
        proba: Calibrated class probabilities, shape ``(n, k)``, rows summing to 1.
        predicted: The predicted class index of each row (-1: a label outside the version's classes).
        metric: ``macro_f1`` or ``accuracy``.
        level: Nominal coverage of the band.
        draws: Monte-Carlo label draws for the band.
        seed: Seed of the draws.
    """
    import numpy as np

    _check_level(level, draws)
    if metric not in MULTICLASS_METRICS:
        raise ValueError(f"no multiclass estimate of {metric!r} (estimated: {list(MULTICLASS_METRICS)})")
    p = np.asarray(proba, dtype=float)
    pred = np.asarray(predicted).astype(int)
    n, k = p.shape
    onehot = np.zeros((n, k))
    onehot[pred >= 0, pred[pred >= 0]] = 1.0
    hit_proba = (p * onehot).sum(axis=1)  # probability that the row's prediction is right
    predicted_counts = onehot.sum(axis=0)
    if metric == "accuracy":
        estimate = float(hit_proba.mean())
    else:
        estimate = float(_macro_f1((p * onehot).sum(axis=0), p.sum(axis=0), predicted_counts))
    cumulative = np.cumsum(p, axis=1)
    cumulative[:, -1] = 1.0  # rounding must not leave a draw past the last class
    rng = np.random.default_rng(seed)
    values = []
    for size in _chunks(draws, n * k):
        u = rng.random((size, n, 1))
        y = (u > cumulative[None, :, :]).sum(axis=2)  # (size, n) class drawn for each row
        hit = (y == pred[None, :]).astype(float)
        if metric == "accuracy":
            values.append(hit.mean(axis=1))
            continue
        true_counts = np.stack([(y == c).sum(axis=1) for c in range(k)], axis=1)
        values.append(_macro_f1(hit @ onehot, true_counts, predicted_counts[None, :]))
    low, high = _band(np.concatenate(values), level)
    return PerformanceEstimate(metric, estimate, low, high, level, CBPE, n, draws)


def estimate_regression(
    model: LossModel,
    frame: Any,
    prediction: Any,
    metric: str,
    level: float = DEFAULT_LEVEL,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> PerformanceEstimate:
    """DLE of RMSE or MAE on a batch scored by a regression version, from its loss model.

    Args:
        model: The version's loss model (``bus.LOSS_MODEL_ARTIFACT``).
        frame: The batch's features (a frame or dict of columns).
        prediction: The version's prediction of each row.
        metric: ``rmse`` or ``mae``.
        level: Nominal coverage of the band.
        draws: Monte-Carlo draws of the batch's losses for the band.
        seed: Seed of the draws.
    """
    return estimate_regression_batch(model, frame, prediction, level, draws, seed, (metric,))[0]


def estimate_regression_batch(
    model: LossModel,
    frame: Any,
    prediction: Any,
    level: float = DEFAULT_LEVEL,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    metrics: tuple[str, ...] = REGRESSION_METRICS,
) -> list[PerformanceEstimate]:
    """Every DLE metric on one batch (RMSE, MAE), the rows' expected losses computed once."""
    absolute, squared = model.expected_losses(frame, prediction)
    noise = {"mae": model.noise_absolute, "rmse": model.noise_squared}
    expected = {"mae": absolute, "rmse": squared}
    widening = {"mae": model.widening_absolute, "rmse": model.widening_squared}
    return [widened(dle(expected[m], noise[m], m, level, draws, seed), widening[m]) for m in metrics]


def widened(estimate: PerformanceEstimate, factor: float) -> PerformanceEstimate:
    """The band's half-widths stretched by ``factor`` in log scale around the estimate (a band above zero
    stays above zero)."""
    import math
    from dataclasses import replace

    if factor == 1.0 or not estimate.estimate > 0 or not estimate.lower > 0:
        return estimate
    centre = math.log(estimate.estimate)
    lower = math.exp(centre - factor * (centre - math.log(estimate.lower)))
    upper = math.exp(centre + factor * (math.log(estimate.upper) - centre))
    return replace(estimate, lower=lower, upper=upper)


def dle(
    expected: Any, noise: Any, metric: str, level: float, draws: int, seed: int = 0
) -> PerformanceEstimate:
    """The batch's RMSE or MAE from each row's expected loss (squared error for RMSE, absolute for MAE).

    The estimate is the mean expected loss (its square root for RMSE). The band is where the realised value
    falls if each row's loss is its expected loss times a noise value drawn from the fitting rows' (realised
    over expected loss, mean 1): a skewed band, as heavy-tailed errors make the realised RMSE of a batch.

    Raises:
        ValueError: An unknown metric, a level outside (0, 1), no draws or no noise.
    """
    import numpy as np

    _check_level(level, draws)
    if metric not in REGRESSION_METRICS:
        raise ValueError(f"no regression estimate of {metric!r} (estimated: {list(REGRESSION_METRICS)})")
    loss = np.clip(np.asarray(expected, dtype=float), 0.0, None)
    spread = np.asarray(noise, dtype=float)
    if not len(spread):
        raise ValueError("DLE needs the noise of the loss model's fitting rows")
    root = np.sqrt if metric == "rmse" else np.asarray
    n = len(loss)
    rng = np.random.default_rng(seed)
    values = [
        root((loss[None, :] * spread[rng.integers(0, len(spread), (size, n))]).mean(axis=1))
        for size in _chunks(draws, n)
    ]
    estimate = float(root(loss.mean())) if n else float("nan")
    low, high = _band(np.concatenate(values), level) if n else (float("nan"), float("nan"))
    return PerformanceEstimate(metric, estimate, low, high, level, DLE, n, draws)
