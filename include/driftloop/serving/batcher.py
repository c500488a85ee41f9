"""The dynamic batcher: every free worker takes everything queued and makes one predict call per model.

Like Triton's default dynamic batcher with no queue delay: a worker that becomes free takes all waiting requests
(first in, first out, capped at ``DRIFTLOOP_SERVE_MAX_BATCH_ROWS`` rows) and never waits on a timer, because a
PyCaret pipeline costs about the same per call whatever the rows, so waiting only adds latency. Rows are routed
when the batch is formed (:mod:`driftloop.serving.router`), and each model scores its rows in one call.

* **Shadow rows** ride along in a call their model makes anyway for its own arm (extra rows cost next to nothing,
  and the response waits for no extra call); otherwise they wait in a bounded shadow queue that a worker serves
  only when no request is waiting. Under load they are shed first, and counted.
* **Admission control:** a request is refused with 503 and ``Retry-After`` when the queue is full or the projected
  wait (cycles ahead times the measured cycle time) exceeds the latency budget, never left to time out.
* **Isolation:** when a call fails, its requests are split in halves and retried until the failing request is
  alone; that one gets a 422, the others their scores.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from driftloop import bus
from driftloop.serving.router import CHALLENGER, CHAMPION, Routing, assign_challenger
from driftloop.serving.validation import RequestError
from driftloop.serving.workers import WorkerDied

LOG = logging.getLogger(__name__)
EWMA_WEIGHT = 0.2


@dataclass(eq=False)
class Job:
    """One request waiting to be scored; ``future`` receives a :class:`JobResult` or a :class:`RequestError`."""

    request_id: str
    columns: dict[str, list]
    n_rows: int
    entity_ids: list[str]
    future: asyncio.Future
    enqueued_s: float = field(default_factory=time.perf_counter)
    arms: list[str] = field(default_factory=list)
    experiment: str = ""


@dataclass
class JobResult:
    """Scores of one request, with the arm and version that answered each row."""

    scores: list[float]
    arms: list[str]
    versions: list[str]
    experiment: str
    entity_ids: list[str]


@dataclass
class _Call:
    """One predict call of one model: its own rows (primary) and rows it scores in the shadow."""

    alias: str
    version: str
    primary: list[tuple[Job, list[int]]]
    shadow: list[tuple[Job, list[int]]]


def _select(columns: dict[str, list], rows: list[int], n_rows: int) -> dict[str, list]:
    if len(rows) == n_rows:
        return columns
    return {name: [values[i] for i in rows] for name, values in columns.items()}


def _concat(parts: list[tuple[Job, list[int]]], names: list[str]) -> dict[str, list]:
    merged: dict[str, list] = {name: [] for name in names}
    for job, rows in parts:
        selected = _select(job.columns, rows, job.n_rows)
        for name in names:
            merged[name].extend(selected[name])
    return merged


class Batcher:
    """Queue, admission control, dispatch loops (one per worker), isolation and the shadow queue."""

    def __init__(self, pool: Any, models: Any, settings: Any, metrics: Any, dtypes: dict[str, str],
                 routing: Routing, salt: str, on_shadow: Any = None) -> None:
        self.pool = pool
        self.models = models
        self.metrics = metrics
        self.dtypes = dtypes
        self.names = list(dtypes)
        self.routing = routing
        self.salt = salt
        self.on_shadow = on_shadow
        self.max_batch_rows = settings.serve_max_batch_rows
        self.queue_max = settings.serve_queue_max
        self.budget_s = settings.serve_latency_budget_ms / 1000
        self.queue: collections.deque[Job] = collections.deque()
        self.queued_rows = 0
        self.shadow_queue: dict[str, collections.deque] = {CHAMPION: collections.deque(),
                                                           CHALLENGER: collections.deque()}
        self.shadow_rows = 0
        self.cycle_s = 0.0
        self.busy = 0
        self.closing = False
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # ---------------------------------------------------------------------------------------------------------
    # Admission

    def projected_wait_s(self, n_rows: int) -> float:
        """Expected time to an answer for a request of ``n_rows`` rows arriving now."""
        workers = max(1, len(self.pool.workers))
        waiting_for_a_worker = 1 if self.busy >= workers else 0
        cycles_ahead = (self.queued_rows + n_rows) // max(1, self.max_batch_rows)
        return self.cycle_s * (1 + waiting_for_a_worker + cycles_ahead / workers)

    def submit(self, job: Job) -> None:
        """Queue ``job`` or refuse it.

        Raises:
            RequestError: 503 with ``Retry-After`` when shutting down, without a champion, with a full queue or
                when the projected wait exceeds the latency budget.
        """
        if self.closing:
            raise self._refuse("shutting_down", "the service is shutting down", 1.0)
        if not self.models.ready:
            raise self._refuse("no_model", "no champion is loaded yet", self.models.settings.serve_poll_s)
        if len(self.queue) >= self.queue_max:
            raise self._refuse("queue_full", f"{len(self.queue)} requests are waiting", self.projected_wait_s(0))
        projected = self.projected_wait_s(job.n_rows)
        if projected > self.budget_s and self.busy >= len(self.pool.workers):  # an idle worker starts it now
            raise self._refuse("over_budget", f"projected wait {projected * 1000:.0f} ms exceeds the latency "
                                              f"budget of {self.budget_s * 1000:.0f} ms", projected)
        self.queue.append(job)
        self.queued_rows += job.n_rows
        self.metrics.queue_depth.set(len(self.queue))
        self._wakeup.set()

    def _refuse(self, reason: str, message: str, retry_s: float) -> RequestError:
        self.metrics.rejected.labels(reason).inc()
        retry_after = str(max(1, math.ceil(retry_s)))
        return RequestError(503, "TEMPORARILY_UNAVAILABLE", f"{message}; retry later",
                            headers={"Retry-After": retry_after})

    # ---------------------------------------------------------------------------------------------------------
    # Dispatch

    def start(self) -> None:
        """Start one dispatch loop per worker."""
        self._tasks = [asyncio.create_task(self._dispatch(slot)) for slot in range(len(self.pool.workers))]

    async def close(self, drain_s: float = 5.0) -> None:
        """Refuse new requests, let the queue drain (at most ``drain_s``), then stop the loops."""
        self.closing = True
        deadline = time.monotonic() + drain_s
        while (self.queue or self.busy) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for job in self.queue:
            if not job.future.done():
                job.future.set_exception(self._refuse("shutting_down", "the service is shutting down", 1.0))

    async def _dispatch(self, slot: int) -> None:
        while True:
            if not self.queue and not self.shadow_rows:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            worker = self.pool.workers[slot]
            self.busy += 1
            jobs = self._take() if self.queue else []
            try:
                await (self._run_primary(worker, jobs) if jobs else self._run_shadow(worker))
            except WorkerDied:
                await self._replace(worker)
            except Exception:  # a bug must cost this batch, never the dispatch loop
                LOG.exception("batch of %d request(s) failed", len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(RequestError(500, "INTERNAL_ERROR", "internal error"))
            finally:
                self.busy -= 1

    def _take(self) -> list[Job]:
        jobs = [self.queue.popleft()]
        rows = jobs[0].n_rows
        while self.queue and rows + self.queue[0].n_rows <= self.max_batch_rows:
            job = self.queue.popleft()
            jobs.append(job)
            rows += job.n_rows
        self.queued_rows -= rows
        self.metrics.queue_depth.set(len(self.queue))
        return jobs

    async def _replace(self, worker: Any) -> None:
        self.metrics.worker_restarts.inc()
        fresh = self.pool.replace(worker)
        try:
            await self.models.load_into(fresh)
        except Exception:  # the next cycle on this slot fails again and retries the replacement
            pass

    # ---------------------------------------------------------------------------------------------------------
    # Primary cycle

    def _plan(self, jobs: list[Job]) -> tuple[list[_Call], str]:
        """Route every row and group rows into one call per model (with ride-along shadow rows)."""
        champion, challenger = self.models.get(CHAMPION), self.models.get(CHALLENGER)
        routing = self.routing.effective(challenger is not None)
        experiment = bus.ab_experiment_id(champion.version, challenger.version if challenger and (
            routing.challenger_share > 0 or routing.shadow) else None)
        by_alias: dict[str, list] = {CHAMPION: [], CHALLENGER: []}
        for job in jobs:
            to_challenger = (assign_challenger(job.entity_ids, routing.challenger_share, self.salt,
                                               challenger.version) if challenger else [False] * job.n_rows)
            job.arms = [CHALLENGER if c else CHAMPION for c in to_challenger]
            job.experiment = experiment
            for alias in (CHAMPION, CHALLENGER):
                rows = [i for i, arm in enumerate(job.arms) if arm == alias]
                if rows:
                    by_alias[alias].append((job, rows))
        served = {CHAMPION: champion, CHALLENGER: challenger}
        calls = []
        for alias, other in ((CHAMPION, CHALLENGER), (CHALLENGER, CHAMPION)):
            shadow = by_alias[other] if routing.shadow and served[alias] is not None else []
            if by_alias[alias]:
                calls.append(_Call(alias, served[alias].version, by_alias[alias], shadow + self._ride_along(alias)))
            elif shadow:
                self._queue_shadow(alias, shadow)
        return calls, experiment

    def _ride_along(self, alias: str) -> list[tuple[Job, list[int]]]:
        queued, taken, rows = self.shadow_queue[alias], [], 0
        while queued and rows + len(queued[0][1]) <= self.max_batch_rows:
            item = queued.popleft()
            taken.append(item)
            rows += len(item[1])
        self.shadow_rows -= rows
        self.metrics.shadow_queue_rows.set(self.shadow_rows)
        return taken

    def _queue_shadow(self, alias: str, parts: list[tuple[Job, list[int]]]) -> None:
        for job, rows in parts:
            if self.shadow_rows + len(rows) > self.max_batch_rows:
                self.metrics.shadow_dropped_rows.inc(len(rows))  # shed first under load
                continue
            self.shadow_queue[alias].append((job, rows))
            self.shadow_rows += len(rows)
        self.metrics.shadow_queue_rows.set(self.shadow_rows)
        self._wakeup.set()

    async def _run_primary(self, worker: Any, jobs: list[Job]) -> None:
        start = time.perf_counter()
        if self.models.get(CHAMPION) is None:
            for job in jobs:
                job.future.set_exception(self._refuse("no_model", "no champion is loaded yet", 1.0))
            return
        calls, experiment = self._plan(jobs)
        scores: dict[Job, list[float]] = {job: [math.nan] * job.n_rows for job in jobs}
        versions: dict[Job, list[str]] = {job: [""] * job.n_rows for job in jobs}
        failed: set[Job] = set()
        try:
            outcomes = await self._predict(worker, calls)
            for call, (ok, payload) in zip(calls, outcomes, strict=True):
                if ok:
                    self._spread(call, payload, scores, versions)
                else:
                    self.metrics.shadow_dropped_rows.inc(sum(len(rows) for _, rows in call.shadow))
                    await self._isolate(worker, call.version, call.primary, scores, versions, failed)
        except WorkerDied:
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(self._refuse("worker_restart", "an inference worker restarted", 1.0))
            raise
        for job in jobs:
            if job.future.done():
                continue
            if job in failed:
                self.metrics.isolated.inc()
                job.future.set_exception(RequestError(422, "MODEL_ERROR", "the model could not score this "
                                                                          "request; the other requests of its "
                                                                          "batch were scored"))
            else:
                job.future.set_result(JobResult(scores[job], job.arms, versions[job], experiment, job.entity_ids))
        self._observe_cycle(time.perf_counter() - start)

    async def _predict(self, worker: Any, calls: list[_Call]) -> list[tuple[bool, Any]]:
        payload = [(call.version, _concat(call.primary + call.shadow, self.names), self.dtypes) for call in calls]
        start = time.perf_counter()
        try:
            outcomes = await worker.call("predict", payload)
        except RuntimeError as exc:  # the whole message failed (e.g. a version vanished): every call failed
            outcomes = [(False, str(exc))] * len(calls)
        self.metrics.predict_seconds.observe(time.perf_counter() - start)
        for call in calls:
            self.metrics.batch_rows.labels(call.alias, "primary").observe(sum(len(r) for _, r in call.primary))
        return outcomes

    def _spread(self, call: _Call, values: Any, scores: dict, versions: dict) -> None:
        """Hand a call's scores back to its requests; shadow scores go to the shadow callback."""
        position = 0
        for job, rows in call.primary:
            job_scores, job_versions = scores[job], versions[job]
            for i in rows:
                job_scores[i] = float(values[position])
                job_versions[i] = call.version
                position += 1
        self.metrics.rows.labels(call.alias, "primary").inc(position)
        shadow_rows = 0
        for job, rows in call.shadow:
            if self.on_shadow is not None:
                self.on_shadow(job, rows, call.alias, call.version, values[position:position + len(rows)])
            position += len(rows)
            shadow_rows += len(rows)
        if shadow_rows:
            self.metrics.rows.labels(call.alias, "shadow").inc(shadow_rows)

    async def _isolate(self, worker: Any, version: str, parts: list, scores: dict, versions: dict,
                       failed: set) -> None:
        """Split a failed call's requests in halves until the failing ones are alone."""
        if len(parts) == 1:
            failed.add(parts[0][0])
            return
        middle = len(parts) // 2
        for half in (parts[:middle], parts[middle:]):
            call = _Call(CHAMPION if version == self._version_of(CHAMPION) else CHALLENGER, version, half, [])
            [(ok, payload)] = await self._predict(worker, [call])
            if ok:
                self._spread(call, payload, scores, versions)
            else:
                await self._isolate(worker, version, half, scores, versions, failed)

    def _version_of(self, alias: str) -> str | None:
        model = self.models.get(alias)
        return model.version if model is not None else None

    def _observe_cycle(self, seconds: float) -> None:
        self.cycle_s = seconds if self.cycle_s == 0 else (1 - EWMA_WEIGHT) * self.cycle_s + EWMA_WEIGHT * seconds

    # ---------------------------------------------------------------------------------------------------------
    # Shadow cycle (only when no request waits)

    async def _run_shadow(self, worker: Any) -> None:
        alias = max(self.shadow_queue, key=lambda a: len(self.shadow_queue[a]))
        model = self.models.get(alias)
        parts = self._ride_along(alias)
        if model is None or not parts:
            self.metrics.shadow_dropped_rows.inc(sum(len(rows) for _, rows in parts))
            return
        call = _Call(alias, model.version, [], parts)
        [(ok, payload)] = await self._predict(worker, [call])
        if ok:
            self._spread(call, payload, {}, {})
        else:
            self.metrics.shadow_dropped_rows.inc(sum(len(rows) for _, rows in parts))
