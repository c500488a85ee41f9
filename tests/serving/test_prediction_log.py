"""The prediction log: what is written and read back, overflow and write errors counted, SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest

from driftloop.serving.online.metrics import ServingMetrics
from driftloop.serving.online.prediction_log import LogEntry, PredictionLogWriter, read_log
from tests.constants import service_missing

PG_DSN = "postgresql://{user}{password}@{host}:{port}".format(
    user=os.environ.get("DRIFTLOOP_TEST_PG_USER", "postgres"),
    password=f":{os.environ['DRIFTLOOP_TEST_PG_PASSWORD']}"
    if os.environ.get("DRIFTLOOP_TEST_PG_PASSWORD")
    else "",
    host=os.environ.get("DRIFTLOOP_TEST_PG_HOST", "127.0.0.1"),
    port=os.environ.get("DRIFTLOOP_TEST_PG_PORT", "5432"),
)


def entry(
    request_id: str,
    rows: int,
    role: str = "primary",
    arm: str = "champion",
    logged_at: float | None = None,
    experiment: str = "v1-vs-v2",
) -> LogEntry:
    return LogEntry(
        logged_at=time.time() if logged_at is None else logged_at,
        request_id=request_id,
        role=role,
        rows=list(range(rows)),
        entity_ids=[f"{request_id}-{i}" for i in range(rows)],
        arms=[arm] * rows,
        versions=["1" if arm == "champion" else "2"] * rows,
        experiment=experiment,
        scores=[0.1 * (i % 10) for i in range(rows)],
        predictions=["Yes" if i % 10 >= 5 else "No" for i in range(rows)],
        probabilities=None,
        latency_ms=12.5 if role == "primary" else None,
        columns={
            "tenure": list(range(rows)),
            "contract": ["One year"] * rows,
            "total_charges": [None] * rows,
        },
    )


def test_entries_are_written_in_the_background_and_read_back(tmp_path):
    import orjson

    uri = f"sqlite:///{tmp_path / 'log.sqlite'}"
    metrics = ServingMetrics()
    writer = PredictionLogWriter(uri, "telco-churn", max_rows=1000, metrics=metrics)
    writer.start()
    assert writer.submit(entry("r1", 3, logged_at=100.0))
    assert writer.submit(entry("r1", 3, role="shadow", arm="challenger", logged_at=100.5))
    assert writer.submit(entry("r2", 2, logged_at=200.0, experiment="v1"))
    writer.close()
    assert (writer.written_rows, writer.dropped_rows, writer.pending_rows) == (8, 0, 0)
    assert metrics.registry.get_sample_value("driftloop_serving_log_written_rows_total") == 8

    rows = read_log(uri, "telco-churn")
    assert len(rows) == 8 and list(rows["logged_at"]) == sorted(rows["logged_at"])
    first = rows.iloc[0]
    assert (first.request_id, first.row_index, first.entity_id, first.role, first.model_version) == (
        "r1",
        0,
        "r1-0",
        "primary",
        "1",
    )
    assert orjson.loads(first.features) == {"tenure": 0, "contract": "One year", "total_charges": None}
    assert first.prediction == "No" and first.probabilities is None
    assert len(read_log(uri, "telco-churn", role="shadow")) == 3
    assert len(read_log(uri, "telco-churn", experiment="v1")) == 2
    assert len(read_log(uri, "telco-churn", since_s=150, until_s=250)) == 2
    assert read_log(uri, "another-model").empty
    assert read_log(f"sqlite:///{tmp_path / 'missing.sqlite'}", "telco-churn").empty


def test_sqlite_keeps_one_record_per_entry_and_reads_a_log_written_row_by_row_before(tmp_path):
    """SQLite stores each entry whole; a log file that already holds rows (``prediction_log``, one per served
    row, as written before) is read together with the entries, in time order, under the same filters."""
    import sqlite3

    from driftloop.serving.online.prediction_log_store import COLUMNS, CREATE_SQL, ENTRY_TABLE, TABLE

    path = tmp_path / "log.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(CREATE_SQL)
        old = entry("old", 2, logged_at=50.0).records("m") + entry("older", 1, logged_at=300.0).records("m")
        conn.executemany(f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(COLUMNS))})", old)
    writer = PredictionLogWriter(f"sqlite:///{path}", "m", max_rows=1000)
    writer.start()
    writer.submit(entry("new", 3, logged_at=100.0))
    writer.submit(entry("new", 3, role="shadow", arm="challenger", logged_at=100.5))
    writer.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute(f"SELECT count(*), sum(n_rows) FROM {ENTRY_TABLE}").fetchone() == (2, 6)
    rows = read_log(f"sqlite:///{path}", "m")
    assert list(rows["request_id"]) == ["old"] * 2 + ["new"] * 6 + ["older"]
    assert list(rows["role"][2:8]) == ["primary"] * 3 + ["shadow"] * 3
    assert rows["row_index"].tolist() == [0, 1, 0, 1, 2, 0, 1, 2, 0]
    assert rows["score"].dtype == float and rows["latency_ms"].isna().tolist() == [False] * 5 + [True] * 3 + [
        False
    ]
    assert (
        list(read_log(f"sqlite:///{path}", "m", since_s=60, until_s=200, role="primary")["request_id"])
        == ["new"] * 3
    )


def test_overflow_is_counted_never_silent(tmp_path):
    metrics = ServingMetrics()
    writer = PredictionLogWriter(f"sqlite:///{tmp_path / 'log.sqlite'}", "m", max_rows=5, metrics=metrics)
    # Not started: nothing drains the queue, so the bound is reached.
    accepted = [writer.submit(entry(f"r{i}", 2)) for i in range(4)]
    assert accepted == [True, True, False, False]
    assert (writer.pending_rows, writer.dropped_rows) == (4, 4)
    assert metrics.registry.get_sample_value("driftloop_serving_log_dropped_rows_total") == 4


def test_a_backlog_is_written_in_bounded_batches_and_new_rows_get_in_meanwhile(tmp_path, monkeypatch):
    """Regression: a backlog written as one batch counted against the queue until all of it was written, so
    rows arriving after an overload were dropped for seconds."""
    from driftloop.serving.online import prediction_log

    monkeypatch.setattr(prediction_log, "WRITE_BATCH_ROWS", 10)
    writer = PredictionLogWriter(f"sqlite:///{tmp_path / 'log.sqlite'}", "m", max_rows=52, in_process=True)
    for i in range(10):
        assert writer.submit(entry(f"backlog{i}", 5))  # 50 rows queued before the writer starts
    batches = []
    store_write = writer._sink.store.write

    def slow_write(entries):
        store_write(entries)
        batches.append(sum(e.n_rows for e in entries))
        time.sleep(0.05)

    writer._sink.store.write = slow_write
    writer.start()
    deadline = time.monotonic() + 10
    while writer.written_rows == 0 and time.monotonic() < deadline:  # the first batch is written
        time.sleep(0.005)
    late = writer.submit(entry("late", 5))  # 40 queued + 5 fit in 52; 50 in flight + 5 would not
    writer.close()
    assert late and max(batches) <= 10, batches
    assert (writer.written_rows, writer.dropped_rows) == (55, 0)
    assert len(read_log(f"sqlite:///{tmp_path / 'log.sqlite'}", "m")) == 55


def test_a_failing_store_counts_the_rows_as_dropped_after_retries(tmp_path):
    writer = PredictionLogWriter(f"sqlite:///{tmp_path / 'log.sqlite'}", "m", max_rows=100, in_process=True)
    writer.start()

    def broken(records):
        raise OSError("disk full")

    writer._sink.store.write = broken  # simulate the store failing after start
    writer.submit(entry("r1", 3))
    writer.close()
    assert (writer.written_rows, writer.dropped_rows) == (0, 3)
    assert "disk full" in writer.last_error


def test_rows_are_written_by_a_process_of_their_own_which_is_restarted_when_it_dies(tmp_path):
    import signal

    uri = f"sqlite:///{tmp_path / 'log.sqlite'}"
    writer = PredictionLogWriter(uri, "m", max_rows=100)
    writer.start()
    first = writer._sink.process
    assert first.is_alive() and first.pid != os.getpid()
    writer.submit(entry("r1", 3))
    deadline = time.monotonic() + 10
    while writer.written_rows < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.written_rows == 3

    os.kill(first.pid, signal.SIGKILL)  # the log process dies between writes
    first.join(5)
    writer.submit(entry("r2", 2))
    writer.close()
    assert (writer.written_rows, writer.dropped_rows, writer.pending_rows) == (5, 0, 0)
    assert list(read_log(uri, "m")["request_id"]) == ["r1", "r1", "r1", "r2", "r2"]


def test_a_store_that_cannot_be_opened_stops_the_start_with_its_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    writer = PredictionLogWriter(f"sqlite:///{blocker / 'log.sqlite'}", "m", max_rows=100)
    with pytest.raises(RuntimeError, match="could not be opened: FileExistsError"):
        writer.start()


def _postgres_reachable() -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1)
        return (
            sock.connect_ex(
                (
                    os.environ.get("DRIFTLOOP_TEST_PG_HOST", "127.0.0.1"),
                    int(os.environ.get("DRIFTLOOP_TEST_PG_PORT", "5432")),
                )
            )
            == 0
        )


def _require_postgres() -> None:
    """Skip locally, fail under CI=true (CI runs PostgreSQL), when the test server is unreachable."""
    if not _postgres_reachable():
        service_missing("no PostgreSQL on DRIFTLOOP_TEST_PG_HOST:PORT")


@pytest.fixture
def postgres_uri():
    """A throw-away PostgreSQL database, dropped at the end."""
    _require_postgres()
    import asyncpg

    name = f"driftloop_prediction_log_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_DSN + "/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield f"{PG_DSN}/{name}"
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_postgres_store_takes_rows_by_copy_and_reads_them_back(postgres_uri):
    writer = PredictionLogWriter(postgres_uri, "telco-churn", max_rows=10_000)

    async def start_as_the_service_does() -> None:  # inside uvicorn's running event loop (the app's lifespan)
        writer.start()

    asyncio.run(start_as_the_service_does())
    for i in range(20):
        writer.submit(entry(f"r{i}", 50, logged_at=1000.0 + i))
    writer.close()
    assert (writer.written_rows, writer.dropped_rows) == (1000, 0)
    rows = read_log(postgres_uri, "telco-churn", since_s=1010.0)
    assert len(rows) == 500 and rows["request_id"].iloc[0] == "r10"
    assert set(rows["role"]) == {"primary"} and rows["latency_ms"].iloc[0] == 12.5


def test_an_unreachable_postgres_fails_under_ci_and_skips_locally(monkeypatch):
    monkeypatch.setenv("DRIFTLOOP_TEST_PG_HOST", "127.0.0.1")
    monkeypatch.setenv("DRIFTLOOP_TEST_PG_PORT", "1")  # nothing listens on port 1
    assert not _postgres_reachable()
    outcomes = {}
    for ci in ("true", ""):
        monkeypatch.setenv("CI", ci)
        # Both outcomes are caught here, so a skip under CI fails this test instead of skipping it.
        with pytest.raises((pytest.fail.Exception, pytest.skip.Exception)) as outcome:
            _require_postgres()
        outcomes[ci] = (outcome.type, "no PostgreSQL" in str(outcome.value))
    assert outcomes == {"true": (pytest.fail.Exception, True), "": (pytest.skip.Exception, True)}


def test_an_entry_of_numpy_arrays_reaches_the_log_process_as_the_same_rows():
    """Entries reach the log process as JSON: every value, null, NaN and numpy dtype must survive the trip."""
    import math

    import numpy as np

    from driftloop.serving.online.jobs import probability_rows

    rows = 4
    sent = LogEntry(
        logged_at=1_700_000_000.25,
        request_id="r-1",
        role="shadow",
        rows=[0, 2, 5, 7],
        entity_ids=["a", "b", "c", "d"],
        arms=["challenger"] * rows,
        versions=["2"] * rows,
        experiment="v1-vs-v2",
        scores=[0.1, 0.9, 0.5, 0.0],
        predictions=["No", "Yes", "Yes", "No"],
        probabilities=probability_rows(
            {"No": np.array([0.9, 0.1, 0.5, 1.0]), "Yes": np.array([0.1, 0.9, 0.5, 0.0])}
        ),
        latency_ms=None,
        columns={
            "tenure": np.array([1, 2**40, -3, 0], dtype=np.int64),
            "total_charges": np.array([1.5, math.nan, 0.0, 1e300]),
            "contract": np.array(["One year", None, "Two year", 'é "quoted"'], dtype=object),
        },
    )
    received = LogEntry.from_json(sent.to_json())

    assert received.records("m") == sent.records("m")
    features = [orjson_loads(record[-1]) for record in received.records("m")]
    assert features[1] == {"tenure": 2**40, "total_charges": None, "contract": None}  # NaN is logged as null
    assert features[3]["contract"] == 'é "quoted"'
    assert orjson_loads(received.records("m")[0][11]) == {"No": 0.9, "Yes": 0.1}


def orjson_loads(text: str):
    import orjson

    return orjson.loads(text)
