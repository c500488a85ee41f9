"""
### monitoring_pipeline: Evidently drift and live performance

Compares every newly scored batch (inputs and predicted scores) with the reference sample of the model that
scored it, using Evidently's data drift preset plus prediction drift. It logs the HTML report, the drift
share, the number of drifted columns and per-column scores to the monitoring experiment, tagged with the
champion version it judged. When labels have arrived for scored rows, it logs live F1/AUC and the relative F1
drop versus the champion's holdout, also for batches monitored before their labels came.

* **Runs on:** the `predictions` asset, and hourly to pick up late labels.
* **Idempotent:** one monitoring run per inference run; a rerun with nothing new writes nothing.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from driftloop.core import bus
from driftloop_airflow import asset, dag_defaults, run_stage
from driftloop_airflow.factory import build_for_each_dataset


def build(dataset: str) -> None:
    """One dataset's monitoring_pipeline."""

    @dag(
        dag_id=bus.dag_id(dataset, bus.MONITORING_PIPELINE),
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable("17 * * * *", timezone="UTC"),
            assets=[asset(dataset, "predictions")],
        ),
        **dag_defaults(dataset, "monitoring", __doc__),
    )
    def monitoring_pipeline() -> None:
        @task
        def monitor_predictions() -> dict[str, Any]:
            from driftloop.monitoring import monitor

            return run_stage(dataset, monitor.monitor_predictions)

        monitor_predictions()

    monitoring_pipeline()


build_for_each_dataset(build)
