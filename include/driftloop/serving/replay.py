"""The numpy replay of the fitted preprocessing for serving: the pipeline's numbers without its frames.

A served predict call on the logged PyCaret pipeline spends most of its time before the model: PyCaret's
wrapper builds frames around every step, the ColumnTransformer splits and stacks them, and the one-hot encoder
maps every value through a Python dict (5.3 of the 5.9 ms a 1,000-row call takes; 2.5 of 3.0 ms for one row).
The preprocessing is ours (:mod:`driftloop.training.preprocessing`), so its fitted parts are known:

- a mean (or median) imputer on the numeric columns: fill each ``NaN`` with the column's statistic;
- a most-frequent imputer and a one-hot encoder on the categorical columns: fill, look each value up in a
  hash index of the encoder's categories (one vectorised call per column), set a one at that column (none for
  an unseen value, as ``handle_unknown="ignore"``; the dropped column of a two-valued feature is skipped);
- any other branch (the target encoder of a wide feature) runs its own fitted ``transform`` on its columns;
- the scaler: subtract the mean, divide by the scale, the same operations in the same order.

The model then gets the same frame of named columns PyCaret would give it. :func:`compile_model` returns
None for a model of any other shape, and :meth:`CompiledModel.check` compares the replay with the pipeline on
probe rows built from the encoders' own categories (every category, an unseen value, a null) before a worker
serves with it; a model that differs is served by its pipeline
(:class:`driftloop.serving.online.workers.ModelHost`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

UNSEEN_TEXT = "\x00driftloop-unseen"  # a category no encoder can have learnt: the probe's unknown value
MATCH_RTOL = 1e-9  # replay vs pipeline: the same float operations, so only BLAS summation order may differ


def first_difference(expected: dict[str, Any], got: dict[str, Any]) -> str:
    """The first output column of ``got`` that is not ``expected``'s (scores within :data:`MATCH_RTOL`,
    labels exactly), or "" when every one matches."""
    import numpy as np

    for key, want in expected.items():
        want, have = np.asarray(want), np.asarray(got[key])
        same = (
            np.allclose(have, want, rtol=MATCH_RTOL, atol=MATCH_RTOL, equal_nan=True)
            if want.dtype.kind == "f"
            else np.array_equal(have, want)
        )
        if not same:
            return str(key)
    return ""


@dataclass(frozen=True)
class _Fill:
    """Numeric columns at ``start``: missing values replaced by the imputer's statistics."""

    columns: list[str]
    statistics: Any
    start: int

    @property
    def width(self) -> int:
        """Output columns: one per numeric column."""
        return len(self.columns)


@dataclass(frozen=True)
class _OneHot:
    """Categorical columns: most-frequent fill, then one-hot columns from ``start`` (``positions[j][code]``
    is the output column of category ``code`` of feature ``j``, -1 when dropped; code -1 is unseen)."""

    columns: list[str]
    fills: list[Any]
    indexes: list[Any]
    positions: list[Any]
    start: int
    width: int


@dataclass(frozen=True)
class _Fitted:
    """Any other branch: its own fitted ``transform`` on a frame of its columns."""

    columns: list[str]
    transformer: Any
    start: int
    width: int


