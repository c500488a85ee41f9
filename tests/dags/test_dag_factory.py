"""The DAG factory: one DAG per DAG file and dataset config, and a broken config takes down only its own DAGs.

Checked through Airflow's own DagBag (what the dag-processor runs) and, for the refused-config case, through
the dag-processor's write to the metadata DB, where a file's import error marks every DAG of that file stale.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from driftloop.core import bus
from tests.config_copies import copy_config

PROJECT_DIR = Path(__file__).resolve().parents[2]
DAGS_DIR = PROJECT_DIR / "dags"
REPORT_FILE = DAGS_DIR / "dataset_configs.py"


def dag_ids_of(*datasets: str) -> set[str]:
    return {bus.dag_id(dataset, name) for dataset in datasets for name in bus.DAG_NAMES}


@pytest.fixture
def parse(monkeypatch, tmp_path):
    """Parse dags/ with a config folder (and optionally DRIFTLOOP_DATASETS), as the dag-processor does."""

    def run(config_dir: Path, datasets: str = "", bundle_path: Path | None = None):
        from airflow.dag_processing.dagbag import DagBag

        monkeypatch.setenv("DRIFTLOOP_CONFIG_DIR", str(config_dir))
        monkeypatch.setenv("DRIFTLOOP_DATASETS", datasets)
        monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
        monkeypatch.delenv("DRIFTLOOP_CONFIG_OVERRIDES", raising=False)
        return DagBag(dag_folder=str(DAGS_DIR), bundle_path=bundle_path)

    return run


def closure_dataset(task) -> str | None:
    """The ``dataset`` a decorated task's callable closes over (the factory's closure)."""
    callable_ = getattr(task, "python_callable", None)
    return inspect.getclosurevars(callable_).nonlocals.get("dataset") if callable_ else None


def test_two_configs_give_every_dag_twice_with_their_own_ids_tags_assets_and_closures(parse, tmp_path):
    configs = tmp_path / "configs"
    copy_config(configs, "telco_churn", "churn_a")
    copy_config(configs, "mlc_churn", "churn_b")
    bag = parse(configs)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == dag_ids_of("churn_a", "churn_b")
    assert len(bag.dag_ids) == 2 * len(bus.DAG_NAMES)
    for dag_id, dag in bag.dags.items():
        dataset, name = bus.split_dag_id(dag_id)
        assert {"driftloop", dataset} <= set(dag.tags) and len(dag.tags) == 3, dag.tags
        assert f"`{dataset}`" in dag.doc_md and dag.description.startswith(name)
        for task in dag.tasks:
            assert closure_dataset(task) in (None, dataset), f"{dag_id}.{task.task_id} runs another dataset"
        assert [closure_dataset(t) for t in dag.tasks if closure_dataset(t)], f"{dag_id}: no task bound to it"
        outlets = {a.uri for task in dag.tasks for a in task.outlets}
        assert all(uri.startswith(f"driftloop://{dataset}/") for uri in outlets), outlets
    for dataset in ("churn_a", "churn_b"):
        data = bag.dags[bus.dag_id(dataset, bus.DATA_PIPELINE)]
        assert {a.uri for t in data.tasks for a in t.outlets} == {
            bus.asset_uri(dataset, "snapshot"),
            bus.asset_uri(dataset, "batches"),
        }
        training = bag.dags[bus.dag_id(dataset, bus.TRAINING_PIPELINE)]
        assert [a.uri for a in training.timetable.asset_condition.objects] == [
            bus.asset_uri(dataset, "snapshot")
        ]
        inference = bag.dags[bus.dag_id(dataset, bus.INFERENCE_PIPELINE)]
        assert [a.uri for a in inference.timetable.asset_condition.objects] == [
            bus.asset_uri(dataset, "batches")
        ]
        monitoring = bag.dags[bus.dag_id(dataset, bus.MONITORING_PIPELINE)]
        assert [a.uri for a in monitoring.timetable.asset_condition.objects] == [
            bus.asset_uri(dataset, "predictions")
        ]
        sensor_dag = bag.dags[bus.dag_id(dataset, bus.DRIFT_SENSOR)]
        assert sensor_dag.get_task("wait_for_drift").dataset == dataset
        assert sensor_dag.get_task("trigger_training").trigger_dag_id == bus.dag_id(
            dataset, bus.TRAINING_PIPELINE
        )


def test_datasets_setting_restricts_the_dags_and_an_unknown_name_is_an_import_error(parse, tmp_path):
    configs = tmp_path / "configs"
    for name in ("alpha", "beta", "gamma"):
        copy_config(configs, "mlc_churn", name)
    bag = parse(configs, "gamma, alpha")
    assert bag.import_errors == {} and set(bag.dag_ids) == dag_ids_of("alpha", "gamma")
    bag = parse(configs, "alpha,delta")
    assert set(bag.dag_ids) == dag_ids_of("alpha")
    assert list(bag.import_errors) == [str(REPORT_FILE)]
    assert "DRIFTLOOP_DATASETS: no config for ['delta']" in bag.import_errors[str(REPORT_FILE)]


def test_a_broken_config_fails_only_its_own_dags_with_an_import_error_naming_file_and_key(parse, tmp_path):
    configs = tmp_path / "configs"
    copy_config(configs, "telco_churn", "churn_a")
    copy_config(configs, "mlc_churn", "churn_b")
    broken = copy_config(configs, "telco_churn", "churn_broken", monitoring={"drift_share_treshold": 0.3})
    bag = parse(configs)
    assert set(bag.dag_ids) == dag_ids_of("churn_a", "churn_b")
    assert list(bag.import_errors) == [str(REPORT_FILE)], bag.import_errors
    error = bag.import_errors[str(REPORT_FILE)]
    assert error.startswith("ConfigError: dataset configs refused")
    assert f"{broken}: monitoring: unknown keys ['drift_share_treshold']" in error


def test_configs_sharing_a_model_or_a_state_folder_are_refused_both_naming_both_files(parse, tmp_path):
    configs = tmp_path / "configs"
    copy_config(configs, "mlc_churn", "keep")
    one = copy_config(configs, "telco_churn", "churn_one", model_name="churn")
    two = copy_config(configs, "mlc_churn", "churn_two", model_name="churn")
    three = copy_config(configs, "mlc_churn", "churn_three")
    copied = copy_config(
        configs, "mlc_churn", "churn_three", file_stem="churn_three_copy", model_name="other"
    )
    bag = parse(configs)
    assert set(bag.dag_ids) == dag_ids_of("keep")
    error = bag.import_errors[str(REPORT_FILE)]
    for path in (one, two):
        assert f"{path}: model_name: {one}, {two} register the same model 'churn'" in error
    for path in (three, copied):
        assert f"{path}: name: {three}, {copied} keep state in the same folder" in error
    assert f"{copied}: name: 'churn_three' differs from the file name 'churn_three_copy'" in error


def test_the_dag_processor_keeps_the_other_datasets_scheduled_when_a_config_is_refused(
    parse, tmp_path, airflow_db
):
    """A file's import error marks every DAG of that file stale; the refusal lives in a file with no real
    DAG."""
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.errors import ParseImportError
    from airflow.utils.session import create_session

    configs = tmp_path / "configs"
    copy_config(configs, "telco_churn", "factory_ok_a")
    copy_config(configs, "mlc_churn", "factory_ok_b")
    copy_config(configs, "mlc_churn", "factory_bad", task="clustering")
    bag = parse(configs, bundle_path=DAGS_DIR)  # relative file names, as the dag-processor records them
    bundle = "driftloop-factory-test"
    with create_session() as session:
        if session.get(DagBundleModel, bundle) is None:
            session.add(DagBundleModel(name=bundle))
    sync_bag_to_db(bag, bundle, None)
    with create_session() as session:
        rows = {
            m.dag_id: (m.is_stale, m.has_import_errors)
            for m in session.query(DagModel).filter(DagModel.bundle_name == bundle)
        }
        errors = {
            e.filename: e.stacktrace
            for e in session.query(ParseImportError).filter(ParseImportError.bundle_name == bundle)
        }
    assert rows == {dag_id: (False, False) for dag_id in dag_ids_of("factory_ok_a", "factory_ok_b")}
    [(filename, stacktrace)] = errors.items()
    assert filename == REPORT_FILE.name and "factory_bad.yaml: task:" in stacktrace


def test_each_parse_reads_the_environment_of_that_parse(parse, tmp_path, monkeypatch):
    # A process that parses the DAG folder twice (a test session, `airflow dags test`) must not keep the
    # settings of its first parse: the end-to-end test hung on a sensor built with a no-limit timeout from an
    # earlier parse.
    configs = tmp_path / "configs"
    copy_config(configs, "telco_churn", "churn_a")
    sensor_dag, data_dag = bus.dag_id("churn_a", bus.DRIFT_SENSOR), bus.dag_id("churn_a", bus.DATA_PIPELINE)
    seen = []
    for timeout_s, retries in (("0", "2"), ("7", "5")):
        monkeypatch.setenv("DRIFTLOOP_SENSOR_TIMEOUT_S", timeout_s)
        monkeypatch.setenv("DRIFTLOOP_TASK_RETRIES", retries)
        bag = parse(configs)
        sensor = bag.dags[sensor_dag].get_task("wait_for_drift")
        seen.append((sensor.timeout_s, bag.dags[data_dag].default_args["retries"]))
    assert seen == [(0, 2), (7, 5)]
