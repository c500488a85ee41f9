"""Data that starts the loop when it lands: ``data_pipeline`` under ``DRIFTLOOP_DATA_SCHEDULE=on_arrival``
through a real dag-processor, triggerer and scheduler (embedded stack, LocalExecutor, default poll).

1. The stack starts with only ``data_pipeline`` unpaused; the landing asset's watcher runs once the
   dag-processor has registered it for the unpaused DAG and the triggerer has started it (its first look waits
   for the asset state store, whose in-process API the triggerer builds on first use: seconds, once).
2. ARRIVALS times: a simulated batch is written into the landing zone (hidden name, renamed into place), and
   the figure is the time from the rename to the ``data_pipeline`` run it starts being ``running``
   (target <= 15 s with the default 5 s poll). Each run is awaited before the next file lands.
3. For IDLE_S seconds nothing lands (the last run's files were ingested: landing is empty). The figure is
   ``data_pipeline`` runs per hour of that wait (target 0; the old ``*/10`` cron made 6, each a task launch).

Prints one figure per line: ``arrival_latency_s`` (the slowest arrival), ``arrival_idle_runs_per_hour``.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
ARRIVALS = int(os.environ.get("BENCH_ARRIVAL_FILES", "3"))
IDLE_S = float(os.environ.get("BENCH_ARRIVAL_IDLE_S", "300"))
LATENCY_TARGET_S = 15.0
FAST = {"training": {"models": ["lr"], "folds": 2, "tune_iter": 0, "reference_rows": 1000}}


def iso_to_epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def watcher_registered(api, asset_uri: str) -> bool:
    """Whether the dag-processor has attached a watcher to the landing asset (it does for unpaused DAGs)."""
    assets = api.call("GET", "/assets", params={"uri_pattern": asset_uri, "limit": 10})["assets"]
    return any(a["uri"] == asset_uri and a.get("watchers") for a in assets)


def watch_started(triggerer_log: Path, dataset: str) -> bool:
    """Whether the triggerer's landing watch has begun listing (its first line, after reading its state)."""
    return triggerer_log.exists() and f"landing watch of {dataset}: listing" in triggerer_log.read_text()


def started_run(api, dag_id: str, run_id: str) -> dict | None:
    """The run once it has a start date (it left ``queued``)."""
    run = api.dag_run(dag_id, run_id)
    return run if run.get("start_date") else None


def main() -> int:
    from driftloop.core import bus
    from driftloop_ops.airflow_api import AirflowClient, read_generated_password, wait_until
    from driftloop_ops.embedded import temporary_stack

    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-arrival-"))
    extra = {
        "DRIFTLOOP_DATASET": "telco_churn",
        "DRIFTLOOP_DATASETS": "telco_churn",
        "DRIFTLOOP_CONFIG_OVERRIDES": json.dumps(FAST),
        "DRIFTLOOP_DATA_SCHEDULE": "on_arrival",
        "DRIFTLOOP_SENSOR_SCHEDULE": "none",
        "DRIFTLOOP_WATCH_SCHEDULE": "none",
        "DRIFTLOOP_PROFILE_MAX_ROWS": "0",
    }
    os.environ.pop("DRIFTLOOP_LANDING_POKE_S", None)  # the default poll is what is measured
    with temporary_stack(work, extra, log=lambda line: print(f"# {line}")) as layout:
        from driftloop.core.config import load_dataset_config
        from driftloop.core.settings import Settings
        from driftloop.data import simulate

        settings = Settings.from_env()
        cfg = load_dataset_config("telco_churn", settings)
        api = AirflowClient(layout.airflow_url, "admin", read_generated_password(layout.password_file))
        data_dag = bus.dag_id(cfg.name, bus.DATA_PIPELINE)
        api.wait_for_dags([data_dag])  # and unpause it; every other DAG stays paused
        started = time.monotonic()
        landing_uri = bus.asset_uri(cfg.name, "landing")
        wait_until(lambda: watcher_registered(api, landing_uri), 180, "the landing watcher", 1.0)
        print(
            f"# watcher registered {time.monotonic() - started:.1f} s after unpausing; poll "
            f"{settings.landing_poll_s:g} s; load {os.getloadavg()[0]:.2f}"
        )
        log_path = layout.airflow_home / "triggerer.log"
        wait_until(lambda: watch_started(log_path, cfg.name), 180, "the landing watch's first look", 0.5)
        print(f"# the triggerer's landing watch looks {time.monotonic() - started:.1f} s after unpausing")

        latencies, queued = [], []
        for index in range(1, ARRIVALS + 1):
            known = api.run_ids(data_dag)
            simulate.simulate_batch(cfg, index, rows=300, settings=settings)  # temp name, renamed into place
            landed = time.time()
            run = api.wait_new_run(data_dag, known, run_type="asset_triggered", timeout_s=300)
            run_id = run["dag_run_id"]
            running = wait_until(functools.partial(started_run, api, data_dag, run_id), 300, "its start", 0.2)
            latencies.append(iso_to_epoch(running["start_date"]) - landed)
            queued.append(iso_to_epoch(running["queued_at"]) - landed)
            final = api.wait_for_run(data_dag, run_id, timeout_s=600)
            print(
                f"# batch {index}: queued {queued[-1]:.1f} s, running {latencies[-1]:.1f} s after landing; "
                f"run {run_id} {final['state']}"
            )
        print(f"# latencies {[round(x, 1) for x in latencies]}; median {statistics.median(latencies):.1f} s")

        known = api.run_ids(data_dag)
        time.sleep(IDLE_S)
        idle_runs = len(api.run_ids(data_dag) - known)
        print(
            f"# idle {IDLE_S:.0f} s with an empty landing zone: {idle_runs} new run(s); "
            f"load {os.getloadavg()[0]:.2f}"
        )
        print(f"arrival_latency_s {max(latencies):.1f}")
        print(f"arrival_latency_vs_target_ratio {max(latencies) / LATENCY_TARGET_S:.2f}")
        print(f"arrival_idle_runs_per_hour {idle_runs * 3600 / IDLE_S:.1f}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT_DIR / "plugins"))
    sys.exit(main())
