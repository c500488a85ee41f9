"""Per-prediction SHAP reasons of rows the caller has already transformed, for batch scoring.

:func:`driftloop.governance.explain.explain_rows` takes raw rows and runs the pipeline's preprocessing itself,
so a scorer that predicts and explains a chunk transforms it twice. Here the caller transforms once (batch
scoring: with the verified numpy replay, :mod:`driftloop.serving.replay`) and both the prediction and the
reasons read that matrix. The numbers are the same as :func:`explain_rows`' for the same families:

* **linear**: the closed form ``shap.LinearExplainer`` computes with an independent masker,
  ``coef x (x - mean of the background)``, done directly (the background is transformed once per batch);
* **tree**: the same TreeSHAP / path-attribution choice (:func:`driftloop.governance.explain.tree_values`),
  its probe timed on the first chunk only;
* other families have no row explainer here (:func:`prepare_row_explainer` returns None): they are explained
  by ablation on the whole pipeline, as before.

Transformed columns are summed back to their original feature with one slice sum per feature instead of a
transposed ``groupby``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from driftloop.governance.explain import (
    BACKGROUND_ROWS,
    Attributions,
    choose_explainer_kind,
    output_kind,
    source_feature,
    split_pipeline,
    tree_values,
)


@dataclass
class RowExplainer:
    """What explaining a transformed chunk needs, prepared once per batch.

    Attributes:
        estimator: The pipeline's final model.
        kind: ``linear`` or ``tree``.
        columns: The transformed columns' names, in the estimator's order.
        raw_features: The original features, in the order of the attributions.
        groups: Per original feature, the positions of the transformed columns it was summed from.
        background_mean: Linear: the transformed background's column means (``None`` for trees).
        timing: Trees: the exact explainer's probe seconds per row, once timed.
    """

    estimator: Any
    kind: str
    columns: list[str]
    raw_features: list[str]
    groups: list[Any]
    background_mean: Any = None
    timing: dict[str, float] = field(default_factory=dict)


def prepare_row_explainer(
    model: Any, transform: Any, reference_df: Any, raw_features: list[str], seed: int = 42
) -> RowExplainer | None:
    """The row explainer of ``model`` whose rows are transformed by ``transform``, or None for a family
    without one (``other``: explain the raw rows with :func:`explain_rows`).

    Args:
        model: The fitted pipeline (its final estimator is explained).
        transform: Raw rows (:func:`~driftloop.core.task_types.model_input`) to the estimator's input frame.
        reference_df: Reference rows; the linear background is the same sample :func:`explain_rows` draws.
        raw_features: The original features.
        seed: Sampling seed of the background.
    """
    import numpy as np

    from driftloop.core.task_types import model_input

    _, estimator = split_pipeline(model)
    kind = choose_explainer_kind(estimator)
    if kind == "other":
        return None
    reference_df = model_input(reference_df)
    background = transform(
        model_input(reference_df.sample(min(BACKGROUND_ROWS, len(reference_df)), random_state=seed))
    )
    columns = [str(c) for c in background.columns]
    sources = [source_feature(c, raw_features) for c in columns]
    groups = [np.flatnonzero([s == feature for s in sources]) for feature in raw_features]
    mean = np.asarray(background, dtype=float).mean(axis=0) if kind == "linear" else None
    return RowExplainer(estimator, kind, columns, raw_features, groups, mean)


def explain_transformed(explainer: RowExplainer, features_df: Any, budget_s: float) -> Attributions:
    """Contributions of every original feature for every row of ``features_df`` (already transformed).

    Args:
        explainer: From :func:`prepare_row_explainer`.
        features_df: The estimator's input frame (the transformed columns, in order).
        budget_s: Time the exact tree explainer may take before the path approximation is used.
    """
    if explainer.kind == "linear":
        values, method = _linear_values(explainer, features_df), "linear"
    else:
        values, method = tree_values(explainer.estimator, features_df, budget_s, explainer.timing)
    return Attributions(sum_to_original(values, explainer), method, output_kind(explainer.estimator, method))


def _linear_values(explainer: RowExplainer, features_df: Any) -> Any:
    """``coef x (x - mean)`` per output, as ``shap.LinearExplainer`` computes it, for the output
    :func:`explain_rows` reports (positive class, predicted class or value)."""
    import numpy as np

    estimator = explainer.estimator
    coef = np.asarray(estimator.coef_)
    if coef.ndim > 1 and coef.shape[0] == 1:
        coef = coef[0]
    centred = np.asarray(features_df, dtype=float) - explainer.background_mean
    if coef.ndim == 1:
        return centred * coef
    if coef.shape[0] <= 2:
        return centred * coef[-1]
    chosen = np.asarray(estimator.predict_proba(features_df)).argmax(axis=1)
    return centred * coef[chosen]


def sum_to_original(values: Any, explainer: RowExplainer) -> Any:
    """Rows x original features: each feature's transformed-column contributions summed (0 for a feature
    with no column)."""
    import numpy as np
    import pandas as pd

    values = np.asarray(values, dtype=float)
    summed = np.zeros((len(values), len(explainer.raw_features)))
    for j, positions in enumerate(explainer.groups):
        if positions.size == 1:
            summed[:, j] = values[:, positions[0]]
        elif positions.size:
            summed[:, j] = values[:, positions].sum(axis=1)
    return pd.DataFrame(summed, columns=explainer.raw_features, copy=False)
