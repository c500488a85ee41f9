"""The full closed loop on the default dataset and config, in-process and through the real scheduler, side by
side.

Both drive the same story with :func:`driftloop_ops.loop.drive_closed_loop` (first train → clean batch →
drifted batch + late labels → the sensor fires → retrain → v2):

* in-process: each DAG with ``dag.test()`` against a real MLflow server (no scheduler, no task launches);
* scheduler: the embedded stack (``airflow standalone``, LocalExecutor, SQLite) driven through the REST API,
  where assets and the sensor's trigger start the downstream runs.

Where the scheduler's extra time goes is read back from the REST API: time tasks spent executing, time inside
runs not spent executing (queueing and launching tasks), and time between runs (asset events and triggers
becoming runs, plus the driver's polling). Target: in-process <= 300 s; scheduler / in-process <= 1.3. Prints
one figure per line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
TARGET_S = 300.0
LOOP_ENV = {
    "DRIFTLOOP_DATASET": "telco_churn",
    "DRIFTLOOP_DATASETS": "telco_churn",
    "DRIFTLOOP_SENSOR_POKE_S": "1",
    "DRIFTLOOP_SENSOR_TIMEOUT_S": "2",
    "DRIFTLOOP_DATA_SCHEDULE": "none",
    "DRIFTLOOP_SENSOR_SCHEDULE": "none",
}


def run_in_process(work: Path) -> float:
    from driftloop_ops.services import start_mlflow_server

    airflow_home = work / "airflow"
    os.environ.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_DIR / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_DIR / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "DRIFTLOOP_HOME": str(work / "home"),
            **LOOP_ENV,
        }
    )
    server = start_mlflow_server(work / "mlflow")
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    try:
        migrate = subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "db", "migrate"], capture_output=True, text=True
        )
        if migrate.returncode != 0:
            raise SystemExit(migrate.stderr[-3000:])
        from airflow.dag_processing.dagbag import DagBag

        from driftloop.core.config import load_dataset_config
        from driftloop.core.tracking import get_client
        from driftloop_ops.loop import InProcessRunner, drive_closed_loop

        bag = DagBag(dag_folder=str(PROJECT_DIR / "dags"))
        if bag.import_errors:
            raise SystemExit(f"DAG import errors: {bag.import_errors}")
        cfg = load_dataset_config()
        client = get_client()
        record = drive_closed_loop(InProcessRunner(dict(bag.dags)), cfg, client, batch_rows=1000)
        versions = client.search_model_versions(f"name = '{cfg.registered_model_name}'")
        for dag_name, seconds in sorted(record.seconds.items()):
            print(f"loop_seconds.{dag_name} {seconds:.1f}")
        print(f"loop_registered_versions {len(versions)}")
        print(f"loop_sensor_fired {int(bool(record.queued_after_drift))}")
        print(f"loop_total_vs_target_ratio {record.seconds['total'] / TARGET_S:.2f}")
        return record.seconds["total"]
    finally:
        server.stop()


def _epoch(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def _busy_s(task_instances: list[dict]) -> float:
    """Length of the union of the tasks' execution intervals (parallel tasks count once)."""
    spans = sorted(
        (_epoch(ti["start_date"]), _epoch(ti["end_date"]))
        for ti in task_instances
        if ti.get("start_date") and ti.get("end_date")
    )
    total, current_start, current_end = 0.0, None, None
    for start, end in spans:
        if current_end is None or start > current_end:
            total += (current_end - current_start) if current_end is not None else 0.0
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    return total + ((current_end - current_start) if current_end is not None else 0.0)


def explain_scheduler(api, record) -> dict[str, float]:
    """Split the scheduler loop's wall time into task execution, in-run overhead and the gaps between runs."""
    runs = []
    for step, run_id in record.run_ids.items():
        dag_id = record.dag_ids[step]
        run = api.dag_run(dag_id, run_id)
        tis = api.task_instances(dag_id, run_id)
        launched = [ti for ti in tis if ti.get("start_date")]
        runs.append((_epoch(run["start_date"]), _epoch(run["end_date"]), _busy_s(tis), len(launched)))
    runs.sort()
    busy = sum(r[2] for r in runs)
    in_runs = sum(r[1] - r[0] for r in runs)
    gaps = sum(max(0.0, b[0] - a[1]) for a, b in zip(runs, runs[1:], strict=False))
    return {
        "task_execution_s": busy,
        "in_run_overhead_s": in_runs - busy,
        "between_runs_s": gaps,
        "task_launches": float(sum(r[3] for r in runs)),
        "dag_runs": float(len(runs)),
    }


def run_through_scheduler(work: Path) -> float:
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.core.tracking import get_client
    from driftloop_ops.airflow_api import AirflowClient, read_generated_password
    from driftloop_ops.embedded import temporary_stack
    from driftloop_ops.loop import SchedulerRunner, drive_closed_loop, loop_dag_ids

    with temporary_stack(work, LOOP_ENV, log=lambda line: print(f"# {line}")) as layout:
        api = AirflowClient(
            layout.airflow_url, "admin", read_generated_password(layout.password_file), poll_s=0.25
        )
        settings = Settings.from_env()
        cfg = load_dataset_config("telco_churn", settings)
        api.wait_for_dags(loop_dag_ids(cfg.name))
        record = drive_closed_loop(
            SchedulerRunner(api),
            cfg,
            get_client(settings),
            settings,
            batch_rows=1000,
            log=lambda line: print(f"#{line}"),
        )
        for key, value in explain_scheduler(api, record).items():
            print(f"loop_scheduler_{key} {value:.1f}")
        for dag_name, seconds in sorted(record.seconds.items()):
            print(f"loop_scheduler_seconds.{dag_name} {seconds:.1f}")
        return record.seconds["total"]


def main() -> int:
    sys.path.insert(0, str(PROJECT_DIR / "plugins"))
    in_process_s = run_in_process(Path(tempfile.mkdtemp(prefix="driftloop-bench-loop-")))
    scheduler_s = run_through_scheduler(Path(tempfile.mkdtemp(prefix="driftloop-bench-loop-sched-")))
    print(f"loop_scheduler_vs_in_process_ratio {scheduler_s / in_process_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
