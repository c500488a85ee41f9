"""The dynamic batcher: a free worker takes everything queued for one model and makes one predict call.

Like Triton's default dynamic batcher with no queue delay: rows are routed when a request arrives
(:mod:`driftloop.serving.online.router`) and queued per arm; a worker that becomes free takes the arm whose
oldest rows waited longest, with everything queued for it (first in, first out, capped at
``DRIFTLOOP_SERVE_MAX_BATCH_ROWS`` rows), and never waits on a timer, because most of a call's cost is fixed
(1.0 ms for one telco row, 1.7 ms for 1,000, with the replayed preprocessing of
:mod:`driftloop.serving.replay`), so waiting only adds latency. With two workers the champion's and the
challenger's calls run at the same time.

* **Shadow rows** (scored by the model that did not answer them, never returned) ride along in a call their
  model makes anyway; otherwise they wait in a bounded queue and run as their own call only when no request
  waits and ``SHADOW_BATCH_ROWS`` rows or ``SHADOW_MAX_WAIT_S`` seconds have gathered. Under load they are
  shed first, and counted.
* **Admission control:** a request is refused with 503 and ``Retry-After`` when too many requests wait or when
  its projected wait (until a worker starts scoring its rows: the workers' current calls and the calls queued
  ahead, with measured call times) exceeds the latency budget, never left to time out.
* **Isolation:** when a call fails, its requests are split in halves and retried until the failing request is
  alone; that one gets a 422, the others their scores.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from typing import Any

from driftloop.core import bus
from driftloop.serving.online.jobs import Job, Part, call_outputs, concat_parts
from driftloop.serving.online.router import ARMS, CHALLENGER, CHAMPION, Routing, assign_challenger
from driftloop.serving.online.validation import RequestError
from driftloop.serving.online.workers import WorkerDied

LOG = logging.getLogger(__name__)
RECENT_CALLS = 31
SHADOW_BATCH_ROWS = 256
SHADOW_MAX_WAIT_S = 1.0


class Batcher:
    """Per-arm queues, admission control, one dispatch loop per worker, isolation and the shadow queues."""

    def __init__(
        self,
        pool: Any,
        models: Any,
        settings: Any,
        metrics: Any,
        dtypes: dict[str, str],
        routing: Routing,
        salt: str,
        on_shadow: Any = None,
    ) -> None:
        self.pool, self.models, self.metrics = pool, models, metrics
        self.dtypes, self.names = dtypes, list(dtypes)
        self.routing, self.salt, self.on_shadow = routing, salt, on_shadow
        self.max_batch_rows = settings.serve_max_batch_rows
        self.queue_max = settings.serve_queue_max
        self.budget_s = settings.serve_latency_budget_ms / 1000
        self.retry_s = settings.serve_poll_s
        self.queues: dict[str, collections.deque[Part]] = {arm: collections.deque() for arm in ARMS}
        self.shadow: dict[str, collections.deque[Part]] = {arm: collections.deque() for arm in ARMS}
        self.shadow_rows = 0
        self.waiting = 0  # requests submitted and not yet answered
        self.call_s: dict[str, float] = {arm: 0.0 for arm in ARMS}  # median of the recent calls of each arm
        self._recent_s: dict[str, collections.deque[float]] = {
            arm: collections.deque(maxlen=RECENT_CALLS) for arm in ARMS
        }
        self.inflight: dict[int, float] = {}  # worker slot -> when its call is expected to end
        self.closing = False
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --------------------------------------------------------------------------------------------------------
    # Routing and admission

    def _route(self, job: Job) -> tuple[dict[str, Any], bool]:
        """Assign every row an arm; returns the rows of each arm and whether the other model shadows them."""
        import numpy as np

        champion, challenger = self.models.get(CHAMPION), self.models.get(CHALLENGER)
        routing = self.routing.effective(challenger is not None)
        compared = challenger is not None and (routing.challenger_share > 0 or routing.shadow)
        job.experiment = bus.ab_experiment_id(champion.version, challenger.version if compared else None)
        to_challenger = (
            assign_challenger(job.entity_ids, routing.challenger_share, self.salt, challenger.version)
            if challenger is not None
            else [False] * job.n_rows
        )
        job.arms = [CHALLENGER if c else CHAMPION for c in to_challenger]
        chosen = np.fromiter(to_challenger, dtype=bool, count=job.n_rows)
        rows = {CHAMPION: np.flatnonzero(~chosen), CHALLENGER: np.flatnonzero(chosen)}
        return {arm: r for arm, r in rows.items() if len(r)}, routing.shadow and challenger is not None

    def projected_wait_s(self, arm: str, n_rows: int) -> float:
        """Expected wait of ``n_rows`` new rows for ``arm`` before a worker starts scoring them.

        The calls already due (one per arm with queued rows, oldest first; ours joins its arm's) are laid on
        the workers as they free up, each taking its arm's measured call time. The request's own call is not
        counted: it is the least any request costs, and refusing it would not make the answer faster.
        """
        import heapq

        now, workers = time.perf_counter(), max(1, len(self.pool.workers))
        free_at = [max(now, end) for end in self.inflight.values()] + [now] * max(
            0, workers - len(self.inflight)
        )
        heapq.heapify(free_at)
        calls = [a for _, a in sorted((q[0].queued_s, a) for a, q in self.queues.items() if q)]
        if arm not in calls:
            calls.append(arm)
        queued_rows = sum(len(part.rows) for part in self.queues[arm]) + n_rows
        calls += [arm] * (queued_rows // self.max_batch_rows)  # rows beyond one call's cap wait for another
        last = max(i for i, a in enumerate(calls) if a == arm)
        start = now
        for call_arm in calls[: last + 1]:
            start = heapq.heappop(free_at)
            heapq.heappush(free_at, start + self.call_s[call_arm])
        return start - now

    def submit(self, job: Job) -> None:
        """Route ``job`` and queue its rows, or refuse it.

        Raises:
            RequestError: 503 with ``Retry-After`` when shutting down, without a champion, with too many
                requests waiting or when the projected wait exceeds the latency budget.
        """
        if self.closing:
            raise self._refuse("shutting_down", "the service is shutting down", 1.0)
        if not self.models.ready:
            raise self._refuse("no_model", "no champion is loaded yet", self.retry_s)
        if self.waiting >= self.queue_max:
            raise self._refuse("queue_full", f"{self.waiting} requests are waiting", 1.0)
        parts, shadow = self._route(job)
        projected = max(self.projected_wait_s(arm, len(rows)) for arm, rows in parts.items())
        if projected > self.budget_s:
            raise self._refuse(
                "over_budget",
                f"projected wait {projected * 1000:.0f} ms exceeds the latency "
                f"budget of {self.budget_s * 1000:.0f} ms",
                projected,
            )
        job.parts_left = len(parts)
        for arm, rows in parts.items():
            self.queues[arm].append(Part(job, rows))
            if shadow:
                self._queue_shadow(CHALLENGER if arm == CHAMPION else CHAMPION, Part(job, rows))
        self.waiting += 1
        self.metrics.queue_depth.set(self.waiting)
        self._wakeup.set()

    def _refuse(self, reason: str, message: str, retry_s: float) -> RequestError:
        self.metrics.rejected.labels(reason).inc()
        return RequestError(
            503,
            "TEMPORARILY_UNAVAILABLE",
            f"{message}; retry later",
            headers={"Retry-After": str(max(1, math.ceil(retry_s)))},
        )

    def _queue_shadow(self, arm: str, part: Part) -> None:
        if self.shadow_rows + len(part.rows) > self.max_batch_rows:
            self.metrics.shadow_dropped_rows.inc(len(part.rows))  # shed first under load
            return
        self.shadow[arm].append(part)
        self.shadow_rows += len(part.rows)
        self.metrics.shadow_queue_rows.set(self.shadow_rows)

    # --------------------------------------------------------------------------------------------------------
    # Dispatch

    def start(self) -> None:
        """Start one dispatch loop per worker."""
        self._tasks = [asyncio.create_task(self._dispatch(slot)) for slot in range(len(self.pool.workers))]

    async def close(self, drain_s: float = 5.0) -> None:
        """Refuse new requests, let the queues drain (at most ``drain_s``), then stop the loops."""
        self.closing = True
        deadline = time.monotonic() + drain_s
        while (self.waiting or self.inflight) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self.queues.values():
            for part in queue:
                self._fail(part.job, self._refuse("shutting_down", "the service is shutting down", 1.0))

    def _choose(self) -> tuple[str, list[Part], list[Part]] | None:
        """The arm whose oldest rows waited longest (with its shadow rows), or a due shadow batch, or None."""
        waiting = [arm for arm in ARMS if self.queues[arm]]
        if waiting:
            arm = min(waiting, key=lambda a: self.queues[a][0].queued_s)
            primary = self._take(self.queues[arm], self.max_batch_rows)
            rows = sum(len(p.rows) for p in primary)
            return arm, primary, self._take_shadow(arm, self.max_batch_rows - rows)
        now = time.perf_counter()
        for arm in ARMS:
            queued = self.shadow[arm]
            if queued and (
                sum(len(p.rows) for p in queued) >= SHADOW_BATCH_ROWS
                or now - queued[0].queued_s >= SHADOW_MAX_WAIT_S
            ):
                return arm, [], self._take_shadow(arm, self.max_batch_rows)
        return None

    @staticmethod
    def _take(queue: collections.deque[Part], max_rows: int) -> list[Part]:
        taken: list[Part] = []
        rows = 0
        while queue and (not taken or rows + len(queue[0].rows) <= max_rows):
            part = queue.popleft()
            taken.append(part)
            rows += len(part.rows)
        return taken

    def _take_shadow(self, arm: str, max_rows: int) -> list[Part]:
        taken = self._take(self.shadow[arm], max_rows) if max_rows > 0 and self.shadow[arm] else []
        self.shadow_rows -= sum(len(p.rows) for p in taken)
        self.metrics.shadow_queue_rows.set(self.shadow_rows)
        return taken

    def _shadow_due_in(self) -> float | None:
        oldest = [q[0].queued_s for q in self.shadow.values() if q]
        return max(0.01, min(oldest) + SHADOW_MAX_WAIT_S - time.perf_counter()) if oldest else None

    async def _dispatch(self, slot: int) -> None:
        while True:
            choice = self._choose()
            if choice is None:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), self._shadow_due_in())
                except TimeoutError:
                    pass
                continue
            arm, primary, shadow = choice
            worker = self.pool.workers[slot]
            self.inflight[slot] = time.perf_counter() + self.call_s[arm]
            try:
                await self._run(worker, arm, primary, shadow)
            except WorkerDied:
                for part in primary:
                    self._fail(part.job, self._refuse("worker_restart", "an inference worker restarted", 1.0))
                await self._replace(worker)
            except Exception:  # a bug must cost this batch, never the dispatch loop
                LOG.exception("a predict call of %d request(s) failed", len(primary))
                for part in primary:
                    self._fail(part.job, RequestError(500, "INTERNAL_ERROR", "internal error"))
            finally:
                del self.inflight[slot]

    async def _replace(self, worker: Any) -> None:
        self.metrics.worker_restarts.inc()
        fresh = self.pool.replace(worker)
        try:
            await self.models.load_into(fresh)
        except Exception:  # the next call on this slot fails again and retries the replacement
            LOG.exception("could not load the served versions into a fresh worker")

    # --------------------------------------------------------------------------------------------------------
    # One predict call

    async def _run(self, worker: Any, arm: str, primary: list[Part], shadow: list[Part]) -> None:
        model = self.models.get(arm)
        if model is None and arm == CHAMPION:  # cannot happen once ready: a champion is never unloaded
            for part in primary:
                self._fail(part.job, self._refuse("no_model", "no champion is loaded", self.retry_s))
            return
        if model is None:  # the challenger was unset after these rows were routed: the champion answers them
            for part in primary:
                moved = set(part.rows)
                part.job.arms = [CHAMPION if i in moved else a for i, a in enumerate(part.job.arms)]
                self.queues[CHAMPION].append(part)
            self.metrics.shadow_dropped_rows.inc(sum(len(p.rows) for p in shadow))
            self._wakeup.set()
            return
        start = time.perf_counter()
        ok, values = await self._predict(worker, arm, model.version, primary, shadow)
        if ok:
            self._spread(arm, model, primary, shadow, values)
        else:
            self.metrics.shadow_dropped_rows.inc(sum(len(p.rows) for p in shadow))
            await self._isolate(worker, arm, model, primary)
        if primary:
            elapsed = time.perf_counter() - start
            recent = self._recent_s[arm]
            recent.append(elapsed)
            self.call_s[arm] = sorted(recent)[len(recent) // 2]  # a median: one slow call moves nothing

    async def _predict(
        self, worker: Any, arm: str, version: str, primary: list[Part], shadow: list[Part]
    ) -> tuple[bool, Any]:
        primary_rows = sum(len(p.rows) for p in primary)
        if primary_rows:
            self.metrics.batch_rows.labels(arm, "primary").observe(primary_rows)
        else:
            self.metrics.batch_rows.labels(arm, "shadow").observe(sum(len(p.rows) for p in shadow))
        start = time.perf_counter()
        try:
            [(ok, values, model_s)] = await worker.call(
                "predict", [(version, concat_parts(primary + shadow, self.names), self.dtypes)]
            )
            self.metrics.model_seconds.labels(arm).observe(model_s)
        except RuntimeError as exc:  # the whole message failed in the worker
            ok, values = False, str(exc)
        self.metrics.predict_seconds.observe(time.perf_counter() - start)
        return ok, values

    def _spread(self, arm: str, model: Any, primary: list[Part], shadow: list[Part], values: Any) -> None:
        """Hand a call's outputs back to its requests; shadow outputs go to the shadow callback."""
        position = 0
        for part in primary:
            part.job.fill(model.decision, model.version, part.rows, values, position)
            position += len(part.rows)
            self._part_done(part.job)
        if position:
            self.metrics.rows.labels(arm, "primary").inc(position)
        shadow_rows = 0
        for part in shadow:
            if self.on_shadow is not None:
                stop = position + len(part.rows)
                self.on_shadow(
                    part.job,
                    part.rows,
                    arm,
                    model.version,
                    call_outputs(model.decision, values, position, stop),
                )
            position += len(part.rows)
            shadow_rows += len(part.rows)
        if shadow_rows:
            self.metrics.rows.labels(arm, "shadow").inc(shadow_rows)

    async def _isolate(self, worker: Any, arm: str, model: Any, parts: list[Part]) -> None:
        """Split a failed call's requests in halves until the failing ones are alone (they get a 422)."""
        if len(parts) == 1:
            self.metrics.isolated.inc()
            self._fail(
                parts[0].job,
                RequestError(
                    422,
                    "MODEL_ERROR",
                    "the model could not score this request; the other requests of its batch were scored",
                ),
            )
            return
        middle = len(parts) // 2
        for half in (parts[:middle], parts[middle:]):
            ok, values = await self._predict(worker, arm, model.version, half, [])
            if ok:
                self._spread(arm, model, half, [], values)
            else:
                await self._isolate(worker, arm, model, half)

    def _part_done(self, job: Job) -> None:
        job.parts_left -= 1
        if job.parts_left == 0 and not job.future.done():
            job.future.set_result(job.result())
            self._answered()

    def _fail(self, job: Job, error: RequestError) -> None:
        if not job.future.done():
            job.future.set_exception(error)
            self._answered()

    def _answered(self) -> None:
        self.waiting -= 1
        self.metrics.queue_depth.set(self.waiting)
