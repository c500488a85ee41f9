"""registry_watch: its trigger (a pure read of a real MLflow registry and audit log), its wiring, DAGs created
unpaused, and a run (``dag.test()``) that records a move made outside Driftloop and alerts it exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from driftloop.core import bus
from tests.config_copies import copy_config

# dag.test() runs the trigger inline: a trigger that never fires would hang the session, so stop it loudly.
pytestmark = pytest.mark.timeout(600, method="thread")

PROJECT_DIR = Path(__file__).resolve().parents[2]
WAIT_TASK, WATCH_TASK = "wait_for_move", "watch_champion"
UNPAUSED = {bus.REGISTRY_WATCH, bus.CHAMPION_ROLLBACK}
ALERT_ENV = (
    "DRIFTLOOP_ALERT_WEBHOOK_URL",
    "DRIFTLOOP_ALERT_HTTP_CONN_ID",
    "DRIFTLOOP_ALERT_SLACK_CONN_ID",
    "DRIFTLOOP_ALERT_SMTP_CONN_ID",
    "DRIFTLOOP_ALERT_EMAIL_TO",
)
UNREACHABLE_HOOK = "http://127.0.0.1:9/hook"  # alerting on, for what the check reads; nothing is sent here


def first_event(trigger, within_s: float) -> list[dict]:
    """The trigger's first event, or none within ``within_s`` seconds."""

    async def run() -> list[dict]:
        async for event in trigger.run():
            return [event.payload]
        return []

    try:
        return asyncio.run(asyncio.wait_for(run(), within_s))
    except TimeoutError:
        return []


