"""Batch scoring with the numpy replay scores and explains like the logged pipeline did, on the telco config.

The expected outputs always come from the pipeline path (``use_replay=False``: its ``predict_proba``
and :func:`driftloop.governance.explain.explain_rows` on raw rows, as batch scoring did before the replay),
never from the replay itself.
"""

from __future__ import annotations

import copy
import dataclasses
import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop.core import bus
from driftloop.core.task_types import BINARY, Decision
from driftloop.serving import batch_scoring
from driftloop.training.preprocessing import build_preprocessor

INFO = {"model_name": "m", "model_version": "1", "model_run_id": "r"}
DECISION = Decision(BINARY, ("No", "Yes"), 0.5)


def _logged_pipeline(cfg, frame: pd.DataFrame, estimator):
    """Our preprocessing and ``estimator`` in PyCaret's pipeline, as training logs them."""
    from pycaret.internal.pipeline import Pipeline
    from pycaret.internal.preprocess.transformers import TransformerWrapper

    steps = [
        ("preprocess", TransformerWrapper(build_preprocessor(cfg, frame[cfg.features]))),
        ("actual_estimator", estimator),
    ]
    y = (frame[cfg.target] == cfg.positive_label).astype(int)
    return Pipeline(steps).fit(frame[cfg.features], y)


def _batch(cfg, frame: pd.DataFrame, rows: int) -> pa.Table:
    """``rows`` telco rows with fresh ids, some missing values and an unseen category."""
    batch = frame.sample(n=rows, replace=True, random_state=3).reset_index(drop=True)
    batch[cfg.id_column] = [f"B-{i:06d}" for i in range(rows)]
    batch.loc[::37, "total_charges"] = np.nan
    batch.loc[::41, "contract"] = None
    batch.loc[::53, "payment_method"] = "Carrier pigeon"
    return pa.Table.from_pandas(batch[[cfg.id_column, *cfg.features]], preserve_index=False)


def _score(
    cfg, model, table, tmp_path, name: str, use_replay: bool, reference=None
) -> tuple[pd.DataFrame, str]:
    output = tmp_path / f"{name}.parquet"
    reference = table.to_pandas()[list(cfg.features)].head(500) if reference is None else reference
    stats = batch_scoring.score_frames(
        model, INFO, cfg, table.to_batches(max_chunksize=700), output, DECISION, reference,
        scored_at="2026-01-01T00:00:00+00:00", use_replay=use_replay,
    )  # fmt: skip
    assert stats["rows"] == table.num_rows
    return pq.read_table(output).to_pandas(), stats["explain_method"]


def _estimator(family: str):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if family == "lr":
        return LogisticRegression(max_iter=1000)
    return RandomForestClassifier(n_estimators=25, min_samples_leaf=5, random_state=0, n_jobs=1)


@pytest.mark.parametrize(
    ("family", "ms_per_row", "method"),
    [("lr", 0.2, "linear"), ("rf", 0.0, "tree_saabas"), ("rf", 1000.0, "tree_path_dependent")],
)
def test_replayed_scoring_gives_todays_predictions_and_reasons(
    telco_cfg, telco_frame, tmp_path, caplog, family, ms_per_row, method
):
    cfg = dataclasses.replace(
        telco_cfg, inference=dataclasses.replace(telco_cfg.inference, explain_ms_per_row=ms_per_row)
    )
    model = _logged_pipeline(cfg, telco_frame, _estimator(family))
    table = _batch(cfg, telco_frame, 2000 if ms_per_row < 1000 else 300)
    before, before_method = _score(cfg, model, table, tmp_path, "pipeline", use_replay=False)
    with caplog.at_level(logging.INFO, logger="driftloop.serving.chunk_scoring"):
        after, after_method = _score(cfg, model, table, tmp_path, "replay", use_replay=True)

    assert "uses the numpy replay" in caplog.text  # else this compares the pipeline with itself
    assert before_method == after_method == method
    assert list(after.columns) == list(before.columns)
    assert after[bus.PREDICTION_COLUMN].tolist() == before[bus.PREDICTION_COLUMN].tolist()
    np.testing.assert_allclose(after[bus.SCORE_COLUMN], before[bus.SCORE_COLUMN], rtol=0, atol=1e-9)
    for i in range(1, cfg.inference.reasons + 1):
        for part in ("feature", "value"):
            column = bus.reason_column(i, part)
            assert after[column].tolist() == before[column].tolist(), column
        contribution = bus.reason_column(i, "contribution")
        np.testing.assert_allclose(after[contribution], before[contribution], rtol=1e-9, atol=1e-12)
    # The reasons name original features, and the values shown are the row's own.
    first = table.to_pandas()
    row = first.iloc[0]
    feature = after.at[0, bus.reason_column(1, "feature")]
    assert feature in cfg.features
    assert after.at[0, bus.reason_column(1, "value")] == (
        None if pd.isna(row[feature]) else str(row[feature])
    )


def test_a_replay_that_differs_from_its_pipeline_is_not_used(
    telco_cfg, telco_frame, tmp_path, caplog, monkeypatch
):
    from driftloop.serving import replay as replay_module

    model = _logged_pipeline(telco_cfg, telco_frame, _estimator("lr"))
    compile_model = replay_module.compile_model

    def broken(pipeline):
        compiled = compile_model(pipeline)
        compiled.scaler = copy.deepcopy(compiled.scaler)  # the pipeline's own scaler stays as fitted
        compiled.scaler.mean_ = compiled.scaler.mean_ + 0.5
        return compiled

    monkeypatch.setattr(replay_module, "compile_model", broken)
    table = _batch(telco_cfg, telco_frame, 1500)
    before, _ = _score(telco_cfg, model, table, tmp_path, "pipeline", use_replay=False)
    with caplog.at_level(logging.INFO, logger="driftloop.serving.chunk_scoring"):
        after, _ = _score(telco_cfg, model, table, tmp_path, "replay", use_replay=True)

    assert "uses the pipeline, not the numpy replay" in caplog.text
    assert "differs" in caplog.text
    pd.testing.assert_frame_equal(after, before)


def test_the_parts_of_a_batch_scored_in_one_process_are_verified_once(
    telco_cfg, telco_frame, tmp_path, caplog
):
    model = _logged_pipeline(telco_cfg, telco_frame, _estimator("rf"))
    table = _batch(telco_cfg, telco_frame, 1400)
    whole, _ = _score(telco_cfg, model, table, tmp_path, "pipeline", False, table.to_pandas().head(500))
    with caplog.at_level(logging.INFO, logger="driftloop.serving.chunk_scoring"):
        for part, rows in enumerate((table.slice(0, 700), table.slice(700))):  # each with the same reference
            _score(telco_cfg, model, rows, tmp_path, f"part{part}", True, table.to_pandas().head(500))

    assert caplog.text.count("uses the numpy replay (verified") == 1
    parts = pd.concat([pd.read_parquet(tmp_path / f"part{i}.parquet") for i in (0, 1)], ignore_index=True)
    assert parts[bus.PREDICTION_COLUMN].tolist() == whole[bus.PREDICTION_COLUMN].tolist()
    for i in range(1, telco_cfg.inference.reasons + 1):
        column = bus.reason_column(i, "feature")
        assert parts[column].tolist() == whole[column].tolist(), column
