"""Simulator: disjoint periods, injected drift, late labels, deterministic output."""

from __future__ import annotations

import pandas as pd
import pytest

from driftloop import simulate
from driftloop.state import StatePaths


def test_reference_and_batches_are_disjoint_and_labels_come_later(telco_cfg):
    paths = StatePaths.for_dataset(telco_cfg)
    ref = simulate.simulate_reference(telco_cfg)
    b1 = simulate.simulate_batch(telco_cfg, 1, rows=500)
    b2 = simulate.simulate_batch(telco_cfg, 2, rows=500)
    reference = pd.read_csv(ref["path"])
    batch1, batch2 = pd.read_csv(b1["path"]), pd.read_csv(b2["path"])
    assert len(reference) == 3522 and len(batch1) == 500
    ids = [set(reference["customer_id"]), set(batch1["customer_id"]), set(batch2["customer_id"])]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert "churn" in reference.columns and "churn" not in batch1.columns
    assert list(paths.labels_landing_dir.glob("*")) == []  # labels have not arrived yet

    delivered = simulate.simulate_labels(telco_cfg, 1)
    labels = pd.read_csv(delivered["path"])
    assert list(labels.columns) == ["customer_id", "churn"]
    assert set(labels["customer_id"]) == ids[1]


def test_same_call_writes_the_same_bytes(telco_cfg):
    first = simulate.simulate_batch(telco_cfg, 3, rows=200, drift={"preset": "strong"})
    content = open(first["path"], "rb").read()
    simulate.simulate_batch(telco_cfg, 3, rows=200, drift={"preset": "strong"})
    assert open(first["path"], "rb").read() == content


def test_drift_moves_the_named_columns_only(telco_cfg, telco_frame):
    base = telco_frame.head(2000).reset_index(drop=True)
    drift = {"covariate": {"tenure": {"scale": 3}}, "category_mix": {"contract": {"Two year": 0.9}}}
    drifted = simulate.apply_drift(base, telco_cfg, drift, seed=1)
    assert drifted["tenure"].mean() == pytest.approx(base["tenure"].mean() * 3, rel=0.01)
    assert (drifted["contract"] == "Two year").mean() > 0.85
    assert drifted["monthly_charges"].equals(base["monthly_charges"])


def test_label_shift_reaches_the_positive_share_with_unique_ids(telco_cfg, telco_frame):
    base = telco_frame.head(1000).reset_index(drop=True)
    drifted = simulate.apply_drift(base, telco_cfg, {"label_shift": 0.6}, seed=2)
    assert (drifted["churn"] == "Yes").mean() == pytest.approx(0.6, abs=0.01)
    assert drifted["customer_id"].is_unique


def test_drift_on_unknown_column_or_category_is_rejected(telco_cfg, telco_frame):
    with pytest.raises(ValueError, match="not a numeric feature"):
        simulate.apply_drift(telco_frame, telco_cfg, {"covariate": {"contract": {"scale": 2}}}, seed=1)
    with pytest.raises(ValueError, match="not a category"):
        simulate.apply_drift(telco_frame, telco_cfg, {"category_mix": {"contract": {"Ten year": 0.5}}}, seed=1)


def test_labels_of_an_unsimulated_batch_are_an_error(telco_cfg):
    with pytest.raises(FileNotFoundError, match="simulate the batch first"):
        simulate.simulate_labels(telco_cfg, 42)
