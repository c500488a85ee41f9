"""The prediction log's tables and entries, its stores (SQLite, PostgreSQL) and the sinks that write to them.

:class:`~driftloop.serving.online.prediction_log.PredictionLogWriter`'s thread hands the queued entries to a
sink: :class:`ProcessSink` (the default) sends them, encoded (:meth:`LogEntry.encode`), to a process of its
own that writes them, so that work never holds the HTTP process's GIL; :class:`ThreadSink` writes them from
the calling thread (thread-mode serving, tests).

The stores keep different shapes, read back alike by
:func:`~driftloop.serving.online.prediction_log.read_log` (one row per served row and role):

* **SQLite** (embedded) keeps one record per entry in ``prediction_log_entries``: the entry's own fields
  (time, request, role, experiment, model, row count) as columns, its rows as the JSON the service encoded.
  Building and inserting one SQLite row per served row was the log process's whole cost, 16-20 ms per
  1,000-row request with A/B and shadow scoring: as much CPU as both models' predict calls on two cores.
  Reading expands the entries (off the request path, in the export and A/B tasks). A log written before keeps
  its ``prediction_log`` rows, which are read too.
* **PostgreSQL** (production) keeps one row per served row in ``prediction_log`` (``COPY`` from the log
  process), for SQL on the served rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

TABLE = "prediction_log"
COLUMNS = (
    "logged_at",
    "request_id",
    "row_index",
    "entity_id",
    "role",
    "arm",
    "experiment",
    "model_name",
    "model_version",
    "score",
    "prediction",
    "probabilities",
    "latency_ms",
    "features",
)
_SQL_TYPES = (
    "DOUBLE PRECISION NOT NULL",
    "TEXT NOT NULL",
    "INTEGER NOT NULL",
    "TEXT NOT NULL",
    "TEXT NOT NULL",
    "TEXT NOT NULL",
    "TEXT NOT NULL",
    "TEXT NOT NULL",
    "TEXT NOT NULL",
    "DOUBLE PRECISION NOT NULL",
    "TEXT NOT NULL",
    "TEXT",
    "DOUBLE PRECISION",
    "TEXT NOT NULL",
)
CREATE_SQL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    + ", ".join(f"{c} {t}" for c, t in zip(COLUMNS, _SQL_TYPES, strict=True))
    + ")"
)
INDEX_SQL = f"CREATE INDEX IF NOT EXISTS {TABLE}_time ON {TABLE} (model_name, logged_at)"
ENTRY_TABLE = "prediction_log_entries"
CREATE_ENTRY_SQL = (
    f"CREATE TABLE IF NOT EXISTS {ENTRY_TABLE} (logged_at DOUBLE PRECISION NOT NULL,"
    " request_id TEXT NOT NULL, role TEXT NOT NULL, experiment TEXT NOT NULL, model_name TEXT NOT NULL,"
    " n_rows INTEGER NOT NULL,"
    " entry BLOB NOT NULL)"
)
ENTRY_INDEX_SQL = f"CREATE INDEX IF NOT EXISTS {ENTRY_TABLE}_time ON {ENTRY_TABLE} (model_name, logged_at)"
# A shadow row's inputs are its primary row's (same request_id and row_index): writing them twice cost a
# third of the log process's time and of the HTTP process's log encoding.
NO_FEATURES = ""


class EncodedEntry(NamedTuple):
    """A :class:`LogEntry` as it travels to the log process and into SQLite: its own fields, its JSON."""

    logged_at: float
    request_id: str
    role: str
    experiment: str
    n_rows: int
    payload: bytes


@dataclass
class LogEntry:
    """What one request (or its shadow scoring) adds to the log; lists are aligned with ``rows``."""

    logged_at: float
    request_id: str
    role: str
    rows: list[int]
    entity_ids: list[str]
    arms: list[str]
    versions: list[str]
    experiment: str
    scores: list[float]
    predictions: list[Any]  # the dataset's labels, or values (regression)
    probabilities: list[dict[str, float]] | None  # multiclass: {label: probability} per row
    latency_ms: float | None
    columns: dict[str, Any]  # the request's inputs: numpy arrays (or lists); none for shadow rows

    def to_json(self) -> bytes:
        """The entry as JSON (numpy arrays as lists, NaN as null): cheap to send to the log process. Pickling
        a flush's entries in one go cost 3.7 ms per 1,000 rows in the HTTP process, against 0.5 ms one entry
        at a time: the pickler's memo grew with every string of the batch."""
        import orjson

        return orjson.dumps(self, default=_as_list, option=orjson.OPT_SERIALIZE_NUMPY)

    def encode(self) -> EncodedEntry:
        """The entry's own fields and its JSON (:meth:`to_json`)."""
        return EncodedEntry(
            self.logged_at, self.request_id, self.role, self.experiment, len(self.rows), self.to_json()
        )

    @classmethod
    def from_json(cls, payload: bytes) -> LogEntry:
        """The entry :meth:`to_json` encoded."""
        import orjson

        return cls(**orjson.loads(payload))

    def records(self, model_name: str) -> list[tuple[Any, ...]]:
        """The entry as log rows (in :data:`COLUMNS` order)."""
        import orjson

        names = list(self.columns)
        dumps = orjson.dumps
        # Columns arrive as numpy arrays: tolist() turns them into Python values at C speed. Rows come from
        # zip over the columns, so each row is one C-level tuple: building them one value at a time through
        # a generator cost as much as encoding them.
        values = [c.tolist() if hasattr(c, "tolist") else c for c in self.columns.values()]
        rows = zip(*values, strict=True)
        features = (
            [dumps(dict(zip(names, row, strict=True))).decode() for row in rows]
            if names
            else [NO_FEATURES] * len(self.rows)
        )
        probabilities = (
            [dumps(p).decode() for p in self.probabilities] if self.probabilities else [None] * len(self.rows)
        )
        logged_at, request_id, role, experiment, latency_ms = (
            self.logged_at,
            self.request_id,
            self.role,
            self.experiment,
            self.latency_ms,
        )
        return [
            (
                logged_at,
                request_id,
                row,
                entity,
                role,
                arm,
                experiment,
                model_name,
                version,
                float(score),
                str(prediction),
                proba,
                latency_ms,
                feature,
            )
            for row, entity, arm, version, score, prediction, proba, feature in zip(
                self.rows,
                self.entity_ids,
                self.arms,
                self.versions,
                self.scores,
                self.predictions,
                probabilities,
                features,
                strict=True,
            )
        ]


