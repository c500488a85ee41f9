"""Drive the closed loop in-process with ``dag.test()``: used by the end-to-end test and the loop benchmark.

Each step runs one DAG for real (its tasks, MLflow, the state folder) but without a scheduler, so the steps
that assets and the drift sensor's trigger would start are started here, in the same order.
"""

from __future__ import annotations

import time
from typing import Any


def task_states(dag_run: Any) -> dict[str, str]:
    """task_id → state of a finished DAG run."""
    return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}


def operator_triggered_runs(dag_id: str) -> list[tuple[str, dict]]:
    """(run_id, conf) of runs of ``dag_id`` created by a TriggerDagRunOperator."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_type == "operator_triggered").all()
        return [(r.run_id, dict(r.conf or {})) for r in runs]


def drive_closed_loop(dags: dict[str, Any], cfg: Any, client: Any, batch_rows: int = 800) -> dict[str, Any]:
    """Reference → v1 → clean batch (no fire) → drifted batch → sensor fires → drift retrain → sensor again.

    Returns:
        Per step: ``(dag run state, {task_id: state})``, the operator-triggered training runs after each sensor
        check, the champion after v1, and ``seconds`` per DAG (summed over its runs) plus ``total``.
    """
    from driftloop import simulate

    seen: dict[str, Any] = {"seconds": {}}
    started = time.perf_counter()

    def run(key: str, dag_id: str, **kwargs: Any) -> None:
        t0 = time.perf_counter()
        dag_run = dags[dag_id].test(**kwargs)
        seen["seconds"][dag_id] = seen["seconds"].get(dag_id, 0.0) + time.perf_counter() - t0
        seen[key] = (str(getattr(dag_run.state, "value", dag_run.state)), task_states(dag_run))

    simulate.simulate_reference(cfg)
    run("data_1", "data_pipeline")
    run("train_1", "training_pipeline")
    seen["champion_after_v1"] = client.get_model_version_by_alias(cfg.registered_model_name, "champion").version

    simulate.simulate_batch(cfg, 1, rows=batch_rows)
    for dag_id in ("data_pipeline", "inference_pipeline", "monitoring_pipeline", "drift_sensor"):
        run(f"clean_{dag_id}", dag_id)
    seen["queued_after_clean"] = operator_triggered_runs("training_pipeline")

    simulate.simulate_batch(cfg, 2, rows=batch_rows, drift={"preset": "strong"})
    simulate.simulate_labels(cfg, 1)
    for dag_id in ("data_pipeline", "inference_pipeline", "monitoring_pipeline", "drift_sensor"):
        run(f"drift_{dag_id}", dag_id)
    seen["queued_after_drift"] = operator_triggered_runs("training_pipeline")

    conf = seen["queued_after_drift"][0][1] if seen["queued_after_drift"] else {}
    run("train_2", "training_pipeline", run_conf=conf)
    run("sensor_again", "drift_sensor")
    seen["queued_after_again"] = operator_triggered_runs("training_pipeline")
    seen["seconds"]["total"] = time.perf_counter() - started
    return seen
