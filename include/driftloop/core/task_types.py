"""What differs between binary classification, multiclass classification and regression, in one place.

A model version carries a :class:`Decision` (task, class vocabulary, binary threshold), recorded as tags when
it is trained and read back by everything that scores with it. Targets are encoded the same way for training,
the gate and monitoring: binary targets to 1 for the positive label and 0 otherwise; multiclass targets to the
index of the label in the version's class list; regression targets to floats. Predictions go back to the
dataset's own labels.

* **Metrics** (holdout and live): binary AUC, F1, precision, recall, accuracy; multiclass macro-F1,
  one-vs-rest AUC, accuracy; regression RMSE, MAE, R2, MAPE. :data:`LOWER_IS_BETTER` names the metrics where
  smaller wins, so floors become ceilings and "beats the champion" means a smaller error.
* **Outputs** of a model on rows (:meth:`Decision.predict`): the prediction in the dataset's labels (or the
  value), the binary positive-class score, the multiclass per-class probabilities.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from driftloop.core import bus

BINARY, MULTICLASS, REGRESSION = "binary", "multiclass", "regression"
TASKS = (BINARY, MULTICLASS, REGRESSION)
TASK_ALIASES = {"classification": BINARY}

METRICS = {
    BINARY: ("holdout_auc", "holdout_f1", "holdout_precision", "holdout_recall", "holdout_accuracy"),
    MULTICLASS: ("holdout_macro_f1", "holdout_auc_ovr", "holdout_accuracy"),
    REGRESSION: ("holdout_rmse", "holdout_mae", "holdout_r2", "holdout_mape"),
}
LOWER_IS_BETTER = {"holdout_rmse", "holdout_mae", "holdout_mape"}
# The metric live performance is judged on, per task (its relative degradation is the performance trigger).
LIVE_PRIMARY = {BINARY: "f1", MULTICLASS: "macro_f1", REGRESSION: "rmse"}
DEFAULT_SORT = {BINARY: "AUC", MULTICLASS: "F1", REGRESSION: "RMSE"}  # PyCaret's names
SORT_METRICS = {
    "classification": ("Accuracy", "AUC", "Recall", "Prec.", "F1", "Kappa", "MCC"),
    "regression": ("MAE", "MSE", "RMSE", "R2", "RMSLE", "MAPE"),
}
DEFAULT_PRIMARY = {BINARY: "AUC", MULTICLASS: "macro_f1", REGRESSION: "RMSE"}  # the gate's


def normalise_task(task: str) -> str:
    """The canonical task name (``classification`` is the binary task).

    Raises:
        ValueError: Unknown task.
    """
    task = TASK_ALIASES.get(task, task)
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {list(TASKS)} (or 'classification')")
    return task


def is_classification(cfg: Any) -> bool:
    """True for binary and multiclass tasks."""
    return cfg.task in (BINARY, MULTICLASS)


def class_labels(cfg: Any, labels: Any) -> list[str]:
    """The class list a version is trained with: ``[negative, positive]`` (binary) or the sorted labels."""
    seen = sorted({str(v) for v in labels.dropna()})
    if cfg.task == BINARY:
        negatives = [v for v in seen if v != cfg.positive_label]
        return [negatives[0] if negatives else f"not {cfg.positive_label}", cfg.positive_label]
    return seen


@dataclass(frozen=True)
class Decision:
    """How one model version turns model output into predictions: its task, class vocabulary and threshold.

    Recorded with the version (:meth:`to_tags`) at training time and read back (:func:`read_decision`) by
    every stage that scores with it, so batch inference, serving, the gate and monitoring decide alike.

    Attributes:
        task: ``binary``, ``multiclass`` or ``regression``.
        classes: The dataset's labels in model-output order; binary ``(negative, positive)``; empty for
            regression.
        threshold: Binary only: the positive-class probability at or above which a row is positive.
    """

    task: str
    classes: tuple[str, ...] = ()
    threshold: float = 0.5

    def encode(self, labels: Any) -> Any:
        """Encoded truth: 1/0 for the positive class (binary), class indexes (multiclass), floats
        (regression).

        Multiclass labels outside :attr:`classes` become -1.
        """
        import pandas as pd

        if self.task == REGRESSION:
            return pd.to_numeric(labels, errors="coerce").astype(float)
        text = labels.astype(str)
        if self.task == BINARY:
            return (text == self.classes[1]).astype(int)
        index = {label: i for i, label in enumerate(self.classes)}
        return text.map(index).fillna(-1).astype(int)

    def predict(self, model: Any, features_df: Any) -> dict[str, Any]:
        """Predictions of ``model`` in the dataset's vocabulary, as columns.

        The index is reset first: a PyCaret pipeline multiplies rows when the input index has duplicates.

        Returns:
            ``{bus.PREDICTION_COLUMN: labels or values, bus.SCORE_COLUMN: positive-class probability (binary),
            top probability (multiclass) or the value (regression), bus.proba_column(label): per-class
            probability (multiclass)}``.
        """
        return self.predict_rows(model, model_input(features_df))

    def predict_rows(self, model: Any, rows: Any) -> dict[str, Any]:
        """:meth:`predict` on rows that are already :func:`model_input` (index 0..n-1, every missing value
        ``NaN``), as the online workers build them: checking that cost a tenth of a served call."""
        import numpy as np

        if self.task == REGRESSION:
            values = np.asarray(model.predict(rows), dtype=float)
            return {bus.PREDICTION_COLUMN: values, bus.SCORE_COLUMN: values}
        proba = np.asarray(model.predict_proba(rows), dtype=float)
        labels = np.asarray(self.classes, dtype=object)
        if self.task == BINARY:
            score = proba[:, 1]
            return {
                bus.PREDICTION_COLUMN: np.where(score >= self.threshold, labels[1], labels[0]),
                bus.SCORE_COLUMN: score,
            }
        out = {bus.PREDICTION_COLUMN: labels[proba.argmax(axis=1)], bus.SCORE_COLUMN: proba.max(axis=1)}
        out.update({bus.proba_column(label): proba[:, i] for i, label in enumerate(self.classes)})
        return out

    def score(self, model: Any, features_df: Any) -> Any:
        """One number per row that explanations and behavioural tests follow.

        Binary: the positive-class probability; regression: the predicted value; multiclass: the probability
        of the class the model predicts for the row.
        """
        return self.predict(model, features_df)[bus.SCORE_COLUMN]

    def output_columns(self) -> list[str]:
        """The prediction columns :meth:`predict` returns, in order."""
        extra = [bus.proba_column(label) for label in self.classes] if self.task == MULTICLASS else []
        return [bus.PREDICTION_COLUMN, bus.SCORE_COLUMN, *extra]

    def to_tags(self) -> dict[str, str]:
        """The tags that record this decision on a training run and its model version."""
        return {
            bus.TASK_TAG: self.task,
            bus.CLASSES_TAG: json.dumps(list(self.classes)),
            bus.THRESHOLD_TAG: f"{self.threshold:.6g}",
        }


def model_input(features_df: Any) -> Any:
    """Rows as every model sees them: index reset, and every missing value ``NaN``.

    Parquet and Arrow give missing strings as ``None``; scikit-learn's imputers only look for ``NaN`` in
    object columns, so a ``None`` would pass the imputer and reach the encoder as a category of its own (or as
    NaN).
    """
    import numpy as np

    rows = features_df.reset_index(drop=True)
    text = [c for c in rows.columns if rows[c].dtype == object and rows[c].isna().any()]
    if text:
        rows = rows.copy()
        for column in text:
            rows[column] = rows[column].where(rows[column].notna(), np.nan)
    return rows


def training_decision(cfg: Any, labels: Any, threshold: float | None = None) -> Decision:
    """The decision a new version is trained for: the config's task, the labels seen, ``threshold``
    (binary)."""
    classes = () if cfg.task == REGRESSION else tuple(class_labels(cfg, labels))
    return Decision(cfg.task, classes, cfg.inference.threshold if threshold is None else float(threshold))


def read_decision(cfg: Any, tags: dict[str, str]) -> Decision:
    """The decision recorded in a version's (or run's) tags.

    A version registered without them (by hand, or before decisions were recorded) decides by the config: the
    binary positive label against the rest at ``inference.threshold``, or the regression value.

    Raises:
        ConfigError: A multiclass version without a recorded class list (its output order is unknown).
    """
    if tags.get(bus.TASK_TAG):
        return Decision(
            tags[bus.TASK_TAG],
            tuple(json.loads(tags.get(bus.CLASSES_TAG) or "[]")),
            float(tags.get(bus.THRESHOLD_TAG) or cfg.inference.threshold),
        )
    if cfg.task == MULTICLASS:
        from driftloop.core.errors import ConfigError

        raise ConfigError(
            f"{cfg.name}: the model version has no {bus.CLASSES_TAG} tag: cannot map its outputs "
            "to class labels (register multiclass versions through training)"
        )
    classes = (f"not {cfg.positive_label}", cfg.positive_label) if cfg.task == BINARY else ()
    return Decision(cfg.task, classes, cfg.inference.threshold)


def holdout_metrics(decision: Decision, y_true: Any, outputs: dict[str, Any]) -> dict[str, float]:
    """The task's holdout metrics.

    Args:
        decision: The version's decision.
        y_true: Encoded truth (:meth:`Decision.encode`).
        outputs: :meth:`Decision.predict` on the same rows.

    Returns:
        ``holdout_<metric>`` for every metric of the task in :data:`METRICS`; AUCs are NaN when the rows hold
        a single class.
    """
    import numpy as np
    from sklearn import metrics as m

    if decision.task == REGRESSION:
        y, pred = np.asarray(y_true, dtype=float), np.asarray(outputs[bus.PREDICTION_COLUMN], dtype=float)
        nonzero = np.abs(y) > 1e-12
        return {
            "holdout_rmse": float(np.sqrt(m.mean_squared_error(y, pred))),
            "holdout_mae": float(m.mean_absolute_error(y, pred)),
            "holdout_r2": float(m.r2_score(y, pred)),
            "holdout_mape": float(np.mean(np.abs((y[nonzero] - pred[nonzero]) / y[nonzero]))),
        }
    y = np.asarray(y_true).astype(int)
    labels = np.asarray(decision.classes, dtype=object)
    truth = np.where(y >= 0, labels[np.clip(y, 0, len(labels) - 1)], np.asarray(None)).astype(str)
    predicted = np.asarray(outputs[bus.PREDICTION_COLUMN]).astype(str)
    if decision.task == BINARY:
        positive = (predicted == decision.classes[1]).astype(int)
        auc = m.roc_auc_score(y, outputs[bus.SCORE_COLUMN]) if len(np.unique(y)) > 1 else float("nan")
        return {
            "holdout_auc": float(auc),
            "holdout_f1": float(m.f1_score(y, positive, zero_division=0)),
            "holdout_precision": float(m.precision_score(y, positive, zero_division=0)),
            "holdout_recall": float(m.recall_score(y, positive, zero_division=0)),
            "holdout_accuracy": float(m.accuracy_score(y, positive)),
        }
    return {
        "holdout_macro_f1": float(m.f1_score(truth, predicted, average="macro", zero_division=0)),
        "holdout_auc_ovr": multiclass_auc(decision, y, outputs),
        "holdout_accuracy": float(m.accuracy_score(truth, predicted)),
    }


def multiclass_auc(decision: Decision, y: Any, outputs: dict[str, Any]) -> float:
    """Macro one-vs-rest AUC over the classes present in ``y`` (NaN with fewer than two)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    present = [i for i in range(len(decision.classes)) if np.any(y == i)]
    if len(present) < 2:
        return float("nan")
    proba = np.column_stack([outputs[bus.proba_column(decision.classes[i])] for i in present])
    keep = np.isin(y, present)
    scores = [roc_auc_score(y[keep] == c, proba[keep, j]) for j, c in enumerate(present)]
    return float(np.mean(scores))


