"""SHAP explanations per version (global) and per prediction (top-k reasons), in the original feature names.

The explainer depends on the estimator family, and always runs on the features the estimator sees (after the
pipeline's imputation and encoding), because SHAP explainers do not take a pipeline:

* **linear** (logistic regression and friends): ``shap.LinearExplainer``, closed form;
* **tree** (random forests, gradient boosting, LightGBM, ...): TreeSHAP with ``tree_path_dependent``
  perturbation (no background data; log-odds for boosting, probability for forests). Exact TreeSHAP costs
  O(leaves x depth^2) per row and tree: it is timed on a probe and, when the projected time is over the
  budget, the path attributions of the same trees (Saabas, :mod:`driftloop.governance.tree_paths`) are used
  instead and the method says so;
* **other** families: a sampled, time-bounded ``shap.PermutationExplainer`` for the global summary, and for
  per-prediction reasons single-feature ablation on the whole pipeline (the score change when one original
  feature is set to its reference value; exact for additive models), batched so 10k rows cost ~M+1 predict
  calls.

Transformed columns are summed back to the original feature they came from (PyCaret names one-hot columns
``{column}_{value}``), so every table, plot and reason uses the names of the dataset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop.core import bus
from driftloop.core.task_types import model_input

GLOBAL_ROWS = 500
PERMUTATION_ROWS = 100
BACKGROUND_ROWS = 100
EXACT_PROBE_ROWS = 4  # exact TreeSHAP of a deep forest costs ~0.1 s per row: keep the probe small
TOP_FEATURES_PLOTTED = 20

TREE_ESTIMATORS = {
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "DecisionTreeClassifier",
    "GradientBoostingClassifier",
    "LGBMClassifier",
    "XGBClassifier",
    "CatBoostClassifier",
    "RandomForestRegressor",
    "ExtraTreesRegressor",
    "DecisionTreeRegressor",
    "GradientBoostingRegressor",
    "LGBMRegressor",
    "XGBRegressor",
    "CatBoostRegressor",
}
LINEAR_ESTIMATORS = {
    "LogisticRegression",
    "RidgeClassifier",
    "SGDClassifier",
    "LinearDiscriminantAnalysis",
    "LinearRegression",
    "Ridge",
    "Lasso",
    "ElasticNet",
    "BayesianRidge",
    "HuberRegressor",
}


@dataclass(frozen=True)
class Attributions:
    """Per-row contributions of each original feature to the model output.

    Attributes:
        values_df: rows x original features, in model output units (see ``output``).
        method: ``linear``, ``tree_path_dependent``, ``tree_saabas``, ``permutation`` or ``ablation``.
        output: What the contributions add up to: ``log_odds``, ``probability`` or ``score``.
    """

    values_df: Any
    method: str
    output: str


def split_pipeline(model: Any) -> tuple[Any | None, Any]:
    """``(preprocessing or None, final estimator)`` of a fitted pipeline (nested ones included) or bare
    estimator."""
    steps = getattr(model, "steps", None)
    if not steps:
        return None, model
    outer = model[:-1] if len(steps) > 1 else None
    inner, estimator = split_pipeline(steps[-1][1])
    if inner is None:
        return outer, estimator
    if outer is None:
        return inner, estimator
    from sklearn.pipeline import Pipeline

    return Pipeline([("outer", outer), ("inner", inner)]), estimator


def choose_explainer_kind(estimator: Any) -> str:
    """``tree``, ``linear`` or ``other``, from the estimator's class name."""
    name = type(estimator).__name__
    if name in TREE_ESTIMATORS:
        return "tree"
    if name in LINEAR_ESTIMATORS and hasattr(estimator, "coef_"):
        return "linear"
    return "other"


def source_feature(column: str, raw_features: list[str]) -> str:
    """The original feature a transformed column came from (longest matching name prefix), else the column."""
    matches = [f for f in raw_features if column == f or column.startswith(f"{f}_")]
    return max(matches, key=len) if matches else column


def transform_features(preprocessor: Any | None, raw_df: Any) -> Any:
    """``raw_df`` as the estimator sees it: a float DataFrame with named columns."""
    import pandas as pd

    raw_df = raw_df.reset_index(drop=True)
    if preprocessor is None:
        return raw_df.astype(float)
    transformed = preprocessor.transform(raw_df)
    if isinstance(transformed, pd.DataFrame):
        columns = [str(c) for c in transformed.columns]
    else:
        try:
            columns = [str(c) for c in preprocessor.get_feature_names_out()]
        except (AttributeError, ValueError):
            columns = [f"feature_{i}" for i in range(transformed.shape[1])]
    if hasattr(transformed, "toarray"):
        transformed = transformed.toarray()
    return pd.DataFrame(transformed, columns=columns).reset_index(drop=True).astype(float)


