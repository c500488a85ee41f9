"""Explanations: exact explainers per family, attributions in original feature names, per-prediction
reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.core import bus


@pytest.fixture(scope="module")
def data():
    """A numeric signal, two numeric noises and a categorical column whose effect is known (green adds)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "signal": rng.normal(size=600),
            "noise": rng.normal(size=600),
            "color": rng.choice(["red", "green", "blue"], size=600),
        }
    )
    logit = 2.5 * frame["signal"] + 1.5 * (frame["color"] == "green")
    target = (logit + 0.5 * rng.normal(size=600) > 0.5).astype(int)
    return frame, target


def pipeline(estimator):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    encode = ColumnTransformer(
        [("onehot", OneHotEncoder(sparse_output=False), ["color"])],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    return Pipeline([("encode", encode.set_output(transform="pandas")), ("model", estimator)])


def test_linear_attributions_are_the_closed_form_summed_back_to_original_features(data):
    from sklearn.linear_model import LogisticRegression

    from driftloop.governance.explain import explain_rows

    frame, target = data
    model = pipeline(LogisticRegression(max_iter=500)).fit(frame, target)
    background = frame.tail(100)  # at most 100 rows: the explainer's background is exactly these
    result = explain_rows(model, frame.head(50), reference_df=background)
    assert result.method == "linear" and result.output == "log_odds"
    assert list(result.values_df.columns) == ["signal", "noise", "color"]  # no color_red / color_green
    encoded = model[:-1].transform(background)
    coef = pd.Series(model[-1].coef_[0], index=encoded.columns)
    # Closed form for an independent masker: coef * (x - mean of the background), one-hot columns summed.
    expected = (model[:-1].transform(frame.head(50)) - encoded.mean()) * coef
    assert result.values_df["signal"].to_numpy() == pytest.approx(
        expected["signal"].to_numpy(), rel=1e-3, abs=1e-3
    )
    color = expected[[c for c in expected.columns if c.startswith("color_")]].sum(axis=1)
    assert result.values_df["color"].to_numpy() == pytest.approx(color.to_numpy(), rel=1e-3, abs=1e-3)


def test_tree_attributions_are_exact_within_budget_and_approximate_past_it(data):
    from sklearn.ensemble import RandomForestClassifier

    from driftloop.governance.explain import explain_rows

    frame, target = data
    model = pipeline(RandomForestClassifier(n_estimators=30, random_state=0)).fit(frame, target)
    rows = frame.head(120)
    exact = explain_rows(model, rows, budget_s=600)
    assert (exact.method, exact.output) == ("tree_path_dependent", "probability")
    # Exact TreeSHAP is additive: contributions + the mean prediction = this row's probability.
    base = model.predict_proba(frame)[:, 1].mean()
    proba = model.predict_proba(rows)[:, 1]
    assert exact.values_df.sum(axis=1).to_numpy() + base == pytest.approx(proba, abs=0.02)
    fast = explain_rows(model, rows, budget_s=0.0)
    assert fast.method == "tree_saabas"
    for result in (exact, fast):
        assert result.values_df.abs().mean().idxmax() == "signal"


def test_other_families_fall_back_to_ablation_on_the_whole_pipeline(data):
    from sklearn.neighbors import KNeighborsClassifier

    from driftloop.governance.explain import explain_rows

    frame, target = data
    model = pipeline(KNeighborsClassifier()).fit(frame, target)
    result = explain_rows(model, frame.head(100), reference_df=frame)
    assert (result.method, list(result.values_df.columns)) == ("ablation", ["signal", "noise", "color"])
    assert result.values_df.abs().mean().idxmax() == "signal"
    assert result.values_df.abs().mean()["noise"] < result.values_df.abs().mean()["color"]


def test_top_reasons_name_the_strongest_original_features_with_their_values(data):
    from sklearn.linear_model import LogisticRegression

    from driftloop.governance.explain import explain_rows, top_reasons

    frame, target = data
    model = pipeline(LogisticRegression(max_iter=500)).fit(frame, target)
    rows = frame.head(30)
    result = explain_rows(model, rows, reference_df=frame)
    reasons = top_reasons(rows, result, k=2)
    assert list(reasons.columns) == [bus.reason_column(r, p) for r in (1, 2) for p in bus.REASON_PARTS]
    for i, row in reasons.iterrows():
        first, second = row[bus.reason_column(1, "feature")], row[bus.reason_column(2, "feature")]
        assert abs(result.values_df.at[i, first]) >= abs(result.values_df.at[i, second])
        assert abs(result.values_df.at[i, first]) == result.values_df.loc[i].abs().max()
        assert row[bus.reason_column(1, "value")] == str(rows.at[i, first])
        assert row[bus.reason_column(1, "contribution")] == pytest.approx(result.values_df.at[i, first])


@pytest.mark.parametrize(
    "estimator", ["sklearn.ensemble.RandomForestClassifier", "sklearn.linear_model.LogisticRegression"]
)
def test_explain_model_writes_the_table_and_summary_plot_by_original_feature(data, tmp_path, estimator):
    import importlib

    from driftloop.governance.explain import explain_model

    frame, target = data
    module_name, class_name = estimator.rsplit(".", 1)
    model = pipeline(getattr(importlib.import_module(module_name), class_name)()).fit(frame, target)
    explained = explain_model(model, frame, tmp_path / "explain")
    table = pd.read_csv(explained["csv_path"])
    assert table["feature"].tolist()[0] == "signal" and sorted(table["feature"]) == [
        "color",
        "noise",
        "signal",
    ]
    assert explained["top_features"][0] == "signal" and explained["rows"] == 500
    assert Path(explained["plot_path"]).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("family", ["rf", "gb", "lgbm"])
def test_path_attributions_add_up_to_each_prediction(data, family):
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    from driftloop.governance.tree_paths import path_attributions

    frame, target = data
    features = pd.get_dummies(frame, dtype=float)
    estimator = {
        "rf": RandomForestClassifier(n_estimators=20, random_state=0),
        "gb": GradientBoostingClassifier(n_estimators=20, random_state=0),
        "lgbm": LGBMClassifier(n_estimators=20, verbose=-1),
    }[family].fit(features, target)
    values = path_attributions(estimator, features)
    output = (
        estimator.predict_proba(features)[:, 1]
        if family == "rf"
        else estimator.booster_.predict(features.to_numpy(), raw_score=True)
        if family == "lgbm"
        else estimator.decision_function(features)
    )
    # Leaf value minus root value, split by feature: what is left over is one constant (the root value).
    assert np.std(output - values.sum(axis=1)) < 1e-9
    assert pd.Series(np.abs(values).mean(axis=0), index=features.columns).idxmax() == "signal"
    if family == "rf":
        import shap

        saabas = np.asarray(shap.TreeExplainer(estimator).shap_values(features, approximate=True))
        assert np.abs(values - (saabas[:, :, 1] if saabas.ndim == 3 else saabas[1])).max() < 1e-9


@pytest.mark.parametrize("family", ["rf", "gb", "lgbm"])
def test_multiclass_path_attributions_add_up_to_the_predicted_classs_output(data, family):
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    from driftloop.governance.tree_paths import path_attributions

    frame, _ = data
    features = pd.get_dummies(frame, dtype=float)
    # Three classes, decided by the signal's tercile: the signal must dominate every class's explanation.
    target = pd.qcut(frame["signal"], 3, labels=False)
    estimator = {
        "rf": RandomForestClassifier(n_estimators=20, random_state=0),
        "gb": GradientBoostingClassifier(n_estimators=20, random_state=0),
        "lgbm": LGBMClassifier(n_estimators=20, verbose=-1),
    }[family].fit(features, target)
    values = path_attributions(estimator, features)
    chosen = estimator.predict_proba(features).argmax(axis=1)
    rows = np.arange(len(features))
    if family == "rf":
        output = estimator.predict_proba(features)[rows, chosen]
    elif family == "lgbm":
        output = estimator.booster_.predict(features.to_numpy(), raw_score=True)[rows, chosen]
    else:
        output = estimator.decision_function(features)[rows, chosen]
    # Per predicted class, leaf value minus root value: one constant per class is left over.
    for k in range(3):
        assert np.std((output - values.sum(axis=1))[chosen == k]) < 1e-9
    assert pd.Series(np.abs(values).mean(axis=0), index=features.columns).idxmax() == "signal"


@pytest.mark.parametrize("family", ["rf", "lgbm"])
def test_regression_path_attributions_add_up_to_the_value(data, family):
    from lightgbm import LGBMRegressor
    from sklearn.ensemble import RandomForestRegressor

    from driftloop.governance.tree_paths import path_attributions

    frame, _ = data
    features = pd.get_dummies(frame, dtype=float)
    target = 3 * frame["signal"] + 2 * (frame["color"] == "green")
    estimator = {
        "rf": RandomForestRegressor(n_estimators=20, random_state=0),
        "lgbm": LGBMRegressor(n_estimators=20, verbose=-1),
    }[family].fit(features, target)
    values = path_attributions(estimator, features)
    assert np.std(estimator.predict(features) - values.sum(axis=1)) < 1e-6
    assert pd.Series(np.abs(values).mean(axis=0), index=features.columns).idxmax() == "signal"


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_forest_scored_from_its_leaves_gives_its_own_outputs_and_the_same_attributions(data, task):
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier, RandomForestRegressor

    from driftloop.governance.tree_paths import forest_output, path_attributions

    frame, target = data
    features = pd.get_dummies(frame, dtype=float)
    if task == "regression":
        forest = RandomForestRegressor(n_estimators=15, random_state=0).fit(features, features["signal"] * 3)
        expected = forest.predict(features)
    else:
        labels = target + (features["signal"] > 1).astype(int) if task == "multiclass" else target
        estimator = RandomForestClassifier if task == "binary" else ExtraTreesClassifier
        forest = estimator(n_estimators=15, random_state=0).fit(features, labels)
        expected = forest.predict_proba(features)
    without_kept_leaves = path_attributions(forest, features)

    np.testing.assert_allclose(forest_output(forest, features), expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(path_attributions(forest, features), without_kept_leaves)
