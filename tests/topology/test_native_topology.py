"""The docker-compose topology, natively: Postgres + Redis + CeleryExecutor (two workers) + MLflow with basic
auth.

The closed loop runs through the real scheduler: the test only drops files in the landing zone and triggers
``data_pipeline`` and ``drift_sensor`` through the REST API; assets start training, inference and monitoring,
and the sensor starts the retrain. Then two faults on the same stack: a Celery worker killed with SIGKILL in
the middle of a training task, and the MLflow server stopped while a training task runs.
"""

from __future__ import annotations

import time

import pytest
import requests

from driftloop.core import bus
from driftloop_ops.airflow_api import wait_until
from driftloop_ops.loop import loop_dag_ids
from tests.topology.harness import StackError, basic_auth_header

pytestmark = [pytest.mark.topology, pytest.mark.slow, pytest.mark.timeout(1500)]

# The stack loads every shipped dataset config (as production does); the loop runs telco_churn's DAGs.
DAG_IDS = loop_dag_ids("telco_churn")
TRAINING_DAG = bus.dag_id("telco_churn", bus.TRAINING_PIPELINE)


@pytest.fixture(scope="module")
def mlflow(stack):
    """An authenticated MlflowClient for the stack's server (env restored afterwards)."""
    import os

    from mlflow import MlflowClient

    saved = {k: os.environ.get(k) for k in stack.mlflow_client_env()}
    os.environ.update(stack.mlflow_client_env())
    try:
        yield MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def model_name() -> str:
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    return load_dataset_config("telco_churn", Settings.from_env({})).registered_model_name


@pytest.fixture(scope="module")
def dags_ready(stack):
    """All five DAGs parsed by the dag-processor and unpaused, as an operator does in the UI."""
    stack.airflow.wait_for_dags(DAG_IDS, timeout_s=180)
    return True


def test_every_component_is_healthy_and_both_workers_answer(stack):
    health = stack.health()
    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[part]["status"] == "healthy", health
    workers = {f"celery@{stack.worker_hostname(i)}" for i in (1, 2)}
    answered = stack.celery_ping
    from tests.topology.harness import wait_for

    wait_for(lambda: workers <= set(answered()), 60, "both Celery workers to answer ping", 2)
    print(f"native topology up in {stack.startup_s:.0f}s")


def test_mlflow_basic_auth_rejects_anonymous_and_accepts_admin(stack):
    url = f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search"
    anonymous = requests.get(url, params={"max_results": 1}, timeout=30)
    assert anonymous.status_code == 401, anonymous.text[:300]
    wrong = requests.get(
        url,
        params={"max_results": 1},
        headers=basic_auth_header(stack.mlflow_admin_user, "not-the-password"),
        timeout=30,
    )
    assert wrong.status_code == 401, wrong.text[:300]
    admin = requests.get(
        url,
        params={"max_results": 1},
        headers=basic_auth_header(stack.mlflow_admin_user, stack.mlflow_admin_password),
        timeout=30,
    )
    assert admin.status_code == 200, admin.text[:300]


def test_airflow_api_requires_a_token_from_the_env_admin(stack):
    assert requests.get(f"{stack.api_url}/api/v2/dags", timeout=30).status_code == 401
    bad = requests.post(
        f"{stack.api_url}/auth/token", json={"username": stack.admin_user, "password": "wrong"}, timeout=30
    )
    assert bad.status_code in (401, 403), bad.text[:300]
    default = requests.post(
        f"{stack.api_url}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30
    )
    assert default.status_code in (401, 403), "admin/admin must not exist"
    assert stack.airflow.call("GET", "/dags", params={"limit": 1}) is not None