def choose_threshold(
    y_true: Any, score: Any, objective: str = "f1", cost: dict[str, float] | None = None
) -> dict[str, float]:
    """The binary decision threshold that is best on out-of-fold scores.

    Args:
        y_true: 0/1 truth of the out-of-fold rows.
        score: Their out-of-fold positive-class scores.
        objective: ``f1`` (maximise F1) or ``cost`` (minimise expected cost per row).
        cost: ``{"false_positive": c_fp, "false_negative": c_fn}`` for the cost objective.

    Returns:
        ``{"threshold", "objective_value"}``: F1, or cost per row, at the chosen threshold.
    """
    import numpy as np

    y, s = np.asarray(y_true).astype(int), np.asarray(score, dtype=float)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # Predicting positive for the top-k scores, for every k at once: O(n log n), not O(n x candidates).
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_tie]
    fp = np.cumsum(1 - y_sorted)[last_of_tie]
    fn = y.sum() - tp
    thresholds = s_sorted[last_of_tie]
    if objective == "cost":
        c_fp = (cost or {}).get("false_positive", 1.0)
        c_fn = (cost or {}).get("false_negative", 1.0)
        values = -(fp * c_fp + fn * c_fn) / max(len(y), 1)
        none_positive = -(y.sum() * c_fn) / max(len(y), 1)
    else:
        values = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        none_positive = 0.0
    best = int(np.argmax(values))
    if values[best] < none_positive:
        return {
            "threshold": 1.0 + 1e-9,
            "objective_value": float(-none_positive if objective == "cost" else 0.0),
        }
    value = float(values[best])
    return {"threshold": float(thresholds[best]), "objective_value": -value if objective == "cost" else value}


