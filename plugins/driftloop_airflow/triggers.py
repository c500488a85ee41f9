"""Triggers that wait in Airflow's triggerer: :class:`DriftTrigger` until a monitoring result calls for
retraining, :class:`RegistryWatchTrigger` until ``champion`` moved without an audit entry or an alert.

Both run in the triggerer's event loop, so they must never block: each check (a few reads of MLflow or of the
audit log: :func:`driftloop.monitoring.sensor.find_drift_trigger`,
:func:`driftloop.governance.move_watch.find_unrecorded_move`) runs in a thread. They have no side effects (a
trigger may run twice, e.g. after a triggerer restart); acting on a firing is the DAG's next task
(``mark_trigger_fired``, ``watch_champion``). This module lives outside the DAG folder because the triggerer
imports triggers by class path (and must be restarted to pick up changes to it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


async def poll_until_found(
    trigger: Any,
    check: Callable[[str], Any],
    what: str,
    *,
    fired: Callable[[Any, int], dict[str, Any]],
    describe: Callable[[Any], Any],
    timeout_s: float = 0.0,
) -> AsyncIterator[TriggerEvent]:
    """The waiting loop of both triggers: ``check(trigger.dataset)`` in a thread every ``trigger.poll_s``
    seconds until it finds something (``fired(found, checks)``), a verdict that waiting cannot fix (an
    ``error`` event), or ``timeout_s`` (> 0) passes (a ``timeout`` event). A failing look (MLflow or the audit
    DB unreachable for a moment) is a WARNING and the next look runs.
    """
    from driftloop.core.errors import Verdict

    deadline = time.monotonic() + timeout_s if timeout_s > 0 else float("inf")
    checks = 0
    while True:
        checks += 1
        try:
            found = await asyncio.to_thread(check, trigger.dataset)
        except Verdict as exc:
            yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
            return
        except Exception as exc:  # unreachable for a moment: keep waiting
            trigger.log.warning(
                "%s check %d failed, retrying in %.0f s: %r", what, checks, trigger.poll_s, exc
            )
            found = None
        if found is not None:
            trigger.log.info("%s fired after %d check(s): %s", what, checks, describe(found))
            yield TriggerEvent(fired(found, checks))
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            yield TriggerEvent({"status": "timeout", "checks": checks})
            return
        await asyncio.sleep(min(trigger.poll_s, remaining))


def check_for_drift(dataset: str) -> dict[str, Any] | None:
    """One read-only look at MLflow for ``dataset`` (runs in a worker thread of the triggerer)."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.monitoring.sensor import find_drift_trigger

    settings = Settings.from_env()
    return find_drift_trigger(load_dataset_config(dataset, settings), settings)


class DriftTrigger(BaseTrigger):
    """Fire when :func:`driftloop.monitoring.sensor.find_drift_trigger` finds a result; give up after
    ``timeout_s``.

    Args:
        dataset: Dataset config name.
        poll_s: Seconds between two looks at MLflow.
        timeout_s: Seconds to wait before yielding a ``timeout`` event (the sensor then skips); 0 waits
            forever.

    Events:
        ``{"status": "fired", "trigger": {...}}``, ``{"status": "timeout", "checks": n}`` or ``{"status":
        "error", "message": ...}`` for a verdict (a broken dataset config) that waiting cannot fix.
    """

    def __init__(self, dataset: str, poll_s: float, timeout_s: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger.__init__ has no annotations
        self.dataset, self.poll_s, self.timeout_s = dataset, float(poll_s), float(timeout_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"dataset": self.dataset, "poll_s": self.poll_s, "timeout_s": self.timeout_s},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for event in poll_until_found(
            self,
            check_for_drift,
            "drift",
            fired=lambda found, checks: {"status": "fired", "trigger": found},
            describe=lambda found: found.get("detail"),
            timeout_s=self.timeout_s,
        ):
            yield event


def check_for_move(dataset: str) -> str | None:
    """One read-only comparison of ``champion`` with the audit log for ``dataset`` (in a worker thread of the
    triggerer); why the watch must act, or None."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.governance.move_watch import find_unrecorded_move

    settings = Settings.from_env()
    return find_unrecorded_move(load_dataset_config(dataset, settings), settings)


class RegistryWatchTrigger(BaseTrigger):
    """Fire when :func:`driftloop.governance.move_watch.find_unrecorded_move` finds a move of ``champion`` the
    audit log lacks, or a recorded move never alerted; otherwise wait, however long.

    Args:
        dataset: Dataset config name.
        poll_s: Seconds between two looks at the registry and the audit log.

    Events:
        ``{"status": "fired", "reason": ..., "checks": n}``, or ``{"status": "error", "message": ...}`` for a
        verdict (a broken dataset config) that waiting cannot fix.
    """

    def __init__(self, dataset: str, poll_s: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger.__init__ has no annotations
        self.dataset, self.poll_s = dataset, float(poll_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"dataset": self.dataset, "poll_s": self.poll_s},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for event in poll_until_found(
            self,
            check_for_move,
            "registry watch",
            fired=lambda reason, checks: {"status": "fired", "reason": reason, "checks": checks},
            describe=lambda reason: reason,
        ):
            yield event