def expected_reason(metrics: dict[str, float]) -> str:
    """The sensor's reason for a monitoring result that crossed: performance when the live drop crossed."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    limit = load_dataset_config("telco_churn", Settings.from_env({})).monitoring.performance_drop_threshold
    return "performance" if metrics.get(bus.LIVE_DROP, 0.0) > limit else "drift"


def _hosts(stack, dag_id: str, run_id: str) -> set[str]:
    return {ti["hostname"] for ti in stack.airflow.task_instances(dag_id, run_id) if ti.get("hostname")}


@pytest.fixture(scope="module")
def loop(stack, dags_ready, mlflow):
    """Drive the closed loop once through the scheduler (the shared driver, as the demo does)."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop_ops.loop import SchedulerRunner, drive_closed_loop

    settings = Settings.from_env(stack.base_env())
    cfg = load_dataset_config("telco_churn", settings)
    record = drive_closed_loop(
        SchedulerRunner(stack.airflow, timeout_s=600),
        cfg,
        mlflow,
        settings,
        # The drifted batch's labels grow the 1,000 reference rows by 40 %, under retrain_min_growth (50 %):
        # the sensor's retrain is the only one (800 rows would also start a new-data retrain).
        batch_rows=400,
        clean_batch=False,
        sensor_again=False,
        log=print,
    )
    print(f"closed loop through the scheduler: {record.seconds}")
    return record


def test_closed_loop_reference_trains_a_first_champion(loop, mlflow, model_name, stack):
    from driftloop.core.config import load_dataset_config
    from driftloop.governance.audit import AuditStore

    assert loop.tasks("data_1")["announce_snapshot"] == "success", loop.steps["data_1"]
    # The HTML profile was rendered from inside a Celery task (a fresh interpreter, not a spawned child).
    experiment = mlflow.get_experiment_by_name(load_dataset_config("telco_churn").experiment_name("data"))
    data_runs = mlflow.search_runs([experiment.experiment_id])
    assert data_runs and all(r.data.tags[bus.PROFILE_HTML_TAG] == "logged" for r in data_runs), [
        r.data.tags.get(bus.PROFILE_HTML_TAG) for r in data_runs
    ]
    v1 = mlflow.get_model_version(model_name, "1")
    assert v1.tags[bus.GATE_TAG] == "passed"
    assert v1.tags[bus.AIRFLOW_RUN_ID_TAG] == loop.run_ids["train_1"]
    assert v1.description.startswith(f"# {model_name} v1")  # the model card
    # The verdict is the run's note in the grid, written by the Celery worker through the REST API.
    run = stack.airflow.call("GET", f"/dags/{TRAINING_DAG}/dagRuns/{loop.run_ids['train_1']}")
    assert (run.get("note") or "").startswith("v1 is champion: "), run.get("note")
    # The first champion is on record in PostgreSQL, written by the Celery worker as the insert-only role.
    first = AuditStore(stack.audit_url()).entries(model_name)[0]
    assert (first["from_version"], first["to_version"], first["source"]) == (None, "1", "driftloop")
    assert first["actor"] == f"{TRAINING_DAG}/{loop.run_ids['train_1']}"


def test_closed_loop_drifted_batch_is_scored_monitored_and_fires_a_retrain(loop, mlflow, model_name, stack):
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    threshold = load_dataset_config("telco_churn", Settings.from_env({})).monitoring.drift_share_threshold
    assert loop.tasks("drift_data_pipeline")["announce_batches"] == "success", loop.steps[
        "drift_data_pipeline"
    ]
    assert loop.tasks("drift_inference_pipeline")["score_pending_batches"] == "success"
    assert loop.tasks("drift_monitoring_pipeline")["monitor_predictions"] == "success"
    sensor = loop.tasks("drift_drift_sensor")
    assert sensor["wait_for_drift"] == "success" and sensor["trigger_training"] == "success", sensor
    sensor_dag = bus.dag_id("telco_churn", bus.DRIFT_SENSOR)
    note = stack.airflow.call("GET", f"/dags/{sensor_dag}/dagRuns/{loop.run_ids['drift_drift_sensor']}")[
        "note"
    ]
    assert (note or "").startswith("fired: "), note
    [(retrain_run_id, conf)] = loop.queued_after_drift
    monitoring_run = mlflow.get_run(conf["monitoring_run_id"])
    assert monitoring_run.data.metrics[bus.DRIFT_SHARE] >= threshold
    assert retrain_run_id == loop.run_ids["train_2"]
    # The drifted batch's own labels came with it: a live drop past its threshold names the retrain first.
    assert conf["reason"] == expected_reason(monitoring_run.data.metrics), (conf, monitoring_run.data.metrics)
    assert monitoring_run.data.tags[bus.SENSOR_TRIGGER_RUN_ID_TAG] == retrain_run_id


