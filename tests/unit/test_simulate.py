"""Simulator: disjoint periods, injected drift, late labels, deterministic output.

The tests that write the landing zone run on a local folder and on a bucket of the test S3 server
(``data_store``).
"""

from __future__ import annotations

import dataclasses
import io

import pandas as pd
import pytest

from driftloop.core.state import StatePaths
from driftloop.core.storage import location
from driftloop.data import simulate
from tests import zones


def read_csv(path: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(location(path).read_bytes()))


def test_reference_and_batches_are_disjoint_and_labels_come_later(data_store, telco_cfg):
    paths = StatePaths.for_dataset(telco_cfg)
    ref = simulate.simulate_reference(telco_cfg)
    b1 = simulate.simulate_batch(telco_cfg, 1, rows=500)
    b2 = simulate.simulate_batch(telco_cfg, 2, rows=500)
    assert ref["path"] == str(paths.landing_dir / "reference.csv")
    assert zones.names(paths.landing_dir) == ["batch_001.csv", "batch_002.csv", "reference.csv"]
    reference = read_csv(ref["path"])
    batch1, batch2 = read_csv(b1["path"]), read_csv(b2["path"])
    assert len(reference) == 3522 and len(batch1) == 500
    ids = [set(reference["customer_id"]), set(batch1["customer_id"]), set(batch2["customer_id"])]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert "churn" in reference.columns and "churn" not in batch1.columns
    assert zones.names(paths.labels_landing_dir) == []  # labels have not arrived yet

    delivered = simulate.simulate_labels(telco_cfg, 1)
    assert zones.names(paths.labels_landing_dir) == ["labels_batch_001.csv"]
    labels = read_csv(delivered["path"])
    assert list(labels.columns) == ["customer_id", "churn"]
    assert set(labels["customer_id"]) == ids[1]


def test_same_call_writes_the_same_bytes(data_store, telco_cfg):
    first = simulate.simulate_batch(telco_cfg, 3, rows=200, drift={"preset": "strong"})
    content = location(first["path"]).read_bytes()
    simulate.simulate_batch(telco_cfg, 3, rows=200, drift={"preset": "strong"})
    assert location(first["path"]).read_bytes() == content


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
        simulate.apply_drift(
            telco_frame, telco_cfg, {"category_mix": {"contract": {"Ten year": 0.5}}}, seed=1
        )


def test_labels_of_an_unsimulated_batch_are_an_error(data_store, telco_cfg):
    with pytest.raises(FileNotFoundError, match="simulate the batch first"):
        simulate.simulate_labels(telco_cfg, 42)


def test_covariate_drift_keeps_integer_columns_integer(telco_cfg, telco_frame):
    base = telco_frame.head(500).reset_index(drop=True)
    drifted = simulate.apply_drift(
        base, telco_cfg, {"covariate": {"tenure": {"scale": 1.37, "shift": 0.4}}}, seed=1
    )
    assert drifted["tenure"].dtype.kind in "iu" or str(drifted["tenure"].dtype) == "Int64"
    assert (drifted["tenure"] % 1 == 0).all()
    assert "." not in drifted[["customer_id", "tenure"]].to_csv(index=False)
    strong = simulate.apply_drift(base, telco_cfg, {"preset": "strong"}, seed=1)
    assert (strong["tenure"] % 1 == 0).all() and (strong["monthly_charges"] % 1 != 0).any()


def test_a_column_the_contract_types_int64_stays_whole_whatever_its_source_dtype(telco_cfg, telco_frame):
    cfg = dataclasses.replace(
        telco_cfg, contract={**telco_cfg.contract, "columns": {"monthly_charges": {"dtype": "int64"}}}
    )
    base = telco_frame.head(300).reset_index(drop=True)
    drifted = simulate.apply_drift(base, cfg, {"covariate": {"monthly_charges": {"scale": 1.1}}}, seed=1)
    assert (drifted["monthly_charges"] % 1 == 0).all()
    assert drifted["monthly_charges"].mean() == pytest.approx(base["monthly_charges"].mean() * 1.1, rel=0.01)


@pytest.fixture
def hpc(driftloop_env):
    from driftloop.core.config import load_dataset_config
    from driftloop.data.sources import load_source_frame

    cfg = load_dataset_config("hpc_jobs")
    return cfg, load_source_frame(cfg).head(1000).reset_index(drop=True)


@pytest.fixture
def ames(driftloop_env):
    from driftloop.core.config import load_dataset_config
    from driftloop.data.sources import load_source_frame

    cfg = load_dataset_config("ames_housing")
    return cfg, load_source_frame(cfg).head(500).reset_index(drop=True)


def test_multiclass_label_shift_sets_named_shares_and_keeps_the_others_in_proportion(hpc):
    cfg, base = hpc
    before = base["class"].value_counts(normalize=True)
    drifted = simulate.apply_drift(base, cfg, {"label_shift": {"L": 0.4}}, seed=3)
    after = drifted["class"].value_counts(normalize=True)
    assert len(drifted) == len(base) and drifted["job_id"].is_unique
    assert after["L"] == pytest.approx(0.4, abs=0.002)
    others = before.drop("L") / before.drop("L").sum() * 0.6
    for label, share in others.items():
        assert after[label] == pytest.approx(share, abs=0.002)
    assert set(drifted["class"]) <= set(before.index), "labels stay in the dataset's own vocabulary"
    rarest = before.idxmin()
    assert (simulate.apply_drift(base, cfg, {"label_shift": 0.5}, seed=3)["class"] == rarest).mean() == 0.5


def test_regression_label_shift_moves_target_values_and_keeps_their_dtype(ames):
    cfg, base = ames
    assert base["Sale_Price"].dtype == "int64", "a regression target keeps its source dtype"
    drifted = simulate.apply_drift(base, cfg, {"label_shift": {"scale": 1.25, "shift": -1000}}, seed=4)
    expected = (base["Sale_Price"] * 1.25 - 1000).round()
    assert drifted["Sale_Price"].tolist() == expected.astype(int).tolist()
    assert "." not in drifted[["house_id", "Sale_Price"]].to_csv(index=False)
    assert drifted.drop(columns="Sale_Price").equals(base.drop(columns="Sale_Price"))
    assert (
        simulate.apply_drift(base, cfg, {"label_shift": 0.8}, seed=4)["Sale_Price"]
        == (base["Sale_Price"] * 0.8).round().astype(int)
    ).all()


def test_label_shift_that_does_not_fit_the_task_is_rejected(hpc, ames):
    (hpc_cfg, hpc_frame), (ames_cfg, ames_frame) = hpc, ames
    with pytest.raises(ValueError, match=r"\['XL'\] not among the labels"):
        simulate.apply_drift(hpc_frame, hpc_cfg, {"label_shift": {"XL": 0.3}}, seed=1)
    with pytest.raises(ValueError, match="add up to 1"):
        simulate.apply_drift(hpc_frame, hpc_cfg, {"label_shift": {"L": 0.7, "M": 0.6}}, seed=1)
    with pytest.raises(ValueError, match="scale and shift, not"):
        simulate.apply_drift(ames_frame, ames_cfg, {"label_shift": {"L": 0.7}}, seed=1)


def test_label_shift_option_parses_a_share_shares_or_scale():
    assert simulate._parse_label_shift("0.6") == 0.6
    assert simulate._parse_label_shift("L=0.5,VF=0.1") == {"L": 0.5, "VF": 0.1}
    assert simulate._parse_label_shift("scale=1.2,shift=-500") == {"scale": 1.2, "shift": -500.0}
