"""Deferrable sensors that wait in the triggerer, not on a worker: :class:`DriftSensor` for a drift result,
:class:`RegistryWatchSensor` for a move of ``champion`` the audit log or the alerts lack.

Each starts directly in the triggerer (``start_from_trigger``): waiting costs no task launch and no worker
slot, however long it lasts. Only when its trigger (:mod:`driftloop_airflow.triggers`) fires (or gives up)
does the task resume on a worker, once, in ``execute_complete``. Run outside a scheduler (``dag.test()``, or
with ``start_from_trigger=False``) it defers from ``execute`` instead, to the same trigger.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.triggers.base import StartTriggerArgs

TRIGGER_CLASS = "driftloop_airflow.triggers.DriftTrigger"
WATCH_TRIGGER_CLASS = "driftloop_airflow.triggers.RegistryWatchTrigger"


def start_in_the_triggerer(trigger_cls: str) -> StartTriggerArgs:
    """Where a sensor that starts from its trigger begins: ``trigger_cls`` in the triggerer, resuming in
    ``execute_complete``, with no timeout (each instance sets its trigger's arguments)."""
    return StartTriggerArgs(
        trigger_cls=trigger_cls,
        next_method="execute_complete",
        trigger_kwargs={},
        next_kwargs=None,
        timeout=None,
    )


class DriftSensor(BaseOperator):
    """Wait until monitoring results in MLflow cross the dataset's drift or performance threshold.

    The decision (thresholds, cooldown, results already acted on) is
    :func:`driftloop.monitoring.sensor.find_drift_trigger`. When it fires, the trigger dict (reason,
    monitoring run id, ``trigger_run_id``, numbers) is the XCom; when nothing fires within ``timeout_s`` the
    task is skipped, after labelling results the cooldown held back.

    Args:
        dataset: Dataset config name.
        poll_s: Seconds between two looks at MLflow (from the triggerer, off the event loop).
        timeout_s: Seconds to wait before skipping; 0 waits until something fires.
    """

    ui_color = "#f4a261"
    start_trigger_args = start_in_the_triggerer(TRIGGER_CLASS)
    start_from_trigger = True

    def __init__(
        self, *, dataset: str, poll_s: float, timeout_s: float, start_from_trigger: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.dataset, self.poll_s, self.timeout_s = dataset, poll_s, timeout_s
        self.start_from_trigger = start_from_trigger
        # Replaced, not mutated: start_trigger_args is a class attribute shared by every instance.
        self.start_trigger_args = dataclasses.replace(
            self.start_trigger_args,
            trigger_kwargs={"dataset": dataset, "poll_s": poll_s, "timeout_s": timeout_s},
        )

    def execute(self, context: Any) -> None:
        from driftloop_airflow.triggers import DriftTrigger

        self.defer(
            trigger=DriftTrigger(self.dataset, self.poll_s, self.timeout_s), method_name="execute_complete"
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from driftloop_airflow import run_stage

        event = event or {}
        if event.get("status") == "fired":
            trigger: dict[str, Any] = event["trigger"]
            self.log.info("drift trigger: %s", trigger.get("detail"))
            return trigger
        if event.get("status") == "error":
            raise AirflowFailException(event.get("message", "the drift check failed"))
        from driftloop.monitoring.sensor import suppress_cooldown_runs
        from driftloop_airflow.notifiers import set_run_note

        held = run_stage(self.dataset, suppress_cooldown_runs)
        decision = (
            f"no retrain: no unhandled monitoring result crossed the thresholds in {self.timeout_s:.0f} s "
            f"({event.get('checks', '?')} checks); {len(held)} result(s) held back by the cooldown"
        )
        self.log.info("drift sensor decision: %s", decision)
        set_run_note(decision)
        raise AirflowSkipException(decision)


class RegistryWatchSensor(BaseOperator):
    """Wait until ``champion`` moved without an audit entry (the MLflow UI or REST API) or a recorded move was
    never alerted.

    The check is :func:`driftloop.governance.move_watch.find_unrecorded_move`, a pure read; recording and
    alerting are the next task's (:func:`driftloop.governance.move_watch.watch_champion`). When it fires, the
    reason is the XCom and the run's note. It never times out: with the ``@continuous`` schedule one run waits
    until something happens and the next starts right after.

    Args:
        dataset: Dataset config name.
        poll_s: Seconds between two looks at the registry and the audit log (from the triggerer, off the event
            loop).
    """

    ui_color = "#e9c46a"
    start_trigger_args = start_in_the_triggerer(WATCH_TRIGGER_CLASS)
    start_from_trigger = True

    def __init__(
        self, *, dataset: str, poll_s: float, start_from_trigger: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.dataset, self.poll_s = dataset, poll_s
        self.start_from_trigger = start_from_trigger
        # Replaced, not mutated: start_trigger_args is a class attribute shared by every instance.
        self.start_trigger_args = dataclasses.replace(
            self.start_trigger_args, trigger_kwargs={"dataset": dataset, "poll_s": poll_s}
        )

    def execute(self, context: Any) -> None:
        from driftloop_airflow.triggers import RegistryWatchTrigger

        self.defer(trigger=RegistryWatchTrigger(self.dataset, self.poll_s), method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> str:
        event = event or {}
        if event.get("status") == "fired":
            from driftloop_airflow.notifiers import set_run_note

            reason = str(event.get("reason", ""))
            self.log.info("registry watch fired: %s", reason)
            set_run_note(f"watch: {reason}")
            return reason
        if event.get("status") == "error":
            raise AirflowFailException(event.get("message", "the registry check failed"))
        raise AirflowFailException(f"registry watch: unexpected trigger event {event!r}")


class NotedTriggerDagRunOperator(TriggerDagRunOperator):
    """``TriggerDagRunOperator`` whose ``note`` (the triggered run's note, shown in the grid) is templated."""

    template_fields = (*TriggerDagRunOperator.template_fields, "note")
