"""Native production topology for tests: the docker-compose stack, without containers.

Starts, on this machine's PostgreSQL and Redis, exactly what ``docker-compose.yaml`` runs in containers:

* dedicated PostgreSQL databases (Airflow metadata, MLflow backend store, MLflow auth store), unique per run;
* an MLflow tracking server on a free port: Postgres backend, ``--serve-artifacts`` into a temp folder,
  ``--app-name basic-auth`` with a generated (non-default) admin;
* Airflow on CeleryExecutor: ``airflow db migrate``, a FAB admin user, api-server (127.0.0.1, free port),
  scheduler, dag-processor, triggerer and N Celery workers with distinct ``--celery-hostname``, all on a Redis
  database number claimed for this run;
* the online service (``driftloop serve``, 127.0.0.1, free port) with its prediction log in its own database;
* no shared disk: an S3 protocol server (moto, 127.0.0.1) holds the data zones (``DRIFTLOOP_DATA_URI``) and
  MLflow's artifacts (``--artifacts-destination s3://...``), and every process gets its own
  ``DRIFTLOOP_HOME`` (``homes/<process>``), as containers on separate hosts would.

Everything lives under one temp root; :meth:`Stack.teardown` kills every process group it started and drops
the databases. Nothing here imports Airflow: the processes are the real CLIs, driven through the REST API.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.constants import FAST_OVERRIDES

REPO_DIR = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

PG_HOST = os.environ.get("DRIFTLOOP_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DRIFTLOOP_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("DRIFTLOOP_TEST_PG_USER", "postgres")
PG_PASSWORD = os.environ.get("DRIFTLOOP_TEST_PG_PASSWORD", "")
REDIS_HOST = os.environ.get("DRIFTLOOP_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("DRIFTLOOP_TEST_REDIS_PORT", "6379"))

EXTRA_PYTHONPATH = os.environ.get("DRIFTLOOP_TOPOLOGY_PYTHONPATH", "")

REDIS_CLAIM_KEY = "driftloop:topology:claim"


def _restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class StackError(RuntimeError):
    """A component of the native stack did not start or did not become healthy."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def services_unreachable() -> list[str]:
    """Names of the backing services (PostgreSQL, Redis) that cannot be reached, with the reason."""
    problems = []
    try:
        import psycopg2

        psycopg2.connect(
            host=PG_HOST,
            port=PG_PORT,
            user=PG_USER,
            password=PG_PASSWORD,
            dbname="postgres",
            connect_timeout=3,
        ).close()
    except Exception as exc:  # any failure means unreachable
        problems.append(f"PostgreSQL {PG_USER}@{PG_HOST}:{PG_PORT}: {str(exc).strip()}")
    try:
        import redis

        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3).ping()
    except Exception as exc:
        problems.append(f"Redis {REDIS_HOST}:{REDIS_PORT}: {exc}")
    return problems


def pg_url(dbname: str, driver: str = "postgresql") -> str:
    """SQLAlchemy URL of ``dbname`` on the test server."""
    auth = PG_USER + (f":{PG_PASSWORD}" if PG_PASSWORD else "")
    return f"{driver}://{auth}@{PG_HOST}:{PG_PORT}/{dbname}"


def _pg_admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD, dbname="postgres")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 1.0) -> Any:
    """:func:`driftloop_ops.airflow_api.wait_until`, failing with :class:`StackError`."""
    from driftloop_ops.airflow_api import AirflowApiError, wait_until

    try:
        return wait_until(check, timeout_s, what, interval_s)
    except AirflowApiError as exc:
        raise StackError(str(exc)) from exc


