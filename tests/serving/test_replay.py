"""The numpy replay of the training preprocessing that the online workers score with.

The pipelines here are shaped as training logs them: PyCaret's pipeline of its wrapper around
:func:`driftloop.training.preprocessing.build_preprocessor` and a model. The expected outputs always come from
that pipeline's own ``predict_proba`` / ``predict``, never from the replay.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from driftloop.core.task_types import BINARY, MULTICLASS, REGRESSION, Decision
from driftloop.serving.online.workers import ModelHost, build_frame, replay_model
from driftloop.serving.replay import compile_model
from driftloop.training.preprocessing import build_preprocessor

DTYPES = {
    "tenure": "float64",
    "charges": "float64",
    "seats": "int64",
    "paperless": "object",
    "contract": "object",
    "city": "object",
    "senior": "int64",
}


@pytest.fixture
def small_cfg(telco_cfg):
    """Three numeric features; a two-valued, a three-valued, a 40-valued and an integer-coded categorical."""
    return dataclasses.replace(
        telco_cfg,
        numeric_features=("tenure", "charges", "seats"),
        categorical_features=("paperless", "contract", "city", "senior"),
    )


def _frame(n_rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, n_rows).astype(float),
            "charges": rng.normal(2000, 800, n_rows),
            "seats": rng.integers(1, 9, n_rows),
            "paperless": rng.choice(["Yes", "No"], n_rows).astype(object),
            "contract": rng.choice(["Month-to-month", "One year", "Two year"], n_rows).astype(object),
            "city": np.array([f"city-{c}" for c in rng.integers(0, 40, n_rows)], dtype=object),
            "senior": rng.integers(0, 2, n_rows),
        }
    )
    frame.loc[rng.random(n_rows) < 0.05, "tenure"] = np.nan
    frame.loc[rng.random(n_rows) < 0.05, "contract"] = np.nan
    return frame


def _target(frame: pd.DataFrame, task: str) -> pd.Series:
    score = frame["charges"].fillna(0) / 800 + (frame["contract"] == "Month-to-month") * 2
    score = score + frame["city"].str.removeprefix("city-").astype(int) % 3
    if task == REGRESSION:
        return score
    if task == MULTICLASS:
        return pd.Series(np.digitize(score, np.quantile(score, [0.33, 0.66])))
    return (score > score.median()).astype(int)


def _logged_pipeline(cfg, frame: pd.DataFrame, estimator) -> object:
    """Our preprocessing and ``estimator`` in PyCaret's pipeline, as training logs them."""
    from pycaret.internal.pipeline import Pipeline
    from pycaret.internal.preprocess.transformers import TransformerWrapper

    steps = [
        ("preprocess", TransformerWrapper(build_preprocessor(cfg, frame))),
        ("actual_estimator", estimator),
    ]
    return Pipeline(steps).fit(frame[list(DTYPES)], _target(frame, cfg.task))


def _served_rows(n_rows: int) -> dict[str, np.ndarray]:
    """Rows as validation hands them to a worker: typed columns, ``NaN`` for a null, unseen categories."""
    frame = _frame(n_rows, seed=7)
    frame.loc[::9, "contract"] = "Three year"  # unseen
    frame.loc[::11, "city"] = "city-999"  # unseen by the target encoder
    frame.loc[::13, "paperless"] = np.nan
    frame.loc[::17, "seats"] = 40  # far outside training's values
    return {name: frame[name].to_numpy(dtype=dtype) for name, dtype in DTYPES.items()}


def _estimators(task: str) -> list:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    if task == REGRESSION:
        return [Ridge(), RandomForestRegressor(n_estimators=10, random_state=0)]
    return [LogisticRegression(max_iter=500), RandomForestClassifier(n_estimators=10, random_state=0)]


