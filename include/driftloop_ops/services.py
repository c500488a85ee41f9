"""Local service processes for the embedded mode: the MLflow tracking server and Airflow's components.

Used by ``driftloop up``/``demo``, the end-to-end tests and the benchmarks. Everything binds to 127.0.0.1 and
keeps its state under the given folder. Processes start in their own process group so a stop takes their
children (gunicorn/uvicorn workers, task supervisors) with them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# ``mlflow server`` whose CLI process becomes the uvicorn server (exec) instead of waiting beside it: one
# process less (~180 MB). MLflow builds the command and environment as always; without the private hook
# (another MLflow version) it runs as plain ``mlflow server``.
MLFLOW_SERVER_EXEC = """
import os, sys
import mlflow.server as server

def _exec(cmd, extra_env=None, **kwargs):
    os.execvpe(cmd[0], cmd, {**os.environ, **(extra_env or {})})

if hasattr(server, "_exec_cmd"):
    server._exec_cmd = _exec
from mlflow.cli import cli
sys.exit(cli(["server", *sys.argv[1:]]))
"""


class ServiceError(RuntimeError):
    """A service did not start or become healthy in time."""


@dataclass
class Service:
    """A started process with the log it writes to."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    def stop(self, timeout_s: float = 20) -> None:
        """Terminate the process group, then kill it if it does not exit in time."""
        stop_process_group(self.process.pid, timeout_s)
        self.process.wait(timeout=5)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process_group(pid: int, timeout_s: float = 20) -> None:
    """SIGTERM the process group of ``pid`` and SIGKILL it after ``timeout_s``."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = pid  # the leader is gone; members of its group (same id) may still run
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_http_ok(
    url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None, log_path: Path | None = None
) -> None:
    """Poll ``url`` until it answers 2xx.

    Raises:
        ServiceError: Timeout, or ``process`` exited first; the message ends with the log's last lines.
    """
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"process for {url} exited with {process.returncode}{_log_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    raise ServiceError(f"{url} not healthy after {timeout_s:.0f} s{_log_tail(log_path)}")


def _log_tail(log_path: Path | None, lines: int = 30) -> str:
    if log_path is None or not log_path.exists():
        return ""
    tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- last lines of " + str(log_path) + " ---\n" + "\n".join(tail)


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def start_process(
    name: str, args: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new process group with stdout/stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def start_mlflow_server(
    state_dir: Path,
    port: int | None = None,
    backend_store_uri: str | None = None,
    host: str = "127.0.0.1",
    timeout_s: float = 120,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    workers: int = 2,
    single_process: bool = False,
) -> Service:
    """Start an MLflow tracking server with a SQLite (default) store and served local artifacts.

    Args:
        state_dir: Folder for ``mlflow.db``, ``artifacts/`` and ``mlflow.log``.
        port: TCP port (default: a free one).
        backend_store_uri: Backend store (default ``sqlite:///<state_dir>/mlflow.db``).
        host: Bind address; 127.0.0.1 so nothing is exposed by default.
        timeout_s: How long to wait for ``/health``.
        extra_args: More ``mlflow server`` arguments (e.g. ``--app-name basic-auth``).
        env: Environment for the server process (default: this one's). MLflow's server jobs (job runner
            processes Driftloop does not use) are off unless ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION`` is in it.
        workers: uvicorn worker processes (1: the app runs in uvicorn's own process).
        single_process: The ``mlflow server`` process becomes the server (exec) rather than waiting for it.

    Returns:
        The running service; ``url`` is the tracking URI.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = state_dir / "mlflow.log"
    launcher = [sys.executable, "-c", MLFLOW_SERVER_EXEC] if single_process else [_bin("mlflow"), "server"]
    args = [
        *launcher,
        "--backend-store-uri", backend_store_uri or f"sqlite:///{state_dir / 'mlflow.db'}",
        "--artifacts-destination", str(state_dir / "artifacts"),
        "--serve-artifacts",
        "--host", host, "--port", str(port),
        "--workers", str(workers),
        *(extra_args or []),
    ]  # fmt: skip
    env = dict(os.environ if env is None else env)
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    process = start_process("mlflow", args, log_path, env)
    url = f"http://{host}:{port}"
    try:
        wait_http_ok(f"{url}/health", timeout_s, process, log_path)
    except ServiceError:
        stop_process_group(process.pid)
        raise
    return Service("mlflow", process, log_path, url)
