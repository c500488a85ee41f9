"""
### drift_sensor: closes the loop by triggering retraining

A `DriftSensor` reads the latest monitoring results from MLflow and fires when the drift share crosses the
dataset's `monitoring.drift_share_threshold` or live F1 dropped more than `monitoring.f1_drop_threshold` (relative
to the champion's holdout). It then triggers `training_pipeline` with the reason and the monitoring run id in
the conf, and tags that monitoring run in MLflow so the same result never fires twice. A cooldown
(`monitoring.cooldown_s`) holds back a second retrain in one episode.

* **Sensor mode:** reschedule (no worker slot is held while waiting); skipped quietly when nothing fires before
  `DRIFTLOOP_SENSOR_TIMEOUT_S`.
"""

from __future__ import annotations

import os

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task

from driftloop import monitoring
from driftloop_airflow import dag_defaults, load_config, schedule_from_env
from driftloop_airflow.sensors import DriftSensor

SENSOR_POKE_S = int(os.environ.get("DRIFTLOOP_SENSOR_POKE_S", "60"))
SENSOR_TIMEOUT_S = int(os.environ.get("DRIFTLOOP_SENSOR_TIMEOUT_S", "840"))
TRIGGER_XCOM = "ti.xcom_pull(task_ids='wait_for_drift')"


@dag(
    dag_id="drift_sensor",
    schedule=schedule_from_env("DRIFTLOOP_SENSOR_SCHEDULE", "*/15 * * * *"),
    **dag_defaults("monitoring", __doc__),
)
def drift_sensor():
    wait_for_drift = DriftSensor(
        task_id="wait_for_drift",
        mode="reschedule",
        poke_interval=SENSOR_POKE_S,
        timeout=SENSOR_TIMEOUT_S,
        soft_fail=True,
    )
    trigger_training = TriggerDagRunOperator(
        task_id="trigger_training",
        trigger_dag_id="training_pipeline",
        trigger_run_id="drift__{{ " + TRIGGER_XCOM + "['monitoring_run_id'] }}",
        conf=wait_for_drift.output,
        skip_when_already_exists=True,
    )

    @task
    def mark_trigger_fired(trigger: dict) -> dict:
        run_id = f"drift__{trigger['monitoring_run_id']}"
        return monitoring.mark_trigger_fired(load_config(), trigger["monitoring_run_id"], run_id)

    wait_for_drift >> trigger_training >> mark_trigger_fired(wait_for_drift.output)


drift_sensor()
