"""Model-agnostic views of a version: permutation feature importance and a global surrogate tree.

Both work on the whole pipeline with the dataset's original feature names, so they read the same whatever the
estimator and encoding: permutation importance is the drop in the task's quality (AUC, accuracy, -RMSE) when
one original column is shuffled; the surrogate is a shallow decision tree fitted to the model's own
predictions, with its fidelity (how often it agrees with the model on held-out rows, or its R2 for regression)
and its rules as text.
"""

from __future__ import annotations

from typing import Any

PFI_ROWS = 2000
PFI_REPEATS = 3
SURROGATE_DEPTH = 3


def permutation_importance(
    model: Any,
    holdout_df: Any,
    features: list[str],
    y_true: Any,
    decision: Any,
    seed: int = 42,
    outputs: dict[str, Any] | None = None,
) -> Any:
    """Mean and std of the quality drop when each original feature is shuffled (on at most 2,000 holdout
    rows).

    Quality is the task's (:func:`driftloop.core.task_types.quality`): AUC (binary), accuracy (multiclass),
    -RMSE (regression), so the drop is always "how much worse without this feature".

    Args:
        model: The fitted pipeline.
        holdout_df: Labelled rows with the model's input columns.
        features: Original feature names.
        y_true: Encoded truth aligned with ``holdout_df`` (``decision.encode``).
        decision: The version's :class:`driftloop.core.task_types.Decision`.
        seed: Shuffle seed.
        outputs: ``decision.predict(model, holdout_df[features])`` when the caller has it already: the
            unshuffled baseline is then read from it instead of predicted again.

    Returns:
        A DataFrame ``feature, importance_mean, importance_std`` sorted by importance.
    """
    import numpy as np
    import pandas as pd

    from driftloop.core.task_types import quality

    rng = np.random.default_rng(seed)
    rows = holdout_df[features].reset_index(drop=True)
    y = np.asarray(y_true)
    keep = None
    if len(rows) > PFI_ROWS:
        keep = rng.choice(len(rows), PFI_ROWS, replace=False)
        rows, y = rows.iloc[keep].reset_index(drop=True), y[keep]
    if outputs is None:
        unshuffled = decision.predict(model, rows)
    else:
        unshuffled = {k: np.asarray(v) if keep is None else np.asarray(v)[keep] for k, v in outputs.items()}
    baseline = quality(decision, y, unshuffled)
    shuffled = []
    for feature in features:
        for _ in range(PFI_REPEATS):
            copy = rows.copy()
            copy[feature] = rng.permutation(copy[feature].to_numpy())
            shuffled.append(copy)
    # One predict call for every shuffled copy: most of a PyCaret pipeline's cost is fixed per call (frames
    # around every step), 3 ms for one telco row against 6 ms for 1,000.
    shuffled_outputs = decision.predict(model, pd.concat(shuffled, ignore_index=True))
    n = len(rows)
    drops = np.array(
        [
            baseline - quality(decision, y, {k: v[i * n : (i + 1) * n] for k, v in shuffled_outputs.items()})
            for i in range(len(shuffled))
        ]
    ).reshape(len(features), PFI_REPEATS)
    table = pd.DataFrame(
        {"feature": features, "importance_mean": drops.mean(axis=1), "importance_std": drops.std(axis=1)}
    )
    return table.sort_values("importance_mean", ascending=False, ignore_index=True)


def _encode_for_tree(frame: Any, categorical: list[str]) -> Any:
    import pandas as pd

    encoded = pd.get_dummies(
        frame, columns=[c for c in categorical if c in frame.columns], prefix_sep="=", dtype=float
    )
    return encoded.fillna(encoded.median(numeric_only=True)).fillna(0.0)


def fit_surrogate(
    model: Any,
    train_df: Any,
    test_df: Any,
    numeric: list[str],
    categorical: list[str],
    decision: Any,
    seed: int = 42,
    test_outputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A depth-3 decision tree that imitates the model's predictions, with its fidelity and rules.

    Args:
        model: The fitted pipeline.
        train_df: Rows the surrogate learns the model's predictions on.
        test_df: Held-out rows its fidelity is measured on.
        numeric: Numeric original features.
        categorical: Categorical original features (one-hot encoded as ``feature=value``).
        decision: The version's :class:`driftloop.core.task_types.Decision` (classification: the model's
            labels are imitated; regression: its values).
        seed: Tree seed.
        test_outputs: ``decision.predict(model, test_df[...])`` when the caller has it already (not predicted
            again).

    Returns:
        ``{"fidelity", "fidelity_measure", "depth", "rules", "rows_fitted", "rows_tested"}``: ``fidelity`` is
        the share of test rows on which surrogate and model agree (classification) or the R2 of the surrogate
        against the model's values (regression).
    """
    import numpy as np
    from sklearn.metrics import r2_score
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor, export_text

    from driftloop.core import bus

    features = [*numeric, *categorical]
    train_x = _encode_for_tree(train_df[features].reset_index(drop=True), categorical)
    test_x = _encode_for_tree(test_df[features].reset_index(drop=True), categorical).reindex(
        columns=train_x.columns, fill_value=0.0
    )
    train_y = decision.predict(model, train_df[features])[bus.PREDICTION_COLUMN]
    test_y = (test_outputs or decision.predict(model, test_df[features]))[bus.PREDICTION_COLUMN]
    if decision.task == "regression":
        tree = DecisionTreeRegressor(max_depth=SURROGATE_DEPTH, random_state=seed).fit(train_x, train_y)
        fidelity, measure = float(r2_score(test_y, tree.predict(test_x))), "r2"
        rules = export_text(tree, feature_names=list(train_x.columns))
    else:
        tree = DecisionTreeClassifier(max_depth=SURROGATE_DEPTH, random_state=seed).fit(
            train_x, train_y.astype(str)
        )
        fidelity, measure = float(np.mean(tree.predict(test_x) == test_y.astype(str))), "agreement"
        rules = export_text(
            tree, feature_names=list(train_x.columns), class_names=[str(c) for c in tree.classes_]
        )
    return {
        "fidelity": fidelity,
        "fidelity_measure": measure,
        "depth": SURROGATE_DEPTH,
        "rules": rules,
        "rows_fitted": len(train_x),
        "rows_tested": len(test_x),
    }
