"""Fixtures shared by the DAG tests that run a DAG (``dag.test()``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def airflow_db():
    """The test session's Airflow SQLite DB, migrated (conftest points AIRFLOW_HOME at a temporary folder)."""
    migrate = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
