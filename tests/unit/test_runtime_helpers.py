"""Runtime helpers for the distributed topology: std streams PyCaret needs on Celery workers, worker names."""

from __future__ import annotations

import io
import os
import sys

import pytest

from driftloop.training.pycaret_env import usable_std_streams
from driftloop_ops.topology import worker_hostname


def test_worker_hostname_prefers_the_env_name(monkeypatch):
    monkeypatch.setenv("DRIFTLOOP_WORKER_NAME", "worker-7")
    assert worker_hostname() == "worker-7"
    monkeypatch.delenv("DRIFTLOOP_WORKER_NAME")
    assert worker_hostname()


def test_usable_std_streams_repairs_a_closed_stdout_for_wurlitzer(monkeypatch):
    """What a Celery-run Airflow 3 task sees: sys.__stdout__ closed; PyCaret's wurlitzer then fails."""
    from wurlitzer import pipes

    closed = io.TextIOWrapper(io.BytesIO())
    closed.close()
    monkeypatch.setattr(sys, "__stdout__", closed)
    with pytest.raises(ValueError), pipes():
        pass
    with usable_std_streams():
        assert sys.__stdout__.fileno() == 1
        with pipes() as (out, _err):
            os.write(1, b"captured\n")
        assert "captured" in out.read()
    assert sys.__stdout__ is closed, "the original object is restored afterwards"


def test_usable_std_streams_leaves_open_streams_alone():
    before = (sys.__stdout__, sys.__stderr__)
    with usable_std_streams():
        assert (sys.__stdout__, sys.__stderr__) == before
    assert (sys.__stdout__, sys.__stderr__) == before


def test_overlapping_mlflow_scopes_in_threads_leave_the_global_uri_as_it_was(tmp_path):
    import threading

    from mlflow.tracking._tracking_service import utils as tracking_utils

    from driftloop.core.settings import Settings
    from driftloop.core.tracking import mlflow_scope

    inside, seen = threading.Barrier(2, timeout=5), []

    def scoped(name: str) -> None:
        settings = Settings.from_env({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / name}.db"})
        with mlflow_scope(settings):
            seen.append(tracking_utils._tracking_uri)
            try:  # without the scope lock both threads are inside at once, and each restores the other's URI
                inside.wait(timeout=0.5)
            except threading.BrokenBarrierError:
                pass

    before = tracking_utils._tracking_uri
    threads = [threading.Thread(target=scoped, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert tracking_utils._tracking_uri == before
    assert sorted(seen) == [f"sqlite:///{tmp_path / 'a'}.db", f"sqlite:///{tmp_path / 'b'}.db"]
