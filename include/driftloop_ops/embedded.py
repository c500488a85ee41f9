"""The embedded stack: an MLflow server (SQLite) and ``airflow standalone`` (SQLite, LocalExecutor) on
127.0.0.1.

State lives under ``$DRIFTLOOP_HOME`` (default ``.driftloop/``): MLflow's store and artifacts in ``mlflow/``,
Airflow's home in ``airflow/``, pid files in ``run/``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop.core.settings import PROJECT_DIR, Settings
from driftloop_ops.services import (
    ServiceError,
    start_mlflow_server,
    start_process,
    stop_process_group,
    wait_http_ok,
)

PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"
TASK_API_USER = "driftloop-tasks"  # the account tasks write DAG run notes as (role User)
TASK_API_CONN_ID = "driftloop_airflow_api"


@dataclass(frozen=True)
class StackLayout:
    """Where the embedded stack keeps its state and which ports it uses."""

    home_dir: Path
    mlflow_port: int
    airflow_port: int

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> StackLayout:
        """Layout under ``DRIFTLOOP_HOME``; ports from ``DRIFTLOOP_MLFLOW_PORT`` /
        ``DRIFTLOOP_AIRFLOW_PORT``."""
        settings = settings or Settings.from_env()
        return cls(
            home_dir=settings.home_dir, mlflow_port=settings.mlflow_port, airflow_port=settings.airflow_port
        )

    @property
    def airflow_home(self) -> Path:
        """``AIRFLOW_HOME`` of the embedded Airflow."""
        return self.home_dir / "airflow"

    @property
    def mlflow_dir(self) -> Path:
        """MLflow's SQLite store, artifacts and log."""
        return self.home_dir / "mlflow"

    @property
    def pid_dir(self) -> Path:
        """One pid file per started service, read by ``down``."""
        return self.home_dir / "run"

    @property
    def mlflow_url(self) -> str:
        """Tracking URI and UI of the embedded MLflow server."""
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def airflow_url(self) -> str:
        """Base URL of the Airflow UI and REST API."""
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def password_file(self) -> Path:
        """Where ``airflow standalone`` writes the generated admin password."""
        return self.airflow_home / PASSWORD_FILE


def _ensure_passwords(layout: StackLayout) -> dict[str, str]:
    """The simple auth manager's password file with one for every embedded user, written before
    ``airflow standalone`` starts (it keeps existing entries and only generates missing ones)."""
    passwords = json.loads(layout.password_file.read_text()) if layout.password_file.exists() else {}
    missing = [user for user in ("admin", TASK_API_USER) if user not in passwords]
    if missing:
        passwords.update({user: secrets.token_urlsafe(12) for user in missing})
        layout.password_file.write_text(json.dumps(passwords) + "\n")
        layout.password_file.chmod(0o600)
    return passwords