def live_metrics(decision: Decision, truth: Any, predictions_df: Any) -> dict[str, float]:
    """Live metrics of scored rows against their arrived labels (``truth``: stored labels or values).

    Binary: ``live_f1`` (and ``live_auc`` with both classes); multiclass: ``live_macro_f1``,
    ``live_accuracy``; regression: ``live_rmse``, ``live_mae``.
    """
    import numpy as np
    from sklearn import metrics as m

    predicted = predictions_df[bus.PREDICTION_COLUMN]
    if decision.task == REGRESSION:
        y, pred = np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float)
        return {
            bus.LIVE_RMSE: float(np.sqrt(m.mean_squared_error(y, pred))),
            bus.LIVE_MAE: float(m.mean_absolute_error(y, pred)),
        }
    truth = np.asarray(truth).astype(str)
    predicted = np.asarray(predicted).astype(str)
    if decision.task == BINARY:
        positive = decision.classes[1]
        y = (truth == positive).astype(int)
        result = {bus.LIVE_F1: float(m.f1_score(y, (predicted == positive).astype(int), zero_division=0))}
        if 0 < y.sum() < len(y):
            result[bus.LIVE_AUC] = float(m.roc_auc_score(y, predictions_df[bus.SCORE_COLUMN]))
        return result
    return {
        bus.LIVE_MACRO_F1: float(m.f1_score(truth, predicted, average="macro", zero_division=0)),
        bus.LIVE_ACCURACY: float(m.accuracy_score(truth, predicted)),
    }


