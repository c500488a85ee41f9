"""A regression version's loss model: its expected absolute and squared error on a row, as JSON any stage can
apply with numpy.

Direct loss estimation (DLE, as NannyML names it) estimates a regression version's RMSE and MAE on a batch
before its labels arrive: a model predicts each row's loss from the row's features *and* the version's
prediction, and the batch's metric follows from the mean predicted loss. Training fits it
(:mod:`driftloop.training.loss_estimator`) on out-of-fold errors of its training rows and logs it as
``bus.LOSS_MODEL_ARTIFACT``; monitoring applies it
(:func:`driftloop.monitoring.estimation.estimate_regression`).

The two loss models are gradient-boosted trees (scikit-learn's ``HistGradientBoostingRegressor``, Poisson
loss: a log link keeps the expected loss positive), stored as their nodes and applied by walking them with
numpy, so loading runs no code (unlike a pickled regressor) and monitoring needs no scikit-learn. Inputs:
the numeric features as they are, each categorical feature as the rank of its category by mean absolute
error on the fitting rows (an ordering a tree can split; unseen and missing values go where the trees send
missing values), and the prediction.

``noise_*`` are the fitting rows' realised loss over its cross-fitted prediction (mean 1): the spread of a
row's loss around its expected value, drawn to put a band around a batch's estimate. That band knows the rows'
noise but not the loss model's own error, so ``widening_*`` (at least 1, calibrated at training on the
cross-fitted rows) stretches it, in log scale around the estimate, until it holds 90 % of batches.

A regression version trained before the loss model carries a loss curve by predicted value
(``bus.LOSS_CURVE_ARTIFACT``) instead, which is no longer read: its batches get no estimate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

LOSS_MODEL_FORMAT = 1
NODE_FIELDS = ("feature", "threshold", "missing_left", "left", "right", "value")


@dataclass(frozen=True)
class Trees:
    """Boosted regression trees on a log link: ``exp(baseline + sum of the leaves a row reaches)``.

    Attributes:
        baseline: The raw prediction before any tree.
        nodes: One tuple per tree of its nodes, each ``(feature, threshold, missing_left, left, right,
            value)``: a split sends a row left when its value is at most ``threshold`` (a missing value
            left when ``missing_left``); a leaf (``feature`` -1) adds ``value``. Node 0 is the root.
    """

    baseline: float
    nodes: tuple[tuple[tuple[float, ...], ...], ...]

    def raw(self, inputs: Any) -> Any:
        """The raw (log) prediction of each row of ``inputs`` (shape ``(n, features)``, NaN: missing)."""
        import numpy as np

        x = np.asarray(inputs, dtype=float)
        total = np.full(len(x), self.baseline)
        rows = np.arange(len(x))
        for tree in self.nodes:
            feature, threshold, missing_left, left, right, value = (
                np.asarray(c) for c in zip(*tree, strict=True)
            )
            feature, left, right = feature.astype(int), left.astype(int), right.astype(int)
            node = np.zeros(len(x), dtype=int)
            while True:
                split = feature[node] >= 0
                if not split.any():
                    break
                at, f = node[split], feature[node[split]]
                v = x[rows[split], f]
                go_left = np.where(np.isnan(v), missing_left[at] > 0, v <= threshold[at])
                node[split] = np.where(go_left, left[at], right[at])
            total += value[node]
        return total

    def predict(self, inputs: Any) -> Any:
        """The expected loss of each row."""
        import numpy as np

        return np.exp(self.raw(inputs))

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "trees": [[list(n) for n in tree] for tree in self.nodes]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trees:
        trees = tuple(tuple(tuple(float(v) for v in n) for n in tree) for tree in data["trees"])
        if any(not tree or any(len(n) != len(NODE_FIELDS) for n in tree) for tree in trees):
            raise ValueError(f"loss model trees need nodes of {len(NODE_FIELDS)} fields {NODE_FIELDS}")
        return cls(float(data["baseline"]), trees)


@dataclass(frozen=True)
class LossModel:
    """Expected absolute and squared error of a regression version on a row, and their spread.

    Attributes:
        numeric: Numeric features, in input order.
        categorical: Categorical feature -> category -> its input value (the rank of its mean error).
        absolute: Trees of the expected absolute error.
        squared: Trees of the expected squared error.
        noise_absolute: Realised absolute error over its cross-fitted expectation, per fitting row (mean 1).
        noise_squared: The same for the squared error.
        widening_absolute: Factor of the MAE band's log half-widths (1: the noise's band as it is).
        widening_squared: The same for RMSE.
        facts: Rows, folds and settings it was fitted with.
    """

    numeric: tuple[str, ...]
    categorical: dict[str, dict[str, float]]
    absolute: Trees
    squared: Trees
    noise_absolute: tuple[float, ...]
    noise_squared: tuple[float, ...]
    widening_absolute: float = 1.0
    widening_squared: float = 1.0
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> tuple[str, ...]:
        """Every feature the model reads, numeric first."""
        return (*self.numeric, *self.categorical)

    def inputs(self, frame: Any, prediction: Any) -> Any:
        """The trees' input matrix: the features of ``frame`` (a frame or dict of columns) encoded, then the
        prediction."""
        import numpy as np
        import pandas as pd

        columns = [pd.to_numeric(pd.Series(frame[c]), errors="coerce").to_numpy(float) for c in self.numeric]
        for name, codes in self.categorical.items():
            values = pd.Series(frame[name], dtype=object)
            encoded = values.astype(str).map(codes).astype(float)  # unseen: NaN
            columns.append(encoded.where(values.notna()).to_numpy(dtype=float))
        columns.append(np.asarray(prediction, dtype=float))
        return np.column_stack(columns)

    def expected_losses(self, frame: Any, prediction: Any) -> tuple[Any, Any]:
        """Expected absolute and squared error of each row."""
        x = self.inputs(frame, prediction)
        return self.absolute.predict(x), self.squared.predict(x)

    def to_json(self) -> str:
        """The model as JSON (what training logs as ``bus.LOSS_MODEL_ARTIFACT``)."""
        return json.dumps(
            {
                "format": LOSS_MODEL_FORMAT,
                "numeric": list(self.numeric),
                "categorical": self.categorical,
                "absolute": self.absolute.to_dict(),
                "squared": self.squared.to_dict(),
                "noise_absolute": list(self.noise_absolute),
                "noise_squared": list(self.noise_squared),
                "widening_absolute": self.widening_absolute,
                "widening_squared": self.widening_squared,
                "facts": self.facts,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> LossModel:
        """The model of its JSON text.

        Raises:
            ValueError: Another format, or no noise rows.
        """
        data = json.loads(text)
        if data.get("format") != LOSS_MODEL_FORMAT:
            raise ValueError(f"loss model format {data.get('format')!r}, expected {LOSS_MODEL_FORMAT}")
        noise = {k: tuple(float(v) for v in data[k]) for k in ("noise_absolute", "noise_squared")}
        if not all(noise.values()):
            raise ValueError("a loss model needs the noise of its fitting rows")
        return cls(
            numeric=tuple(str(c) for c in data["numeric"]),
            categorical={
                str(c): {str(k): float(v) for k, v in m.items()} for c, m in data["categorical"].items()
            },
            absolute=Trees.from_dict(data["absolute"]),
            squared=Trees.from_dict(data["squared"]),
            noise_absolute=noise["noise_absolute"],
            noise_squared=noise["noise_squared"],
            widening_absolute=float(data["widening_absolute"]),
            widening_squared=float(data["widening_squared"]),
            facts=dict(data.get("facts") or {}),
        )
