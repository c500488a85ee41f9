"""Helpers for Airflow's distributed topology (Celery workers).

:func:`worker_hostname` is meant for Airflow's ``[core] hostname_callable``: when several Celery workers share
one host (systemd units on a VM, or the native topology tests), each reports its own name on the task
instances it runs. In containers the default (the FQDN) is already unique.
"""

from __future__ import annotations

import socket

from driftloop.core.settings import Settings


def worker_hostname() -> str:
    """``$DRIFTLOOP_WORKER_NAME`` when set, else the host's FQDN (Airflow's default)."""
    return Settings.from_env().worker_name or socket.getfqdn()
