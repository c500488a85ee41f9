"""Triggers that wait in Airflow's triggerer: :class:`DriftTrigger` until a monitoring result calls for
retraining, :class:`RegistryWatchTrigger` until ``champion`` moved without an audit entry or an alert, and
:class:`LandingTrigger`, an asset watcher that announces every new file in a dataset's landing zones.

They run in the triggerer's event loop, so they must never block: each check (a few reads of MLflow, of the
audit log or a listing of the landing zones: :func:`driftloop.monitoring.sensor.find_drift_trigger`,
:func:`driftloop.governance.move_watch.find_unrecorded_move`, :func:`driftloop.data.arrivals.landed_files`)
runs in a thread. They have no side effects on Driftloop's state (a trigger may run twice, e.g. after a
triggerer restart); acting on a firing is the DAG's next task (``mark_trigger_fired``, ``watch_champion``,
``data_pipeline``'s ingestion). This module lives outside the DAG folder because the triggerer imports
triggers by class path (and must be restarted to pick up changes to it); it imports Airflow's trigger base
only, so DAG files may import it at parse time.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from pydantic import JsonValue

    from driftloop.monitoring.monitoring_results import RetrainingTrigger


async def look(trigger: Any, check: Callable[[str], Any], what: str, checks: int) -> Any:
    """One ``check(trigger.dataset)`` in a worker thread: its answer, or None when the look failed (MLflow,
    the audit DB or the object store unreachable for a moment: a WARNING, the next look runs). A
    :class:`~driftloop.core.errors.Verdict` (a broken dataset config) propagates: waiting cannot fix it.
    """
    from driftloop.core.errors import Verdict

    try:
        return await asyncio.to_thread(check, trigger.dataset)
    except Verdict:
        raise
    except Exception as exc:  # unreachable for a moment: keep waiting
        trigger.log.warning("%s check %d failed, retrying in %.0f s: %r", what, checks, trigger.poll_s, exc)
        return None


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
            found = await look(trigger, check, what, checks)
        except Verdict as exc:
            yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})
            return
        if found is not None:
            trigger.log.info("%s fired after %d check(s): %s", what, checks, describe(found))
            yield TriggerEvent(fired(found, checks))
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            yield TriggerEvent({"status": "timeout", "checks": checks})
            return
        await asyncio.sleep(min(trigger.poll_s, remaining))


def check_for_drift(dataset: str) -> RetrainingTrigger | None:
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


# The asset state store key under which the landing watch keeps the keys of the files it announced.
ANNOUNCED_KEY = "announced_files"


def check_landing(dataset: str, announced: frozenset[str]) -> Any:
    """One listing of ``dataset``'s landing zones (in a worker thread of the triggerer): the
    :class:`driftloop.data.arrivals.Arrivals` of this look against the keys announced before."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.data.arrivals import landed_files, new_arrivals
    from driftloop_airflow import use_storage_connection

    settings = Settings.from_env()
    use_storage_connection(settings)  # DRIFTLOOP_STORAGE_CONN_ID: the object store's credentials, as in tasks
    return new_arrivals(landed_files(load_dataset_config(dataset, settings), settings), announced)


class LandingTrigger(BaseEventTrigger):
    """An asset watcher: announce each new file in ``dataset``'s landing zones once (per dedupe key).

    Every ``poll_s`` seconds it lists both landing zones (:func:`driftloop.data.arrivals.landed_files`) and
    yields one event for the files whose key it has not announced yet
    (:func:`driftloop.data.arrivals.new_arrivals` says which; its module documents the key). It never
    returns: a watcher trigger that ends is started again by the triggerer with an empty memory and would
    announce every file still in landing again (the endless re-triggering of apache/airflow#49900 and
    #50791). The announced keys are also kept in the watched asset's state store (Airflow's
    ``asset_state_store``, when the triggerer provides one), so a triggerer restart does not announce them
    again either, and a file that landed while the triggerer was down is announced once it is back. Delivery
    is at least once: a restart between an event and the write of the keys, or two triggerers running the
    watch for a moment, announce a file twice, and the second run finds nothing new to ingest.

    Args:
        dataset: Dataset config name.
        poll_s: Seconds between two listings.

    Events:
        ``{"status": "landed", "dataset", "count", "files": [{"zone", "name", "uri", "size", "modified",
        "etag", "dedupe_key"}, ...], "dedupe_key"}`` (:class:`driftloop.data.arrivals.ArrivalEvent`). A
        listing that fails is a WARNING and a broken dataset config an ERROR (once per message) in the
        triggerer's log, never an event.
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
        from driftloop.core.errors import Verdict

        announced = saved = await self._recall()
        self.log.info(
            "landing watch of %s: listing the landing zones every %g s (%d file(s) announced before)",
            self.dataset,
            self.poll_s,
            len(announced),
        )
        checks, verdict = 0, ""
        while True:
            checks += 1
            try:
                arrivals = await look(
                    self, functools.partial(check_landing, announced=announced), "landing watch", checks
                )
            except Verdict as exc:
                if f"{exc}" != verdict:  # the same broken config is not logged every few seconds
                    self.log.error(
                        "landing watch of %s cannot look: %s: %s", self.dataset, type(exc).__name__, exc
                    )
                verdict, arrivals = f"{exc}", None
            if arrivals is not None:
                verdict = ""
                if arrivals.new:
                    self.log.info(
                        "landing watch of %s, check %d: %s", self.dataset, checks, arrivals.describe()
                    )
                    yield TriggerEvent(arrivals.event(self.dataset))
                announced = arrivals.announced
            await asyncio.sleep(self.poll_s)
            # Saved a poll after the event, once the triggerer has had time to store the event itself: a crash
            # in between repeats an announcement rather than losing one.
            if announced != saved and await self._remember(announced):
                saved = announced

    async def _recall(self) -> frozenset[str]:
        """The keys announced before this trigger started (empty without a state store or when it fails)."""
        if self.asset_state_store is None:
            return frozenset()
        try:
            keys = await self.asset_state_store.aget(ANNOUNCED_KEY, [])
        except Exception as exc:
            self.log.warning(
                "landing watch of %s: announced keys unreadable, starting afresh: %r", self.dataset, exc
            )
            return frozenset()
        return frozenset(str(key) for key in keys) if isinstance(keys, list) else frozenset()

    async def _remember(self, announced: frozenset[str]) -> bool:
        """Keep the announced keys in the asset's state store; False when there is none or the write failed
        (retried after the next look; until then a restart would repeat an announcement)."""
        if self.asset_state_store is None:
            return False
        try:
            keys: list[JsonValue] = [key for key in sorted(announced)]  # JsonValue's list is invariant
            await self.asset_state_store.aset(ANNOUNCED_KEY, keys)
        except Exception as exc:
            self.log.warning("landing watch of %s: announced keys not saved: %r", self.dataset, exc)
            return False
        return True