def _as_list(value: Any) -> Any:
    """orjson's fallback: numpy arrays it cannot encode natively (object dtype) as lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__}")


def is_postgres(uri: str) -> bool:
    """Whether the log at ``uri`` is a PostgreSQL database (else SQLite)."""
    return uri.startswith(("postgresql://", "postgres://"))


def sqlite_path(uri: str) -> Path:
    """The SQLite file of a ``sqlite:///...`` URI (or a plain path)."""
    return (
        Path(uri.removeprefix("sqlite:///").removeprefix("sqlite://"))
        if uri.startswith("sqlite:")
        else Path(uri)
    )


class _SqliteStore:
    def __init__(self, uri: str, model_name: str) -> None:
        self.path = sqlite_path(uri)
        self.model_name = model_name
        self.conn: Any = None

    def open(self) -> None:
        import sqlite3

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(CREATE_ENTRY_SQL)
        self.conn.execute(ENTRY_INDEX_SQL)
        self.conn.commit()

    def write(self, entries: list[EncodedEntry]) -> None:
        name = self.model_name
        with self.conn:
            self.conn.executemany(
                f"INSERT INTO {ENTRY_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.logged_at, e.request_id, e.role, e.experiment, name, e.n_rows, e.payload)
                    for e in entries
                ],
            )

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class _PostgresStore:
    def __init__(self, uri: str, model_name: str) -> None:
        import asyncio

        self.dsn = uri
        self.model_name = model_name
        self.loop = asyncio.new_event_loop()
        self.conn: Any = None

    def open(self) -> None:
        import asyncpg

        self.conn = self.loop.run_until_complete(asyncpg.connect(self.dsn))
        self.loop.run_until_complete(self.conn.execute(CREATE_SQL + ";" + INDEX_SQL))

    def write(self, entries: list[EncodedEntry]) -> None:
        records = [r for e in entries for r in LogEntry.from_json(e.payload).records(self.model_name)]
        if self.conn is None or self.conn.is_closed():
            self.open()
        self.loop.run_until_complete(self.conn.copy_records_to_table(TABLE, records=records, columns=COLUMNS))

    def close(self) -> None:
        if self.conn is not None and not self.conn.is_closed():
            self.loop.run_until_complete(self.conn.close())
        self.loop.close()


