"""Model explanations: mean |SHAP| per feature on a small sample, as a bar plot PNG and a CSV.

Explanations are computed on the features *after* the model's preprocessing (imputation, encoding), because that
is what the estimator sees; each transformed column is also mapped back to the raw feature it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from driftloop import bus

MAX_EXPLAIN_ROWS = 200
MAX_BACKGROUND_ROWS = 50
PERMUTATION_ROWS = 100
TOP_FEATURES_PLOTTED = 20

# Estimator class names shap.TreeExplainer handles exactly and fast.
TREE_ESTIMATORS = {
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "DecisionTreeClassifier",
    "GradientBoostingClassifier",
    "LGBMClassifier",
    "XGBClassifier",
    "CatBoostClassifier",
}
LINEAR_ESTIMATORS = {"LogisticRegression", "RidgeClassifier", "SGDClassifier", "LinearDiscriminantAnalysis"}


def split_pipeline(model: Any) -> tuple[Any | None, Any]:
    """Split a fitted pipeline into (preprocessing, final estimator); a bare estimator has no preprocessing.

    Args:
        model: A fitted sklearn/PyCaret pipeline or a bare estimator.

    Returns:
        ``(preprocessor or None, estimator)``.
    """
    steps = getattr(model, "steps", None)
    if not steps:
        return None, model
    estimator = steps[-1][1]
    preprocessor = model[:-1] if len(steps) > 1 else None
    return preprocessor, estimator


def choose_explainer_kind(estimator: Any) -> str:
    """``tree``, ``linear`` or ``permutation``, from the estimator's class name."""
    name = type(estimator).__name__
    if name in TREE_ESTIMATORS:
        return "tree"
    if name in LINEAR_ESTIMATORS and hasattr(estimator, "coef_"):
        return "linear"
    return "permutation"


def source_feature(column: str, raw_features: list[str]) -> str:
    """The raw feature a transformed column came from (longest matching name prefix), else the column itself."""
    matches = [f for f in raw_features if column == f or column.startswith(f"{f}_")]
    return max(matches, key=len) if matches else column


def transform_features(preprocessor: Any | None, raw_df: Any) -> Any:
    """``raw_df`` as the estimator sees it, as a float DataFrame with named columns."""
    import pandas as pd

    if preprocessor is None:
        return raw_df.astype(float)
    transformed = preprocessor.transform(raw_df)
    if isinstance(transformed, pd.DataFrame):
        columns = [str(c) for c in transformed.columns]
    else:  # plain sklearn transformers return arrays
        try:
            columns = [str(c) for c in preprocessor.get_feature_names_out()]
        except (AttributeError, ValueError):
            columns = [f"feature_{i}" for i in range(transformed.shape[1])]
    if hasattr(transformed, "toarray"):
        transformed = transformed.toarray()
    return pd.DataFrame(transformed, columns=columns).reset_index(drop=True).astype(float)


def _positive_class_values(values: Any) -> Any:
    import numpy as np

    if isinstance(values, list):  # older shap: one array per class
        values = values[-1]
    values = np.asarray(values)
    if values.ndim == 3:  # (rows, features, classes)
        values = values[:, :, -1]
    return values


def compute_shap_values(
    estimator: Any, features_df: Any, background_df: Any, seed: int = 42
) -> tuple[Any, str]:
    """SHAP values of the positive class for ``features_df`` (rows x columns) and the explainer kind used."""
    import numpy as np
    import shap

    kind = choose_explainer_kind(estimator)
    if kind == "tree":
        explainer = shap.TreeExplainer(estimator)
        values = explainer.shap_values(features_df, check_additivity=False)
    elif kind == "linear":
        explainer = shap.LinearExplainer(estimator, background_df)
        values = explainer.shap_values(features_df)
    else:
        if hasattr(estimator, "predict_proba"):

            def predict_fn(x: Any) -> Any:
                return estimator.predict_proba(x)[:, -1]
        else:
            predict_fn = estimator.predict
        explainer = shap.PermutationExplainer(predict_fn, background_df, seed=seed)
        # One forward+backward permutation per row (the minimum) keeps this at seconds for slow predictors.
        values = explainer(features_df, max_evals=2 * features_df.shape[1] + 1, silent=True).values
    return np.asarray(_positive_class_values(values), dtype=float), kind


def explain_model(model: Any, sample_df: Any, out_dir: str | Path, seed: int = 42) -> dict[str, Any]:
    """Compute mean |SHAP| per feature on at most 200 rows and write a bar plot PNG and a CSV.

    Args:
        model: A fitted pipeline (PyCaret or sklearn) or bare estimator with ``predict_proba``.
        sample_df: Raw input rows (model features only, no id or target).
        out_dir: Folder to write ``shap_summary.png`` and ``shap_importance.csv`` into (created if missing).
        seed: Sampling seed.

    Returns:
        ``{"explainer", "rows", "plot_path", "csv_path", "top_features"}``; ``top_features`` lists up to five
        raw features with the highest summed mean |SHAP|.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_df = sample_df.reset_index(drop=True)
    if len(raw_df) > MAX_EXPLAIN_ROWS:
        raw_df = raw_df.sample(MAX_EXPLAIN_ROWS, random_state=seed).reset_index(drop=True)
    preprocessor, estimator = split_pipeline(model)
    if choose_explainer_kind(estimator) == "permutation":  # model-agnostic: cost grows with rows x background
        raw_df = raw_df.iloc[:PERMUTATION_ROWS]
    features_df = transform_features(preprocessor, raw_df)
    background_df = features_df.iloc[:MAX_BACKGROUND_ROWS]

    values, kind = compute_shap_values(estimator, features_df, background_df, seed=seed)
    raw_features = [str(c) for c in sample_df.columns]
    importance = pd.DataFrame(
        {
            "feature": features_df.columns,
            "source_feature": [source_feature(c, raw_features) for c in features_df.columns],
            "mean_abs_shap": abs(values).mean(axis=0),
        }
    ).sort_values("mean_abs_shap", ascending=False, ignore_index=True)
    csv_path = out_dir / bus.SHAP_CSV_FILENAME
    importance.to_csv(csv_path, index=False)

    top = importance.head(TOP_FEATURES_PLOTTED).iloc[::-1]
    plot_path = out_dir / bus.SHAP_PLOT_FILENAME
    # PyCaret's plotting style asks for fonts a slim image lacks; DejaVu ships with matplotlib.
    with plt.rc_context({"font.family": "DejaVu Sans"}):
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(top) + 1.4))
        ax.barh(top["feature"], top["mean_abs_shap"], color="#1f77b4")
        ax.set_xlabel("mean |SHAP value| for the positive class (model output units)")
        ax.set_title(f"{type(estimator).__name__}, {len(features_df)} rows", fontsize=10)
        fig.tight_layout()
        fig.savefig(plot_path, dpi=100)
        plt.close(fig)

    by_source = importance.groupby("source_feature")["mean_abs_shap"].sum().sort_values(ascending=False)
    return {
        "explainer": kind,
        "rows": len(features_df),
        "plot_path": str(plot_path),
        "csv_path": str(csv_path),
        "top_features": list(by_source.index[:5]),
    }
