"""Serving any task the package trains: multiclass (labels, class index, per-class probabilities) and
regression."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest

from driftloop.core import bus
from tests.serving.helpers import fit_pipeline, register_model, split_body
from tests.serving.test_loop import serve


def dataset(name: str):
    from driftloop.core.config import load_dataset_config
    from driftloop.data.sources import load_source_frame

    suffix = uuid.uuid4().hex[:8]
    cfg = load_dataset_config(name)
    cfg = dataclasses.replace(
        cfg, name=f"{name}_{suffix}", model_name=f"{cfg.registered_model_name}-{suffix}"
    )
    return cfg, load_source_frame(cfg).reset_index(drop=True)


def test_multiclass_answers_labels_indexes_and_probabilities_and_exports_them(serve_env):
    import pandas as pd

    from driftloop.core.state import uri_to_path
    from driftloop.core.task_types import training_decision
    from driftloop.serving.online.export import export_served_windows

    cfg, frame = dataset("hpc_jobs")
    decision = training_decision(cfg, frame[cfg.target])
    version, _ = register_model(cfg, fit_pipeline(cfg, frame), frame, bus.CHAMPION)
    [response] = serve(cfg, [split_body(cfg, frame.iloc[3000:3040])])
    classes = list(decision.classes)
    assert all(
        classes[code] == label
        for code, label in zip(response["predictions"], response["labels"], strict=True)
    )
    for probabilities, score in zip(response["probabilities"], response["scores"], strict=True):
        assert set(probabilities) == set(classes) and sum(probabilities.values()) == pytest.approx(1)
        assert score == pytest.approx(max(probabilities.values()))

    [window] = export_served_windows(cfg, now_s=time.time() + 2 * cfg.serving.window_s)["exported"]
    from driftloop.core.tracking import get_client

    run = get_client().get_run(window["inference_run_id"])
    predictions = pd.read_parquet(uri_to_path(run.data.tags[bus.PREDICTIONS_URI_TAG]))
    assert list(predictions.columns) == [
        cfg.id_column,
        *decision.output_columns(),
        *bus.PREDICTION_LINEAGE_COLUMNS,
        bus.SCORED_AT_COLUMN,
    ]  # laid out as batch inference lays it out
    assert set(predictions[bus.PREDICTION_COLUMN]) <= set(classes) and window["model_version"] == version


def test_regression_answers_values_and_the_live_comparison_says_it_does_not_apply(serve_env):
    from driftloop.serving.online.ab_decision import evaluate_ab

    cfg, frame = dataset("ames_housing")
    register_model(cfg, fit_pipeline(cfg, frame), frame, bus.CHAMPION)
    register_model(cfg, fit_pipeline(cfg, frame.sample(frac=1, random_state=1)), frame, bus.CHALLENGER)
    [response] = serve(cfg, [split_body(cfg, frame.iloc[100:105])])
    assert response["predictions"] == response["labels"] == response["scores"]
    assert all(isinstance(v, float) and v > 1000 for v in response["predictions"])  # sale prices in dollars
    result = evaluate_ab(cfg)
    assert result["decision"] == bus.AB_NOT_ENOUGH_DATA and "regression" in result["reason"]