def test_closed_loop_retrain_registers_v2_and_aliases_follow_the_gate(loop, mlflow, model_name):
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from tests.oracles import expected_champion

    cfg = load_dataset_config("telco_churn", Settings.from_env({}))
    v2 = mlflow.get_model_version(model_name, "2")
    [(_, conf)] = loop.queued_after_drift
    assert v2.tags[bus.TRIGGER_REASON_TAG] == conf["reason"]
    assert v2.tags[bus.AIRFLOW_RUN_ID_TAG] == loop.run_ids["train_2"]
    champion = mlflow.get_model_version_by_alias(model_name, "champion").version
    assert champion == expected_champion(mlflow, cfg, incumbent="1", candidate="2"), v2.tags[
        bus.GATE_REASON_TAG
    ]
    aliases = {
        alias: version
        for version in ("1", "2")
        for alias in mlflow.get_model_version(model_name, version).aliases
    }
    if champion == "2":  # a promoted version keeps no stale challenger alias
        assert aliases == {"champion": "2"}, aliases
    else:
        assert aliases == {"champion": "1", "challenger": "2"}, aliases


def test_the_online_service_serves_the_champion_and_logs_to_postgres(loop, stack, mlflow, model_name):
    import asyncio

    import asyncpg

    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.data.sources import load_source_frame
    from tests.topology.harness import pg_url, wait_for

    champion = mlflow.get_model_version_by_alias(model_name, "champion").version

    def serves_champion() -> bool:
        ready = requests.get(f"{stack.serving_url}/ready", timeout=10)
        return ready.status_code == 200 and ready.json()["versions"].get("champion") == champion

    wait_for(serves_champion, 120, f"the online service to load champion v{champion}", 1)
    cfg = load_dataset_config("telco_churn", Settings.from_env({}))
    rows = load_source_frame(cfg).head(8)[[cfg.id_column, *cfg.features]]
    records = {"dataframe_records": rows.to_dict(orient="records")}
    answer = requests.post(f"{stack.serving_url}/invocations", json=records, timeout=60)
    assert answer.status_code == 200, answer.text
    assert set(answer.json()["model_versions"]) == {champion} and len(answer.json()["predictions"]) == 8

    async def logged() -> int:
        conn = await asyncpg.connect(pg_url(stack.serving_db))
        try:
            return await conn.fetchval("select count(*) from prediction_log where role = 'primary'")
        finally:
            await conn.close()

    wait_for(lambda: asyncio.run(logged()) == 8, 60, "eight logged predictions", 1)


def test_tasks_of_one_run_are_spread_over_both_workers(loop, stack):
    workers = {stack.worker_hostname(i) for i in (1, 2)}
    hosts = {step: _hosts(stack, loop.dag_ids[step], run_id) for step, run_id in loop.run_ids.items()}
    every_host = set().union(*hosts.values())
    assert every_host <= workers, every_host
    spread = [step for step, used in hosts.items() if used == workers]
    assert spread, f"no run used both workers: {hosts}"


def test_no_process_shares_a_disk_the_zones_and_artifacts_are_in_the_bucket(loop, stack):
    """Past one machine: every process has its own home, and what one stage hands to the next is in S3."""
    homes = stack.process_homes()
    assert {h.name for h in homes} >= {"worker1", "worker2", "scheduler", "serving"}, homes
    on_disk = [str(p) for home in homes for p in home.rglob("*") if p.is_file() and "data" in p.parts]
    assert on_disk == [], f"data zones written to a process's own disk: {on_disk[:10]}"
    keys = stack.s3.keys(stack.bucket)
    zones = "zones/telco_churn/"
    for zone in ("batches/", "snapshots/", "predictions/", "archive/"):
        assert any(k.startswith(zones + zone) for k in keys), f"nothing in {zone}: {keys[:20]}"
    # The models the service and the inference tasks load came from the bucket, through MLflow's proxy.
    assert any(k.startswith("mlflow-artifacts/") and k.endswith("MLmodel") for k in keys), keys[:20]


