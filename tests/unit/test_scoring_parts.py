"""Fanned-out batch scoring: a batch cut into parts, scored in any order (retried, twice), combined once, on
a local folder and on moto's S3 server; and the inference DAG that maps the parts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftloop.core import bus, row_ranges
from driftloop.serving import scoring_parts
from tests.store_fakes import read_store_frame, write_store_batch, zone_names
from tests.unit.test_inference import _register

BATCH_ROWS = 450
PART_ROWS = 100


@pytest.fixture
def scoring_env(data_store, driftloop_env, tmp_path, monkeypatch):
    """A private MLflow store, parts of 100 rows, no SHAP reasons (exact scores are compared)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    overrides = {"inference": {"chunk_rows": PART_ROWS, "reasons": 0}, "training": {"models": ["lr"]}}
    monkeypatch.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps(overrides))
    from driftloop.core.config import load_dataset_config

    return load_dataset_config("telco_churn")


@pytest.fixture
def champion(scoring_env, telco_frame):
    from driftloop.core.tracking import get_client

    version = _register(scoring_env, telco_frame.iloc[:2000])
    get_client().set_registered_model_alias(scoring_env.registered_model_name, bus.CHAMPION, version)
    return version


def test_split_rows_covers_every_row_once_in_even_parts():
    assert row_ranges.split_rows(450, 100) == [(0, 90), (90, 180), (180, 270), (270, 360), (360, 450)]
    assert row_ranges.split_rows(100, 100) == [(0, 100)]
    assert row_ranges.split_rows(0, 100) == [(0, 0)]


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 5000), part_rows=st.integers(1, 2000))
def test_split_rows_property(rows, part_rows):
    ranges = row_ranges.split_rows(rows, part_rows)
    assert ranges[0][0] == 0 and ranges[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    sizes = [stop - start for start, stop in ranges]
    assert max(sizes) <= part_rows and max(sizes) - min(sizes) <= 1


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(0, 1000), length=st.integers(0, 1000), batch_rows=st.integers(1, 300), data=st.data()
)
def test_a_row_range_reads_exactly_its_rows_in_batches(tmp_path_factory, start, length, batch_rows, data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("range") / "rows.parquet"
    groups = data.draw(st.lists(st.integers(1, 250), min_size=1, max_size=8))  # uneven row groups
    with pq.ParquetWriter(path, pa.schema([("i", pa.int64())])) as writer:
        first = 0
        for size in groups:
            writer.write_table(pa.table({"i": np.arange(first, first + size)}))
            first += size
    stop = min(start + length, first)
    batches = list(row_ranges.iter_row_range(path, start, stop, batch_rows, ["i"]))
    values = [v for b in batches for v in b.column(0).to_pylist()]
    assert values == list(range(start, max(start, stop)))
    assert all(b.num_rows == batch_rows for b in batches[:-1])
    assert all(b.num_rows > 0 for b in batches)


def test_parts_scored_in_any_order_and_twice_combine_into_the_batch_once(champion, scoring_env, telco_frame):
    from driftloop.core.registry import load_model

    cfg = scoring_env
    batch = telco_frame.iloc[3000 : 3000 + BATCH_ROWS]
    write_store_batch(cfg, batch, "big_001")
    planned = scoring_parts.plan_scoring(cfg)
    parts = planned["parts"]
    assert [p["part"] for p in parts] == [0, 1, 2, 3, 4] and {p["parts"] for p in parts} == {5}
    assert [(p["row_start"], p["row_stop"]) for p in parts] == row_ranges.split_rows(BATCH_ROWS, PART_ROWS)
    assert {p["model_version"] for p in parts} == {champion}
    json.dumps(planned)  # what a mapped task receives travels through XCom as JSON

    for values in reversed(parts):  # workers finish in any order
        assert scoring_parts.score_part(cfg, values)["reused"] is False
    assert scoring_parts.score_part(cfg, parts[2])["reused"] is True  # a retried mapped task writes nothing
    assert len(zone_names(cfg, f"scoring/parts/big_001/v{champion}")) == 10  # 5 parts: data + commit each
    assert zone_names(cfg, "predictions") == []  # nothing visible before the combine

    result = scoring_parts.commit_scored_batches(cfg, planned)
    [scored] = result["scored"]
    assert scored["rows"] == BATCH_ROWS and scored["model_version"] == champion
    predictions = read_store_frame(scored["predictions_uri"])
    assert predictions[cfg.id_column].tolist() == batch[cfg.id_column].tolist()  # every row once, in order
    model = load_model(f"models:/{cfg.registered_model_name}/{champion}")
    expected = model.predict_proba(batch[cfg.features])[:, 1]
    np.testing.assert_allclose(predictions[bus.SCORE_COLUMN].to_numpy(), expected, rtol=1e-9)
    assert set(predictions["model_version"]) == {champion}
    assert predictions[bus.SCORED_AT_COLUMN].nunique() == 1  # one timestamp for the batch, whichever part
    assert zone_names(cfg, "scoring/parts") == []  # the parts are gone once combined
    assert zone_names(cfg, "predictions") == ["big_001.json", "big_001.parquet"]

    assert scoring_parts.plan_scoring(cfg)["parts"] == []  # a second trigger changes nothing
    again = scoring_parts.commit_scored_batches(cfg, planned)  # a retried commit records the same run
    assert again["scored"][0]["inference_run_id"] == scored["inference_run_id"]


def test_a_missing_part_is_named_and_nothing_is_combined(champion, scoring_env, telco_frame):
    cfg = scoring_env
    write_store_batch(cfg, telco_frame.iloc[4000 : 4000 + BATCH_ROWS], "big_002")
    planned = scoring_parts.plan_scoring(cfg)
    for values in planned["parts"][:-1]:
        scoring_parts.score_part(cfg, values)
    with pytest.raises(RuntimeError, match=r"big_002: part\(s\) \[4\] not scored yet \(4 of 5 committed"):
        scoring_parts.commit_scored_batches(cfg, planned)
    assert zone_names(cfg, "predictions") == []
    scoring_parts.score_part(cfg, planned["parts"][-1])  # the retried mapped task
    assert scoring_parts.commit_scored_batches(cfg, planned)["scored"][0]["rows"] == BATCH_ROWS


def test_every_part_scores_with_the_version_pinned_by_the_plan(champion, scoring_env, telco_frame):
    from driftloop.core.tracking import get_client

    cfg = scoring_env
    write_store_batch(cfg, telco_frame.iloc[5000 : 5000 + BATCH_ROWS], "big_003")
    planned = scoring_parts.plan_scoring(cfg)
    flipped = _register(cfg, telco_frame.iloc[:2000], flip=True)
    get_client().set_registered_model_alias(cfg.registered_model_name, bus.CHAMPION, flipped)  # mid-run
    for values in planned["parts"]:
        scoring_parts.score_part(cfg, values)
    [scored] = scoring_parts.commit_scored_batches(cfg, planned)["scored"]
    assert scored["model_version"] == champion != flipped
    predictions = read_store_frame(scored["predictions_uri"])
    assert set(predictions["model_version"]) == {champion}


def test_a_part_whose_rows_do_not_add_up_is_never_combined(champion, scoring_env, telco_frame):
    cfg = scoring_env
    write_store_batch(cfg, telco_frame.iloc[6000 : 6000 + BATCH_ROWS], "big_004")
    planned = scoring_parts.plan_scoring(cfg)
    for values in planned["parts"]:
        scoring_parts.score_part(cfg, values)
    lying = json.loads(json.dumps(planned))
    for values in lying["parts"]:
        values["batch_rows"] = BATCH_ROWS + 1
    with pytest.raises(RuntimeError, match=f"the parts hold {BATCH_ROWS} rows, the batch {BATCH_ROWS + 1}"):
        scoring_parts.commit_scored_batches(cfg, lying)
    assert zone_names(cfg, "predictions") == []


def test_the_inference_dag_maps_score_part_between_the_plan_and_the_commit():
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.test_dag_integrity import PROJECT_DIR

    bag = DagBag(dag_folder=str(PROJECT_DIR / "dags" / "inference_pipeline.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[bus.dag_id("telco_churn", bus.INFERENCE_PIPELINE)]
    plan, part, commit = (dag.get_task(t) for t in ("plan_scoring", "score_part", "score_pending_batches"))
    assert type(part).__name__.endswith("MappedOperator")
    assert part.upstream_task_ids == {"list_parts"} and dag.get_task("list_parts").upstream_task_ids == {
        "plan_scoring"
    }
    assert commit.upstream_task_ids == {"plan_scoring", "score_part"}
    assert commit.trigger_rule == "none_failed"  # commits what was recorded even when no part was planned
    assert [o.uri for o in commit.outlets] == [bus.asset_uri("telco_churn", "predictions")]
    assert not part.outlets and not plan.outlets  # monitoring starts once the batch is combined, not before
