"""Fan-out of a large batch over Celery workers: a 1M-row batch scored and monitored with 1 worker, then with
2, on the native production topology (tests/topology/harness.py: Postgres, Redis, CeleryExecutor, MLflow,
moto's S3 server as the object store, every process on its own disk).

1. Starts the topology with two single-slot workers, trains and promotes a random-forest champion (2 folds,
   no tuning) into its MLflow from this process, with the data zones in the bucket. A forest with top-3
   reasons per row is the costly scoring that fan-out is for (8.2k rows/s in the capacity benchmark); a
   logistic regression scores 1M rows in seconds, where task start-up would dominate.
2. With worker 2 stopped, lands a ``BENCH_FANOUT_ROWS``-row batch (default 1,000,000) and triggers
   ``data_pipeline``; the asset runs ``inference_pipeline`` (``score_part`` mapped over parts of
   ``inference.chunk_rows`` rows) and then ``monitoring_pipeline`` (``sample_part`` mapped over parts of
   ``monitoring.part_rows`` rows). Times both runs from Airflow's own start
   and end dates.
3. Starts worker 2 again and does the same with another batch of the same size.

Prints one figure per line; ``fanout_speedup_2_vs_1_workers`` is the 1-worker time over the 2-worker time of
scoring plus monitoring, measured in the same run on the same machine. Target: >= 1.6.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "include"), str(PROJECT_DIR / "plugins")]

ROWS = int(os.environ.get("BENCH_FANOUT_ROWS", "1000000"))
DATASET = "telco_churn"


def land_batch(cfg, frame, rows: int, name: str) -> None:
    """Write ``rows`` resampled rows with fresh unique ids into the landing zone (the bucket), in chunks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from driftloop.core.state import StatePaths
    from driftloop.core.storage import atomic_path

    target = StatePaths.for_dataset(cfg).landing_dir / f"{name}.parquet"
    with atomic_path(target) as tmp:
        writer = None
        written = 0
        while written < rows:
            n = min(100_000, rows - written)
            part = frame.sample(n=n, replace=True, random_state=written).reset_index(drop=True)
            part[cfg.id_column] = [f"{name}-{written + i:08d}" for i in range(n)]
            table = pa.Table.from_pandas(part[[cfg.id_column, *cfg.features]], preserve_index=False)
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            written += n
        writer.close()


def run_round(stack, cfg, frame, name: str) -> dict[str, float]:
    """Land one batch, run data → inference → monitoring through the scheduler; seconds of the last two."""
    from driftloop.core import bus
    from driftloop_ops.loop import airflow_run_seconds

    api = stack.airflow
    ids = {
        "data": bus.dag_id(DATASET, bus.DATA_PIPELINE),
        "inference": bus.dag_id(DATASET, bus.INFERENCE_PIPELINE),
        "monitoring": bus.dag_id(DATASET, bus.MONITORING_PIPELINE),
    }
    known = {stage: api.run_ids(dag_id) for stage, dag_id in ids.items()}
    land_batch(cfg, frame, ROWS, name)
    data_run = api.trigger(ids["data"])
    data = api.wait_for_run(ids["data"], data_run, timeout_s=1800)
    assert data["state"] == "success", api.describe_run(ids["data"], data_run)
    seconds = {"ingest": airflow_run_seconds(data) or 0.0}
    for stage in ("inference", "monitoring"):
        run = api.wait_new_run(ids[stage], known[stage], run_type="asset_triggered", timeout_s=600)
        done = api.wait_for_run(ids[stage], run["dag_run_id"], timeout_s=3600)
        assert done["state"] == "success", api.describe_run(ids[stage], run["dag_run_id"])
        seconds[stage] = airflow_run_seconds(done) or 0.0
        mapped = "score_part" if stage == "inference" else "sample_part"
        states = api.task_instances(ids[stage], run["dag_run_id"])
        hosts = {t["hostname"] for t in states if t["task_id"] == mapped}
        parts = sum(1 for t in states if t["task_id"] == mapped)
        print(f"# {name}: {stage}: {parts} {mapped} task(s) on {sorted(hosts)}", flush=True)
    return seconds


def main() -> int:
    from tests.constants import FAST_OVERRIDES
    from tests.topology.harness import Stack, wait_for

    root = Path(tempfile.mkdtemp(prefix="driftloop-bench-fanout-"))
    stack = Stack(root=root, workers=2, worker_concurrency=1)
    started = time.monotonic()
    try:
        stack.start()
        print(f"# topology up in {time.monotonic() - started:.0f} s (logs: {stack.logs_dir})", flush=True)
        env = stack.base_env()
        for key in ("DRIFTLOOP_DATA_URI", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                    "MLFLOW_TRACKING_PASSWORD", "DRIFTLOOP_PII_SALT", "DRIFTLOOP_AUDIT_DB_URI"):  # fmt: skip
            os.environ[key] = env[key]
        os.environ["DRIFTLOOP_HOME"] = str(root / "bench-home")
        forest = {**FAST_OVERRIDES, "training": {**FAST_OVERRIDES["training"], "models": ["rf"]}}
        os.environ["DRIFTLOOP_CONFIG_OVERRIDES"] = json.dumps(forest)

        from driftloop.core import bus
        from driftloop.core.config import load_dataset_config
        from driftloop.data import ingest, simulate, snapshots
        from driftloop.data.sources import load_source_frame
        from driftloop.governance.promotion import set_champion
        from driftloop.training import train

        cfg = load_dataset_config(DATASET)
        simulate.simulate_reference(cfg)
        ingest.ingest_batches(cfg)
        snapshot = snapshots.build_snapshot(cfg)
        trained = train.train_model(cfg, snapshot["snapshot_uri"], trigger={"reason": "manual"})
        # A speed benchmark: the forest serves by an audited override whatever the gate would say of it.
        set_champion(cfg, trained["model_version"], actor="bench_fanout", reason="scoring benchmark")
        frame = load_source_frame(cfg)
        dag_ids = [bus.dag_id(DATASET, s) for s in (bus.DATA_PIPELINE, bus.INFERENCE_PIPELINE,
                                                     bus.MONITORING_PIPELINE)]  # fmt: skip
        stack.airflow.wait_for_dags(dag_ids, timeout_s=300)

        stack.kill_worker(2)
        one = run_round(stack, cfg, frame, "one_worker")
        stack.start_worker(2)
        wait_for(lambda: len(stack.celery_ping()) == 2, 180, "worker 2 to answer ping", 2)
        two = run_round(stack, cfg, frame, "two_workers")
    finally:
        stack.teardown()
    print(f"fanout_rows {ROWS}")
    print(f"fanout_parts.scoring {max(1, -(-ROWS // cfg.inference.chunk_rows))}")
    print(f"fanout_parts.monitoring {max(1, -(-ROWS // cfg.monitoring.part_rows))}")
    for label, seconds in (("1_worker", one), ("2_workers", two)):
        print(f"fanout_score_s.{label} {seconds['inference']:.1f}")
        print(f"fanout_monitor_s.{label} {seconds['monitoring']:.1f}")
    total_one = one["inference"] + one["monitoring"]
    total_two = two["inference"] + two["monitoring"]
    print(f"fanout_score_speedup_2_vs_1_workers {one['inference'] / two['inference']:.2f}")
    print(f"fanout_monitor_speedup_2_vs_1_workers {one['monitoring'] / two['monitoring']:.2f}")
    print(f"fanout_speedup_2_vs_1_workers {total_one / total_two:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
