"""The deferrable drift sensor: its trigger (off the event loop, no side effects) and how the task resumes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from driftloop.core import bus

PROJECT_DIR = Path(__file__).resolve().parents[2]


def collect(trigger) -> list[dict]:
    async def run() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(run())


def test_trigger_polls_until_a_result_fires(monkeypatch):
    from driftloop_airflow import triggers

    answers = iter([None, None, {"monitoring_run_id": "m1", "detail": "drift"}])
    monkeypatch.setattr(triggers, "check_for_drift", lambda dataset: next(answers))
    events = collect(triggers.DriftTrigger("telco_churn", poll_s=0.01, timeout_s=0))
    assert events == [{"status": "fired", "trigger": {"monitoring_run_id": "m1", "detail": "drift"}}]


def test_trigger_gives_up_after_its_timeout_and_keeps_polling_through_faults(monkeypatch):
    from driftloop_airflow import triggers

    calls = []

    def flaky(dataset: str):
        calls.append(dataset)
        if len(calls) == 1:
            raise ConnectionError("MLflow restarting")
        return None

    monkeypatch.setattr(triggers, "check_for_drift", flaky)
    events = collect(triggers.DriftTrigger("telco_churn", poll_s=0.02, timeout_s=0.1))
    assert events[0]["status"] == "timeout" and events[0]["checks"] == len(calls) >= 3


def test_trigger_reports_a_verdict_instead_of_waiting_forever(monkeypatch):
    from driftloop.core.errors import ConfigError
    from driftloop_airflow import triggers

    def broken(dataset: str):
        raise ConfigError("DRIFTLOOP_CONFIG_OVERRIDES is not valid JSON")

    monkeypatch.setattr(triggers, "check_for_drift", broken)
    [event] = collect(triggers.DriftTrigger("telco_churn", poll_s=0.01, timeout_s=0))
    assert event == {
        "status": "error",
        "message": "ConfigError: DRIFTLOOP_CONFIG_OVERRIDES is not valid JSON",
    }


def test_mlflow_reads_never_block_the_triggerers_event_loop(monkeypatch):
    from driftloop_airflow import triggers

    def slow_check(dataset: str):
        time.sleep(0.3)  # a blocking MLflow call
        return {"monitoring_run_id": "m1", "detail": "drift"}

    monkeypatch.setattr(triggers, "check_for_drift", slow_check)

    async def run() -> int:
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(heartbeat())
        [event async for event in triggers.DriftTrigger("telco_churn", poll_s=1, timeout_s=0).run()]
        beat.cancel()
        return ticks

    assert asyncio.run(run()) >= 10, "the event loop stalled while the trigger read MLflow"


def test_trigger_serializes_to_an_importable_class_outside_the_dag_folder():
    from airflow.sdk._shared.module_loading import import_string

    from driftloop_airflow.triggers import DriftTrigger

    classpath, kwargs = DriftTrigger("telco_churn", poll_s=5, timeout_s=60).serialize()
    cls = import_string(classpath)
    assert cls is DriftTrigger and kwargs == {"dataset": "telco_churn", "poll_s": 5.0, "timeout_s": 60.0}
    assert not Path(__import__(cls.__module__).__file__).resolve().is_relative_to(PROJECT_DIR / "dags")
    assert cls(**kwargs).serialize() == (classpath, kwargs)


def test_sensor_starts_in_the_triggerer_with_the_settings_of_the_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_DIR / "dags"))
    dag = bag.dags[bus.dag_id("telco_churn", bus.DRIFT_SENSOR)]
    sensor = dag.get_task("wait_for_drift")
    assert sensor.start_from_trigger is True
    assert sensor.start_trigger_args.trigger_cls == "driftloop_airflow.triggers.DriftTrigger"
    assert sensor.start_trigger_args.next_method == "execute_complete"
    assert sensor.start_trigger_args.trigger_kwargs["dataset"] == "telco_churn"
    assert "trigger_run_id" in dag.get_task("trigger_training").trigger_run_id
    assert dag.get_task("trigger_training").trigger_dag_id == bus.dag_id("telco_churn", bus.TRAINING_PIPELINE)


def test_resumed_sensor_returns_the_trigger_skips_on_timeout_and_fails_on_a_verdict(monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    import driftloop_airflow
    from driftloop_airflow.sensors import DriftSensor

    sensor = DriftSensor(task_id="wait", dataset="telco_churn", poll_s=1, timeout_s=30)
    fired = {"monitoring_run_id": "m1", "trigger_run_id": "drift__m1", "detail": "drift"}
    assert sensor.execute_complete({}, {"status": "fired", "trigger": fired}) == fired
    from driftloop.monitoring.sensor import suppress_cooldown_runs

    calls = []

    def run_stage(dataset, fn):
        # Not run here: what matters is which function the sensor hands to run_stage, for which dataset.
        calls.append((dataset, fn))
        return ["m7", "m8"] if fn is suppress_cooldown_runs else []

    monkeypatch.setattr(driftloop_airflow, "run_stage", run_stage)
    with pytest.raises(AirflowSkipException, match="in 30 s .*2 result\\(s\\) held back by the cooldown"):
        sensor.execute_complete({}, {"status": "timeout", "checks": 4})
    assert calls == [("telco_churn", suppress_cooldown_runs)]
    with pytest.raises(AirflowFailException, match="ConfigError"):
        sensor.execute_complete({}, {"status": "error", "message": "ConfigError: bad"})