class CompiledModel:
    """The replayed preprocessing plus the pipeline's own final model (``predict`` / ``predict_proba`` on a
    ``{column: values}`` mapping)."""

    def __init__(self, branches: list[Any], scaler: Any, estimator: Any, names: list[str]) -> None:
        self.branches = branches
        self.scaler = scaler
        self.estimator = estimator
        self.names = names

    def transform(self, columns: dict[str, Any]) -> Any:
        """The model's input frame for ``columns`` (model input: every missing value ``NaN``)."""
        import numpy as np
        import pandas as pd

        n_rows = len(next(iter(columns.values())))
        out = np.zeros((n_rows, len(self.names)), dtype=np.float64)
        for branch in self.branches:
            if isinstance(branch, _Fill):
                block = np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in branch.columns])
                missing = np.isnan(block)
                if missing.any():
                    block = np.where(missing, branch.statistics, block)
                out[:, branch.start : branch.start + branch.width] = block
            elif isinstance(branch, _OneHot):
                rows = np.arange(n_rows)
                for name, fill, index, positions in zip(
                    branch.columns, branch.fills, branch.indexes, branch.positions, strict=True
                ):
                    values = np.asarray(columns[name])
                    if values.dtype.kind in "fcO":
                        missing = values != values  # NaN, as the imputer finds it
                        if missing.any():
                            values = np.where(missing, np.asarray(fill, dtype=object), values)
                    column = positions[index.get_indexer(values)]
                    hit = column >= 0
                    out[rows[hit], branch.start + column[hit]] = 1.0
            else:
                frame = pd.DataFrame({c: columns[c] for c in branch.columns})
                out[:, branch.start : branch.start + branch.width] = branch.transformer.transform(frame)
        if self.scaler.with_mean:
            out -= self.scaler.mean_
        if self.scaler.with_std:
            out /= self.scaler.scale_
        return pd.DataFrame(out, columns=self.names, copy=False)

    def predict(self, columns: dict[str, Any]) -> Any:
        """The final model's ``predict`` on the replayed input."""
        return self.estimator.predict(self.transform(columns))

    def predict_proba(self, columns: dict[str, Any]) -> Any:
        """The final model's ``predict_proba`` on the replayed input."""
        return self.estimator.predict_proba(self.transform(columns))

    def check(self, model: Any, decision: Any, examples: dict[str, list[Any]], dtypes: dict[str, str]) -> str:
        """Compare the replay with the pipeline on probe rows and ``examples``.

        Returns:
            "" when every output matches, else what differs (the worker then serves with the pipeline).
        """
        for label, columns in (("probe rows", self.probe_columns(dtypes)), ("warm-up rows", examples)):
            typed = typed_columns(columns, dtypes)
            expected = decision.predict_rows(model, build_frame(typed, dtypes))
            differing = first_difference(expected, decision.predict_rows(self, typed))
            if differing:
                return f"{differing} differs on the {label}"
        return ""

    def probe_columns(self, dtypes: dict[str, str]) -> dict[str, list[Any]]:
        """Rows that visit every category of every one-hot feature, an unseen value and a null."""
        import numpy as np

        onehots = [b for b in self.branches if isinstance(b, _OneHot)]
        n_rows = max([4] + [len(index) + 2 for b in onehots for index in b.indexes])
        probe: dict[str, list[Any]] = {}
        for branch in self.branches:
            for j, name in enumerate(branch.columns):
                kind = np.dtype(dtypes[name]).kind
                if isinstance(branch, _OneHot):
                    known = list(branch.indexes[j])
                    unseen = UNSEEN_TEXT if kind == "O" else max(known) + 1
                    values = [known[i % len(known)] for i in range(n_rows - 1)] + [unseen]
                elif kind == "O":
                    values = [f"{UNSEEN_TEXT}-{i % 7}" for i in range(n_rows)]
                else:
                    values = [(i % 7) * 1.5 - 2.0 if kind == "f" else i % 7 for i in range(n_rows)]
                if kind in "fO":
                    values[n_rows - 2] = math.nan
                probe[name] = values
        return probe


def typed_columns(columns: dict[str, Any], dtypes: dict[str, str]) -> dict[str, Any]:
    """``columns`` as numpy arrays of ``dtypes`` (no copy for an array already of its dtype)."""
    import numpy as np

    return {name: np.asarray(columns[name], dtype=dtype) for name, dtype in dtypes.items()}


def build_frame(columns: dict[str, Any], dtypes: dict[str, str]) -> Any:
    """The model's input frame: ``columns`` in ``dtypes`` (from numpy arrays: ten times cheaper than one
    Series per column, and consolidated into one block per dtype), index 0..n-1.

    Validation gives text columns with ``NaN`` for a null, so the frame is already
    :func:`~driftloop.core.task_types.model_input`."""
    import pandas as pd

    return pd.DataFrame(typed_columns(columns, dtypes))


