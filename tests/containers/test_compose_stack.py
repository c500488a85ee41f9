"""docker-compose.yaml built and run for real, the way users run it.

Images from the repo (Dockerfile; base and Postgres/Redis stand-ins from Debian packages), a fresh .env with
random secrets, `up` until every health check passes, then, talking to the stack only through the ports
published on 127.0.0.1 and `docker compose exec`:
- production checks: only the two UIs published, on 127.0.0.1; every container's main process non-root; no
  .env secret (nor the extra build CA) in any image's history or filesystem; credentials required; UTF8
  Postgres;
- the closed loop through the scheduler: reference → data_pipeline → training on a Celery worker → champion →
  drifted batch → inference → monitoring → drift_sensor → retrain;
- faults: two workers, one killed (SIGKILL) in the middle of a training task: the task is retried on the other
  and exactly one model version is registered; MLflow's database stopped: MLflow turns unhealthy, then
  healthy;
- `down -v` leaves no container, volume or network of the project behind.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from driftloop.core import bus
from driftloop_ops.airflow_api import AirflowClient
from driftloop_ops.loop import loop_dag_ids
from tests.containers.harness import (
    ALERT_EMAIL_TO,
    FIGURES,
    SECRET_NAMES,
    MlflowRest,
    extra_ca_needles,
    filesystem_hits,
    sh,
    text_hits,
    wait_for,
)

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1800)]

# The stack loads every shipped dataset config (as production does); the loop runs telco_churn's DAGs.
DAG_IDS = loop_dag_ids("telco_churn")
TRAINING_DAG = bus.dag_id("telco_churn", bus.TRAINING_PIPELINE)
ALL_SERVICES = {
    "postgres", "redis", "mlflow", "airflow-init", "airflow-api-server", "airflow-scheduler",
    "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "serving",
    "alert-sink",  # compose.test.yaml's receiver of the deployment's alerts
    "object-store",  # compose.test.yaml's S3 server: the data zones and MLflow's artifacts
}  # fmt: skip


@pytest.fixture(scope="module")
def airflow(stack) -> AirflowClient:
    return AirflowClient(
        stack.airflow_url,
        username=stack.env["AIRFLOW_ADMIN_USERNAME"],
        password=stack.env["AIRFLOW_ADMIN_PASSWORD"],
        poll_s=2,
    )


@pytest.fixture(scope="module")
def mlflow(stack) -> MlflowRest:
    return MlflowRest(
        stack.mlflow_url, stack.env["MLFLOW_ADMIN_USERNAME"], stack.env["MLFLOW_ADMIN_PASSWORD"]
    )


# ------------------------------------------------------------------------------------------------ the stack
def test_every_service_is_up_and_healthy(stack):
    containers = stack.containers()
    assert {stack.service_of(c) for c in containers} == ALL_SERVICES
    for c in containers:
        if stack.service_of(c) == "airflow-init":
            assert (c["State"]["Status"], c["State"]["ExitCode"]) == ("exited", 0)
        else:
            assert c["Config"].get("Healthcheck", {}).get("Test"), f"{c['Name']} has no health check"
            assert stack.health_of(c) == "healthy", stack.describe(c)


def test_only_the_uis_are_published_and_only_on_localhost(stack):
    published = {}
    for c in stack.containers(running_only=True):
        for port, bindings in (c["NetworkSettings"]["Ports"] or {}).items():
            for binding in bindings or []:
                published.setdefault(stack.service_of(c), []).append(
                    (port, binding["HostIp"], binding["HostPort"])
                )
    assert published == {
        "airflow-api-server": [("8080/tcp", "127.0.0.1", str(stack.airflow_port))],
        "mlflow": [("5000/tcp", "127.0.0.1", str(stack.mlflow_port))],
        "serving": [("8000/tcp", "127.0.0.1", str(stack.serving_port))],
    }
    assert requests.get(f"{stack.airflow_url}/api/v2/version", timeout=30).status_code == 200
    assert requests.get(f"{stack.mlflow_url}/health", timeout=30).status_code == 200


def _process_tree(container: dict) -> list[tuple[int, int, str]]:
    """``(pid, uid, command)`` of the container's main process and its descendants (not `docker exec`
    ones)."""
    rows = sh(["docker", "top", container["Id"], "-eo", "pid,ppid,uid,args"], 60).stdout.splitlines()[1:]
    procs = {int(p): (int(pp), int(u), cmd) for p, pp, u, cmd in (row.split(None, 3) for row in rows)}
    tree, frontier = set(), {container["State"]["Pid"]}
    while frontier:
        tree |= frontier
        frontier = {pid for pid, (ppid, _, _) in procs.items() if ppid in frontier and pid not in tree}
    return [(pid, procs[pid][1], procs[pid][2]) for pid in sorted(tree) if pid in procs]


def test_every_container_runs_as_non_root(stack):
    for c in stack.containers(running_only=True):
        tree = _process_tree(c)
        assert tree, f"no process found for {c['Name']}"
        as_root = [(pid, cmd) for pid, uid, cmd in tree if uid == 0]
        assert not as_root, f"{stack.service_of(c)} runs processes as root: {as_root}"


def test_no_secret_in_any_image_layer_or_filesystem(stack, tmp_path):
    secrets = [stack.env[name] for name in SECRET_NAMES]
    assert all(len(value) >= 12 for value in secrets)
    ca_lines = extra_ca_needles(stack.images.app)
    FIGURES["extra build CA certificates checked absent from the image"] = str(len(ca_lines))
    for image in (stack.images.app, stack.images.postgres, stack.images.redis):
        assert text_hits(image, secrets + ca_lines) == set(), (
            f"{image}: a secret in `docker history` or its config"
        )
        assert filesystem_hits(image, secrets + ca_lines, tmp_path) == set(), (
            f"{image}: a secret in its filesystem"
        )


def test_credentials_are_required_and_postgres_is_utf8(stack):
    assert requests.get(f"{stack.airflow_url}/api/v2/dags", timeout=30).status_code == 401
    default = requests.post(
        f"{stack.airflow_url}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30
    )
    assert default.status_code in (401, 403), "admin/admin must not exist"
    anonymous = requests.get(
        f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search", params={"max_results": 1}
    )
    assert anonymous.status_code == 401, anonymous.text[:300]
    encodings = stack.exec(
        "postgres",
        "psql",
        "-U",
        "postgres",
        "-tAc",
        "select datname, pg_encoding_to_char(encoding) from pg_database",
    )
    rows = dict(line.split("|") for line in encodings.split())
    assert {"airflow", "mlflow", "mlflow_auth"} <= set(rows), rows
    assert set(rows.values()) == {"UTF8"}, rows


# ------------------------------------------------------------------------------------------------ the loop
@pytest.fixture(scope="module")
def mlflow_client(stack):
    """An ``MlflowClient`` of the stack's MLflow (published port, basic auth); the environment is restored
    after."""
    import os

    from mlflow import MlflowClient

    env = {
        "MLFLOW_TRACKING_URI": stack.mlflow_url,
        "MLFLOW_TRACKING_USERNAME": stack.env["MLFLOW_ADMIN_USERNAME"],
        "MLFLOW_TRACKING_PASSWORD": stack.env["MLFLOW_ADMIN_PASSWORD"],
        # Outside the compose network: MLflow 3 would download artifacts straight from the bucket through
        # presigned URLs naming the store's in-network host (object-store:9000); the server proxies instead.
        "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture(scope="module")
def telco():
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    return load_dataset_config("telco_churn", Settings.from_env({}))


@pytest.fixture(scope="module")
def loop(stack, airflow, mlflow_client, telco):
    """The closed loop once through the scheduler, with the shared driver; files land via `compose exec`."""
    from driftloop_ops.loop import CommandSimulator, SchedulerRunner, drive_closed_loop

    airflow.wait_for_dags(DAG_IDS, timeout_s=300)
    simulator = CommandSimulator(lambda *args: stack.exec("airflow-worker", "driftloop", "simulate", *args))
    record = drive_closed_loop(
        SchedulerRunner(airflow, timeout_s=900),
        telco,
        mlflow_client,
        # The drifted batch's labels grow the 1,000 reference rows by 40 %, under retrain_min_growth (50 %):
        # the sensor's retrain is the only one (800 rows would also start a new-data retrain).
        batch_rows=400,
        clean_batch=False,
        sensor_again=False,
        simulator=simulator,
        log=print,
    )
    FIGURES["closed loop in containers (reference → retrained v2)"] = f"{record.seconds['total']:.0f} s"
    return record


def _hosts(airflow, dag_id, run_id) -> set[str]:
    return {ti["hostname"] for ti in airflow.task_instances(dag_id, run_id) if ti.get("hostname")}


def _model_name(mlflow) -> str:
    names = mlflow.model_names()
    assert len(names) == 1, f"one registered model expected on a fresh stack, got {names}"
    return names[0]


def test_closed_loop_trains_a_champion_on_a_celery_worker(loop, stack, airflow, mlflow):
    assert loop.tasks("data_1")["announce_snapshot"] == "success", loop.steps["data_1"]
    workers = {c["Config"]["Hostname"] for c in stack.containers("airflow-worker")}
    hosts = _hosts(airflow, TRAINING_DAG, loop.run_ids["train_1"])
    assert hosts and hosts <= workers, (hosts, workers)
    name = _model_name(mlflow)
    v1 = mlflow.versions(name)[0]
    assert v1["version"] == "1" and v1["tags"][bus.GATE_TAG] == "passed", v1["tags"]
    assert v1["tags"][bus.AIRFLOW_RUN_ID_TAG] == loop.run_ids["train_1"]
    # The verdict is the run's note in the grid, written by the worker through the REST API.
    run = airflow.call("GET", f"/dags/{TRAINING_DAG}/dagRuns/{loop.run_ids['train_1']}")
    assert (run.get("note") or "").startswith("v1 is champion: "), run.get("note")
    # The audit log in its own database, written by the worker as the insert-only role.
    audit = stack.exec(
        "postgres",
        "psql",
        "-U",
        "postgres",
        "-d",
        "driftloop_audit",
        "-tAc",
        "select coalesce(from_version, '-'), to_version, source from champion_audit order by id",
    )
    assert audit.split()[0] == "-|1|driftloop", audit


def test_closed_loop_drifted_batch_is_scored_monitored_and_retrains(loop, mlflow, mlflow_client, telco):
    from tests.oracles import expected_champion

    assert loop.tasks("drift_data_pipeline")["announce_batches"] == "success", loop.steps[
        "drift_data_pipeline"
    ]
    assert loop.tasks("drift_inference_pipeline")["score_pending_batches"] == "success"
    assert loop.tasks("drift_monitoring_pipeline")["monitor_predictions"] == "success"
    assert loop.tasks("drift_drift_sensor")["trigger_training"] == "success", loop.steps["drift_drift_sensor"]
    [(retrain_run_id, conf)] = loop.queued_after_drift
    metrics = mlflow.run(conf["monitoring_run_id"])["metrics"]
    assert metrics[bus.DRIFT_SHARE] >= telco.monitoring.drift_share_threshold
    # The drifted batch's own labels came with it: a live drop past its threshold names the retrain first.
    live_drop = metrics.get(bus.LIVE_DROP, 0.0) > telco.monitoring.performance_drop_threshold
    assert conf["reason"] == ("performance" if live_drop else "drift"), (conf, metrics)
    name = _model_name(mlflow)
    v2 = mlflow.versions(name)[1]
    assert v2["tags"][bus.TRIGGER_REASON_TAG] == conf["reason"]
    assert v2["tags"][bus.AIRFLOW_RUN_ID_TAG] == retrain_run_id == loop.run_ids["train_2"]
    # The gate's rule recomputed on the host with sklearn, from the models the containers registered.
    assert mlflow.alias(name, "champion") == expected_champion(
        mlflow_client, telco, incumbent="1", candidate="2"
    )


def test_serving_answers_with_the_champion_and_logs_to_postgres(loop, stack, mlflow, telco):
    from driftloop.data.sources import load_source_frame

    name = _model_name(mlflow)
    champion = mlflow.alias(name, "champion")

    # The service reads the aliases every DRIFTLOOP_SERVE_POLL_S (2 s here) and warms a version before serving
    # it.
    def serves_champion() -> bool:
        ready = requests.get(f"{stack.serving_url}/ready", timeout=10)
        return ready.status_code == 200 and ready.json()["versions"].get("champion") == champion

    wait_for(serves_champion, 300, f"the serving container to load champion v{champion}", 2)
    rows = load_source_frame(telco).head(5)[[telco.id_column, *telco.features]]
    body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    answer = requests.post(f"{stack.serving_url}/invocations", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 5
    assert set(answer.json()["model_versions"]) == {champion}
    missing = {"dataframe_split": {"columns": [telco.id_column], "data": [["X-1"]]}}
    assert requests.post(f"{stack.serving_url}/invocations", json=missing, timeout=60).status_code == 422

    # Every answered row reaches the prediction log in its own database (background writer: allow it a
    # moment).
    def count() -> str:
        query = "select count(*) from prediction_log where role = 'primary'"
        return stack.exec(
            "postgres", "psql", "-U", "postgres", "-d", "driftloop_serving", "-tAc", query
        ).strip()

    wait_for(lambda: count() == "5", 60, "five logged predictions", 1)


def _webhook_alerts(stack) -> list[dict]:
    return [a["body"]["driftloop"] for a in stack.received_alerts() if a["channel"] == "webhook"]


def test_alerts_of_the_loop_arrive_once_by_webhook_and_email(loop, stack, mlflow, telco):
    from driftloop.core import alerts as kinds

    received = stack.received_alerts()
    hooks = [a["body"]["driftloop"] for a in received if a["channel"] == "webhook"]
    mails = [a for a in received if a["channel"] == "smtp"]
    keys = [a["dedupe_key"] for a in hooks]
    assert len(keys) == len(set(keys)), keys  # one alert per event, though the tasks ran on Celery workers
    name = _model_name(mlflow)
    moved = {a["fields"]["to_version"]: a for a in hooks if a["kind"] == kinds.CHAMPION_MOVED}
    assert moved["1"]["fields"]["via"] == "gate" and moved["1"]["fields"]["override"] is False, moved
    assert moved["1"]["fields"]["actor"].startswith("telco_churn__training_pipeline/"), moved  # its mover
    # The sensor's retrain names its trigger; v2's verdict is either a move or a rejection, alerted once.
    triggers = [a for a in hooks if a["kind"] in (kinds.DRIFT_FIRED, kinds.PERFORMANCE_DROP)]
    assert len(triggers) == 1, keys
    assert triggers[0]["fields"]["drift_share"] >= telco.monitoring.drift_share_threshold, triggers
    rejected = [a["dedupe_key"] for a in hooks if a["kind"] == kinds.GATE_REJECTED]
    if mlflow.alias(name, "champion") == "2":
        assert "2" in moved and not rejected, keys
    else:
        # One rejection alert, keyed by the version and the evidence it was judged on.
        assert "2" not in moved and len(rejected) == 1, keys
        assert rejected[0].startswith(f"{kinds.GATE_REJECTED}:telco_churn:2:"), keys
    assert not [a for a in hooks if a["kind"] == kinds.TASK_FAILED], keys
    # The same events by email, to the address of the deployment's .env.
    assert len(mails) == len(hooks), (len(mails), keys)
    assert all(m["to"] == [ALERT_EMAIL_TO] for m in mails), mails
    assert all("telco_churn" in m["subject"] for m in mails), [m["subject"] for m in mails]
    FIGURES["alerts received (webhook = email)"] = ", ".join(keys)


def test_no_disk_is_shared_and_the_zones_are_in_the_bucket(loop, stack, airflow):
    """Past one machine: two workers, no volume shared by Airflow's containers or the service, and what one
    stage hands the next is in the object store."""
    services = ("airflow-api-server", "airflow-scheduler", "airflow-triggerer", "airflow-dag-processor")
    containers = [c for s in (*services, "airflow-worker", "serving") for c in stack.containers(s)]
    assert len(stack.containers("airflow-worker")) == 2
    owners: dict[str, list[str]] = {}
    for container in containers:
        for mount in container["Mounts"]:
            if mount["Type"] == "volume":
                owners.setdefault(mount["Name"], []).append(container["Name"])
    shared = {name: users for name, users in owners.items() if len(users) > 1}
    assert not shared, f"volumes shared between containers: {shared}"
    keys = stack.object_keys()
    for zone in ("batches/", "snapshots/", "predictions/", "archive/"):
        assert any(k.startswith(f"zones/telco_churn/{zone}") for k in keys), f"nothing in {zone}: {keys[:20]}"
    assert any(k.startswith("mlflow-artifacts/") and k.endswith("MLmodel") for k in keys), keys[:20]
    workers = {c["Config"]["Hostname"] for c in stack.containers("airflow-worker")}
    used = set().union(*(_hosts(airflow, loop.dag_ids[s], r) for s, r in loop.run_ids.items()))
    assert used == workers, f"the loop's tasks ran on {used}, the workers are {workers}"
    FIGURES["objects in the bucket after the loop"] = str(len(keys))


# ------------------------------------------------------------------------------------------------ faults
def _scale_workers(stack, count: int) -> list[dict]:
    stack.compose(
        "up", "-d", "--no-build", "--no-recreate", "--scale", f"airflow-worker={count}", timeout_s=600
    )
    stack.wait_healthy(timeout_s=300, services=frozenset({"airflow-worker"}))
    workers = stack.containers("airflow-worker", running_only=True)
    assert len(workers) == count, [w["Name"] for w in workers]
    return workers


def test_worker_killed_mid_training_task_is_retried_on_the_other(loop, stack, airflow, mlflow):
    workers = _scale_workers(stack, 2)
    name = _model_name(mlflow)
    before = {v["version"] for v in mlflow.versions(name)}
    # Another seed: a new training key (the same inputs would return the version already trained for them).
    run_id = airflow.trigger(TRAINING_DAG, {"reason": "fault-test-worker-kill", "seed": 1001})
    ti = airflow.wait_task_state(TRAINING_DAG, run_id, "train_model", ("running",), timeout_s=300)
    victim = next(w for w in workers if w["Config"]["Hostname"] == ti["hostname"])
    time.sleep(3)  # inside PyCaret's setup / compare_models
    assert airflow.task_instance(TRAINING_DAG, run_id, "train_model")["state"] == "running", (
        "train_model ended before the worker could be killed in the middle of it"
    )
    sh(["docker", "kill", victim["Id"]], 60)
    started = time.monotonic()
    airflow.wait_for_run(TRAINING_DAG, run_id, timeout_s=900, ok=("success",))
    FIGURES["worker killed mid-training → retry succeeded on the other worker"] = (
        f"{time.monotonic() - started:.0f} s"
    )
    final = airflow.task_instance(TRAINING_DAG, run_id, "train_model")
    assert final["try_number"] >= 2, airflow.task_tries(TRAINING_DAG, run_id, "train_model")
    # A task that failed and then succeeded on its retry is not an alert.
    failed = [a for a in _webhook_alerts(stack) if a["kind"] == "task_failed"]
    assert not failed, failed
    assert final["hostname"] != ti["hostname"], "the retry must run on the surviving worker"
    new = [v for v in mlflow.versions(name) if v["version"] not in before]
    assert len(new) == 1, f"exactly one new model version, got {[v['version'] for v in new]}"
    assert new[0]["tags"][bus.AIRFLOW_RUN_ID_TAG] == run_id
    assert new[0]["status"] == "READY"


def test_mlflow_turns_unhealthy_without_its_database_and_recovers(stack):
    (mlflow_id,) = stack.container_ids("mlflow", running_only=True)
    assert stack.health(mlflow_id) == "healthy"
    stack.compose("stop", "postgres", timeout_s=120)
    started = time.monotonic()
    try:
        wait_for(lambda: stack.health(mlflow_id) == "unhealthy", 300, "mlflow to turn unhealthy", 2)
        FIGURES["MLflow unhealthy after its database stopped"] = f"{time.monotonic() - started:.0f} s"
        # MLflow's own /health still says OK: that is why the health check makes an authenticated call
        # instead.
        assert requests.get(f"{stack.mlflow_url}/health", timeout=30).status_code == 200
        log = stack.inspect([mlflow_id])[0]["State"]["Health"]["Log"][-1]
        assert "mlflow unhealthy" in log["Output"], log
    finally:
        stack.compose("start", "postgres", timeout_s=120)
    wait_for(lambda: stack.health(mlflow_id) == "healthy", 300, "mlflow healthy again", 2)


# ------------------------------------------------------------------------------------------------ teardown
def test_down_leaves_nothing_behind(stack):
    assert stack.leftovers(), "the stack should exist before down"
    stack.down()
    assert stack.leftovers() == {}, "docker compose down -v left resources of the project behind"
