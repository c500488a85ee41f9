"""Issue #17: a bootstrapped contract accepts its own source, unlabelled rows never reach training, and a
snapshot that cannot train is a verdict naming the cause."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from driftloop.core import bus
from driftloop.core.config import parse_dataset_config
from driftloop.core.errors import TrainingDataError
from driftloop.data import contract as dc
from driftloop.data import ingest, simulate, snapshots
from driftloop.data.contract.bootstrap import format_bootstrap_report

ROWS = 120


def make_dataset(tmp_path, frame: pd.DataFrame, name: str = "players", task: str = "regression"):
    source = tmp_path / f"{name}.parquet"
    frame.to_parquet(source, index=False)
    raw = {
        "name": name,
        "source": {"loader": "parquet", "path": str(source)},
        "id_column": "player",
        "target": "salary",
        "task": task,
        "model_name": name,
        "contract": {"path": f"{name}.contract.yaml"},
        "features": {"numeric": ["hits"], "categorical": ["league"]},
        **({"positive_label": "high"} if task == "binary" else {}),
    }
    return parse_dataset_config(raw, str(tmp_path / f"{name}.yaml"))


def players(n: int = ROWS, null_every: int = 0, names: str = "-Player {i}") -> pd.DataFrame:
    salary = [float(100 + i) for i in range(n)]
    if null_every:
        salary = [None if i % null_every == 0 else s for i, s in enumerate(salary)]
    return pd.DataFrame(
        {
            "player": [names.format(i=i) for i in range(n)],
            "hits": [i % 50 for i in range(n)],
            "league": ["A" if i % 2 else "N" for i in range(n)],
            "salary": salary,
        }
    )


def test_formula_looking_names_turn_the_check_off_with_the_reason(driftloop_env, tmp_path):
    cfg = make_dataset(tmp_path, players())
    result = dc.bootstrap_contract(cfg)
    assert result["source_check"]["rejected"] == {"formula_injection:player": ROWS}
    text = open(result["contract_path"]).read()
    rule = yaml.safe_load(text)["columns"]["player"]
    assert rule["formula_check"] is False
    comment = text.split("\n  player:")[0].splitlines()[-1]
    assert f"formula_check off: {ROWS} of {ROWS}" in comment and "-Player 0" in comment
    report = format_bootstrap_report(result)
    assert f"formula_injection:player ({ROWS} rows)" in report

    # The reference then lands whole, and a quarantined row's CSV neutralises such a value.
    simulate.simulate_reference(cfg)
    assert ingest.ingest_batches(cfg)["rows_quarantined"] == 0


def test_duplicate_ids_are_refused_with_the_fix(driftloop_env, tmp_path):
    cfg = make_dataset(
        tmp_path, players(names="P-{i}").assign(player=lambda f: f.player.where(f.hits != 3, "P-3"))
    )
    with pytest.raises(dc.ContractError, match=r"duplicate_id:player rejects \d+ of 120 source rows \(fix:"):
        dc.bootstrap_contract(cfg)


def test_a_formula_check_on_the_column_still_rejects_it_in_batches(driftloop_env, tmp_path):
    cfg = make_dataset(tmp_path, players(names="P-{i}"))
    dc.bootstrap_contract(cfg)  # plain ids: the check stays on
    frame = players(4, names="P-x{i}")
    frame.loc[1, "player"] = "=HYPERLINK(1)"
    accepted, rejected = dc.validate_frame(cfg, frame.astype(str))
    assert list(rejected["_reason"]) == ["formula_injection:player"]
    assert len(accepted) == 3


def test_neutralised_csv_prefixes_formulas_only():
    from driftloop.data.contract.text import neutralise_formulas

    frame = pd.DataFrame({"name": ["-Andy Allanson", "=1+2", "@cmd", "Bob", "-12.5", None], "n": range(6)})
    out = neutralise_formulas(frame)
    assert list(out["name"]) == ["'-Andy Allanson", "'=1+2", "'@cmd", "Bob", "-12.5", None]
    assert list(out["n"]) == list(range(6))


def test_unlabelled_rows_are_left_out_of_the_snapshot_and_counted(driftloop_env, tmp_path):
    cfg = make_dataset(tmp_path, players(null_every=4, names="P-{i}"))
    result = dc.bootstrap_contract(cfg)
    assert result["source_check"]["label_null_rows"] == ROWS // 4
    assert f"{ROWS // 4} of {ROWS} source rows (25%) have no label" in format_bootstrap_report(result)
    reference = simulate.simulate_reference(cfg)
    ingested = ingest.ingest_batches(cfg)
    assert ingested["rows_accepted"] == reference["rows"]
    snapshot = snapshots.build_snapshot(cfg)
    stored = pd.read_parquet(snapshot["snapshot_uri"].removeprefix("file://"))
    assert stored["salary"].notna().all()
    excluded = snapshot[bus.UNLABELLED_ROWS_EXCLUDED]
    assert excluded > 0 and snapshot["rows"] + excluded == reference["rows"]
    manifest = snapshots.resolve_snapshot(cfg, snapshot["snapshot_uri"])
    assert manifest["unlabelled_rows_excluded"] == excluded


def test_a_mostly_null_label_is_a_warning_at_bootstrap(driftloop_env, tmp_path):
    cfg = make_dataset(
        tmp_path,
        players(null_every=1, names="P-{i}").assign(
            salary=lambda f: f.salary.fillna(pd.Series([5.0] * 10, index=range(0, 100, 10)))
        ),
    )
    result = dc.bootstrap_contract(cfg)
    assert result["source_check"]["label_null_rows"] == ROWS - 10
    assert f"WARNING: the label is mostly null; {ROWS - 10} of {ROWS}" in format_bootstrap_report(result)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (["high"] * 40, "single class"),
        (["high"] * 39 + ["low"], r"fewer training rows than training.folds=5: \{'low': 1\}"),
        (["high", None] * 20, "have no 'salary'"),
        (["high", "low"] * 5, "too few rows to train: 10"),
    ],
)
def test_training_data_that_cannot_train_is_a_verdict(tmp_path, labels, match):
    from driftloop.training.data_checks import check_training_frames

    cfg = make_dataset(tmp_path, players(names="P-{i}"), task="binary")
    train = pd.DataFrame({"salary": labels})
    with pytest.raises(TrainingDataError, match=match):
        check_training_frames(cfg, train, pd.DataFrame({"salary": ["high"]}))


def test_pycaret_target_missing_error_becomes_a_verdict(tmp_path):
    from driftloop.training.data_checks import training_data_error

    cfg = make_dataset(tmp_path, players(names="P-{i}"))
    verdict = training_data_error(
        cfg,
        ValueError(
            "Invalid value for the target parameter. 59 missing values found in the target column: Salary."
        ),
    )
    assert isinstance(verdict, TrainingDataError) and "missing values found in the target" in str(verdict)
    assert training_data_error(cfg, ValueError("connection reset")) is None
