"""Embedded mode: ``driftloop up`` / ``down`` / ``demo``.

``up`` starts an MLflow tracking server (SQLite store, served local artifacts) and Airflow (``airflow standalone``:
api-server, scheduler, dag-processor and triggerer on a SQLite DB with the LocalExecutor), all bound to
127.0.0.1 and keeping their state under ``$DRIFTLOOP_HOME`` (default ``.driftloop/``).

``demo`` brings the stack up and drives the closed loop once through Airflow's REST API and the real scheduler.
It drops reference data, then a clean batch, then a drifted batch with late labels, and prints what happened:
batches ingested, versions trained, the champion, the drift share that fired, the retrain it caused and the
URLs of both UIs.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftloop.config import PROJECT_DIR, Settings, load_dataset_config
from driftloop.services import (
    ServiceError,
    start_mlflow_server,
    start_process,
    stop_process_group,
    wait_http_ok,
)

DONE_STATES = {"success", "failed"}


@dataclass(frozen=True)
class StackLayout:
    """Where the embedded stack keeps its state and which ports it uses."""

    home_dir: Path
    mlflow_port: int
    airflow_port: int

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> StackLayout:
        """Layout under ``DRIFTLOOP_HOME``; ports from ``DRIFTLOOP_MLFLOW_PORT`` / ``DRIFTLOOP_AIRFLOW_PORT``."""
        settings = settings or Settings.from_env()
        return cls(
            home_dir=settings.home_dir,
            mlflow_port=int(os.environ.get("DRIFTLOOP_MLFLOW_PORT", "5000")),
            airflow_port=int(os.environ.get("DRIFTLOOP_AIRFLOW_PORT", "8080")),
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


def airflow_env(layout: StackLayout, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the embedded Airflow processes (and anything that talks to them)."""
    layout.airflow_home.mkdir(parents=True, exist_ok=True)
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
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{layout.airflow_home / 'airflow.db'}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(layout.airflow_port),
        "AIRFLOW__API__BASE_URL": layout.airflow_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{layout.airflow_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_path.read_text().strip(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "20",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
        "MLFLOW_TRACKING_URI": layout.mlflow_url,
        "DRIFTLOOP_HOME": str(layout.home_dir),
        "DRIFTLOOP_MLFLOW_UI_URL": layout.mlflow_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_DIR / "plugins"), os.environ.get("PYTHONPATH")])),
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
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, capture_output=True, text=True
    )
    if migrate.returncode != 0:
        raise ServiceError(f"airflow db migrate failed:\n{migrate.stderr[-3000:]}")
    log(f"starting Airflow (api-server, scheduler, dag-processor, triggerer) at {layout.airflow_url}")
    log_path = layout.airflow_home / "standalone.log"
    process = start_process("airflow", [str(Path(sys.executable).with_name("airflow")), "standalone"], log_path, env)
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


