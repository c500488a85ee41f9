"""The landing watch: ``data_pipeline``'s asset watcher (``LandingTrigger``) run in an event loop against a
landing folder, its memory across restarts (the asset state store), and the schedule each
``DRIFTLOOP_DATA_SCHEDULE`` gives the DAG, as Airflow serialises it for the triggerer.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from driftloop.core import bus
from driftloop.core.state import StatePaths
from driftloop.core.storage import move_into

PROJECT_DIR = Path(__file__).resolve().parents[2]
POLL_S = 0.02
CSV = b"customer_id,tenure\nc1,3\n"


class FakeStateStore:
    """The asset state store the triggerer gives a watcher (``aget``/``aset``), in memory."""

    def __init__(self, values: dict[str, Any] | None = None, fail: bool = False) -> None:
        self.values, self.fail, self.writes = dict(values or {}), fail, 0

    async def aget(self, key: str, default: Any = None) -> Any:
        if self.fail:
            raise ConnectionError("API server restarting")
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        if self.fail:
            raise ConnectionError("API server restarting")
        self.writes += 1
        self.values[key] = json.loads(json.dumps(value))


class RecordingLog:
    """Stands for the trigger's logger (structlog in Airflow): keeps ``(level, message)``."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _record(self, level: str, msg: str, *args: Any) -> None:
        self.lines.append((level, msg % args if args else msg))

    def info(self, msg: str, *args: Any) -> None:
        self._record("info", msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._record("warning", msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        self._record("error", msg, *args)

    def at(self, level: str) -> list[str]:
        return [text for lvl, text in self.lines if lvl == level]


class Watch:
    """A LandingTrigger running in this test's event loop; ``events`` fills as it yields."""

    def __init__(self, trigger: Any) -> None:
        self.trigger, self.events, self.log = trigger, [], RecordingLog()
        trigger._log = self.log  # LoggingMixin's cached logger
        self.looks = 0  # listings finished (or failed) so far

    async def _consume(self) -> None:
        async for event in self.trigger.run():
            self.events.append(event.payload)

    async def _settle(self, settle_s: float, timeout_s: float = 60.0) -> None:
        """Let ``settle_s`` pass and two whole listings finish after now: on a loaded machine a listing can
        take longer than a poll, and a step must be seen by a look that started after it."""
        target = self.looks + 2
        await asyncio.sleep(settle_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.looks < target:
            assert loop.time() < deadline, f"the watch made {self.looks} looks in {timeout_s} s"
            await asyncio.sleep(POLL_S)

    async def run(self, *steps: Callable[[], None], settle_s: float = 10 * POLL_S) -> None:
        """Start the trigger, then per step: do it and let a few polls pass; stop the trigger."""
        from driftloop_airflow import triggers

        inner = triggers.check_landing  # a test's own stand-in, if it set one

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return inner(*args, **kwargs)
            finally:
                self.looks += 1

        triggers.check_landing = counted
        task = asyncio.create_task(self._consume())
        try:
            await self._settle(settle_s)
            for step in steps:
                step()
                await self._settle(settle_s)
            assert not task.done(), f"the watch ended: {task.exception() if task.done() else ''}"
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            triggers.check_landing = inner


def watch(store: FakeStateStore | None = None) -> Watch:
    from driftloop_airflow.triggers import LandingTrigger

    trigger = LandingTrigger("telco_churn", poll_s=POLL_S)
    trigger.asset_state_store = store
    return Watch(trigger)


@pytest.fixture
def zones(driftloop_env) -> StatePaths:
    """The telco landing zones, which do not exist yet (the watch must wait for them)."""
    from driftloop.core.config import load_dataset_config

    return StatePaths.for_dataset(load_dataset_config("telco_churn"))


def land(folder: Path, name: str, content: bytes = CSV) -> Callable[[], None]:
    def step() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)

    return step


def names(event: dict[str, Any]) -> list[str]:
    return [f"{f['zone']}/{f['name']}" for f in event["files"]]


def test_the_first_event_comes_when_a_file_lands_and_each_file_is_announced_once(zones):
    w = watch()

    def ingest_b1() -> None:
        move_into(zones.landing_dir / "b1.csv", zones.archive_dir / "b1")

    asyncio.run(
        w.run(
            land(zones.landing_dir, ".b0.csv.123.tmp"),  # an upload in progress: hidden...
            land(zones.landing_dir, "b0.csv.part"),  # ...or with an in-progress suffix
            lambda: None,  # nothing changes: nothing is announced
            land(zones.landing_dir, "b1.csv"),
            land(zones.labels_landing_dir, "l1.csv", b"customer_id,churn\nc1,1\n"),
            ingest_b1,  # b1 leaves landing; l1 stays (its run failed): neither is announced
            land(zones.landing_dir, "b1.csv"),  # the same name lands again: new
        )
    )
    assert [names(e) for e in w.events] == [["batches/b1.csv"], ["labels/l1.csv"], ["batches/b1.csv"]]
    first = w.events[0]
    assert first["status"] == "landed" and first["dataset"] == "telco_churn" and first["count"] == 1
    key = first["files"][0]["dedupe_key"]
    assert key.startswith(f"batches/b1.csv|{len(CSV)}|")
    assert len({e["dedupe_key"] for e in w.events}) == 3


def test_files_waiting_when_the_watch_starts_are_announced_in_one_event(zones):
    land(zones.landing_dir, "b1.csv")()
    land(zones.landing_dir, "b2.csv")()
    w = watch()
    asyncio.run(w.run())
    assert [names(e) for e in w.events] == [["batches/b1.csv", "batches/b2.csv"]]


def test_a_restarted_watch_remembers_what_it_announced_through_the_asset_state_store(zones):
    from driftloop_airflow.triggers import ANNOUNCED_KEY

    store = FakeStateStore()
    first = watch(store)
    asyncio.run(first.run(land(zones.landing_dir, "b1.csv")))
    assert [names(e) for e in first.events] == [["batches/b1.csv"]]
    [key] = store.values[ANNOUNCED_KEY]
    assert key == first.events[0]["files"][0]["dedupe_key"]
    writes = store.writes
    assert writes == 1, "the keys are written when they change, not every poll"

    # The triggerer restarts: b1 is still in landing (its run failed), b2 landed while it was down.
    land(zones.landing_dir, "b2.csv")()
    second = watch(store)
    asyncio.run(second.run())
    assert [names(e) for e in second.events] == [["batches/b2.csv"]]
    assert len(store.values[ANNOUNCED_KEY]) == 2


def test_without_a_working_state_store_a_restart_announces_waiting_files_again(zones):
    land(zones.landing_dir, "b1.csv")()
    for _ in range(2):
        w = watch(FakeStateStore(fail=True))
        asyncio.run(w.run())
        assert [names(e) for e in w.events] == [["batches/b1.csv"]]  # at least once, never lost
        warnings = " ".join(w.log.at("warning"))
        assert "announced keys unreadable" in warnings and "announced keys not saved" in warnings


def test_a_failing_listing_is_a_warning_and_the_watch_goes_on(zones, monkeypatch):
    from driftloop_airflow import triggers

    real = triggers.check_landing
    calls = []

    def flaky(dataset: str, announced: frozenset[str]) -> Any:
        calls.append(dataset)
        if len(calls) <= 2:
            raise ConnectionError("object store unreachable")
        return real(dataset, announced)

    monkeypatch.setattr(triggers, "check_landing", flaky)
    land(zones.landing_dir, "b1.csv")()
    w = watch()
    asyncio.run(w.run())
    assert [names(e) for e in w.events] == [["batches/b1.csv"]]
    warnings = w.log.at("warning")
    assert len(warnings) == 2 and all("object store unreachable" in line for line in warnings), warnings
    assert w.log.at("error") == []


def test_a_broken_config_is_one_error_line_not_an_event(zones, monkeypatch):
    monkeypatch.setenv("DRIFTLOOP_CONFIG_OVERRIDES", "{not json")
    land(zones.landing_dir, "b1.csv")()
    w = watch()
    asyncio.run(w.run())
    assert w.events == []
    [error] = w.log.at("error")
    assert "ConfigError: DRIFTLOOP_CONFIG_OVERRIDES is not valid JSON" in error


def test_listings_never_block_the_triggerers_event_loop(zones, monkeypatch):
    import time

    from driftloop_airflow import triggers

    real = triggers.check_landing

    def slow(dataset: str, announced: frozenset[str]) -> Any:
        time.sleep(0.3)  # a slow object store
        return real(dataset, announced)

    monkeypatch.setattr(triggers, "check_landing", slow)
    ticks = 0

    async def run() -> None:
        nonlocal ticks

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(heartbeat())
        await watch().run(settle_s=0.5)
        beat.cancel()

    asyncio.run(run())
    assert ticks >= 20, "the event loop stalled while the trigger listed the landing zones"


def test_the_trigger_serialises_to_json_and_an_importable_class_outside_the_dag_folder():
    import importlib

    from airflow.serialization.encoders import encode_trigger
    from airflow.triggers.base import BaseEventTrigger

    from driftloop_airflow.triggers import LandingTrigger

    classpath, kwargs = LandingTrigger("telco_churn", poll_s=5).serialize()
    module, _, name = classpath.rpartition(".")
    assert (
        module == "driftloop_airflow.triggers" and not (PROJECT_DIR / "dags" / "driftloop_airflow").exists()
    )
    assert getattr(importlib.import_module(module), name) is LandingTrigger
    assert kwargs == {"dataset": "telco_churn", "poll_s": 5.0}
    assert json.loads(json.dumps(encode_trigger(LandingTrigger("telco_churn", poll_s=5))))["kwargs"]
    assert issubclass(LandingTrigger, BaseEventTrigger)
    # The same dataset and poll are the same watcher (the dag-processor re-parses without a new trigger).
    assert BaseEventTrigger.hash(classpath, kwargs) == BaseEventTrigger.hash(
        *LandingTrigger("telco_churn", poll_s=5.0).serialize()
    )
    assert BaseEventTrigger.hash(classpath, kwargs) != BaseEventTrigger.hash(
        *LandingTrigger("mlc_churn", poll_s=5).serialize()
    )


def test_the_trigger_module_imports_nothing_heavy():
    code = (
        "import json, sys; import driftloop_airflow.triggers; "
        "print(json.dumps([m for m in ('pandas', 'numpy', 'pyarrow', 'mlflow', 'sklearn', 's3fs') "
        "if m in sys.modules]))"
    )
    paths = [str(PROJECT_DIR / "plugins"), str(PROJECT_DIR / "include"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def parse_data_pipeline(monkeypatch, tmp_path, **env: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    for name in ("DRIFTLOOP_DATA_SCHEDULE", "DRIFTLOOP_LANDING_POKE_S", "DRIFTLOOP_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRIFTLOOP_DATASETS", "telco_churn")
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bag = DagBag(dag_folder=str(PROJECT_DIR / "dags" / "data_pipeline.py"))
    assert bag.import_errors == {}
    return bag.dags[bus.dag_id("telco_churn", bus.DATA_PIPELINE)]


def test_by_default_data_pipeline_is_scheduled_by_its_landing_asset_and_watcher(monkeypatch, tmp_path):
    from airflow.serialization.serialized_objects import DagSerialization

    dag = parse_data_pipeline(monkeypatch, tmp_path, DRIFTLOOP_LANDING_POKE_S="2.5")
    [landing] = dag.timetable.asset_condition.objects
    assert landing.uri == bus.asset_uri("telco_churn", "landing") == "driftloop://telco_churn/landed-files"
    [watcher] = landing.watchers
    assert watcher.name == "telco_churn__landing_watch"
    assert watcher.trigger.serialize() == (
        "driftloop_airflow.triggers.LandingTrigger",
        {"dataset": "telco_churn", "poll_s": 2.5},
    )
    # What the dag-processor stores and the triggerer reads back: the class path and JSON kwargs.
    serialized = json.dumps(DagSerialization.to_dict(dag))
    assert (
        "driftloop_airflow.triggers.LandingTrigger" in serialized
        and "telco_churn__landing_watch" in serialized
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("*/10 * * * *", "*/10 * * * *"), ("none", None), ("@hourly", "@hourly")],
)
def test_a_cron_or_none_keeps_data_pipeline_off_the_watch(monkeypatch, tmp_path, value, expected):
    dag = parse_data_pipeline(monkeypatch, tmp_path, DRIFTLOOP_DATA_SCHEDULE=value)
    assert dag.schedule == expected
    assert not getattr(dag.timetable, "asset_condition", None)