def open_store(uri: str, model_name: str) -> Any:
    """The store of ``model_name``'s log behind ``uri`` (not yet opened): SQLite path/URI or a PostgreSQL
    DSN."""
    return _PostgresStore(uri, model_name) if is_postgres(uri) else _SqliteStore(uri, model_name)


class ThreadSink:
    """Entries written by the calling thread (encoded here, then one store write)."""

    def __init__(self, uri: str, model_name: str) -> None:
        self.store = open_store(uri, model_name)

    def open(self) -> None:
        # The PostgreSQL store drives asyncpg on an event loop of its own, which cannot run inside the
        # server's running loop: open it on a thread of its own (the writer thread uses that loop afterwards).
        failure: list[Exception] = []

        def open_in_thread() -> None:
            try:
                self.store.open()
            except Exception as exc:  # re-raised below, in the caller's thread
                failure.append(exc)

        opener = threading.Thread(target=open_in_thread, name="driftloop-prediction-log-open")
        opener.start()
        opener.join()
        if failure:
            raise failure[0]

    def write(self, entries: list[Any]) -> None:
        self.store.write([entry.encode() for entry in entries])

    def close(self) -> None:
        self.store.close()


def _log_process_main(conn: Any, uri: str, model_name: str) -> None:
    """Entry point of the log process: open the store, then write each list of encoded entries it is
    sent."""
    store = open_store(uri, model_name)
    try:
        store.open()
    except Exception as exc:  # reported to the service, which must not start blind
        conn.send((False, f"{type(exc).__name__}: {str(exc)[:300]}"))
        return
    conn.send((True, ""))
    try:
        while True:
            try:
                payloads = conn.recv()
            except (EOFError, OSError):
                return
            if payloads is None:
                return
            try:
                store.write(payloads)
            except Exception as exc:  # the service retries, then counts the rows as dropped
                conn.send((False, f"{type(exc).__name__}: {str(exc)[:300]}"))
            else:
                conn.send((True, ""))
    finally:
        store.close()


class ProcessSink:
    """Entries written by a process of their own, so writing them never holds the HTTP process's GIL;
    entries travel encoded (:meth:`LogEntry.encode`: pickling whole entries cost 3.7 ms per 1,000 rows).

    A process that died is started again on the next write.
    """

    def __init__(self, uri: str, model_name: str) -> None:
        self.uri = uri
        self.model_name = model_name
        self.conn: Any = None
        self.process: Any = None

    def open(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # the service has threads: no fork
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(
            target=_log_process_main,
            args=(child, self.uri, self.model_name),
            daemon=True,
            name="driftloop-prediction-log",
        )
        self.process.start()
        child.close()
        ok, error = self._reply()
        if not ok:
            self.close()
            raise RuntimeError(f"the prediction log store could not be opened: {error}")

    def _reply(self) -> tuple[bool, str]:
        try:
            reply: tuple[bool, str] = self.conn.recv()
            return reply
        except (EOFError, OSError) as exc:
            self.close()
            raise RuntimeError("the prediction log process exited") from exc

    def write(self, entries: list[Any]) -> None:
        if self.process is None or not self.process.is_alive():
            self.close()
            self.open()
        try:
            self.conn.send([entry.encode() for entry in entries])
        except (OSError, ValueError) as exc:
            self.close()
            raise RuntimeError(f"the prediction log process is gone: {exc}") from exc
        ok, error = self._reply()
        if not ok:
            raise RuntimeError(error)

    def close(self, timeout_s: float = 10.0) -> None:
        from driftloop.serving.online.workers import stop_process

        if self.process is None:
            return
        stop_process(self.process, self.conn, None, timeout_s)
        self.process = None