def _assert_registry_consistent(mlflow, model_name):
    """No half-registered champion: champion and challenger point at READY versions, champion passed the
    gate."""
    versions = mlflow.search_model_versions(f"name = '{model_name}'")
    assert versions
    assert all(v.status == "READY" for v in versions), [(v.version, v.status) for v in versions]
    champion = mlflow.get_model_version_by_alias(model_name, "champion")
    assert champion.tags.get(bus.GATE_TAG) == "passed", champion.tags
    assert mlflow.get_run(champion.run_id).info.status == "FINISHED"
    for version in versions:
        assert version.tags.get(bus.SNAPSHOT_HASH_TAG), f"v{version.version} has no lineage tags"
    return versions


def test_worker_killed_mid_training_task_is_retried_and_the_loop_completes(loop, stack, mlflow, model_name):
    api = stack.airflow
    # Another seed: a new training key (the same inputs would return the version already trained for them).
    run_id = api.trigger(TRAINING_DAG, {"reason": "fault-test-worker-kill", "seed": 1001})
    ti = wait_until(
        lambda: (
            (t := api.task_instance(TRAINING_DAG, run_id, "train_model"))["state"] == "running"
            and t.get("hostname")
            and t
        ),
        300,
        "train_model running on a worker",
        1,
    )
    victim = next(i for i in (1, 2) if stack.worker_hostname(i) == ti["hostname"])
    time.sleep(3)  # well inside PyCaret's setup / compare_models
    stack.kill_worker(victim)
    try:
        api.wait_for_run(TRAINING_DAG, run_id, timeout_s=600, ok=("success",))
        tries = api.task_tries(TRAINING_DAG, run_id, "train_model")
        final = api.task_instance(TRAINING_DAG, run_id, "train_model")
        assert final["try_number"] >= 2, tries
        assert final["hostname"] != ti["hostname"], "the retry must run on the surviving worker"
        versions = _assert_registry_consistent(mlflow, model_name)
        registered_by_run = [v for v in versions if v.tags.get(bus.AIRFLOW_RUN_ID_TAG) == run_id]
        assert len(registered_by_run) == 1, "a killed try must not leave a second version behind"
        # The loop goes on from a consistent registry: the champion resolves to a servable, gated version.
        assert mlflow.get_model_version_by_alias(model_name, "champion").status == "READY"
    finally:
        stack.start_worker(victim)


def test_mlflow_outage_during_training_retries_with_backoff_and_no_half_registered_champion(
    loop, stack, mlflow, model_name
):
    before = {v.version for v in mlflow.search_model_versions(f"name = '{model_name}'")}
    champion_before = mlflow.get_model_version_by_alias(model_name, "champion").version
    api = stack.airflow
    run_id = api.trigger(TRAINING_DAG, {"reason": "fault-test-mlflow-outage", "seed": 1002})
    api.wait_task_state(TRAINING_DAG, run_id, "train_model", ("running",))
    stack.stop_mlflow()
    try:
        failed_try = api.wait_task_state(
            TRAINING_DAG, run_id, "train_model", ("up_for_retry", "failed", "success"), timeout_s=300
        )
    finally:
        stack.start_mlflow()
    assert failed_try["state"] == "up_for_retry", failed_try
    api.wait_for_run(TRAINING_DAG, run_id, timeout_s=600, ok=("success",))
    tries = api.task_tries(TRAINING_DAG, run_id, "train_model")
    assert len(tries) >= 2 and tries[-1]["state"] == "success", tries
    assert any(t["state"] in ("up_for_retry", "failed") for t in tries[:-1]), tries
    versions = _assert_registry_consistent(mlflow, model_name)
    new = [v for v in versions if v.version not in before]
    assert len(new) == 1, f"one version for the run, not one per try: {[v.version for v in new]}"
    champion = mlflow.get_model_version_by_alias(model_name, "champion").version
    gate = new[0].tags.get(bus.GATE_TAG)
    assert gate in ("passed", "rejected"), new[0].tags
    assert champion == (new[0].version if gate == "passed" else champion_before)


def test_stack_survived_the_faults(stack):
    try:
        stack.ensure_alive([n for n in stack.procs if n != "mlflow"])
    except StackError as exc:
        pytest.fail(str(exc))
