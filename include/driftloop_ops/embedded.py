"""The embedded stack: an MLflow server (SQLite) and Airflow's four components (SQLite, LocalExecutor) on
127.0.0.1.

State lives under ``$DRIFTLOOP_HOME`` (default ``.driftloop/``): MLflow's store and artifacts in ``mlflow/``,
Airflow's home in ``airflow/`` (each component's log there), pid files and ``stack.json`` (what the running
stack serves, see :mod:`driftloop_ops.front_door`) in ``run/``. Sized for a laptop: task slots from the cores,
one MLflow worker, no MLflow job runners, no log servers.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop.cli import QUIET_ENV
from driftloop.core.settings import PROJECT_DIR, Settings
from driftloop_ops.front_door import (
    MODE_KEYS,
    SERVICES,
    STATE_FILE,
    StackSpec,
    StackState,
    decide,
    pid_is_service,
    read_state,
    write_state,
)
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
# The embedded Airflow's components, each ``airflow <args>`` logging to ``airflow/<name>.log``. The log
# servers are skipped: one machine, one log folder, which the API server reads itself.
AIRFLOW_COMMANDS = (
    ("scheduler", "scheduler --skip-serve-logs"),
    ("dag-processor", "dag-processor"),
    ("triggerer", "triggerer --skip-serve-logs"),
    ("api-server", "api-server"),
)


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
        """The simple auth manager's password file (written before Airflow starts)."""
        return self.airflow_home / PASSWORD_FILE


def _ensure_passwords(layout: StackLayout) -> dict[str, str]:
    """The simple auth manager's password file with one for every embedded user, written before Airflow
    starts (existing entries are kept, missing ones generated)."""
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
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
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
        # Progress bars go to stderr: ERROR lines in the task logs.
        **QUIET_ENV,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PROJECT_DIR / "plugins"), os.environ.get("PYTHONPATH")])
        ),
        # Airflow starts task supervisors and helpers as `airflow ...` from PATH: use this environment's.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    env.update(extra or {})
    return env


def _write_pid(layout: StackLayout, name: str, pid: int) -> None:
    layout.pid_dir.mkdir(parents=True, exist_ok=True)
    (layout.pid_dir / f"{name}.pid").write_text(str(pid))


