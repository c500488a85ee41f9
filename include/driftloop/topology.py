"""Helpers for running Driftloop on Airflow's distributed topology (Celery workers). No Airflow imports.

``worker_hostname`` is meant for Airflow's ``[core] hostname_callable``: when several Celery workers share one
host (systemd units on a VM, or the native topology tests), each reports its own name on the task instances it
runs, so the UI and the API show which worker ran what. In containers the default (the FQDN) is already unique.
"""

from __future__ import annotations

import os
import socket

WORKER_NAME_ENV = "DRIFTLOOP_WORKER_NAME"


def worker_hostname() -> str:
    """``$DRIFTLOOP_WORKER_NAME`` when set, else the host's FQDN (Airflow's default)."""
    return os.environ.get(WORKER_NAME_ENV, "").strip() or socket.getfqdn()
