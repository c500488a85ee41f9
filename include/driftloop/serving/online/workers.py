"""Inference workers: processes that hold the models, so predict calls never hold the HTTP event loop's GIL.

Each worker is a spawned process with a duplex pipe. Its main thread answers ``predict`` calls one at a time;
a ``load`` runs in a background thread of the worker (load from the registry, then a warm-up predict), so a
worker keeps serving the old version while the new one warms. On the service side every worker has a reader
thread that hands replies back to the event loop as futures, and the pool replaces a worker that died.

:class:`ThreadWorker` runs the same :class:`ModelHost` in threads of the service process: for tests and for
machines where spawning is not wanted (``DRIFTLOOP_SERVE_WORKERS=-1``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from driftloop.core.settings import Settings
from driftloop.serving.replay import build_frame, typed_columns

LOG = logging.getLogger(__name__)


class WorkerDied(Exception):  # an event, reported to waiting requests as a retryable 503
    """The worker process exited; calls waiting on it fail and the pool starts a replacement."""


class ModelHost:
    """The models of one worker, by version: load and warm, score a batch, drop versions no longer served."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[str, tuple[Any, Any, Any]] = {}  # version -> (model, its Decision, its replay)

    def load(
        self,
        version: str,
        model_uri: str,
        warm_columns: dict[str, list[Any]],
        dtypes: dict[str, str],
        decision: Any,
    ) -> dict[str, Any]:
        """Load ``model_uri`` from our registry and warm it up with a small predict.

        The version serves with its numpy replay (:mod:`driftloop.serving.replay`) when the replay gives the
        pipeline's outputs on probe rows, else with the pipeline itself.

        Returns:
            The timings, and ``replay``: "" when the replay serves, else why the pipeline does.
        """
        import time

        from driftloop.core.registry import load_model

        if version in self.models:
            return {"version": version, "load_s": 0.0, "warm_s": 0.0, "replay": ""}
        start = time.perf_counter()
        model = load_model(model_uri, self.settings)
        loaded = time.perf_counter()
        decision.predict(model, build_frame(warm_columns, dtypes))
        replay, why = replay_model(model, decision, warm_columns, dtypes)
        self.models[version] = (model, decision, replay)
        return {
            "version": version,
            "load_s": loaded - start,
            "warm_s": time.perf_counter() - loaded,
            "replay": why,
        }

    def drop(self, keep: list[str]) -> list[str]:
        """Forget every version not in ``keep``; returns the dropped ones."""
        dropped = [v for v in self.models if v not in keep]
        for version in dropped:
            del self.models[version]
        return dropped

    def predict(
        self, calls: list[tuple[str, dict[str, list[Any]], dict[str, str]]]
    ) -> list[tuple[bool, Any, float]]:
        """Score each ``(version, columns, dtypes)`` call with the version's decision; a failing call does not
        affect the others.

        Returns:
            Per call ``(True, {column: array}, seconds)`` (:meth:`driftloop.core.task_types.Decision.predict`:
            the prediction in the dataset's labels or the value, the score, per-class probabilities) or
            ``(False, error text, seconds)``.
        """
        import time

        import numpy as np

        results: list[tuple[bool, Any, float]] = []
        for version, columns, dtypes in calls:
            start = time.perf_counter()
            try:
                model, decision, replay = self.models[version]
                if replay is not None:
                    outputs = decision.predict_rows(replay, typed_columns(columns, dtypes))
                else:
                    outputs = decision.predict_rows(model, build_frame(columns, dtypes))
                results.append(
                    (True, {k: np.asarray(v) for k, v in outputs.items()}, time.perf_counter() - start)
                )
            except Exception as exc:  # a bad batch is isolated by the batcher, whatever the model raises
                results.append(
                    (False, f"{type(exc).__name__}: {str(exc)[:300]}", time.perf_counter() - start)
                )
        return results


def replay_model(
    model: Any, decision: Any, examples: dict[str, list[Any]], dtypes: dict[str, str]
) -> tuple[Any, str]:
    """The model's numpy replay when it gives the pipeline's outputs, else None and why not."""
    from driftloop.serving.replay import compile_model  # read at each call: a test swaps it

    try:
        replay = compile_model(model)
        if replay is None:
            return None, "the pipeline is not driftloop's preprocessing"
        mismatch = replay.check(model, decision, examples, dtypes)
    except Exception as exc:  # the pipeline serves: the replay is only a faster way to the same numbers
        return None, f"the replay failed: {type(exc).__name__}: {str(exc)[:200]}"
    return (None, mismatch) if mismatch else (replay, "")


NATIVE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_native_threads() -> None:
    """One BLAS/OpenMP thread per worker: the pool already has one worker per core.

    The variables must be set before numpy, scipy or scikit-learn load their native libraries (a spawned
    worker has not imported them yet); ``threadpool_limits`` only reaches libraries already loaded, so on its
    own it left the model's OpenMP and OpenBLAS with a thread per core, spinning against the other workers.
    """
    import os

    for name in NATIVE_THREAD_VARIABLES:
        os.environ[name] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


def worker_main(conn: Any, settings: Settings) -> None:
    """Entry point of a worker process: answer ``(id, op, args)`` messages until ``stop`` or a closed pipe."""
    limit_native_threads()
    host = ModelHost(settings)
    send_lock = threading.Lock()

    def reply(message_id: int, op: str, args: tuple[Any, ...]) -> None:
        try:
            payload = (message_id, True, getattr(host, op)(*args))
        except Exception as exc:  # reported to the caller, the worker goes on (Ctrl-C or exit ends it)
            payload = (message_id, False, f"{type(exc).__name__}: {str(exc)[:300]}")
        with send_lock:
            conn.send(payload)

    while True:
        try:
            message_id, op, args = conn.recv()
        except (EOFError, OSError):
            return
        if op == "stop":
            return
        if op == "load":  # loads and warms in the background; predicts go on with the versions already loaded
            threading.Thread(target=reply, args=(message_id, op, args), daemon=True).start()
        else:
            reply(message_id, op, args)