def _recorded_pid(layout: StackLayout, name: str) -> int | None:
    try:
        return int((layout.pid_dir / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None


def _alive(layout: StackLayout, name: str, log: Any = None) -> bool:
    """Whether the recorded ``name`` process runs; a stale pid file (process gone, or the pid now another
    program's) is removed."""
    pid = _recorded_pid(layout, name)
    if pid is None:
        return False
    if pid_is_service(pid, name):
        return True
    (layout.pid_dir / f"{name}.pid").unlink(missing_ok=True)
    if log is not None:
        log(f"removed the stale pid file of {name} (pid {pid} is no longer {name})")
    return False


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be bound now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wanted_spec(extra_env: dict[str, str] | None = None) -> StackSpec:
    """What a command needs from ``extra_env`` over this process's environment: ``DRIFTLOOP_DATASETS``
    (empty: every config) and the schedule settings of :data:`~driftloop_ops.front_door.MODE_KEYS`."""
    env = {**os.environ, **(extra_env or {})}
    datasets = tuple(
        dict.fromkeys(n.strip() for n in env.get("DRIFTLOOP_DATASETS", "").split(",") if n.strip())
    )
    return StackSpec(datasets, {key: env[key] for key in MODE_KEYS if key in env})


def lean_env() -> dict[str, str]:
    """This environment with glibc's malloc held to two arenas (each thread of a server would otherwise
    get its own, mostly empty)."""
    return {"MALLOC_ARENA_MAX": "2", **os.environ}


def footprint_env() -> dict[str, str]:
    """Sizes of the embedded Airflow for this machine (each unless set in the environment): a task slot per
    core, at least two (the loop's widest DAG runs two tasks at once; each slot is a LocalExecutor worker
    forked from the preloaded scheduler), parser processes, one API worker."""
    cores = os.cpu_count() or 2
    sizes = {
        "AIRFLOW__CORE__PARALLELISM": str(min(32, max(2, cores))),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": str(min(2, cores)),
        "AIRFLOW__API__WORKERS": "1",
        "MALLOC_ARENA_MAX": "2",
    }
    return {key: value for key, value in sizes.items() if key not in os.environ}


def _start_airflow(layout: StackLayout, env: dict[str, str], migrate: bool, log: Any) -> int:
    """Start Airflow's four components under one ``sh`` (one process group, stopped together); no
    ``airflow standalone`` process and no log servers (the API server reads task logs from the shared
    folder). Returns the group's pid."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    if migrate:
        log("migrating the Airflow metadata DB (SQLite)")
        done = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ServiceError(f"airflow db migrate failed:\n{done.stderr[-3000:]}")
    log(f"starting Airflow (api-server, scheduler, dag-processor, triggerer) at {layout.airflow_url}")
    script = " ".join(
        f"{shlex.quote(airflow)} {args} >> {shlex.quote(str(layout.airflow_home / f'{name}.log'))} 2>&1 &"
        for name, args in AIRFLOW_COMMANDS
    )
    log_path = layout.airflow_home / "api-server.log"
    process = start_process(
        "airflow", ["/bin/sh", "-c", f"{script} wait"], layout.airflow_home / "sh.log", env
    )
    _write_pid(layout, "airflow", process.pid)
    try:
        wait_http_ok(f"{layout.airflow_url}/api/v2/monitor/health", 180, process, log_path)
    except ServiceError:
        stop_process_group(process.pid)
        (layout.pid_dir / "airflow.pid").unlink(missing_ok=True)
        raise
    return process.pid


def start_stack(
    layout: StackLayout,
    extra_env: dict[str, str] | None = None,
    log: Any = print,
    wanted: StackSpec | None = None,
) -> StackSpec:
    """Bring the stack to serve ``wanted`` (default: from ``extra_env`` and the environment), starting or
    restarting only what must (see :func:`driftloop_ops.front_door.decide`); wait until both are healthy.

    Returns:
        What Airflow serves now (``wanted`` or a superset).

    Raises:
        StackInTheWay: A port is taken by another program, or the stack runs on other ports (one line).
        ServiceError: A service did not become healthy; the message quotes its log.
    """
    wanted = wanted or wanted_spec(extra_env)
    state = read_state(layout.pid_dir)
    alive = {name: _alive(layout, name, log) for name in SERVICES}
    ports = {"mlflow": layout.mlflow_port, "airflow": layout.airflow_port}
    decision = decide(state, alive, wanted, ports, port_free, str(layout.home_dir))
    if decision.start_mlflow:
        log(f"starting MLflow at {layout.mlflow_url} (state in {layout.mlflow_dir})")
        service = start_mlflow_server(
            layout.mlflow_dir, port=layout.mlflow_port, workers=1, single_process=True, env=lean_env()
        )
        _write_pid(layout, "mlflow", service.process.pid)
    else:
        log(f"MLflow already running at {layout.mlflow_url}")
    log(decision.message)
    if decision.airflow != "keep":
        served = {"DRIFTLOOP_DATASETS": ",".join(decision.spec.datasets), **decision.spec.mode}
        env = airflow_env(layout, {**(extra_env or {}), **footprint_env(), **served})
        for key in set(MODE_KEYS) - set(decision.spec.mode):
            env.pop(key, None)  # a setting of another mode: the default applies
        if decision.airflow == "restart":
            _stop(layout, "airflow", log)
            wait_until_free(layout.airflow_port)
        _start_airflow(layout, env, migrate=decision.airflow == "start", log=log)
    pids = {name: pid for name in SERVICES if (pid := _recorded_pid(layout, name)) is not None}
    write_state(
        layout.pid_dir,
        StackState(str(layout.home_dir), layout.mlflow_port, layout.airflow_port, decision.spec, pids),
    )
    return decision.spec


def wait_until_free(port: int, timeout_s: float = 20) -> None:
    """Wait until a stopped server's port can be bound again."""
    import time

    deadline = time.monotonic() + timeout_s
    while not port_free(port) and time.monotonic() < deadline:
        time.sleep(0.2)


def _stop(layout: StackLayout, name: str, log: Any) -> bool:
    pid = _recorded_pid(layout, name)
    (layout.pid_dir / f"{name}.pid").unlink(missing_ok=True)
    if pid is None or not pid_is_service(pid, name):
        return False
    stop_process_group(pid)
    log(f"stopped {name}")
    return True


def stop_stack(layout: StackLayout, log: Any = print) -> None:
    """Stop the services started by :func:`start_stack` (their state stays on disk)."""
    stopped = [name for name in ("airflow", "mlflow") if _stop(layout, name, log)]
    (layout.pid_dir / STATE_FILE).unlink(missing_ok=True)
    if not stopped:
        log(f"nothing was running under {layout.home_dir}")


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