def relative_drop(task: str, live: dict[str, float], holdout: dict[str, float]) -> float | None:
    """How much worse the task's primary metric is live than on the holdout, as a share (positive: worse).

    None when either side is missing or the holdout value is 0.
    """
    name = LIVE_PRIMARY[task]
    live_value, holdout_value = live.get(bus.live_metric(name)), holdout.get(f"holdout_{name}")
    if live_value is None or not holdout_value:
        return None
    if f"holdout_{name}" in LOWER_IS_BETTER:
        return (live_value - holdout_value) / holdout_value
    return (holdout_value - live_value) / holdout_value


def quality(decision: Decision, y_true: Any, outputs: dict[str, Any]) -> float:
    """One higher-is-better number for permutation importance: AUC (binary), accuracy (multiclass), -RMSE."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    if decision.task == REGRESSION:
        return -float(
            np.sqrt(np.mean((np.asarray(y_true, dtype=float) - outputs[bus.PREDICTION_COLUMN]) ** 2))
        )
    if decision.task == BINARY:
        return float(roc_auc_score(np.asarray(y_true).astype(int), outputs[bus.SCORE_COLUMN]))
    labels = np.asarray(decision.classes, dtype=object)
    return float(
        np.mean(labels[np.clip(np.asarray(y_true), 0, len(labels) - 1)] == outputs[bus.PREDICTION_COLUMN])
    )


def gate_metric_key(metric: str) -> str:
    """The holdout metric key for a gate metric name such as ``AUC`` or ``F1``.

    Raises:
        ValueError: The name is not a known metric.
    """
    key = bus.GATE_METRIC_KEYS.get(metric.strip().lower(), metric if metric in bus.HOLDOUT_METRICS else None)
    if key is None:
        raise ValueError(f"unknown gate metric {metric!r} (known: {sorted(bus.GATE_METRIC_KEYS)})")
    return key


def is_lower_better(metric_key: str) -> bool:
    """True for error metrics (RMSE, MAE, MAPE): a floor on them is a ceiling, and smaller beats larger."""
    return metric_key in LOWER_IS_BETTER


def at_least_as_good(metric_key: str, value: float, reference: float) -> bool:
    """``value`` is no worse than ``reference`` in the metric's direction."""
    return value <= reference if is_lower_better(metric_key) else value >= reference


def positive_rate_is_far(oof_rate: float, holdout_rate: float, rows: int, max_ratio: float) -> bool:
    """True when ``holdout_rate`` is more than ``max_ratio`` times above or below ``oof_rate`` and the gap
    exceeds three binomial standard errors of a rate on ``rows`` rows (``gates.positive_rate_max_ratio``)."""
    import math

    noise = 3 * math.sqrt(max(oof_rate * (1 - oof_rate), 1e-12) / max(rows, 1))
    outside = holdout_rate > oof_rate * max_ratio or holdout_rate < oof_rate / max_ratio
    return outside and abs(holdout_rate - oof_rate) > noise
