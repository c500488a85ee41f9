"""
### monitoring_pipeline: Evidently drift and live performance

Compares every newly scored batch (inputs and predicted scores) with the reference sample of the model that
scored it, using Evidently's data drift preset plus prediction drift. It logs the HTML report, the drift
share, the number of drifted columns and per-column scores to the monitoring experiment, tagged with the
champion version it judged. When labels have arrived for scored rows, it logs live F1/AUC and the relative F1
drop versus the champion's holdout, also for batches monitored before their labels came.

A batch is read in parts of `monitoring.part_rows` rows: `sample_part` is mapped over them (one task instance
per part, on whichever Celery worker is free) and keeps the rows with the smallest id hashes, so the sample is
the same however the batch is cut; `monitor_predictions` merges the parts' samples and logs the run.

* **Runs on:** the `predictions` asset, and hourly to pick up late labels.
* **Idempotent:** one monitoring run per inference run; a retried part rewrites the same objects; a rerun with
  nothing new writes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from driftloop.core import bus
from driftloop_airflow import asset, dag_defaults, run_stage
from driftloop_airflow.factory import build_for_each_dataset

if TYPE_CHECKING:  # for the type checker only, so Airflow cannot infer multiple_outputs: each task says it
    from driftloop.monitoring.monitoring_results import (
        MonitoringPartValues,
        MonitoringPlan,
        MonitoringResult,
        PartResult,
    )


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
        @task(multiple_outputs=True)
        def plan_monitoring() -> MonitoringPlan:
            from driftloop.monitoring import monitor

            return run_stage(dataset, monitor.plan_monitoring)

        @task
        def list_parts(planned: MonitoringPlan) -> list[MonitoringPartValues]:
            """The plan's parts, one mapped ``sample_part`` each (Airflow maps over a whole XCom only)."""
            return planned["parts"]

        @task(map_index_template="{{ part_label }}", multiple_outputs=True)
        def sample_part(part_values: MonitoringPartValues) -> PartResult:
            from airflow.sdk import get_current_context

            from driftloop.monitoring import samples

            label = samples.MonitoringPart.from_dict(part_values).label
            get_current_context()["part_label"] = label  # type: ignore[typeddict-unknown-key]
            return run_stage(dataset, samples.sample_part, part_values)

        @task(trigger_rule="none_failed", multiple_outputs=True)
        def monitor_predictions(planned: MonitoringPlan) -> MonitoringResult:
            from driftloop.monitoring import monitor

            return run_stage(dataset, monitor.commit_monitoring, planned)

        planned = plan_monitoring()
        parts = sample_part.expand(part_values=list_parts(planned))  # type: ignore[arg-type]  # an XComArg
        parts >> monitor_predictions(planned)  # type: ignore[arg-type]  # resolved when the task runs

    monitoring_pipeline()


build_for_each_dataset(build)