@pytest.fixture
def watched(driftloop_env, tmp_path, monkeypatch):
    """A dataset of its own (a telco copy) whose registered model has two versions and no alias yet."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.tracking import ensure_experiment, get_client

    dataset = f"watch_{uuid.uuid4().hex[:8]}"
    copy_config(tmp_path / "configs", "telco_churn", dataset)
    monkeypatch.setenv("DRIFTLOOP_CONFIG_DIR", str(tmp_path / "configs"))
    monkeypatch.setenv("DRIFTLOOP_DATASETS", dataset)
    for name in (*ALERT_ENV, "DRIFTLOOP_AUDIT_DB_URI"):
        monkeypatch.delenv(name, raising=False)
    cfg = load_dataset_config(dataset)
    client = get_client()
    experiment = ensure_experiment(client, cfg.experiment_name("training"))
    client.create_registered_model(cfg.registered_model_name)
    for _ in range(2):
        run = client.create_run(experiment)
        client.set_terminated(run.info.run_id)
        source = f"{run.info.artifact_uri}/{bus.MODEL_ARTIFACT}"
        client.create_model_version(cfg.registered_model_name, source, run_id=run.info.run_id)
    return SimpleNamespace(dataset=dataset, cfg=cfg, client=client, name=cfg.registered_model_name)


def champion_since_two_days(watched) -> None:
    """v1 is champion, promoted by the gate two days ago: on record, and long past being news."""
    from driftloop.governance.audit import open_store

    watched.client.set_registered_model_alias(watched.name, bus.CHAMPION, "1")
    open_store().append(
        {
            "recorded_at": (datetime.now(UTC) - timedelta(days=2)).isoformat(timespec="microseconds"),
            "dataset": watched.dataset,
            "model_name": watched.name,
            "to_version": "1",
            "actor": "training_pipeline/scheduled__1",
            "source": "driftloop",
            "reason": "passed the gate",
            "gate_passed": True,
        }
    )


def entries(watched) -> list[tuple]:
    from driftloop.governance.audit import open_store

    return [(e["from_version"], e["to_version"], e["source"]) for e in open_store().entries(watched.name)]


def test_trigger_stays_quiet_while_the_registry_matches_the_log_and_fires_on_a_move_made_outside(
    watched, monkeypatch
):
    from driftloop.core import alert_claims
    from driftloop.core.settings import Settings
    from driftloop_airflow import triggers

    monkeypatch.setenv("DRIFTLOOP_ALERT_WEBHOOK_URL", UNREACHABLE_HOOK)
    champion_since_two_days(watched)
    checks = []
    real_check = triggers.check_for_move

    def counted(dataset: str):
        checks.append(dataset)
        return real_check(dataset)

    monkeypatch.setattr(triggers, "check_for_move", counted)
    trigger = triggers.RegistryWatchTrigger(watched.dataset, poll_s=0.05)
    assert first_event(trigger, within_s=3) == []
    assert len(checks) >= 3 and set(checks) == {watched.dataset}

    watched.client.set_registered_model_alias(watched.name, bus.CHAMPION, "2")  # what the MLflow UI does
    checks.clear()
    [event] = first_event(trigger, within_s=60)
    assert (event["status"], event["checks"], len(checks)) == ("fired", 1, 1)
    assert "v2" in event["reason"] and "v1" in event["reason"], event
    # A pure read: nothing recorded, nothing alerted (a trigger may run twice).
    assert entries(watched) == [(None, "1", "driftloop")]
    assert not alert_claims.sent_dir(Settings.from_env()).exists()


def test_trigger_fires_on_a_recorded_move_never_alerted_only_when_alerting_is_on(watched, monkeypatch):
    from driftloop.governance.audit import open_store
    from driftloop_airflow import triggers

    champion_since_two_days(watched)
    # `driftloop champion 2` from a shell without the alert settings: moved and recorded, never alerted.
    watched.client.set_registered_model_alias(watched.name, bus.CHAMPION, "2")
    open_store().append(
        {
            "dataset": watched.dataset,
            "model_name": watched.name,
            "from_version": "1",
            "to_version": "2",
            "actor": "cli:alice",
            "source": "driftloop",
            "reason": "manual policy",
            "gate_passed": True,
        }
    )
    trigger = triggers.RegistryWatchTrigger(watched.dataset, poll_s=0.05)
    assert first_event(trigger, within_s=2) == []  # nobody to tell: nothing to do
    monkeypatch.setenv("DRIFTLOOP_ALERT_WEBHOOK_URL", UNREACHABLE_HOOK)
    [event] = first_event(trigger, within_s=60)
    assert event["status"] == "fired" and "not announced" in event["reason"], event


def test_trigger_keeps_polling_through_faults_and_reports_a_verdict(monkeypatch):
    from driftloop.core.errors import ConfigError
    from driftloop_airflow import triggers

    answers = iter([ConnectionError("MLflow restarting"), None, "champion is v3 in the registry"])

    def check(dataset: str):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(triggers, "check_for_move", check)
    [event] = first_event(triggers.RegistryWatchTrigger("telco_churn", poll_s=0.01), within_s=10)
    assert event == {"status": "fired", "reason": "champion is v3 in the registry", "checks": 3}

    def broken(dataset: str):
        raise ConfigError("DRIFTLOOP_CONFIG_OVERRIDES is not valid JSON")

    monkeypatch.setattr(triggers, "check_for_move", broken)
    [event] = first_event(triggers.RegistryWatchTrigger("telco_churn", poll_s=0.01), within_s=10)
    assert event == {
        "status": "error",
        "message": "ConfigError: DRIFTLOOP_CONFIG_OVERRIDES is not valid JSON",
    }


def test_trigger_serializes_to_an_importable_class_outside_the_dag_folder():
    from airflow.sdk._shared.module_loading import import_string

    from driftloop_airflow.triggers import RegistryWatchTrigger

    classpath, kwargs = RegistryWatchTrigger("telco_churn", poll_s=15).serialize()
    cls = import_string(classpath)
    assert cls is RegistryWatchTrigger and kwargs == {"dataset": "telco_churn", "poll_s": 15.0}
    assert not Path(__import__(cls.__module__).__file__).resolve().is_relative_to(PROJECT_DIR / "dags")
    assert cls(**kwargs).serialize() == (classpath, kwargs)


def test_the_watch_starts_in_the_triggerer_every_15_s_continuously_by_default_and_none_switches_it_off(
    monkeypatch,
):
    from airflow.dag_processing.dagbag import DagBag

    for name in ("DRIFTLOOP_WATCH_SCHEDULE", "DRIFTLOOP_WATCH_POKE_S", "DRIFTLOOP_DATASETS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DRIFTLOOP_CONFIG_DIR", raising=False)
    dag = DagBag(dag_folder=str(PROJECT_DIR / "dags")).dags[bus.dag_id("telco_churn", bus.REGISTRY_WATCH)]
    assert dag.schedule == "@continuous"
    sensor = dag.get_task(WAIT_TASK)
    assert sensor.start_from_trigger is True
    assert sensor.start_trigger_args.trigger_cls == "driftloop_airflow.triggers.RegistryWatchTrigger"
    assert sensor.start_trigger_args.next_method == "execute_complete"
    assert sensor.start_trigger_args.trigger_kwargs == {"dataset": "telco_churn", "poll_s": 15.0}
    assert dag.get_task(WATCH_TASK).upstream_task_ids == {WAIT_TASK}

    monkeypatch.setenv("DRIFTLOOP_WATCH_SCHEDULE", "none")
    monkeypatch.setenv("DRIFTLOOP_WATCH_POKE_S", "4")
    dag = DagBag(dag_folder=str(PROJECT_DIR / "dags")).dags[bus.dag_id("telco_churn", bus.REGISTRY_WATCH)]
    assert dag.schedule is None
    assert dag.get_task(WAIT_TASK).start_trigger_args.trigger_kwargs["poll_s"] == 4.0


def test_resumed_sensor_returns_the_reason_and_fails_on_a_verdict():
    from airflow.sdk.exceptions import AirflowFailException

    from driftloop_airflow.sensors import RegistryWatchSensor

    sensor = RegistryWatchSensor(task_id="wait", dataset="telco_churn", poll_s=1)
    assert sensor.execute_complete({}, {"status": "fired", "reason": "moved", "checks": 2}) == "moved"
    with pytest.raises(AirflowFailException, match="ConfigError: bad"):
        sensor.execute_complete({}, {"status": "error", "message": "ConfigError: bad"})


def test_registry_watch_and_champion_rollback_are_created_unpaused(airflow_db, tmp_path, monkeypatch):
    """Nothing to unpause under `make up` or compose, where every other DAG starts paused."""
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.utils.session import create_session

    dataset = f"paused_{uuid.uuid4().hex[:8]}"
    copy_config(tmp_path / "configs", "telco_churn", dataset)
    monkeypatch.setenv("DRIFTLOOP_CONFIG_DIR", str(tmp_path / "configs"))
    monkeypatch.setenv("DRIFTLOOP_DATASETS", dataset)
    bag = DagBag(dag_folder=str(PROJECT_DIR / "dags"))
    assert bag.import_errors == {}
    bundle = "driftloop-paused-test"
    with create_session() as session:
        if session.get(DagBundleModel, bundle) is None:
            session.add(DagBundleModel(name=bundle))
    sync_bag_to_db(bag, bundle, None)  # what the dag-processor does with a DAG it sees for the first time
    with create_session() as session:
        paused = {
            bus.split_dag_id(m.dag_id)[1]: m.is_paused
            for m in session.query(DagModel).filter(DagModel.bundle_name == bundle)
        }
    assert paused == {name: name not in UNPAUSED for name in bus.DAG_NAMES}


@pytest.fixture
def hook():
    from tests.alert_sinks import WebhookReceiver

    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


def run_states(dag_run) -> tuple[str, dict[str, str]]:
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    return str(getattr(dag_run.state, "value", dag_run.state)), states


def test_a_run_records_a_move_made_outside_driftloop_and_alerts_it_once(
    airflow_db, watched, hook, monkeypatch
):
    from airflow.dag_processing.dagbag import DagBag

    from driftloop.governance.audit import EXTERNAL_ACTOR

    # Alerts go through an Airflow HTTP connection (HttpHook), defined as a deployment defines it.
    monkeypatch.setenv("DRIFTLOOP_ALERT_HTTP_CONN_ID", "watch_alerts")
    monkeypatch.setenv("AIRFLOW_CONN_WATCH_ALERTS", json.dumps({"conn_type": "http", "host": hook.url}))
    monkeypatch.setenv("DRIFTLOOP_WATCH_POKE_S", "0.2")
    champion_since_two_days(watched)
    watched.client.set_registered_model_alias(watched.name, bus.CHAMPION, "2")  # what the MLflow UI does
    dag = DagBag(dag_folder=str(PROJECT_DIR / "dags")).dags[bus.dag_id(watched.dataset, bus.REGISTRY_WATCH)]

    first = dag.test()
    assert run_states(first) == ("success", {WAIT_TASK: "success", WATCH_TASK: "success"})
    assert entries(watched) == [(None, "1", "driftloop"), ("1", "2", "external")]
    assert hook.kinds() == ["champion_moved"]
    assert hook.headers[0]["X-Driftloop-Dedupe-Key"].startswith("champion_moved:")  # sent by HttpHook
    alert = hook.bodies[0]["driftloop"]
    assert alert["dataset"] == watched.dataset
    assert {k: alert["fields"][k] for k in ("from_version", "to_version", "actor", "via")} == {
        "from_version": "1",
        "to_version": "2",
        "actor": EXTERNAL_ACTOR,
        "via": "external",
    }

    # The watch task runs again as if its trigger had fired twice: nothing new to record, nothing to alert.
    second = dag.test(mark_success_pattern=WAIT_TASK)
    assert run_states(second) == ("success", {WAIT_TASK: "success", WATCH_TASK: "success"})
    assert entries(watched) == [(None, "1", "driftloop"), ("1", "2", "external")]
    assert hook.kinds() == ["champion_moved"]
