"""The deferrable drift sensor through a real scheduler and triggerer (embedded stack, LocalExecutor).

1. A champion is trained in-process (package functions) against the stack's MLflow.
2. ``drift_sensor`` is triggered with the default poll (10 s) and no timeout; for WAIT_S seconds nothing
   crosses. Every task launch shows up as the task instance passing through ``queued``/``running``; the figure
   is launches per hour of waiting (target 0; a reschedule sensor poking every 60 s makes 60).
3. A drifted batch is scored and monitored in-process. The figure is the time from the end of that monitoring
   run to the queued ``training_pipeline`` run the sensor triggers (target <= 30 s with the default poll).

Prints one figure per line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
WAIT_S = float(os.environ.get("BENCH_SENSOR_WAIT_S", "120"))
FAST = {"training": {"models": ["lr"], "folds": 2, "tune_iter": 0, "reference_rows": 1000}}
LATENCY_TARGET_S = 30.0


def iso_to_epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def train_champion(cfg, settings) -> str:
    from driftloop.data import ingest, simulate, snapshots
    from driftloop.governance.promotion import promote_model
    from driftloop.training import train

    simulate.simulate_reference(cfg, settings=settings)
    ingest.ingest_batches(cfg, settings)
    snapshot = snapshots.build_snapshot(cfg, settings)
    trained = train.train_model(
        cfg, snapshot["snapshot_uri"], trigger={"reason": "manual"}, settings=settings
    )
    return promote_model(cfg, trained["model_version"], settings)["champion_version"]


def watch_launches(api, sensor_dag_id: str, run_id: str, seconds: float) -> tuple[int, set[str]]:
    """Sample the sensor's task state for ``seconds``; count entries into queued/running (a worker launch)."""
    launches, seen, previous = 0, set(), None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = api.task_instance(sensor_dag_id, run_id, "wait_for_drift")["state"]
        seen.add(str(state))
        if state in ("queued", "running") and previous not in ("queued", "running"):
            launches += 1
        previous = state
        time.sleep(0.5)
    return launches, seen


def main() -> int:
    from driftloop.core import bus
    from driftloop_ops.airflow_api import AirflowClient, read_generated_password
    from driftloop_ops.embedded import temporary_stack
    from driftloop_ops.loop import loop_dag_ids

    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-sensor-"))
    extra = {
        "DRIFTLOOP_DATASET": "telco_churn",
        "DRIFTLOOP_DATASETS": "telco_churn",
        "DRIFTLOOP_CONFIG_OVERRIDES": json.dumps(FAST),
        "DRIFTLOOP_DATA_SCHEDULE": "none",
        "DRIFTLOOP_SENSOR_SCHEDULE": "none",
        "DRIFTLOOP_PROFILE_MAX_ROWS": "0",
    }
    os.environ.pop("DRIFTLOOP_SENSOR_POKE_S", None)  # the default poll is what is measured
    os.environ.pop("DRIFTLOOP_SENSOR_TIMEOUT_S", None)
    with temporary_stack(work, extra, log=lambda line: print(f"# {line}")) as layout:
        from driftloop.core.config import load_dataset_config
        from driftloop.core.settings import Settings
        from driftloop.core.tracking import get_client
        from driftloop.data import ingest, simulate
        from driftloop.monitoring import monitor
        from driftloop.serving import scoring_parts

        settings = Settings.from_env()
        cfg = load_dataset_config("telco_churn", settings)
        api = AirflowClient(layout.airflow_url, "admin", read_generated_password(layout.password_file))
        api.wait_for_dags(loop_dag_ids(cfg.name))
        sensor_dag, training_dag = (
            bus.dag_id(cfg.name, bus.DRIFT_SENSOR),
            bus.dag_id(cfg.name, bus.TRAINING_PIPELINE),
        )
        print(f"# champion v{train_champion(cfg, settings)}; sensor poll {settings.sensor_poll_s:g} s")

        run_id = api.trigger(sensor_dag)
        api.wait_task_state(sensor_dag, run_id, "wait_for_drift", ("deferred",), timeout_s=120)
        launches, states = watch_launches(api, sensor_dag, run_id, WAIT_S)
        print(f"# states seen while waiting {WAIT_S:.0f} s: {sorted(states)}")
        print(f"sensor_launches_per_hour_waiting {launches * 3600 / WAIT_S:.1f}")

        known = api.run_ids(training_dag)
        simulate.simulate_batch(cfg, 1, rows=1000, drift={"preset": "strong"}, settings=settings)
        ingest.ingest_batches(cfg, settings)
        scoring_parts.score_pending_batches(cfg, settings=settings)
        [monitored] = monitor.monitor_predictions(cfg, settings)["monitored"]
        crossed_s = get_client(settings).get_run(monitored["monitoring_run_id"]).info.end_time / 1000
        queued = api.wait_new_run(training_dag, known, run_type="operator_triggered", timeout_s=300)
        latency_s = iso_to_epoch(queued["queued_at"]) - crossed_s
        print(f"# drift share {monitored['drift_share']:.2f}; retrain run {queued['dag_run_id']}")
        print(f"sensor_crossing_to_queued_training_s {latency_s:.1f}")
        print(f"sensor_latency_vs_target_ratio {latency_s / LATENCY_TARGET_S:.2f}")
        api.wait_for_run(sensor_dag, run_id, timeout_s=120)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT_DIR / "plugins"))
    sys.exit(main())