def airflow_env(layout: StackLayout, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the embedded Airflow processes (and anything that talks to them)."""
    layout.airflow_home.mkdir(parents=True, exist_ok=True)
    passwords = _ensure_passwords(layout)
    secret_path = layout.airflow_home / ".jwt_secret"
    if not secret_path.exists():
        secret_path.write_text(secrets.token_hex(32))
        secret_path.chmod(0o600)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(layout.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_DIR / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_DIR / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Airflow's LocalExecutor, importing the heavy stack before its workers fork
        # (driftloop_airflow.preload).
        "AIRFLOW__CORE__EXECUTOR": "driftloop_airflow.preload.LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{layout.airflow_home / 'airflow.db'}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(layout.airflow_port),
        "AIRFLOW__API__BASE_URL": layout.airflow_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{layout.airflow_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{TASK_API_USER}:user",
        # Tasks write DAG run notes (verdicts in the grid) through the REST API as a User-role account.
        "DRIFTLOOP_AIRFLOW_API_CONN_ID": TASK_API_CONN_ID,
        f"AIRFLOW_CONN_{TASK_API_CONN_ID.upper()}": json.dumps(
            {
                "conn_type": "http",
                "host": layout.airflow_url,
                "login": TASK_API_USER,
                "password": passwords[TASK_API_USER],
            }
        ),
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_path.read_text().strip(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "20",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
        "MLFLOW_TRACKING_URI": layout.mlflow_url,
        "DRIFTLOOP_HOME": str(layout.home_dir),
        "DRIFTLOOP_MLFLOW_UI_URL": layout.mlflow_url,
        # MLflow's artifact download progress bars go to stderr: ERROR lines in the task logs.
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PROJECT_DIR / "plugins"), os.environ.get("PYTHONPATH")])
        ),
        # `airflow standalone` starts its components as `airflow ...` from PATH: use this environment's.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    env.update(extra or {})
    return env


def _write_pid(layout: StackLayout, name: str, pid: int) -> None:
    layout.pid_dir.mkdir(parents=True, exist_ok=True)
    (layout.pid_dir / f"{name}.pid").write_text(str(pid))


def _alive(layout: StackLayout, name: str) -> bool:
    pid_path = layout.pid_dir / f"{name}.pid"
    if not pid_path.exists():
        return False
    try:
        os.kill(int(pid_path.read_text()), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def start_stack(layout: StackLayout, extra_env: dict[str, str] | None = None, log: Any = print) -> None:
    """Start MLflow and Airflow in the background unless they already run; wait until both are healthy.

    Raises:
        ServiceError: A service did not become healthy; the message quotes its log.
    """
    if _alive(layout, "mlflow"):
        log(f"MLflow already running at {layout.mlflow_url}")
    else:
        log(f"starting MLflow at {layout.mlflow_url} (state in {layout.mlflow_dir})")
        service = start_mlflow_server(layout.mlflow_dir, port=layout.mlflow_port)
        _write_pid(layout, "mlflow", service.process.pid)
    if _alive(layout, "airflow"):
        log(f"Airflow already running at {layout.airflow_url}")
        return
    env = airflow_env(layout, extra_env)
    log("migrating the Airflow metadata DB (SQLite)")
    migrate = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
    )
    if migrate.returncode != 0:
        raise ServiceError(f"airflow db migrate failed:\n{migrate.stderr[-3000:]}")
    log(f"starting Airflow (api-server, scheduler, dag-processor, triggerer) at {layout.airflow_url}")
    log_path = layout.airflow_home / "standalone.log"
    process = start_process(
        "airflow", [str(Path(sys.executable).with_name("airflow")), "standalone"], log_path, env
    )
    _write_pid(layout, "airflow", process.pid)
    wait_http_ok(f"{layout.airflow_url}/api/v2/monitor/health", 180, process, log_path)


def stop_stack(layout: StackLayout, log: Any = print) -> None:
    """Stop the services started by :func:`start_stack` (their state stays on disk)."""
    for name in ("airflow", "mlflow"):
        pid_path = layout.pid_dir / f"{name}.pid"
        if pid_path.exists():
            stop_process_group(int(pid_path.read_text()))
            pid_path.unlink()
            log(f"stopped {name}")


@contextmanager
def temporary_stack(
    root: Path, extra_env: dict[str, str] | None = None, log: Any = print
) -> Iterator[StackLayout]:
    """An embedded stack under ``root`` on free ports, stopped on exit (benchmarks and tests).

    This process's ``DRIFTLOOP_HOME`` and ``MLFLOW_TRACKING_URI`` point at the stack inside the block, so
    package calls made here see what the DAGs see.
    """
    from driftloop_ops.services import free_port

    layout = StackLayout(home_dir=Path(root), mlflow_port=free_port(), airflow_port=free_port())
    saved = {k: os.environ.get(k) for k in ("DRIFTLOOP_HOME", "MLFLOW_TRACKING_URI", *(extra_env or {}))}
    os.environ.update(
        {
            "DRIFTLOOP_HOME": str(layout.home_dir),
            "MLFLOW_TRACKING_URI": layout.mlflow_url,
            **(extra_env or {}),
        }
    )
    try:
        start_stack(layout, extra_env, log)
        yield layout
    finally:
        stop_stack(layout, log)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
