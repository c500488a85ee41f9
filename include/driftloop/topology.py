"""Helpers for running Driftloop on Airflow's distributed topology (Celery workers). No Airflow imports.

* :func:`worker_hostname` is meant for Airflow's ``[core] hostname_callable``: when several Celery workers share
  one host (systemd units on a VM, or the native topology tests), each reports its own name on the task
  instances it runs. In containers the default (the FQDN) is already unique.
* :func:`usable_std_streams` works around a closed ``sys.__stdout__`` in Airflow 3 task processes started by a
  Celery worker (observed with Airflow 3.3.2 and apache-airflow-providers-celery 3.26.0; the LocalExecutor and
  ``dag.test()`` paths are not affected). Libraries that redirect the process's real stdout then fail:
  PyCaret, through ``wurlitzer``, raises ``ValueError: I/O operation on closed file`` inside every
  ``create_model`` and ``compare_models`` swallows it, so training ends with "trained none of the models".
  Wrap such calls in ``with usable_std_streams():``.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

WORKER_NAME_ENV = "DRIFTLOOP_WORKER_NAME"


def worker_hostname() -> str:
    """``$DRIFTLOOP_WORKER_NAME`` when set, else the host's FQDN (Airflow's default)."""
    return os.environ.get(WORKER_NAME_ENV, "").strip() or socket.getfqdn()


def _unusable(stream: object) -> bool:
    if stream is None or getattr(stream, "closed", False):
        return True
    try:
        stream.fileno()  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return True
    return False


@contextmanager
def usable_std_streams() -> Iterator[None]:
    """Within the block, ``sys.__stdout__`` / ``sys.__stderr__`` are open files on fd 1 / fd 2.

    A closed original stream is replaced for the duration by a new, non-closing text file on the same file
    descriptor (where the task's output goes anyway); open streams are left untouched. Restored on exit.
    """
    saved = {"__stdout__": sys.__stdout__, "__stderr__": sys.__stderr__}
    opened = []
    try:
        for name, fd in (("__stdout__", 1), ("__stderr__", 2)):
            if _unusable(saved[name]):
                try:
                    replacement = open(fd, "w", closefd=False, buffering=1)  # noqa: SIM115 - closed below
                except OSError:
                    replacement = getattr(sys, name.strip("_"))
                else:
                    opened.append(replacement)
                setattr(sys, name, replacement)
        yield
    finally:
        for name, stream in saved.items():
            setattr(sys, name, stream)
        for stream in opened:
            try:
                stream.flush()
                stream.close()
            except (OSError, ValueError):
                pass
