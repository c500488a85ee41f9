"""Every shipped dataset config parses, and its contract takes its own source data through the real ingest
path."""

from __future__ import annotations

import pandas as pd
import pytest

from driftloop.core.config import load_dataset_config
from driftloop.core.settings import PROJECT_DIR, Settings
from driftloop.core.state import StatePaths
from driftloop.core.task_types import LOWER_IS_BETTER, METRICS
from driftloop.data import contract as dc
from driftloop.data import ingest, simulate
from driftloop.data.contract.bootstrap import source_dtype
from driftloop.data.sources import load_source_frame

CONFIGS = sorted(
    p.stem
    for p in (PROJECT_DIR / "include" / "configs").glob("*.yaml")
    if ".contract" not in p.name and ".behaviour" not in p.name
)
TASKS = {
    "telco_churn": "binary",
    "mlc_churn": "binary",
    "ames_housing": "regression",
    "hpc_jobs": "multiclass",
}


def test_shipped_configs_cover_every_task_with_distinct_model_names():
    configs = [load_dataset_config(name, Settings.from_env({})) for name in CONFIGS]
    assert {c.name: c.task for c in configs} == TASKS
    assert len({c.registered_model_name for c in configs}) == len(configs)


@pytest.mark.parametrize("name", ["ames_housing", "hpc_jobs"])
def test_new_configs_gate_on_their_task_metrics(name):
    from driftloop.core.task_types import gate_metric_key

    cfg = load_dataset_config(name, Settings.from_env({}))
    keys = {gate_metric_key(metric) for metric in [cfg.gates.primary_metric, *cfg.gates.floors]}
    assert keys <= set(METRICS[cfg.task])
    if cfg.task == "regression":
        assert gate_metric_key(cfg.gates.primary_metric) in LOWER_IS_BETTER  # smaller RMSE wins
        assert cfg.gates.floors["RMSE"] > 0


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_contract_types_columns_by_their_source_dtype(name):
    cfg = load_dataset_config(name, Settings.from_env({}))
    frame = load_source_frame(cfg)
    contract = dc.load_contract(cfg)
    for column in cfg.numeric_features:
        assert contract.columns[column].dtype == source_dtype(frame[column]), column
    target = contract.columns[cfg.target]
    assert (target.categories is None) == (cfg.task == "regression")


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_contract_accepts_all_its_source_rows_and_labels_through_ingest(name, driftloop_env):
    cfg = load_dataset_config(name)
    rows = len(load_source_frame(cfg))
    simulate.simulate_reference(cfg, reference_share=0.9)
    simulate.simulate_batch(cfg, 1, rows=rows - round(rows * 0.9))
    simulate.simulate_labels(cfg, 1)
    batches, labels = ingest.ingest_batches(cfg), ingest.ingest_labels(cfg)
    assert (batches["rows_received"], batches["rows_quarantined"]) == (rows, 0), batches["quarantined"]
    assert labels["rows_quarantined"] == 0 and labels["rows_accepted"] == rows - round(rows * 0.9), labels
    stored = pd.read_parquet(StatePaths.for_dataset(cfg).batches_dir / "reference.parquet")
    assert list(stored.columns) == [cfg.id_column, *cfg.features, cfg.target]


@pytest.mark.parametrize("name", ["ames_housing", "hpc_jobs"])
def test_a_strongly_drifted_batch_and_its_shifted_labels_are_accepted_whole(name, driftloop_env):
    cfg = load_dataset_config(name)
    shift = {"scale": 1.3} if cfg.task == "regression" else 0.6
    simulate.simulate_batch(cfg, 1, rows=600, drift={"preset": "strong", "label_shift": shift})
    simulate.simulate_labels(cfg, 1)
    batches, labels = ingest.ingest_batches(cfg), ingest.ingest_labels(cfg)
    assert (batches["accepted"], batches["rows_quarantined"]) == (["batch_001"], 0), batches["quarantined"]
    assert (labels["rows_accepted"], labels["rows_quarantined"]) == (600, 0), labels["quarantined"]
