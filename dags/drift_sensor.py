"""
### drift_sensor: closes the loop by triggering retraining

A deferrable `DriftSensor` waits in Airflow's triggerer, reading the latest monitoring results from MLflow
every `DRIFTLOOP_SENSOR_POKE_S` seconds, and fires when the drift share crosses the dataset's
`monitoring.drift_share_threshold` or the live primary metric (F1, macro-F1 or RMSE, by task) is worse than
the champion's holdout value by more than `monitoring.performance_drop_threshold` (relative). It then triggers
its dataset's `training_pipeline` (`<dataset>__training_pipeline`) with the reason and the monitoring run id
in the conf, under the run id `drift__<monitoring run id>` (so one result can start one retrain only), and
tags that monitoring run in MLflow so it never fires again. A cooldown (`monitoring.cooldown_s`) holds back a
second retrain in one episode.

* **Waiting costs nothing:** the sensor starts in the triggerer, holds no worker slot and launches no task
  until something fires. By default one run waits until it fires and the next run starts right after
  (`@continuous`); `DRIFTLOOP_SENSOR_TIMEOUT_S` > 0 skips a run that waited that long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import dag, task

from driftloop.core import alerts, bus
from driftloop_airflow import dag_defaults, dag_settings, run_stage
from driftloop_airflow.factory import build_for_each_dataset
from driftloop_airflow.sensors import DriftSensor, NotedTriggerDagRunOperator

if TYPE_CHECKING:  # for the type checker only, so Airflow cannot infer multiple_outputs: the task says it
    from driftloop.monitoring.monitoring_results import FiredTrigger, RetrainingTrigger

WAIT_TASK = "wait_for_drift"


def build(dataset: str) -> None:
    """One dataset's drift_sensor: it triggers the same dataset's training_pipeline."""
    settings = dag_settings()

    @dag(
        dag_id=bus.dag_id(dataset, bus.DRIFT_SENSOR),
        schedule=settings.sensor_schedule,
        **dag_defaults(dataset, "monitoring", __doc__),
    )
    def drift_sensor() -> None:
        wait_for_drift = DriftSensor(
            task_id=WAIT_TASK,
            dataset=dataset,
            poll_s=settings.sensor_poll_s,
            timeout_s=settings.sensor_timeout_s,
        )
        trigger_training = NotedTriggerDagRunOperator(
            task_id="trigger_training",
            trigger_dag_id=bus.dag_id(dataset, bus.TRAINING_PIPELINE),
            trigger_run_id="{{ ti.xcom_pull(task_ids='" + WAIT_TASK + "')['trigger_run_id'] }}",
            conf=wait_for_drift.output,  # type: ignore[arg-type]  # an XComArg, rendered when the task runs
            skip_when_already_exists=True,
            note="retrain: {{ ti.xcom_pull(task_ids='" + WAIT_TASK + "')['detail'] }}",
        )

        @task(multiple_outputs=True)
        def mark_trigger_fired(trigger: RetrainingTrigger) -> FiredTrigger:
            from driftloop.monitoring import sensor

            return run_stage(
                dataset,
                sensor.mark_trigger_fired,
                trigger["monitoring_run_id"],
                trigger["trigger_run_id"],
                alerts=alerts.drift_alerts,
            )

        # The sensor's output is an XComArg, resolved when the task runs (apache/airflow#39514).
        wait_for_drift >> trigger_training >> mark_trigger_fired(wait_for_drift.output)  # type: ignore[arg-type]

    drift_sensor()


build_for_each_dataset(build)
