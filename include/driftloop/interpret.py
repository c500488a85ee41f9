"""Model-agnostic views of a version: permutation feature importance and a global surrogate tree.

Both work on the whole pipeline with the dataset's original feature names, so they read the same whatever the
estimator and encoding: permutation importance is the drop in AUC when one original column is shuffled; the
surrogate is a shallow decision tree fitted to the model's own decisions, with its fidelity (how often it agrees
with the model on held-out rows) and its rules as text.
"""

from __future__ import annotations

from typing import Any

PFI_ROWS = 2000
PFI_REPEATS = 3
SURROGATE_DEPTH = 3


def permutation_importance(model: Any, holdout_df: Any, features: list[str], y_true: Any, seed: int = 42) -> Any:
    """Mean and std of the AUC drop when each original feature is shuffled (on at most 2,000 holdout rows).

    Args:
        model: The fitted pipeline.
        holdout_df: Labelled rows with the model's input columns.
        features: Original feature names.
        y_true: 0/1 labels aligned with ``holdout_df``.
        seed: Shuffle seed.

    Returns:
        A DataFrame ``feature, importance_mean, importance_std`` sorted by importance.
    """
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    rows = holdout_df[features].reset_index(drop=True)
    y = np.asarray(y_true)
    if len(rows) > PFI_ROWS:
        keep = rng.choice(len(rows), PFI_ROWS, replace=False)
        rows, y = rows.iloc[keep].reset_index(drop=True), y[keep]
    baseline = roc_auc_score(y, model.predict_proba(rows)[:, 1])
    shuffled = []
    for feature in features:
        for _ in range(PFI_REPEATS):
            copy = rows.copy()
            copy[feature] = rng.permutation(copy[feature].to_numpy())
            shuffled.append(copy)
    # One predict call for every shuffled copy: a PyCaret pipeline costs ~60 ms per call whatever the rows.
    scores = model.predict_proba(pd.concat(shuffled, ignore_index=True))[:, 1].reshape(len(shuffled), len(rows))
    drops = np.array([baseline - roc_auc_score(y, s) for s in scores]).reshape(len(features), PFI_REPEATS)
    table = pd.DataFrame({"feature": features, "importance_mean": drops.mean(axis=1),
                          "importance_std": drops.std(axis=1)})
    return table.sort_values("importance_mean", ascending=False, ignore_index=True)


def _encode_for_tree(frame: Any, categorical: list[str]) -> Any:
    import pandas as pd

    encoded = pd.get_dummies(frame, columns=[c for c in categorical if c in frame.columns], prefix_sep="=",
                             dtype=float)
    return encoded.fillna(encoded.median(numeric_only=True)).fillna(0.0)


def fit_surrogate(model: Any, train_df: Any, test_df: Any, numeric: list[str], categorical: list[str],
                  threshold: float = 0.5, seed: int = 42) -> dict[str, Any]:
    """A depth-3 decision tree that imitates the model's decisions, with its fidelity and rules.

    Args:
        model: The fitted pipeline.
        train_df: Rows the surrogate learns the model's decisions on.
        test_df: Held-out rows its fidelity is measured on.
        numeric: Numeric original features.
        categorical: Categorical original features (one-hot encoded as ``feature=value``).
        threshold: Decision threshold of the model.
        seed: Tree seed.

    Returns:
        ``{"fidelity", "depth", "rules", "rows_fitted", "rows_tested"}``; ``fidelity`` is the share of test rows
        on which the surrogate and the model decide the same.
    """
    import numpy as np
    from sklearn.tree import DecisionTreeClassifier, export_text

    features = [*numeric, *categorical]
    train_x = _encode_for_tree(train_df[features].reset_index(drop=True), categorical)
    test_x = _encode_for_tree(test_df[features].reset_index(drop=True), categorical).reindex(
        columns=train_x.columns, fill_value=0.0)
    train_y = model.predict_proba(train_df[features].reset_index(drop=True))[:, 1] >= threshold
    test_y = model.predict_proba(test_df[features].reset_index(drop=True))[:, 1] >= threshold
    tree = DecisionTreeClassifier(max_depth=SURROGATE_DEPTH, random_state=seed).fit(train_x, train_y)
    fidelity = float(np.mean(tree.predict(test_x) == test_y))
    rules = export_text(tree, feature_names=list(train_x.columns), class_names=["no", "yes"])
    return {"fidelity": fidelity, "depth": SURROGATE_DEPTH, "rules": rules, "rows_fitted": len(train_x),
            "rows_tested": len(test_x)}