class AirflowApi:
    """Minimal client of Airflow 3's REST API (``/api/v2``) with a token from the simple auth manager."""

    def __init__(self, layout: StackLayout) -> None:
        import requests

        self.base_url = layout.airflow_url
        self.session = requests.Session()
        password_file = layout.airflow_home / "simple_auth_manager_passwords.json.generated"
        deadline = time.monotonic() + 60
        while not password_file.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        password = json.loads(password_file.read_text())["admin"]
        response = self.session.post(f"{self.base_url}/auth/token", json={"username": "admin", "password": password})
        response.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=30, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"Airflow API {method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def wait_for_dags(self, dag_ids: list[str], timeout_s: float = 180) -> None:
        """Wait until the dag-processor has parsed every DAG, then unpause them all."""
        deadline = time.monotonic() + timeout_s
        for dag_id in dag_ids:
            while True:
                response = self.session.get(f"{self.base_url}/api/v2/dags/{dag_id}", timeout=30)
                if response.status_code == 200:
                    break
                if time.monotonic() > deadline:
                    errors = self._call("GET", "/importErrors")
                    raise ServiceError(f"DAG {dag_id} not parsed after {timeout_s:.0f} s; import errors: {errors}")
                time.sleep(1)
            self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a manual run; returns its run id."""
        body = {"logical_date": None, "conf": conf or {}}
        return self._call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Runs of ``dag_id``, newest first."""
        return self._call("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 50})["dag_runs"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """State of every task instance of a run."""
        items = self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in items}

    def wait_for_run(
        self, dag_id: str, run_id: str | None = None, known: set[str] | None = None, timeout_s: float = 900
    ) -> dict[str, Any]:
        """Wait for run ``run_id`` (or the first run of ``dag_id`` not in ``known``) to finish.

        Raises:
            TimeoutError: The run did not finish in time.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for run in self.runs(dag_id):
                matches = run["dag_run_id"] == run_id if run_id else run["dag_run_id"] not in (known or set())
                if matches and run["state"] in DONE_STATES:
                    return run
            time.sleep(2)
        raise TimeoutError(f"{dag_id} run {run_id or '(new)'} did not finish within {timeout_s:.0f} s")


def run_demo(layout: StackLayout, dataset: str | None = None, log: Any = print) -> dict[str, Any]:
    """Bring the stack up and drive the closed loop once through the scheduler. Returns the summary."""
    from driftloop import simulate
    from driftloop.tracking import get_client

    settings = Settings.from_env()
    cfg = load_dataset_config(dataset, settings)
    demo_env = {
        "DRIFTLOOP_DATASET": cfg.name,
        "DRIFTLOOP_DATA_SCHEDULE": "none",
        "DRIFTLOOP_SENSOR_SCHEDULE": "none",
        # One quick look is enough here: the demo triggers the sensor right after monitoring has finished.
        "DRIFTLOOP_SENSOR_POKE_S": "2",
        "DRIFTLOOP_SENSOR_TIMEOUT_S": "1",
    }
    os.environ.update({"MLFLOW_TRACKING_URI": layout.mlflow_url, **demo_env})
    start_stack(layout, demo_env, log)
    api = AirflowApi(layout)
    dag_ids = ["data_pipeline", "training_pipeline", "inference_pipeline", "monitoring_pipeline", "drift_sensor"]
    api.wait_for_dags(dag_ids)
    timings: dict[str, float] = {}

    def step(dag_id: str, run_id: str | None = None, known: set[str] | None = None) -> dict[str, Any]:
        start = time.monotonic()
        run = api.wait_for_run(dag_id, run_id, known)
        seconds = time.monotonic() - start
        timings[dag_id] = timings.get(dag_id, 0.0) + seconds
        log(f"  {dag_id:<20} {run['state']:<8} {seconds:6.1f} s  ({run['dag_run_id']})")
        return run

    def known(dag_id: str) -> set[str]:
        return {run["dag_run_id"] for run in api.runs(dag_id)}

    started = time.monotonic()
    log("1/3 reference period → data_pipeline → training_pipeline (via the training-snapshot asset)")
    simulate.simulate_reference(cfg, settings=settings)
    before = known("training_pipeline")
    step("data_pipeline", api.trigger("data_pipeline"))
    step("training_pipeline", known=before)

    log("2/3 clean batch → data → inference → monitoring → drift_sensor (should not fire)")
    simulate.simulate_batch(cfg, 1, settings=settings)
    clean = _drive_batch(api, step, known)

    log("3/3 drifted batch + labels of batch 1 → ... → drift_sensor fires → training_pipeline (reason: drift)")
    simulate.simulate_batch(cfg, 2, drift={"preset": "strong"}, settings=settings)
    simulate.simulate_labels(cfg, 1, settings=settings)
    before = known("training_pipeline")
    drifted = _drive_batch(api, step, known)
    if drifted["sensor_fired"]:
        step("training_pipeline", known=before)
    timings["total"] = time.monotonic() - started

    client = get_client(settings)
    summary = summarize(cfg, client, layout, clean, drifted, timings)
    log(format_summary(summary))
    return summary


def _drive_batch(api: AirflowApi, step: Any, known: Any) -> dict[str, Any]:
    inference_before, monitoring_before = known("inference_pipeline"), known("monitoring_pipeline")
    data_run = step("data_pipeline", api.trigger("data_pipeline"))
    step("inference_pipeline", known=inference_before)
    step("monitoring_pipeline", known=monitoring_before)
    sensor_run = step("drift_sensor", api.trigger("drift_sensor"))
    states = api.task_states("drift_sensor", sensor_run["dag_run_id"])
    return {"data_state": data_run["state"], "sensor_fired": states.get("trigger_training") == "success"}


def summarize(cfg: Any, client: Any, layout: StackLayout, clean: dict, drifted: dict, timings: dict) -> dict[str, Any]:
    """Collect what the loop did from the state folder and MLflow."""
    from driftloop.config import StatePaths
    from driftloop.tracking import search_runs

    paths = StatePaths.for_dataset(cfg)
    batches = sorted(p.stem for p in paths.batches_dir.glob("*.json"))
    found = client.search_model_versions(f"name = '{cfg.registered_model_name}'")
    # Search results carry no aliases: read each version.
    versions = [client.get_model_version(cfg.registered_model_name, v.version) for v in found]
    model_versions = [
        {
            "version": v.version,
            "trigger": v.tags.get("driftloop.trigger_reason"),
            "gate": v.tags.get("driftloop.gate"),
            "aliases": sorted(v.aliases or []),
        }
        for v in sorted(versions, key=lambda v: int(v.version))
    ]
    monitoring = search_runs(client, cfg.experiment_name("monitoring"))
    fired = [r for r in monitoring if r.data.tags.get("driftloop.sensor_fired_at")]
    return {
        "dataset": cfg.name,
        "batches_ingested": batches,
        "model_versions": model_versions,
        "champion": client.get_model_version_by_alias(cfg.registered_model_name, "champion").version,
        "clean_batch_fired": clean["sensor_fired"],
        "drift_share_that_fired": fired[0].data.metrics.get("drift_share") if fired else None,
        "drift_threshold": cfg.monitoring.drift_share_threshold,
        "retrain_run": fired[0].data.tags.get("driftloop.sensor_trigger_run_id") if fired else None,
        "seconds": {k: round(v, 1) for k, v in timings.items()},
        "airflow_ui": layout.airflow_url,
        "mlflow_ui": layout.mlflow_url,
        "airflow_password_file": str(layout.airflow_home / "simple_auth_manager_passwords.json.generated"),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable closing summary of a demo run."""
    lines = [
        "",
        f"Driftloop demo on {summary['dataset']}: done in {summary['seconds'].get('total', 0):.0f} s",
        f"  batches ingested : {', '.join(summary['batches_ingested'])}",
    ]
    for v in summary["model_versions"]:
        lines.append(f"  model v{v['version']:<3}      : trigger={v['trigger']}, gate={v['gate']}, aliases={v['aliases']}")
    lines += [
        f"  champion         : v{summary['champion']}",
        f"  clean batch fired: {summary['clean_batch_fired']}",
        f"  drift that fired : share {summary['drift_share_that_fired']} (threshold {summary['drift_threshold']})",
        f"  retrain it caused: {summary['retrain_run']}",
        f"  per DAG (s)      : {summary['seconds']}",
        f"  Airflow UI       : {summary['airflow_ui']}  (user admin, password in {summary['airflow_password_file']})",
        f"  MLflow UI        : {summary['mlflow_ui']}",
        "  Stop with `make down`; state stays in the DRIFTLOOP_HOME folder.",
    ]
    return "\n".join(lines)


def _cli_up(args: argparse.Namespace) -> int:
    layout = StackLayout.from_env()
    start_stack(layout)
    print(f"Airflow UI: {layout.airflow_url} (user admin, password in "
          f"{layout.airflow_home / 'simple_auth_manager_passwords.json.generated'})\nMLflow UI: {layout.mlflow_url}")
    return 0


def _cli_down(args: argparse.Namespace) -> int:
    stop_stack(StackLayout.from_env())
    return 0


def _cli_demo(args: argparse.Namespace) -> int:
    layout = StackLayout.from_env()
    summary = run_demo(layout, args.dataset)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2))
    ok = summary["champion"] and summary["drift_share_that_fired"] is not None and not summary["clean_batch_fired"]
    return 0 if ok else 1


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop up``, ``down`` and ``demo``."""
    subparsers.add_parser("up", help="start MLflow + Airflow in the background").set_defaults(func=_cli_up)
    subparsers.add_parser("down", help="stop them (state is kept)").set_defaults(func=_cli_down)
    demo = subparsers.add_parser("demo", help="start the stack and drive the closed loop once")
    demo.add_argument("--summary-json", help="also write the summary to this file")
    demo.set_defaults(func=_cli_demo)
