"""The training preprocessing (impute, encode, scale) that every candidate is fitted with and served with."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pandas as pd
import pytest

from driftloop.core.task_types import REGRESSION
from driftloop.training.preprocessing import MAX_ONEHOT_CATEGORIES, build_preprocessor


@pytest.fixture
def small_cfg(telco_cfg):
    """Two numeric features, a two-valued, a three-valued and a 40-valued categorical feature."""
    return dataclasses.replace(
        telco_cfg,
        numeric_features=("tenure", "charges"),
        categorical_features=("paperless", "contract", "city"),
    )


def _fit_transform(cfg, frame: pd.DataFrame, target: pd.Series) -> tuple[object, pd.DataFrame]:
    """The fitted preprocessor and its output as a frame named by ``get_feature_names_out()``."""
    preprocessor = build_preprocessor(cfg, frame).fit(frame, target)
    return preprocessor, _named(preprocessor, frame)


def _named(preprocessor, frame: pd.DataFrame) -> pd.DataFrame:
    out = preprocessor.transform(frame)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    return pd.DataFrame(out, columns=preprocessor.get_feature_names_out())


def _frame(n_rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    city = rng.integers(0, 40, n_rows)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, n_rows).astype(float),
            "charges": rng.normal(2000, 800, n_rows),
            "paperless": rng.choice(["Yes", "No"], n_rows).astype(object),
            "contract": rng.choice(["Month-to-month", "One year", "Two year"], n_rows).astype(object),
            "city": np.array([f"city-{c}" for c in city], dtype=object),
        }
    )
    # Cities 0-19 churn, the others do not: only the target encoding of 'city' can carry that signal.
    target = pd.Series((city < 20).astype(int))
    return frame, target


def test_columns_are_named_after_their_feature_and_scaled(small_cfg):
    frame, target = _frame(600)
    _, out = _fit_transform(small_cfg, frame, target)

    assert list(out.columns) == [
        "tenure",
        "charges",
        "paperless_Yes",  # two values: one column
        "contract_Month-to-month",
        "contract_One year",
        "contract_Two year",
        "city",  # 40 values > MAX_ONEHOT_CATEGORIES: one target-encoded column
    ]
    assert frame["city"].nunique() > MAX_ONEHOT_CATEGORIES
    np.testing.assert_allclose(out.mean().to_numpy(), 0, atol=1e-9)
    np.testing.assert_allclose(out.std(ddof=0).to_numpy(), 1, atol=1e-9)
    # The target encoding of 'city' separates churning cities from the others.
    assert out.loc[target == 1, "city"].min() > out.loc[target == 0, "city"].max()


def test_missing_values_are_imputed_and_unseen_categories_do_not_fail(small_cfg):
    frame, target = _frame(400)
    frame.loc[:9, "tenure"] = np.nan
    frame.loc[10:19, "contract"] = np.nan
    preprocessor, out = _fit_transform(small_cfg, frame, target)
    assert not out.isna().any().any()

    unseen = frame.head(3).copy()
    unseen["contract"] = "Three year"
    unseen["city"] = "city-999"
    out = _named(preprocessor, unseen)
    assert not out.isna().any().any()
    # An unseen contract sets none of the contract indicator columns (each at its scaled zero).
    contract = [c for c in out.columns if c.startswith("contract_")]
    seen_zero = _named(preprocessor, frame.assign(contract="One year").head(1))[contract[0]].iloc[0]
    assert out[contract[0]].iloc[0] == pytest.approx(seen_zero)


def test_regression_target_encodes_wide_features_as_one_continuous_column(small_cfg):
    frame, _ = _frame(500)
    target = pd.Series(frame["city"].str.removeprefix("city-").astype(float) * 10)
    cfg = dataclasses.replace(small_cfg, task=REGRESSION)
    _, out = _fit_transform(cfg, frame, target)
    assert "city" in out.columns
    assert np.corrcoef(out["city"], target)[0, 1] > 0.95


def test_numeric_only_and_categorical_only_configs_build(small_cfg):
    frame, target = _frame(200)
    numeric = dataclasses.replace(small_cfg, categorical_features=())
    categorical = dataclasses.replace(small_cfg, numeric_features=(), categorical_features=("contract",))
    assert list(_fit_transform(numeric, frame, target)[1].columns) == ["tenure", "charges"]
    assert _fit_transform(categorical, frame, target)[1].shape == (200, 3)


def test_frozen_heap_spares_older_objects_from_collections_and_releases_them_after():
    from driftloop.training.pycaret_env import frozen_heap

    assert gc.get_freeze_count() == 0
    with frozen_heap():
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # every object alive before the block (the imported stack)
    assert gc.get_freeze_count() == 0