def to_original_features(values: Any, columns: list[str], raw_features: list[str]) -> Any:
    """Sum transformed-column contributions back per original feature (rows x raw_features)."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(np.asarray(values, dtype=float), columns=columns)
    grouped = frame.T.groupby([source_feature(c, raw_features) for c in columns]).sum().T
    return grouped.reindex(columns=raw_features, fill_value=0.0)


def _select_class(values: Any, estimator: Any = None, features_df: Any = None) -> Any:
    """Rows x features contributions to one output: the positive class (binary), the row's predicted class
    (multiclass, when the estimator and its input are given; else the last class), or the value
    (regression)."""
    import numpy as np

    if isinstance(values, list):  # one array per class
        values = np.stack(values, axis=-1)
    values = np.asarray(values)
    if values.ndim < 3:
        return values
    if values.shape[2] <= 2 or estimator is None or features_df is None:
        return values[:, :, -1]
    chosen = np.asarray(estimator.predict_proba(features_df)).argmax(axis=1)
    return values[np.arange(len(values)), :, chosen]


def tree_values(
    estimator: Any, features_df: Any, budget_s: float, timing: dict[str, float] | None = None
) -> tuple[Any, str]:
    """Rows x transformed-features TreeSHAP values and the method: exact when the probe projects it within
    ``budget_s``, else path attributions. ``timing`` keeps the probe's seconds per row between calls (batch
    scoring explains chunk by chunk: the probe is timed on the first chunk only)."""
    import shap

    explainer = shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
    probe = features_df.iloc[:EXACT_PROBE_ROWS]
    if len(features_df) <= len(probe) or timing is None or "probe_s_per_row" not in timing:
        started = time.perf_counter()
        probe_values = explainer.shap_values(probe, check_additivity=False)
        if len(features_df) <= len(probe):
            return _select_class(probe_values, estimator, probe), "tree_path_dependent"
        if timing is not None:
            timing["probe_s_per_row"] = (time.perf_counter() - started) / len(probe)
        projected_s = (time.perf_counter() - started) * len(features_df) / len(probe)
    else:
        projected_s = timing["probe_s_per_row"] * len(features_df)
    if projected_s <= budget_s:
        return (
            _select_class(explainer.shap_values(features_df, check_additivity=False), estimator, features_df),
            "tree_path_dependent",
        )
    from driftloop.governance.tree_paths import path_attributions

    paths = path_attributions(estimator, features_df)
    if paths is not None:
        return paths, "tree_saabas"
    try:
        values = explainer.shap_values(features_df, approximate=True, check_additivity=False)
    except AssertionError:  # shap refuses approximate=True for some families: exact, over budget
        return (
            _select_class(explainer.shap_values(features_df, check_additivity=False), estimator, features_df),
            "tree_path_dependent",
        )
    return _select_class(values, estimator, features_df), "tree_saabas"


def output_kind(estimator: Any, method: str) -> str:
    """What ``method``'s contributions add up to for ``estimator``: log-odds, probability or score."""
    if method == "linear" or type(estimator).__name__.startswith(
        ("LGBM", "XGB", "CatBoost", "GradientBoosting")
    ):
        return "log_odds" if hasattr(estimator, "predict_proba") else "score"
    return "probability" if hasattr(estimator, "predict_proba") else "score"


def explain_rows(
    model: Any, raw_df: Any, budget_s: float = 2.0, reference_df: Any = None, seed: int = 42
) -> Attributions:
    """Contributions of every original feature for every row of ``raw_df``.

    Args:
        model: Fitted pipeline or bare estimator.
        raw_df: Rows with the model's input columns.
        budget_s: Time the exact tree explainer may take before the path approximation is used.
        reference_df: Rows whose typical values stand in for a feature (background, ablation baseline);
            default ``raw_df`` itself.
        seed: Sampling seed.

    Returns:
        The :class:`Attributions`.
    """
    import shap

    raw_df = model_input(raw_df)
    reference_df = raw_df if reference_df is None else model_input(reference_df)
    raw_features = [str(c) for c in raw_df.columns]
    preprocessor, estimator = split_pipeline(model)
    kind = choose_explainer_kind(estimator)
    if kind == "other":
        return _ablation(model, raw_df, reference_df)
    features_df = transform_features(preprocessor, raw_df)
    if kind == "linear":
        background = transform_features(
            preprocessor, reference_df.sample(min(BACKGROUND_ROWS, len(reference_df)), random_state=seed)
        )
        explainer = shap.LinearExplainer(estimator, shap.maskers.Independent(background))
        values, method = _select_class(explainer.shap_values(features_df), estimator, features_df), "linear"
    else:
        values, method = tree_values(estimator, features_df, budget_s)
    return Attributions(
        to_original_features(values, list(features_df.columns), raw_features),
        method,
        output_kind(estimator, method),
    )


