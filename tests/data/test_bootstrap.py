"""Contract bootstrap keeps dtypes honest: source dtypes decide, and drifted batches of such data are
accepted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from driftloop.cli import main
from driftloop.core.config import parse_dataset_config
from driftloop.core.state import StatePaths
from driftloop.data import contract as dc
from driftloop.data import ingest, simulate

ROWS = 200


@pytest.fixture
def whole_floats(driftloop_env, tmp_path):
    """A dataset whose float column holds only whole numbers and missing values, beside an integer column."""
    rng = np.random.default_rng(3)
    weight = rng.integers(1, 40, ROWS).astype(float)
    weight[::7] = np.nan  # why a float column of whole numbers exists at all: it has to hold missing values
    frame = pd.DataFrame(
        {
            "item_id": [f"I-{i:04d}" for i in range(ROWS)],
            "weight": weight,
            "count": rng.integers(0, 12, ROWS),
            "colour": rng.choice(["red", "green", "blue"], ROWS),
            "label": rng.choice(["yes", "no"], ROWS),
        }
    )
    source = tmp_path / "source.parquet"
    frame.to_parquet(source, index=False)
    raw = {
        "name": "whole_floats",
        "source": {"loader": "parquet", "path": str(source)},
        "id_column": "item_id",
        "target": "label",
        "positive_label": "yes",
        "task": "binary",
        "model_name": "whole-floats",
        "contract": {"path": "whole_floats.contract.yaml"},
        "features": {"numeric": ["weight", "count"], "categorical": ["colour"]},
    }
    cfg = parse_dataset_config(raw, str(tmp_path / "whole_floats.yaml"))
    return cfg, frame


def test_a_float_column_of_whole_numbers_stays_float_and_says_why(whole_floats):
    cfg, frame = whole_floats
    result = dc.bootstrap_contract(cfg)
    columns = yaml.safe_load(open(result["contract_path"]).read())["columns"]
    assert columns["weight"] == {
        "dtype": "float64",
        "nullable": True,
        "min": 0,
        "max": 2 * frame["weight"].max(),
    }
    assert columns["count"]["dtype"] == "int64" and columns["count"]["nullable"] is False
    report = {entry["column"]: entry for entry in result["report"]}
    assert report["weight"]["source_dtype"] == "float64"
    assert "values all whole: kept float" in report["weight"]["why"]
    assert f"{frame['weight'].isna().sum()} of {ROWS} null" in report["weight"]["why"]
    assert report["count"]["why"].startswith("source dtype int64; no nulls")
    assert report["label"]["role"] == "label" and report["label"]["rule"] == "2 categories"
    text = open(result["contract_path"]).read()
    assert "  # source dtype float64 (values all whole: kept float, so fractions pass)" in text


def test_a_batch_with_fractions_in_that_column_is_accepted_by_ingest(whole_floats):
    cfg, frame = whole_floats
    dc.bootstrap_contract(cfg)
    paths = StatePaths.for_dataset(cfg)
    paths.landing_dir.mkdir(parents=True)
    batch = frame.drop(columns=["label"]).head(30).assign(weight=np.linspace(0.25, 30.75, 30))
    batch.loc[4, "weight"] = np.nan
    batch.to_csv(paths.landing_dir / "batch_001.csv", index=False)
    result = ingest.ingest_batches(cfg)
    assert result["accepted"] == ["batch_001"] and result["quarantined"] == [], result
    assert (result["rows_accepted"], result["rows_quarantined"]) == (30, 0)
    stored = pd.read_parquet(paths.batches_dir / "batch_001.parquet")
    assert stored["weight"].equals(batch["weight"])
    # Integer columns stay honest the other way: a fraction there is a bad row.
    bad = frame.head(5).assign(count=[1, 2.5, 3, 4, 5])
    assert dc.validate_frame(cfg, bad)[1]["_reason"].tolist() == ["not_integer:count"]


def test_a_strongly_drifted_simulated_batch_of_such_data_reaches_storage_whole(whole_floats):
    cfg, _ = whole_floats
    dc.bootstrap_contract(cfg)
    simulate.simulate_reference(cfg)
    landed = simulate.simulate_batch(cfg, 1, rows=60, drift={"preset": "strong"})
    written = pd.read_csv(landed["path"])
    assert written["weight"].dropna().mod(1).ne(0).any(), "the drift writes fractions into the float column"
    assert written["count"].dtype == "int64", "and none into the integer column"
    result = ingest.ingest_batches(cfg)
    assert result["rows_quarantined"] == 0 and sorted(result["accepted"]) == ["batch_001", "reference"], (
        result
    )


def test_bootstrap_cli_prints_the_report_or_json(whole_floats, tmp_path, capsys, monkeypatch):
    cfg, _ = whole_floats
    monkeypatch.setenv("DRIFTLOOP_CONFIG_DIR", str(tmp_path))
    (tmp_path / "whole_floats.yaml").write_text(
        yaml.safe_dump(
            {
                "name": cfg.name,
                "source": {"loader": "parquet", "path": cfg.source.path},
                "id_column": cfg.id_column,
                "target": cfg.target,
                "positive_label": "yes",
                "task": "binary",
                "model_name": cfg.model_name,
                "features": {
                    "numeric": list(cfg.numeric_features),
                    "categorical": list(cfg.categorical_features),
                },
            }
        )
    )
    assert main(["--dataset", "whole_floats", "contract", "bootstrap"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        f"Wrote {tmp_path / 'whole_floats.contract.yaml'}: 5 columns from {ROWS} reference"
    )
    assert lines[1].split() == ["column", "role", "source", "dtype", "null", "rule", "why"]
    weight = next(line for line in lines if line.startswith("weight "))
    assert weight.split()[:5] == ["weight", "numeric", "float64", "float64", "yes"]
    assert main(["--dataset", "whole_floats", "contract", "bootstrap", "--force", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["report"]
    assert [r["dtype"] for r in report] == ["string", "float64", "int64", "string", "string"]