def compile_model(model: Any) -> CompiledModel | None:
    """The replay of a logged pipeline ``[preprocess: PyCaret wrapper of our preprocessing, model]``.

    Returns:
        A :class:`CompiledModel`, or None when the pipeline has any other shape (it then serves as it is).
    """
    parts = _logged_parts(model)
    if parts is None:
        return None
    encode, scaler, estimator, names = parts
    branches: list[Any] = []
    start = 0
    for _, transformer, columns in encode.transformers_:
        if isinstance(transformer, str):
            if transformer == "drop":
                continue
            return None  # passthrough columns: not built by our preprocessing
        branch = _compile_branch(transformer, list(columns), start)
        if branch is None:
            return None
        branches.append(branch)
        start += branch.width
    if start != len(names):
        return None
    return CompiledModel(branches, scaler, estimator, names)


def _logged_parts(model: Any) -> tuple[Any, Any, Any, list[str]] | None:
    """The column transformer, scaler, final model and its input names of a pipeline shaped as training
    logs it, else None."""
    steps = getattr(model, "steps", None)
    if not steps or len(steps) != 2 or type(steps[0][1]).__name__ != "TransformerWrapper":
        return None
    wrapper, estimator = steps[0][1], steps[1][1]
    inner_steps = getattr(getattr(wrapper, "transformer", None), "steps", None)
    if not inner_steps or [name for name, _ in inner_steps] != ["encode", "scale"]:
        return None
    encode, scaler = inner_steps[0][1], inner_steps[1][1]
    if type(encode).__name__ != "ColumnTransformer" or type(scaler).__name__ != "StandardScaler":
        return None
    names = [str(n) for n in wrapper.transformer.get_feature_names_out()]
    if list(getattr(estimator, "feature_names_in_", [])) != names or getattr(wrapper, "_exclude", None):
        return None
    return encode, scaler, estimator, names


def _compile_branch(transformer: Any, columns: list[str], start: int) -> Any:
    import numpy as np

    if _is_nan_imputer(transformer, ("mean", "median")):
        statistics = np.asarray(transformer.statistics_, dtype=np.float64)
        if len(statistics) != len(columns) or np.isnan(statistics).any():
            return None  # an all-missing training column is dropped by the imputer
        return _Fill(columns, statistics, start)
    parts = getattr(transformer, "steps", None)
    width = len(transformer.get_feature_names_out())
    if not parts or len(parts) != 2 or not _is_nan_imputer(parts[0][1], ("most_frequent",)):
        return _Fitted(columns, transformer, start, width)
    imputer, encoder = parts[0][1], parts[1][1]
    if (
        type(encoder).__name__ != "OneHotEncoder"
        or encoder.handle_unknown != "ignore"
        or getattr(encoder, "_infrequent_enabled", True)
        or encoder.sparse_output
    ):
        return _Fitted(columns, transformer, start, width)
    return _compile_onehot(imputer, encoder, columns, start, width)


def _compile_onehot(imputer: Any, encoder: Any, columns: list[str], start: int, width: int) -> _OneHot | None:
    import numpy as np
    import pandas as pd

    fills = list(imputer.statistics_)
    if any(fill != fill for fill in fills):
        return None
    indexes, positions, offset = [], [], 0
    drops = encoder.drop_idx_ if encoder.drop_idx_ is not None else [None] * len(columns)
    for categories, drop in zip(encoder.categories_, drops, strict=True):
        index = pd.Index(categories)
        if not index.is_unique:
            return None
        kept = np.full(len(categories) + 1, -1, dtype=np.int64)  # the extra last slot: code -1, unseen
        for code in range(len(categories)):
            if drop is None or code != drop:
                kept[code] = offset
                offset += 1
        indexes.append(index)
        positions.append(kept)
    return _OneHot(columns, fills, indexes, positions, start, width) if offset == width else None


def _is_nan_imputer(transformer: Any, strategies: tuple[str, ...]) -> bool:
    missing = getattr(transformer, "missing_values", None)
    return (
        type(transformer).__name__ == "SimpleImputer"
        and transformer.strategy in strategies
        and isinstance(missing, float)
        and math.isnan(missing)
        and not transformer.add_indicator
    )