class ProcessWorker:
    """One inference process, called from the event loop with ``await worker.call(op, *args)``."""

    def __init__(self, index: int, settings: Settings) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.index = index
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(
            target=worker_main, args=(child, settings), daemon=True, name=f"driftloop-serve-worker-{index}"
        )
        self.process.start()
        child.close()
        self.alive = True
        self._ids = itertools.count()
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._lock = threading.Lock()
        self._sender = ThreadPoolExecutor(1, thread_name_prefix=f"driftloop-send-{index}")
        self._reader = threading.Thread(
            target=self._read_replies, daemon=True, name=f"driftloop-recv-{index}"
        )
        self._reader.start()

    async def call(self, op: str, *args: Any) -> Any:
        """Send ``op`` to the process and wait for its reply.

        Raises:
            WorkerDied: The process exited before replying.
            RuntimeError: The operation failed in the worker (its message).
        """
        if not self.alive:
            raise WorkerDied(f"worker {self.index} is not running")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        message_id = next(self._ids)
        with self._lock:
            self._pending[message_id] = (loop, future)
        try:
            await loop.run_in_executor(self._sender, self.conn.send, (message_id, op, args))
        except (OSError, ValueError) as exc:
            with self._lock:
                self._pending.pop(message_id, None)
            raise WorkerDied(f"worker {self.index}: {exc}") from exc
        return await future

    def _read_replies(self) -> None:
        while True:
            try:
                message_id, ok, payload = self.conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                waiting = self._pending.pop(message_id, None)
            if waiting is not None:
                loop, future = waiting
                loop.call_soon_threadsafe(_settle, future, ok, payload)
        self.alive = False
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for loop, future in pending:
            loop.call_soon_threadsafe(_fail, future, WorkerDied(f"worker {self.index} exited"))

    def close(self, timeout_s: float = 5.0) -> None:
        """Ask the process to stop, then terminate it if it does not."""
        stop_process(self.process, self.conn, (-1, "stop", ()), timeout_s)
        self._sender.shutdown(wait=False)


class ThreadWorker:
    """A :class:`ModelHost` in threads of the service process (one predict thread, one load thread)."""

    def __init__(self, index: int, settings: Settings) -> None:
        self.index = index
        self.alive = True
        self.host = ModelHost(settings)
        self._predict = ThreadPoolExecutor(1, thread_name_prefix=f"driftloop-predict-{index}")
        self._load = ThreadPoolExecutor(1, thread_name_prefix=f"driftloop-load-{index}")

    async def call(self, op: str, *args: Any) -> Any:
        """Run ``op`` of the host in the matching thread.

        Raises:
            RuntimeError: The operation raised (its type and message).
        """
        executor = self._load if op == "load" else self._predict
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, getattr(self.host, op), *args)
        except Exception as exc:
            raise RuntimeError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the threads."""
        self._predict.shutdown(wait=False)
        self._load.shutdown(wait=False)


def stop_process(process: Any, conn: Any, stop_message: Any, timeout_s: float) -> None:
    """Send ``stop_message`` on ``conn``, wait for ``process`` to exit, terminate it if it does not; close
    ``conn``."""
    try:
        conn.send(stop_message)
    except (OSError, ValueError):  # the process is already gone
        pass
    process.join(timeout_s)
    if process.is_alive():
        process.terminate()
        process.join(timeout_s)
    conn.close()


def _settle(future: asyncio.Future[Any], ok: bool, payload: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(payload)
    else:
        future.set_exception(RuntimeError(payload))


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class WorkerPool:
    """The service's workers: started together, loaded together, a dead one replaced."""

    def __init__(self, size: int, settings: Settings, kind: str = "process") -> None:
        self.settings = settings
        self.kind = kind
        self.workers: list[Any] = [self._start(i) for i in range(size)]

    def _start(self, index: int) -> Any:
        return (ProcessWorker if self.kind == "process" else ThreadWorker)(index, self.settings)

    async def load(
        self,
        version: str,
        model_uri: str,
        warm_columns: dict[str, list[Any]],
        dtypes: dict[str, str],
        decision: Any,
    ) -> list[dict[str, Any]]:
        """Load and warm ``version`` in every worker (in parallel); the old versions keep serving
        meanwhile."""
        calls = [w.call("load", version, model_uri, warm_columns, dtypes, decision) for w in self.workers]
        return list(await asyncio.gather(*calls))

    async def drop(self, keep: list[str]) -> None:
        """Free the versions no longer served, in every worker."""
        await asyncio.gather(*(w.call("drop", keep) for w in self.workers), return_exceptions=True)

    def dead(self) -> list[Any]:
        """Workers whose process exited."""
        return [w for w in self.workers if not w.alive]

    def replace(self, worker: Any) -> Any:
        """Start a fresh worker in place of a dead one; the caller loads the served versions into it."""
        index = self.workers.index(worker)
        worker.close(timeout_s=1.0)
        self.workers[index] = self._start(worker.index)
        LOG.warning("inference worker %s died and was replaced", worker.index)
        return self.workers[index]

    def close(self) -> None:
        """Stop every worker."""
        for worker in self.workers:
            worker.close()
