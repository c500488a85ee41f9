"""The prediction log: every served row, written off the request path, read back for monitoring and A/B tests.

Each request hands one :class:`LogEntry` (its inputs, outputs, versions, arms, latency, request and entity
ids) to :class:`PredictionLogWriter`: a bounded in-memory queue that a background thread empties every
``FLUSH_S`` seconds (a backlog without pause), handing the entries to a process of its own that writes
them, at most ``WRITE_BATCH_ROWS`` rows per transaction. Logging never blocks a request; when the queue is
full the entry is dropped and counted (``driftloop_serving_log_dropped_rows``), never silently.

Stores, chosen by ``DRIFTLOOP_PREDICTION_LOG_URI``: SQLite (the default,
``<state>/serving/prediction_log.sqlite``, WAL so readers never block the writer; one record per entry, see
:mod:`~driftloop.serving.online.prediction_log_store`) for the embedded mode, PostgreSQL
(``postgresql://...``; rows go in with ``COPY`` through asyncpg) in production. :func:`read_log` gives one row
per served row and role (``primary`` answered the request, ``shadow`` was scored after it and never returned);
``prediction`` is the dataset's label (or the value, as text), ``probabilities`` the per-class probabilities
of a multiclass model (JSON) and ``features`` the row's inputs (JSON; empty on a shadow row: its primary row,
same ``request_id`` and ``row_index``, holds them).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths
from driftloop.core.storage import is_local
from driftloop.serving.online.prediction_log_store import (
    COLUMNS,
    ENTRY_TABLE,
    TABLE,
    LogEntry,
    ProcessSink,
    ThreadSink,
    is_postgres,
    sqlite_path,
)

LOG = logging.getLogger(__name__)
PRIMARY, SHADOW = "primary", "shadow"
# A row its model failed to answer (5xx, model error, timeout): what the rollout's error guardrail counts.
ERROR = "error"
FLUSH_S = 0.2
WRITE_ATTEMPTS = 3
# Queued rows count against the queue until written: writing a backlog in one batch kept new rows out
# (dropped) for as long as the whole backlog took, seconds after an overload had ended.
WRITE_BATCH_ROWS = 20_000


def log_uri(cfg: DatasetConfig, settings: Settings) -> str:
    """Where the prediction log of ``cfg`` lives: the setting, or SQLite under the dataset's state folder.

    A SQLite file needs a local disk: with the data zones on object storage the default log stays in
    ``$DRIFTLOOP_HOME/data/<dataset>/serving`` on the serving host, readable only there; a deployment whose
    exports run on other hosts sets ``DRIFTLOOP_PREDICTION_LOG_URI`` (PostgreSQL).
    """
    if settings.prediction_log_uri:
        return settings.prediction_log_uri
    root = StatePaths.for_dataset(cfg, settings).root
    if not is_local(root):
        root = settings.home_dir / "data" / cfg.name
    return "sqlite:///" + str(root / "serving" / "prediction_log.sqlite")


class PredictionLogWriter:
    """Bounded queue + background writer thread (see the module docstring).

    The thread hands the queued entries to a sink: by default a process of its own, which builds the rows and
    writes them; with ``in_process=True`` (thread-mode serving, tests) the thread writes them itself.
    """

    def __init__(
        self, uri: str, model_name: str, max_rows: int, metrics: Any = None, in_process: bool = False
    ) -> None:
        self.uri = uri
        self.model_name = model_name
        self.max_rows = max_rows
        self.metrics = metrics
        self.written_rows = 0
        self.dropped_rows = 0
        self.pending_rows = 0
        self.last_error = ""
        self._entries: list[LogEntry] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._sink: Any = (ThreadSink if in_process else ProcessSink)(uri, model_name)
        self._thread = threading.Thread(target=self._run, daemon=True, name="driftloop-prediction-log")

    def start(self) -> None:
        """Create the table when missing and start the writer thread.

        Raises:
            Exception: The store cannot be opened (bad URI, database down); the service must not start blind.
        """
        self._sink.open()
        self._thread.start()

    def submit(self, entry: LogEntry) -> bool:
        """Queue ``entry`` without blocking; False (and counted as dropped) when the queue is full."""
        n = len(entry.rows)
        with self._lock:
            if self._stopping or self.pending_rows + n > self.max_rows:
                self.dropped_rows += n
                accepted = False
            else:
                self._entries.append(entry)
                self.pending_rows += n
                accepted = True
        if self.metrics is not None:
            if accepted:
                self.metrics.log_queue_rows.set(self.pending_rows)
            else:
                self.metrics.log_dropped_rows.inc(n)
        return accepted

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued, then stop the thread and close the store."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _take(self) -> tuple[list[LogEntry], bool]:
        """The oldest queued entries, at most :data:`WRITE_BATCH_ROWS` rows (at least one entry), and whether
        more are queued."""
        with self._lock:
            taken, rows = 0, 0
            for entry in self._entries:
                if taken and rows + len(entry.rows) > WRITE_BATCH_ROWS:
                    break
                taken += 1
                rows += len(entry.rows)
            entries, self._entries = self._entries[:taken], self._entries[taken:]
            return entries, bool(self._entries)

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stopping  # read first: once set, nothing more is queued
                entries, more = self._take()
                if entries:
                    self._write(entries)
                if more:
                    continue  # a backlog drains batch after batch, without waiting
                if stopping:
                    break
                self._wake.wait(FLUSH_S)
                self._wake.clear()
        finally:
            self._sink.close()

    def _write(self, entries: list[LogEntry]) -> None:
        n_rows = sum(len(entry.rows) for entry in entries)
        for attempt in range(WRITE_ATTEMPTS):
            try:
                self._sink.write(entries)
                break
            except Exception as exc:  # store down: retry, then count the rows as dropped
                self.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                LOG.warning("prediction log write failed (attempt %d): %s", attempt + 1, self.last_error)
                time.sleep(0.2 * 2**attempt)
        else:
            self._account(n_rows, written=False)
            return
        self._account(n_rows, written=True)

    def _account(self, n: int, written: bool) -> None:
        with self._lock:
            self.pending_rows -= n
            if written:
                self.written_rows += n
            else:
                self.dropped_rows += n
        if self.metrics is not None:
            (self.metrics.log_written_rows if written else self.metrics.log_dropped_rows).inc(n)
            self.metrics.log_queue_rows.set(self.pending_rows)


def read_log(
    uri: str,
    model_name: str,
    since_s: float | None = None,
    until_s: float | None = None,
    role: str | None = None,
    experiment: str | None = None,
) -> Any:
    """Rows of the log of ``model_name`` (a DataFrame in :data:`COLUMNS` order, oldest first).

    Args:
        uri: The log's location (:func:`log_uri`).
        model_name: Registered model name the rows belong to.
        since_s: Only rows logged at or after this epoch second.
        until_s: Only rows logged before this epoch second.
        role: ``primary`` or ``shadow`` only.
        experiment: Only rows of this A/B experiment (``bus.ab_experiment_id``).
    """
    import pandas as pd

    clauses, params = ["model_name = ?"], list[Any]([model_name])
    for clause, value in (
        ("logged_at >= ?", since_s),
        ("logged_at < ?", until_s),
        ("role = ?", role),
        ("experiment = ?", experiment),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    where = " AND ".join(clauses)
    order = "ORDER BY logged_at, request_id"
    sql = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE {where} {order}"
    if is_postgres(uri):
        rows = _fetch_postgres(uri, sql, params)
        return pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    import sqlite3

    path = sqlite_path(uri)
    if not path.is_file():
        return pd.DataFrame(columns=list(COLUMNS))
    with sqlite3.connect(path, timeout=30) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        records = []
        if ENTRY_TABLE in tables:
            for (payload,) in conn.execute(f"SELECT entry FROM {ENTRY_TABLE} WHERE {where} {order}", params):
                records.extend(LogEntry.from_json(payload).records(model_name))
        frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
        if TABLE not in tables:
            return frame
        legacy = pd.read_sql_query(sql, conn, params=params)  # rows written before entries were kept whole
    if frame.empty:
        return legacy
    merged = pd.concat([legacy, frame], ignore_index=True) if len(legacy) else frame
    return merged.sort_values(["logged_at", "request_id"], kind="stable").reset_index(drop=True)


def _fetch_postgres(uri: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    import asyncio

    import asyncpg

    numbered = sql
    for i in range(1, len(params) + 1):
        numbered = numbered.replace("?", f"${i}", 1)

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(uri)
        try:
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", TABLE)
            return [tuple(r) for r in await conn.fetch(numbered, *params)] if exists else []
        finally:
            await conn.close()

    return asyncio.run(fetch())