def _predict_score(model: Any, frame: Any, rows_class: Any = None) -> tuple[Any, Any]:
    """``(score, class index per row)``: the positive-class probability (binary), the value (regression), or
    the probability of ``rows_class`` (multiclass; default the predicted class, whose index is returned)."""
    import numpy as np

    rows = model_input(frame) if hasattr(frame, "reset_index") else frame
    if not hasattr(model, "predict_proba"):
        return np.asarray(model.predict(rows), dtype=float), None
    proba = np.asarray(model.predict_proba(rows))
    if proba.shape[1] <= 2:
        return proba[:, -1], None
    chosen = proba.argmax(axis=1) if rows_class is None else np.asarray(rows_class)
    return proba[np.arange(len(rows)), chosen], chosen


def _baseline(reference_df: Any, column: str) -> Any:
    series = reference_df[column].dropna()
    if series.empty:
        return None
    return series.median() if series.dtype.kind in "iuf" and series.nunique() > 2 else series.mode().iloc[0]


def _ablation(model: Any, raw_df: Any, reference_df: Any) -> Attributions:
    """Score change when each original feature is replaced by its reference value, all in one predict call.

    Rows that already hold the reference value contribute exactly 0 and are not scored again; the ablated
    copies of every feature are scored together, because a pipeline call has a fixed cost whatever its rows.
    """
    import numpy as np
    import pandas as pd

    base, chosen = _predict_score(model, raw_df)
    parts, masks = [], {}
    for column in raw_df.columns:
        baseline = _baseline(reference_df, column)
        changed = ~(raw_df[column].astype(str) == str(baseline)).to_numpy()
        masks[str(column)] = changed
        if changed.any():
            ablated = raw_df[changed].copy()
            ablated[column] = baseline
            parts.append(ablated)
    classes = None if chosen is None else np.concatenate([chosen[m] for m in masks.values() if m.any()])
    scores = _predict_score(model, pd.concat(parts, ignore_index=True), classes)[0] if parts else np.zeros(0)
    contributions, offset = {}, 0
    for column, changed in masks.items():
        delta = np.zeros(len(raw_df))
        count = int(changed.sum())
        delta[changed] = base[changed] - scores[offset : offset + count]
        offset += count
        contributions[column] = delta
    return Attributions(
        pd.DataFrame(contributions), "ablation", "probability" if hasattr(model, "predict_proba") else "score"
    )


