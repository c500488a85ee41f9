"""Which rows model selection compares and tunes on: all of them up to ``training.selection_max_rows`` and
``training.tune_max_rows``, a class-stratified sample above."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest


def _with(cfg, **training):
    return dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, **training))


def _rows(cfg, n: int, positive_share: float) -> pd.DataFrame:
    """``n`` labelled rows, ``positive_share`` of them churners, each with its own id."""
    rng = np.random.default_rng(3)
    positives = int(n * positive_share)
    labels = np.array(["Yes"] * positives + ["No"] * (n - positives))
    return pd.DataFrame(
        {cfg.id_column: [f"c{i:06d}" for i in range(n)], "x": rng.normal(size=n), cfg.target: labels}
    )


def test_the_shipped_config_tunes_small_datasets_on_every_selection_row(telco_cfg, telco_frame):
    from driftloop.training.selection import select_rows, tune_rows

    selection_df = select_rows(telco_cfg, telco_frame)
    assert selection_df is telco_frame
    assert tune_rows(telco_cfg, selection_df) is selection_df


def test_tuning_samples_above_tune_max_rows_by_class_and_not_at_or_below(telco_cfg):
    from driftloop.training.selection import tune_rows

    cfg = _with(telco_cfg, tune_max_rows=2_000)
    many = _rows(cfg, 10_000, 0.1)
    sample = tune_rows(cfg, many)
    assert 1_990 <= len(sample) <= 2_010
    assert set(sample[cfg.id_column]) <= set(many[cfg.id_column])
    assert sample[cfg.id_column].is_unique
    assert (sample[cfg.target] == "Yes").mean() == pytest.approx(0.1, abs=0.005)
    assert tune_rows(cfg, many).equals(sample)  # seeded
    exactly = _rows(cfg, 2_000, 0.1)
    assert tune_rows(cfg, exactly) is exactly
    assert tune_rows(_with(cfg, tune_max_rows=0), many) is many


class _Experiment:
    """Stands in for a PyCaret experiment: records the rows it was set up on and what ran on it."""

    def __init__(self, frame: pd.DataFrame, calls: list[tuple[str, int]]) -> None:
        self.rows = len(frame)
        self.calls = calls
        calls.append(("setup", self.rows))

    def compare_models(self, **_: object) -> str:
        self.calls.append(("compare", self.rows))
        return "best"

    def pull(self) -> pd.DataFrame:
        return pd.DataFrame()

    def tune_model(self, estimator: str, **_: object) -> str:
        self.calls.append(("tune", self.rows))
        return estimator

    def finalize_model(self, estimator: str) -> str:
        self.calls.append(("finalize", self.rows))
        return estimator


@pytest.mark.parametrize(
    ("tune_max_rows", "expected"),
    [
        (0, [("setup", 3_000), ("compare", 3_000), ("tune", 3_000), ("finalize", 3_000)]),
        (3_000, [("setup", 3_000), ("compare", 3_000), ("tune", 3_000), ("finalize", 3_000)]),
        (
            1_000,
            [("setup", 3_000), ("compare", 3_000), ("setup", 1_000), ("tune", 1_000), ("finalize", 3_000)],
        ),
    ],
)
def test_fit_pycaret_tunes_on_the_sample_and_compares_and_finalizes_on_the_selection(
    telco_cfg, monkeypatch, tune_max_rows, expected
):
    from driftloop.core.task_types import training_decision
    from driftloop.training import selection

    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(selection, "_setup", lambda cfg, frame, decision, n_jobs: _Experiment(frame, calls))
    cfg = _with(telco_cfg, tune_max_rows=tune_max_rows, selection_max_rows=0, tune_iter=2)
    train_df = _rows(cfg, 3_000, 0.3)
    fitted = selection.fit_pycaret(cfg, train_df, 1, training_decision(cfg, train_df[cfg.target]))
    assert calls == expected
    assert fitted["tune_rows"] == expected[-2][1]
    assert len(fitted["selection_df"]) == 3_000


def test_a_negative_tune_max_rows_is_rejected_with_the_key():
    import yaml

    from driftloop.core.config import ConfigError, parse_dataset_config
    from driftloop.core.settings import PROJECT_DIR

    raw = yaml.safe_load((PROJECT_DIR / "include" / "configs" / "telco_churn.yaml").read_text())
    raw["training"] = {**raw["training"], "tune_max_rows": -1}
    with pytest.raises(ConfigError, match=r"x\.yaml: training\.tune_max_rows: Input should be greater than"):
        parse_dataset_config(raw, "x.yaml")
