"""A version's calibration map: raw model scores to calibrated probabilities, as JSON any stage can apply.

Training fits the map on out-of-fold scores of the training rows (:mod:`driftloop.training.calibration`) and
logs it as ``bus.CALIBRATION_MAP_ARTIFACT`` of the training run; monitoring applies it to a batch's scores to
estimate performance before labels arrive (:mod:`driftloop.monitoring.estimation`). The map is plain numbers,
so applying it needs numpy only, and loading it runs no code (unlike a pickled calibrator).

* **Isotonic**: a monotone step curve, stored as its knots (``x``, ``y``) and applied by linear
  interpolation between them, clipped at the ends: what scikit-learn's
  ``IsotonicRegression(out_of_bounds="clip")`` predicts.
* **Platt**: ``p = 1 / (1 + exp(-(a * logit(s) + b)))`` on the logit of the score, which holds the identity
  (``a = 1``, ``b = 0``): a calibrated model keeps its scores.

Binary maps have one curve, applied to the positive-class score. Multiclass maps (format 2) are top-label
aware: each class has a *top* curve, fitted on the rows whose highest raw probability is that class (the rows
the version predicts it for), and a *rest* curve, fitted on the other rows. A row's predicted class gets its
top curve's probability; the other classes share the remainder in proportion to their rest curves. One
one-vs-rest curve per class over every row (format 1, still read: each class's curve, rows renormalised)
mixes the two and under-states how often a confident prediction of a rare class is right: P(y = c | s_c) is
lower than P(y = c | s_c, c predicted), which is what the confusion matrix of CBPE needs.

Regression versions carry a loss model instead (:mod:`driftloop.core.loss_model`), for direct loss estimation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from driftloop.core import bus

FORMAT_VERSION = 2  # 2: multiclass maps carry top curves; format 1 maps are still read
READABLE_FORMATS = (1, 2)
ISOTONIC, PLATT = "isotonic", "platt"
METHODS = (ISOTONIC, PLATT)
SCORE_EPSILON = 1e-6  # scores are clipped into [eps, 1 - eps] before their logit is taken
ECE_BINS = 10


@dataclass(frozen=True)
class Curve:
    """One calibration curve: isotonic knots (``x``, ``y``) or Platt's ``a``, ``b``."""

    method: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def apply(self, score: Any) -> Any:
        """Calibrated probabilities of the scores (an array of the same shape)."""
        import numpy as np

        s = np.asarray(score, dtype=float)
        if self.method == ISOTONIC:
            return np.interp(s, np.asarray(self.x), np.asarray(self.y))
        z = self.a * logit(s) + self.b
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the curve."""
        if self.method == ISOTONIC:
            return {"method": ISOTONIC, "x": list(self.x), "y": list(self.y)}
        return {"method": PLATT, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Curve:
        """The curve of its JSON form.

        Raises:
            ValueError: Unknown method, or isotonic knots that are empty, of unequal length or not sorted.
        """
        method = data.get("method")
        if method == PLATT:
            return cls(PLATT, a=float(data["a"]), b=float(data["b"]))
        if method != ISOTONIC:
            raise ValueError(f"unknown calibration method {method!r} (known: {list(METHODS)})")
        x, y = tuple(float(v) for v in data["x"]), tuple(float(v) for v in data["y"])
        if not x or len(x) != len(y) or any(b < a for a, b in zip(x, x[1:], strict=False)):
            raise ValueError(
                f"isotonic knots must be non-empty, of equal length and sorted: {len(x)} x, {len(y)} y"
            )
        return cls(ISOTONIC, x=x, y=y)


@dataclass(frozen=True)
class CalibrationMap:
    """Per-class calibration curves of one model version, and how they were chosen.

    Attributes:
        task: ``binary`` or ``multiclass``.
        method: ``isotonic`` or ``platt`` (every curve of a map uses it).
        classes: The version's classes in model-output order (binary: ``[negative, positive]``).
        curves: One curve (binary, positive class) or one per class (multiclass: fitted on the rows where
            the class is not the top one when ``top_curves`` are present, else on every row).
        facts: How the map was chosen and how well it does: out-of-fold rows, the cross-fitted Brier score of
            each method, ECE before and after (recorded, never needed to apply the map).
        top_curves: Multiclass: one curve per class, fitted on the rows whose top raw probability is that
            class; empty for binary maps and format 1 multiclass maps.
    """

    task: str
    method: str
    classes: tuple[str, ...]
    curves: tuple[Curve, ...]
    facts: dict[str, Any] = field(default_factory=dict)
    top_curves: tuple[Curve, ...] = ()

    def calibrate(self, scores: Any) -> Any:
        """Calibrated probabilities.

        Args:
            scores: Binary: the positive-class scores, shape ``(n,)``. Multiclass: per-class probabilities in
                :attr:`classes` order, shape ``(n, k)``.

        Returns:
            Binary: positive-class probabilities ``(n,)``; multiclass: rows that sum to 1 ``(n, k)``.
        """
        import numpy as np

        s = np.asarray(scores, dtype=float)
        if self.task == "binary":
            return np.clip(self.curves[0].apply(s), 0.0, 1.0)
        if s.ndim != 2 or s.shape[1] != len(self.curves):
            raise ValueError(f"expected {len(self.curves)} class columns, got shape {s.shape}")
        out = np.clip(
            np.column_stack([curve.apply(s[:, k]) for k, curve in enumerate(self.curves)]), 0.0, 1.0
        )
        if not self.top_curves:
            return _share(out, np.ones(len(out)), np.ones_like(out))
        rows, top = np.arange(len(s)), s.argmax(axis=1)  # argmax: the version's prediction (first on ties)
        top_proba = np.zeros(len(s))
        for k, curve in enumerate(self.top_curves):
            mine = top == k
            top_proba[mine] = np.clip(curve.apply(s[mine, k]), 0.0, 1.0)
        rest = np.ones_like(out)
        rest[rows, top] = 0.0
        out = _share(out * rest, 1.0 - top_proba, rest)
        out[rows, top] = top_proba
        return out

    def scores_of(self, outputs: Any) -> Any:
        """The raw scores the map takes, from a version's outputs (:meth:`Decision.predict` columns, as a dict
        or a predictions frame): ``bus.SCORE_COLUMN`` (binary) or the ``bus.proba_column`` of each class."""
        import numpy as np

        if self.task == "binary":
            return np.asarray(outputs[bus.SCORE_COLUMN], dtype=float)
        return np.column_stack([np.asarray(outputs[bus.proba_column(c)], dtype=float) for c in self.classes])

    def to_json(self) -> str:
        """The map as JSON (what training logs as ``bus.CALIBRATION_MAP_ARTIFACT``)."""
        return json.dumps(
            {
                "format": FORMAT_VERSION,
                "task": self.task,
                "method": self.method,
                "classes": list(self.classes),
                "curves": [c.to_dict() for c in self.curves],
                **({"top_curves": [c.to_dict() for c in self.top_curves]} if self.top_curves else {}),
                "facts": self.facts,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> CalibrationMap:
        """The map of its JSON text.

        Raises:
            ValueError: Another format version, an unknown task or method, or curves that do not match the
                classes.
        """
        data = json.loads(text)
        if data.get("format") not in READABLE_FORMATS:
            raise ValueError(
                f"calibration map format {data.get('format')!r}, expected one of {READABLE_FORMATS}"
            )
        task, classes = data["task"], tuple(str(c) for c in data["classes"])
        curves = tuple(Curve.from_dict(c) for c in data["curves"])
        top_curves = tuple(Curve.from_dict(c) for c in data.get("top_curves") or ())
        expected = 1 if task == "binary" else len(classes)
        if task not in ("binary", "multiclass") or len(curves) != expected:
            raise ValueError(
                f"a {task} map over {len(classes)} classes needs {expected} curve(s), got {len(curves)}"
            )
        if top_curves and (task != "multiclass" or len(top_curves) != expected):
            raise ValueError(f"top curves need a multiclass map, one per class: got {len(top_curves)}")
        if data["method"] not in METHODS:
            raise ValueError(f"unknown calibration method {data['method']!r} (known: {list(METHODS)})")
        return cls(task, data["method"], classes, curves, dict(data.get("facts") or {}), top_curves)


def _share(weights: Any, total: Any, eligible: Any) -> Any:
    """Rows of ``weights`` scaled to sum to ``total``; a row of zeros spreads it evenly over its ``eligible``
    entries."""
    import numpy as np

    row_sum = weights.sum(axis=1, keepdims=True)
    spread = eligible / np.maximum(eligible.sum(axis=1, keepdims=True), 1)
    shares = np.where(row_sum > 0, weights / np.where(row_sum > 0, row_sum, 1.0), spread)
    return shares * np.asarray(total, dtype=float)[:, None]


def logit(score: Any) -> Any:
    """``log(s / (1 - s))`` of scores clipped into ``[eps, 1 - eps]``."""
    import numpy as np

    s = np.clip(np.asarray(score, dtype=float), SCORE_EPSILON, 1 - SCORE_EPSILON)
    return np.log(s / (1 - s))


def expected_calibration_error(y: Any, proba: Any, bins: int = ECE_BINS) -> float:
    """Expected calibration error over ``bins`` equal-width confidence bins.

    Binary (``proba`` of shape ``(n,)``, ``y`` 0/1): the positive-class probability against the positive
    rate per bin. Multiclass (``proba`` ``(n, k)``, ``y`` class indexes): top-label, the highest probability
    against how often that class is right. Bins are weighted by their share of rows.
    """
    import numpy as np

    p, truth = np.asarray(proba, dtype=float), np.asarray(y).astype(int)
    if p.ndim == 2:
        confidence, hit = p.max(axis=1), (p.argmax(axis=1) == truth).astype(float)
    else:
        confidence, hit = p, truth.astype(float)
    if not len(confidence):
        return float("nan")
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.bincount(which, weights=confidence - hit, minlength=bins)
    return float(np.abs(gap[counts > 0]).sum() / len(confidence))


def describe_calibration(tags: dict[str, str], metrics: dict[str, float]) -> str | None:
    """One sentence for the model card: the method chosen and ECE before/after, or None without a map."""
    method = tags.get(bus.CALIBRATION_METHOD_TAG)
    if not method:
        return None

    def pair(before: str, after: str) -> str:
        if before not in metrics or after not in metrics:
            return "?"
        return f"{metrics[before]:.4f} → {metrics[after]:.4f}"

    return (
        f"Calibration: **{method}** (lower cross-fitted Brier score on out-of-fold scores of the training "
        "rows); expected calibration error out of fold "
        f"{pair(bus.CALIBRATION_ECE_BEFORE, bus.CALIBRATION_ECE_AFTER)}, "
        f"on the holdout {pair(bus.HOLDOUT_ECE_BEFORE, bus.HOLDOUT_ECE_AFTER)}. Monitoring estimates "
        "performance from the calibrated scores before labels arrive."
    )
