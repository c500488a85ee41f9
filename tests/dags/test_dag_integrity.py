"""DAG integrity: the DagBag loads cleanly and every DAG meets the operating rules CI enforces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from driftloop.core import bus
from driftloop.core.catalog import list_config_paths
from tests.config_copies import SHIPPED_DIR, copy_config

PROJECT_DIR = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((PROJECT_DIR / "dags").glob("*.py"))
# Every DAG file builds its DAG once per shipped dataset config (dags/dataset_configs.py builds none while all
# configs are usable).
SHIPPED_DATASETS = [p.stem for p in list_config_paths(SHIPPED_DIR)]
EXPECTED_DAGS = {bus.dag_id(dataset, name) for dataset in SHIPPED_DATASETS for name in bus.DAG_NAMES}
HEAVY_MODULES = [
    "pycaret",
    "mlflow",
    "shap",
    "evidently",
    "ydata_profiling",
    "sklearn",
    "pandas",
    "numpy",
    "pyarrow",
]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as mp:  # every shipped config, whatever the caller's environment says
        for name in ("DRIFTLOOP_DATASETS", "DRIFTLOOP_CONFIG_DIR", "DRIFTLOOP_CONFIG_OVERRIDES"):
            mp.delenv(name, raising=False)
        return DagBag(dag_folder=str(PROJECT_DIR / "dags"))


def test_dagbag_has_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, "\n".join(f"{k}: {v}" for k, v in dagbag.import_errors.items())


def test_dagbag_has_every_dag(dagbag):
    assert {"telco_churn", "mlc_churn"} <= set(SHIPPED_DATASETS)
    assert set(dagbag.dag_ids) == EXPECTED_DAGS


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_meets_operating_rules(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    dataset, name = bus.split_dag_id(dag_id)
    assert dag.tags and {"driftloop", dataset} <= set(dag.tags), f"{dag_id}: tags {dag.tags}"
    assert dag.doc_md and len(dag.doc_md.strip()) > 100, f"{dag_id}: doc_md missing or too short"
    assert dag.description and dag.description.startswith(name), f"{dag_id}: description {dag.description!r}"
    assert dag.catchup is False, f"{dag_id}: catchup must be False"
    assert dag.max_active_runs == 1, f"{dag_id}: max_active_runs {dag.max_active_runs}"
    for task in dag.tasks:
        assert task.owner not in ("", "airflow"), f"{dag_id}.{task.task_id}: owner {task.owner!r}"
        assert task.retries >= 2, f"{dag_id}.{task.task_id}: retries {task.retries} < 2"


def test_dag_files_are_wiring_only():
    for path in DAG_FILES:
        lines = path.read_text().splitlines()
        assert len(lines) <= 100, f"{path.name}: {len(lines)} lines; move logic into include/driftloop"
        assert "xcom_pull(dag_id" not in path.read_text(), f"{path.name}: cross-DAG xcom_pull"


@pytest.fixture(scope="module")
def several_configs(tmp_path_factory) -> Path:
    """A config folder with four datasets (copies of both shipped configs) and one refused config."""
    config_dir = tmp_path_factory.mktemp("configs")
    for index, source in enumerate(("telco_churn", "mlc_churn", "telco_churn", "mlc_churn")):
        copy_config(config_dir, source, f"{source}_{index}")
    copy_config(config_dir, "telco_churn", "refused", training={"foldz": 2})
    return config_dir


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_nothing_heavy_at_parse_time(dag_file, several_configs):
    """Parsing builds each DAG once per config and validates every config: still nothing heavy."""
    code = (
        "import json, runpy, sys; "
        f"runpy.run_path({str(dag_file)!r}); "
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR / "plugins"), os.environ.get("PYTHONPATH", "")]),
        "DRIFTLOOP_CONFIG_DIR": str(several_configs),
        "DRIFTLOOP_DATASETS": "",
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], (
        f"{dag_file.name} imports {loaded} at parse time; import them inside the task callable"
    )


def test_a_broken_override_fails_tasks_not_dag_parsing(monkeypatch):
    """A malformed DRIFTLOOP_CONFIG_OVERRIDES must not take every DAG down at import: the tasks fail, fast."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("DRIFTLOOP_CONFIG_OVERRIDES", "{not json")
    monkeypatch.delenv("DRIFTLOOP_DATASETS", raising=False)
    monkeypatch.delenv("DRIFTLOOP_CONFIG_DIR", raising=False)
    bag = DagBag(dag_folder=str(PROJECT_DIR / "dags"))
    assert bag.import_errors == {} and set(bag.dag_ids) == EXPECTED_DAGS

    from driftloop.data import ingest
    from driftloop_airflow import run_stage

    with pytest.raises(
        AirflowFailException, match="ConfigError: DRIFTLOOP_CONFIG_OVERRIDES is not valid JSON"
    ):
        run_stage("telco_churn", ingest.ingest_batches)


def test_verdicts_fail_fast_and_faults_propagate_for_a_retry():
    from airflow.sdk.exceptions import AirflowFailException

    from driftloop.core import errors
    from driftloop_airflow import fail_fast

    for verdict in (
        errors.GateRejected,
        errors.BatchQuarantined,
        errors.NoChampionError,
        errors.NoLabelledData,
        errors.SnapshotNotFoundError,
        errors.ConfigError,
    ):
        with pytest.raises(AirflowFailException, match=f"{verdict.__name__}: because"), fail_fast():
            raise verdict("because")
    with pytest.raises(ConnectionError), fail_fast():  # a tracking server that does not answer: retried
        raise ConnectionError("MLflow is down")


def test_every_task_calls_the_package_through_run_stage_or_fail_fast():
    """Tasks that call into driftloop must translate verdicts; a bare call would retry a verdict twice."""
    import ast

    for path in DAG_FILES:
        tree = ast.parse(path.read_text())
        for func in (
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef)
            and any(isinstance(d, ast.Name | ast.Call) and "task" in ast.unparse(d) for d in n.decorator_list)
        ):
            calls = [ast.unparse(c.func) for c in ast.walk(func) if isinstance(c, ast.Call)]
            imported = {
                a.asname or a.name
                for n in tree.body
                if isinstance(n, ast.ImportFrom) and n.module == "driftloop"
                for a in n.names
            }
            package_calls = [c for c in calls if c.split(".")[0] in imported]
            guarded = "run_stage" in calls or "fail_fast" in calls
            assert not package_calls or guarded, f"{path.name}:{func.name} calls {package_calls} unguarded"


def test_a_verdict_meaning_nothing_to_do_yet_skips_instead_of_failing(driftloop_env):
    from airflow.sdk.exceptions import AirflowSkipException

    from driftloop.core.errors import NoLabelledData
    from driftloop.data import snapshots
    from driftloop_airflow import run_stage

    with pytest.raises(AirflowSkipException, match="NoLabelledData: .*no accepted labelled rows"):
        run_stage("telco_churn", snapshots.build_snapshot, skip_on=(NoLabelledData,))