@dataclass
class Proc:
    """One started component: its own process group and log file."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def descendants(self) -> list[int]:
        import psutil

        try:
            return [p.pid for p in psutil.Process(self.popen.pid).children(recursive=True)]
        except psutil.Error:
            return []

    def kill(self, sig: int = signal.SIGTERM, grace_s: float = 15.0) -> None:
        """Signal the whole process group (and stray descendants); SIGKILL after ``grace_s``."""
        if self.popen.poll() is not None:
            return
        pids = self.descendants()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)
        if sig == signal.SIGKILL:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pids = self.descendants()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


@dataclass
class Stack:
    """The whole native topology under ``root``; see the module docstring."""

    root: Path
    workers: int = 2
    worker_concurrency: int = 1
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    procs: dict[str, Proc] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    redis_db: int | None = None
    object_store: bool = True
    s3: Any = None  # tests.object_store.S3Server once started
    bucket: str = ""
    _client: Any = None
    _closers: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.logs_dir = self.root / "logs"
        self.airflow_home = self.root / "airflow"
        self.driftloop_home = self.root / "driftloop"
        self.artifacts_dir = self.root / "mlflow-artifacts"
        for folder in (self.logs_dir, self.airflow_home, self.driftloop_home, self.artifacts_dir):
            folder.mkdir(parents=True, exist_ok=True)
        prefix = f"dl_topo_{self.run_id}"
        # The champion audit log: a table owner (used once, by init) and an insert-only writer (the tasks).
        self.audit_db, self.audit_owner, self.audit_writer = (
            f"{prefix}_audit",
            f"{prefix}_aowner",
            f"{prefix}_awriter",
        )
        self.audit_owner_password, self.audit_writer_password = secrets.token_hex(12), secrets.token_hex(12)
        self.airflow_db, self.mlflow_db, self.mlflow_auth_db = (
            f"{prefix}_airflow",
            f"{prefix}_mlflow",
            f"{prefix}_mlauth",
        )
        self.serving_db = f"{prefix}_serving"
        self.api_port = free_port()
        self.mlflow_port = free_port()
        self.serving_port = free_port()
        self.serve_admin_token = secrets.token_urlsafe(24)
        # Generated per run, never defaults: what .env would hold in the compose stack.
        from cryptography.fernet import Fernet

        self.fernet_key = Fernet.generate_key().decode()
        self.jwt_secret = secrets.token_urlsafe(32)
        self.api_secret_key = secrets.token_urlsafe(32)
        self.admin_user = f"ops-{self.run_id[:6]}"
        self.admin_password = secrets.token_urlsafe(18)
        self.mlflow_admin_user = f"mlflow-ops-{self.run_id[:6]}"
        self.mlflow_admin_password = secrets.token_urlsafe(18)
        self.mlflow_secret_key = secrets.token_urlsafe(32)
        self.pii_salt = secrets.token_urlsafe(16)

    # ---------------------------------------------------------------- URLs and environment
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def serving_url(self) -> str:
        return f"http://127.0.0.1:{self.serving_port}"

    @property
    def data_uri(self) -> str:
        """Where the data zones live: the object store's bucket (or, without one, the shared home)."""
        return f"s3://{self.bucket}/zones" if self.s3 is not None else str(self.driftloop_home / "data")

    def home_of(self, process: str) -> Path:
        """The process's own ``DRIFTLOOP_HOME``: nothing in it is seen by any other process."""
        return self.root / "homes" / process

    def process_homes(self) -> list[Path]:
        """Every process's own home folder that exists."""
        folder = self.root / "homes"
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def start_object_store(self) -> None:
        """moto's S3 server on 127.0.0.1 with one bucket; this process's AWS variables point at it too."""
        from tests.object_store import run_s3_server

        self.s3 = self._closers.enter_context(run_s3_server())
        self.bucket = self.s3.new_bucket()
        saved = {key: os.environ.get(key) for key in self.s3.env()}
        os.environ.update(self.s3.env())
        self._closers.callback(_restore_env, saved)

    @property
    def broker_url(self) -> str:
        return f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}"

    def base_env(self) -> dict[str, str]:
        """Environment shared by every process (mirrors ``x-airflow-common`` in docker-compose.yaml)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "DRIFTLOOP_"))}
        env.update(
            {
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1",
                # Optional overlay of packages ahead of the venv (e.g. to try a different pin without
                # reinstalling).
                **({"PYTHONPATH": EXTRA_PYTHONPATH} if EXTRA_PYTHONPATH else {}),
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_DIR / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_DIR / "plugins"),
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
                ),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_url(self.airflow_db, "postgresql+psycopg2"),
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": pg_url(self.airflow_db, "db+postgresql"),
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "DRIFTLOOP_AIRFLOW_API_CONN_ID": "driftloop_airflow_api",
                "AIRFLOW_CONN_DRIFTLOOP_AIRFLOW_API": json.dumps(
                    {
                        "conn_type": "http",
                        "host": self.api_url,
                        "login": self.admin_user,
                        "password": self.admin_password,
                    }
                ),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": self.api_secret_key,
                "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(free_port()),
                # A killed worker's task must be noticed in seconds, not the default 5 minutes.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # Driftloop settings: the only things the DAGs read.
                "DRIFTLOOP_HOME": str(self.driftloop_home),
                "DRIFTLOOP_DATA_URI": self.data_uri,
                **(self.s3.env() if self.s3 is not None else {}),
                "DRIFTLOOP_DATASET": "telco_churn",
                "DRIFTLOOP_CONFIG_OVERRIDES": json.dumps(FAST_OVERRIDES),
                "DRIFTLOOP_PII_SALT": self.pii_salt,
                "DRIFTLOOP_AUDIT_DB_URI": self.audit_url(),
                # The online service writes it, the ab_evaluation DAG on the workers reads it.
                "DRIFTLOOP_PREDICTION_LOG_URI": pg_url(self.serving_db),
                "DRIFTLOOP_WATCH_SCHEDULE": "none",
                # Two single-slot workers share two cores: PyCaret must not fan out on top of that.
                "DRIFTLOOP_N_JOBS": "1",
                # The HTML data profile on a small sample: rendering it from a Celery task (a child process
                # of the worker) is what must work here; the full-size profile costs minutes.
                "DRIFTLOOP_PROFILE_MAX_ROWS": "300",
                # Runs come from the test (and from assets and the sensor), never from a clock.
                "DRIFTLOOP_DATA_SCHEDULE": "none",
                "DRIFTLOOP_SENSOR_SCHEDULE": "none",
                "DRIFTLOOP_SENSOR_POKE_S": "5",
                "DRIFTLOOP_SENSOR_TIMEOUT_S": "30",
                "DRIFTLOOP_RETRY_DELAY_S": "10",
                "DRIFTLOOP_TASK_RETRIES": "3",
                "MLFLOW_TRACKING_URI": self.mlflow_url,
                "MLFLOW_TRACKING_USERNAME": self.mlflow_admin_user,
                "MLFLOW_TRACKING_PASSWORD": self.mlflow_admin_password,
                # Fail fast inside a task when MLflow is down, so Airflow's own retry (with backoff) takes
                # over.
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
            }
        )
        return env

    # ---------------------------------------------------------------- processes
    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        """Start ``argv`` in its own session (process group) with output to ``logs/<name>.log``."""
        log_path = self.logs_dir / f"{name}.log"
        env = dict(env or self.base_env())
        if self.s3 is not None:  # its own disk: what it writes there no other process can read
            self.home_of(name).mkdir(parents=True, exist_ok=True)
            env["DRIFTLOOP_HOME"] = str(self.home_of(name))
        log = open(log_path, "ab")  # owned by the child
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        proc = Proc(name=name, argv=argv, log_path=log_path, popen=popen)
        self.procs[name] = proc
        return proc

    def run(
        self, name: str, argv: list[str], timeout_s: float = 600, env: dict[str, str] | None = None
    ) -> str:
        """Run a one-shot command (like the compose ``airflow-init`` job); raise with its output on
        failure."""
        out = subprocess.run(
            argv, env=env or self.base_env(), cwd=self.root, capture_output=True, text=True, timeout=timeout_s
        )
        (self.logs_dir / f"{name}.log").write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            raise StackError(f"{name} failed ({out.returncode}):\n{(out.stdout + out.stderr)[-4000:]}")
        return out.stdout

    def ensure_alive(self, names: Iterable[str] | None = None) -> None:
        """Raise with the log tail of the first component that exited."""
        for name in names or list(self.procs):
            proc = self.procs.get(name)
            if proc is not None and not proc.alive():
                raise StackError(f"{name} exited with {proc.popen.returncode}:\n{proc.tail()}")

    # ---------------------------------------------------------------- backing services
    def create_databases(self) -> None:
        """Create the dedicated databases and the audit roles (the compose stack's
        ``deploy/postgres-init.sh``)."""
        for name in (self.airflow_db, self.mlflow_db, self.mlflow_auth_db, self.serving_db):
            _pg_admin(f'CREATE DATABASE "{name}"')
            self.databases.append(name)
        _pg_admin(f"CREATE ROLE {self.audit_owner} LOGIN PASSWORD '{self.audit_owner_password}'")
        _pg_admin(f"CREATE ROLE {self.audit_writer} LOGIN PASSWORD '{self.audit_writer_password}'")
        self.roles.extend([self.audit_writer, self.audit_owner])
        _pg_admin(f'CREATE DATABASE "{self.audit_db}" OWNER {self.audit_owner}')
        self.databases.append(self.audit_db)

    def audit_url(self, owner: bool = False) -> str:
        """The audit database as its owner or as the insert-only writer."""
        user, password = (
            (self.audit_owner, self.audit_owner_password)
            if owner
            else (self.audit_writer, self.audit_writer_password)
        )
        return f"postgresql+psycopg2://{user}:{password}@{PG_HOST}:{PG_PORT}/{self.audit_db}"

    def claim_redis_db(self) -> int:
        """Claim an empty Redis database number (1-15) for this run's Celery broker."""
        import redis

        for number in range(1, 16):
            client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number)
            if client.dbsize() == 0 and client.set(REDIS_CLAIM_KEY, self.run_id, nx=True, ex=7200):
                self.redis_db = number
                return number
        raise StackError("no empty Redis database number in 1..15 to claim for this run")

    # ---------------------------------------------------------------- MLflow
    def mlflow_env(self) -> dict[str, str]:
        env = self.base_env()
        auth_ini = self.root / "mlflow_basic_auth.ini"
        auth_ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {pg_url(self.mlflow_auth_db)}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "auth_cache_ttl_seconds = 60\n"  # as deploy/mlflow-server.sh: no scrypt check per request
        )
        auth_ini.chmod(0o600)
        env.update(
            {
                "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
                "MLFLOW_AUTH_ADMIN_USERNAME": self.mlflow_admin_user,
                "MLFLOW_AUTH_ADMIN_PASSWORD": self.mlflow_admin_password,
                "MLFLOW_FLASK_SERVER_SECRET_KEY": self.mlflow_secret_key,
                # No GenAI job runner: it costs start-up time and the loop does not use it.
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            }
        )
        if self.s3 is not None:
            env["MLFLOW_S3_ENDPOINT_URL"] = self.s3.endpoint_url
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
            env.pop(key, None)
        return env

    def start_mlflow(self, timeout_s: float = 180, wait: bool = True) -> Proc:
        """MLflow server: Postgres backend, served artifacts in a temp folder, basic auth."""
        argv = [
            str(VENV_BIN / "mlflow"), "server",
            "--host", "127.0.0.1", "--port", str(self.mlflow_port), "--workers", "1",
            "--backend-store-uri", pg_url(self.mlflow_db),
            "--serve-artifacts", "--artifacts-destination", self.artifacts_destination,
            "--app-name", "basic-auth",
        ]  # fmt: skip
        proc = self.spawn("mlflow", argv, env=self.mlflow_env())
        if wait:
            self.wait_mlflow_healthy(timeout_s)
        return proc

    @property
    def artifacts_destination(self) -> str:
        """Where the MLflow server keeps the artifacts it proxies: the bucket, or a local folder."""
        return f"s3://{self.bucket}/mlflow-artifacts" if self.s3 is not None else str(self.artifacts_dir)

    def wait_mlflow_healthy(self, timeout_s: float = 180) -> None:
        import requests

        def healthy() -> bool:
            self.ensure_alive(["mlflow"])
            response = requests.get(
                f"{self.mlflow_url}/api/2.0/mlflow/experiments/search",
                params={"max_results": 1},
                auth=(self.mlflow_admin_user, self.mlflow_admin_password),
                timeout=5,
            )
            return response.status_code == 200

        wait_for(healthy, timeout_s, "MLflow server health")

    def stop_mlflow(self) -> None:
        proc = self.procs.get("mlflow")
        if proc is not None:
            proc.kill(signal.SIGTERM)

    # ---------------------------------------------------------------- Airflow
    def init_airflow(self) -> None:
        """The compose ``airflow-init`` job: migrate the metadata DB, create the admin and the audit
        schema."""
        self.run(
            "audit-init",
            [str(VENV_BIN / "driftloop"), "audit-init", "--writer-role", self.audit_writer],
            env={**self.base_env(), "DRIFTLOOP_AUDIT_OWNER_DB_URI": self.audit_url(owner=True)},
        )
        self.run("airflow-db-migrate", [str(VENV_BIN / "airflow"), "db", "migrate"], timeout_s=900)
        self.run(
            "airflow-users-create",
            [
                str(VENV_BIN / "airflow"), "users", "create", "--role", "Admin",
                # --opt=value: a generated password may start with "-", which argparse would read as an
                # option.
                f"--username={self.admin_user}", f"--password={self.admin_password}",
                "--email", f"{self.admin_user}@driftloop.invalid",
                "--firstname", "Driftloop", "--lastname", "Ops",
            ],
        )  # fmt: skip

    def start_airflow(self, timeout_s: float = 240) -> None:
        """api-server, scheduler, dag-processor, triggerer and the Celery workers; wait until healthy."""
        airflow = str(VENV_BIN / "airflow")
        self.spawn("api-server", [airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port)])
        wait_for(lambda: self._ensure_then(self._api_up), timeout_s, "Airflow api-server")
        self.spawn("scheduler", [airflow, "scheduler"])
        self.spawn("dag-processor", [airflow, "dag-processor"])
        self.spawn("triggerer", [airflow, "triggerer"])
        for index in range(1, self.workers + 1):
            self.start_worker(index)
        wait_for(
            lambda: self._ensure_then(self._components_healthy), timeout_s, "Airflow components healthy", 2
        )

    def worker_hostname(self, index: int) -> str:
        return f"worker{index}-{self.run_id[:6]}"

    def start_worker(self, index: int) -> Proc:
        """One ``airflow celery worker`` with its own hostname and log-server port."""
        env = self.base_env()
        env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
        # Both workers share this host: each reports its own name on the task instances it runs.
        env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = "driftloop_ops.topology.worker_hostname"
        env["DRIFTLOOP_WORKER_NAME"] = self.worker_hostname(index)
        argv = [
            str(VENV_BIN / "airflow"), "celery", "worker",
            "--celery-hostname", self.worker_hostname(index),
            "--concurrency", str(self.worker_concurrency),
            "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        return self.spawn(f"worker{index}", argv, env=env)

    def kill_worker(self, index: int) -> None:
        """``kill -9`` the worker's whole process group: the node dies with the task it runs."""
        self.procs[f"worker{index}"].kill(signal.SIGKILL)

    def _ensure_then(self, check: Callable[[], Any]) -> Any:
        self.ensure_alive()
        return check()

    def _api_up(self) -> bool:
        import requests

        return requests.get(f"{self.api_url}/api/v2/version", timeout=5).status_code == 200

    def health(self) -> dict[str, Any]:
        import requests

        return requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()

    def _components_healthy(self) -> bool:
        health = self.health()
        return all(
            health.get(part, {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        )

    def celery_ping(self) -> list[str]:
        """Names of the Celery workers answering ``inspect ping`` on this run's broker."""
        from celery import Celery

        app = Celery(broker=self.broker_url)
        try:
            replies = app.control.inspect(timeout=3).ping() or {}
        finally:
            app.close()
        return sorted(replies)

    # ---------------------------------------------------------------- the online service
    def start_serving(self, timeout_s: float = 120) -> Proc:
        """``driftloop serve`` as the compose ``serving`` service runs it; waits for its liveness endpoint."""
        import requests

        env = {
            **self.base_env(),
            "DRIFTLOOP_SERVE_POLL_S": "2",
            "DRIFTLOOP_SERVE_ADMIN_TOKEN": self.serve_admin_token,
        }
        argv = [
            str(VENV_BIN / "driftloop"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.serving_port),
            "--workers",
            "1",
        ]
        proc = self.spawn("serving", argv, env=env)

        def live() -> bool:
            self.ensure_alive(["serving"])
            try:
                return requests.get(f"{self.serving_url}/health", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(live, timeout_s, "the online service's /health")
        return proc

    # ---------------------------------------------------------------- REST API
    @property
    def airflow(self) -> Any:
        """The shared REST client (``driftloop_ops.airflow_api``), logged in as the admin from the
        environment.

        Every wait also checks that the long-running components are still alive, so a crashed scheduler fails
        the wait at once with its log instead of a timeout.
        """
        from driftloop_ops.airflow_api import AirflowClient

        if self._client is None:
            self._client = AirflowClient(
                self.api_url, self.admin_user, self.admin_password, poll_s=1.0, on_poll=self._check_components
            )
        return self._client

    def _check_components(self) -> None:
        self.ensure_alive([n for n in self.procs if n != "mlflow" and not n.startswith("worker")])

    def describe_run(self, dag_id: str, run_id: str) -> str:
        """Task states and failed tasks' logs, with a hint for the known Celery std-stream failure."""
        text = self.airflow.describe_run(dag_id, run_id)
        if "trained none of the models" in text:
            text += (
                "\nHINT: on Celery workers sys.__stdout__ is closed in the task process and PyCaret's "
                "wurlitzer "
                "redirect fails; wrap the PyCaret calls in "
                "driftloop.training.pycaret_env.usable_std_streams()"
            )
        return text

    def driftloop_cli(self, *args: str) -> str:
        """``driftloop <args>`` with the stack's environment (same home, dataset and MLflow as the
        workers)."""
        return self.run(
            "driftloop-" + "-".join(args[:2]), [str(VENV_BIN / "driftloop"), *args], timeout_s=300
        )

    def mlflow_client_env(self) -> dict[str, str]:
        """What an MLflow client needs to talk to this server (URI and basic-auth credentials)."""
        return {
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "MLFLOW_TRACKING_USERNAME": self.mlflow_admin_user,
            "MLFLOW_TRACKING_PASSWORD": self.mlflow_admin_password,
        }

    # ---------------------------------------------------------------- lifecycle
    def preflight(self) -> None:
        """Fail in seconds, with the cause, when the CeleryExecutor cannot even be imported."""
        code = "import airflow.providers.celery.executors.celery_executor_utils"
        out = subprocess.run(
            [sys.executable, "-c", code], env=self.base_env(), capture_output=True, text=True
        )
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["?"])[-1]
            hint = ""
            if "celery.backends.database" in out.stderr:
                hint = (
                    " -- apache-airflow-providers-celery imports celery.backends.database.retry, which "
                    "celery 5.7 "
                    "removed; pin celery[redis]==5.6.3 (see docs/production.md)"
                )
            raise StackError(f"CeleryExecutor is not importable: {last}{hint}")

    def start(self) -> Stack:
        """Bring the whole topology up (databases, broker claim, MLflow, Airflow, the online service)."""
        self.preflight()
        if self.object_store:
            self.start_object_store()
        self.create_databases()
        self.claim_redis_db()
        self.start_mlflow(wait=False)  # its migrations run while Airflow migrates
        self.init_airflow()
        self.wait_mlflow_healthy()
        self.start_airflow()
        self.start_serving()
        return self

    def teardown(self) -> None:
        """Kill every process group (workers first, SIGKILL), drop the databases, release the Redis DB.

        Robust to being interrupted: each step is attempted even when an earlier one raised.
        """
        for name in sorted(
            self.procs, key=lambda n: (not n.startswith("worker"), n == "api-server", n == "mlflow")
        ):
            proc = self.procs[name]
            sig = signal.SIGKILL if name.startswith("worker") else signal.SIGTERM
            try:
                proc.kill(sig, grace_s=10)
            except BaseException:  # keep tearing down
                with contextlib.suppress(BaseException):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
        for name in list(self.databases):
            try:
                _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                self.databases.remove(name)
            except Exception:
                pass
        for role in list(self.roles):
            with contextlib.suppress(Exception):
                _pg_admin(f"DROP ROLE IF EXISTS {role}")
                self.roles.remove(role)
        if self.redis_db is not None:
            with contextlib.suppress(Exception):
                import redis

                redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.redis_db).flushdb()
            self.redis_db = None
        with contextlib.suppress(BaseException):
            self._closers.close()  # the object store, last: a worker still uploading is dead by now


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