@pytest.mark.parametrize("task", [BINARY, MULTICLASS, REGRESSION])
def test_the_replay_scores_like_the_logged_pipeline(small_cfg, task):
    cfg = dataclasses.replace(small_cfg, task=task)
    frame = _frame(600)
    rows = _served_rows(300)
    for estimator in _estimators(task):
        model = _logged_pipeline(cfg, frame, estimator)
        replay = compile_model(model)
        assert replay is not None, type(estimator).__name__
        expected_input = model[:-1].transform(build_frame(rows, DTYPES))
        got_input = replay.transform(rows)
        assert list(got_input.columns) == list(expected_input.columns)
        np.testing.assert_allclose(got_input.to_numpy(), expected_input.to_numpy(), rtol=0, atol=1e-12)
        if task == REGRESSION:
            np.testing.assert_allclose(
                replay.predict(rows), model.predict(build_frame(rows, DTYPES)), rtol=1e-12
            )
        else:
            np.testing.assert_allclose(
                replay.predict_proba(rows), model.predict_proba(build_frame(rows, DTYPES)), rtol=0, atol=1e-12
            )
    # The 40 cities went through the target encoder, the rest through the replayed imputers and encoder.
    assert [type(b).__name__ for b in replay.branches] == ["_Fill", "_OneHot", "_Fitted"]


def test_a_worker_serves_a_replayable_version_with_its_replay_and_the_same_answers(small_cfg, monkeypatch):
    model = _logged_pipeline(small_cfg, _frame(600), _estimators(BINARY)[0])
    decision = Decision(BINARY, ("stays", "churns"), 0.4)
    examples = {name: list(values[:2]) for name, values in _served_rows(2).items()}
    host = ModelHost(settings=None)
    monkeypatch.setattr("driftloop.core.registry.load_model", lambda uri, settings: model)
    timings = host.load("3", "models:/m/3", examples, DTYPES, decision)
    assert timings["replay"] == ""
    replay = host.models["3"][2]
    assert replay is not None

    calls = []
    monkeypatch.setattr(type(model), "predict_proba", lambda self, x: calls.append(x) or 1 / 0)
    rows = _served_rows(250)
    [(ok, outputs, _)] = host.predict([("3", rows, DTYPES)])
    assert ok and not calls  # the pipeline was not called
    monkeypatch.undo()
    expected = decision.predict_rows(model, build_frame(rows, DTYPES))
    assert list(outputs["prediction"]) == list(expected["prediction"])
    np.testing.assert_allclose(outputs["score"], expected["score"], rtol=0, atol=1e-12)
    assert set(outputs["prediction"]) == {"stays", "churns"}


def test_a_replay_that_differs_from_its_pipeline_is_not_served(small_cfg, monkeypatch):
    from driftloop.serving import replay as replay_module

    model = _logged_pipeline(small_cfg, _frame(600), _estimators(BINARY)[0])
    decision = Decision(BINARY, ("stays", "churns"), 0.5)
    examples = {name: list(values[:2]) for name, values in _served_rows(2).items()}
    examples["contract"] = ["Month-to-month", "Month-to-month"]
    replay, why = replay_model(model, decision, examples, DTYPES)
    assert replay is not None and why == ""

    def swapped(pipeline):
        """A replay that sends two contracts to each other's columns (the warm-up rows see neither)."""
        replay = compile_model(pipeline)
        [onehot] = [b for b in replay.branches if isinstance(b, replay_module._OneHot)]
        positions = onehot.positions[onehot.columns.index("contract")]
        positions[[1, 2]] = positions[[2, 1]]
        return replay

    monkeypatch.setattr(replay_module, "compile_model", swapped)
    replay, why = replay_model(model, decision, examples, DTYPES)
    assert replay is None and why == "score differs on the probe rows"


def test_a_pipeline_of_another_shape_has_no_replay_and_serves_as_it_is(small_cfg, good_model):
    assert compile_model(good_model) is None  # a plain scikit-learn pipeline
    assert compile_model(object()) is None
    decision = Decision(BINARY, ("no", "yes"), 0.5)
    replay, why = replay_model(good_model, decision, {}, {})
    assert replay is None and "not driftloop's preprocessing" in why

    # A column passed through untouched is not something our preprocessing builds.
    frame = _frame(600).assign(extra=1.5)
    model = _logged_pipeline(small_cfg, frame, _estimators(BINARY)[0])
    assert compile_model(model) is not None
    model[0].transformer.named_steps["encode"].set_params(remainder="passthrough")
    model.fit(frame, _target(frame, BINARY))
    assert "extra" in model[-1].feature_names_in_
    assert compile_model(model) is None