def global_attributions(model: Any, sample_df: Any, seed: int = 42, budget_s: float = 20.0) -> Attributions:
    """Attributions on a sample for a version's global summary (a permutation explainer for other
    families)."""
    import shap

    raw_df = model_input(sample_df)
    raw_df = raw_df.sample(min(GLOBAL_ROWS, len(raw_df)), random_state=seed).reset_index(drop=True)
    preprocessor, estimator = split_pipeline(model)
    if choose_explainer_kind(estimator) != "other":
        return explain_rows(model, raw_df, budget_s=budget_s, seed=seed)
    rows = raw_df.iloc[:PERMUTATION_ROWS]
    features_df = transform_features(preprocessor, rows)
    background = features_df.iloc[: BACKGROUND_ROWS // 2]
    explainer = shap.PermutationExplainer(lambda x: _predict_score(estimator, x)[0], background, seed=seed)
    values = explainer(features_df, max_evals=2 * features_df.shape[1] + 1, silent=True).values
    return Attributions(
        to_original_features(values, list(features_df.columns), [str(c) for c in raw_df.columns]),
        "permutation",
        "probability",
    )


def importance_table(attributions: Attributions) -> Any:
    """Mean |contribution| per original feature, largest first (``feature``, ``mean_abs_shap``)."""
    import pandas as pd

    means = attributions.values_df.abs().mean(axis=0).sort_values(ascending=False)
    return pd.DataFrame({"feature": means.index, "mean_abs_shap": means.to_numpy()})


def top_reasons(raw_df: Any, attributions: Attributions, k: int = 3) -> Any:
    """The ``k`` strongest reasons per row: ``reason_<i>_feature``, ``_value`` (as text) and
    ``_contribution``."""
    import numpy as np
    import pandas as pd

    values = attributions.values_df.to_numpy()
    features = np.asarray(attributions.values_df.columns)
    order = np.argsort(-np.abs(values), axis=1)[:, :k]
    raw = raw_df.reset_index(drop=True)
    columns: dict[str, Any] = {}
    for i in range(min(k, values.shape[1])):
        picked = order[:, i]
        text = np.empty(len(values), dtype=object)
        for j in np.unique(picked):  # only the values shown are converted: k per row
            rows = np.flatnonzero(picked == j)
            text[rows] = _as_text(raw[features[j]].to_numpy()[rows])
        columns[bus.reason_column(i + 1, "feature")] = features[picked].astype(str)
        columns[bus.reason_column(i + 1, "value")] = text
        columns[bus.reason_column(i + 1, "contribution")] = values[np.arange(len(values)), picked]
    return pd.DataFrame(columns)


def _as_text(values: Any) -> Any:
    """``str`` of every value (numbers as numpy prints their scalars), ``None`` for a missing one."""
    import numpy as np
    import pandas as pd

    missing = pd.isna(values)
    if values.dtype.kind in "iuf":
        text = values.astype(str).astype(object)
    else:
        text = np.array([str(v) for v in values], dtype=object)
    text[missing] = None
    return text


def plot_summary(attributions: Attributions, raw_df: Any, path: Path, title: str) -> Path:
    """A beeswarm summary plot by original feature (colour: the feature's value, numeric features only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    table = importance_table(attributions).head(TOP_FEATURES_PLOTTED).iloc[::-1]
    raw = raw_df.reset_index(drop=True)
    rng = np.random.default_rng(0)
    with plt.rc_context({"font.family": "DejaVu Sans"}):
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(table) + 1.5))
        for y, feature in enumerate(table["feature"]):
            x = attributions.values_df[feature].to_numpy()
            numeric = (
                pd.to_numeric(raw[feature], errors="coerce")
                if feature in raw
                else pd.Series(np.nan, index=raw.index)
            )
            colour = (
                numeric.rank(pct=True).fillna(0.5).to_numpy()
                if numeric.notna().any()
                else np.full(len(x), 0.5)
            )
            ax.scatter(x, y + rng.uniform(-0.3, 0.3, len(x)), c=colour, cmap="coolwarm", s=6, alpha=0.6)
        ax.set_yticks(range(len(table)), table["feature"])
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel(f"contribution to the model output ({attributions.output}; {attributions.method})")
        ax.set_title(title, fontsize=10)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return path


def explain_model(model: Any, sample_df: Any, out_dir: str | Path, seed: int = 42) -> dict[str, Any]:
    """Global SHAP of a version: the mean |SHAP| table (CSV) and a summary plot (PNG) by original feature.

    Args:
        model: Fitted pipeline or bare estimator.
        sample_df: Raw input rows (model features only).
        out_dir: Folder for ``bus.SHAP_CSV_FILENAME`` and ``bus.SHAP_PLOT_FILENAME``.
        seed: Sampling seed.

    Returns:
        ``{"method", "output", "rows", "plot_path", "csv_path", "top_features", "importance"}``;
        ``importance`` maps every original feature to its mean |SHAP|.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    attributions = global_attributions(model, sample_df, seed=seed)
    table = importance_table(attributions)
    csv_path = out_dir / bus.SHAP_CSV_FILENAME
    table.to_csv(csv_path, index=False)
    _, estimator = split_pipeline(model)
    rows = len(attributions.values_df)
    sample = sample_df.reset_index(drop=True).sample(min(GLOBAL_ROWS, len(sample_df)), random_state=seed)
    plot_path = plot_summary(
        attributions,
        sample.reset_index(drop=True).iloc[:rows],
        out_dir / bus.SHAP_PLOT_FILENAME,
        f"{type(estimator).__name__}: SHAP on {rows} rows by original feature",
    )
    return {
        "method": attributions.method,
        "output": attributions.output,
        "rows": rows,
        "plot_path": str(plot_path),
        "csv_path": str(csv_path),
        "top_features": table["feature"].head(5).tolist(),
        "importance": dict(zip(table["feature"], table["mean_abs_shap"].astype(float), strict=True)),
    }
