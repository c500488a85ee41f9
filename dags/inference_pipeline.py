"""
### inference_pipeline: batch scoring with the champion

Scores every accepted batch that has no predictions yet with `models:/<name>@champion`, resolved once when
the run starts (`plan_scoring`), so moving the `champion` alias in the MLflow UI takes effect on the next run
with no Airflow change, and every part of a run scores with the same version.

A batch is cut into parts of `inference.chunk_rows` rows; `score_part` is mapped over them (one task
instance per part, on whichever Celery worker is free), and `score_pending_batches` combines each batch's
parts into `predictions/<batch_id>.parquet` (entity id, prediction, scores, reasons, model name, version, run
id, timestamp), then records its run in the inference experiment.

* **Runs on:** the `scoring-batches` asset, or by hand. **Outlet:** `predictions` (runs
  `monitoring_pipeline`).
* **Idempotent:** a scored batch is not scored again; a retried part rewrites the same objects; the parts'
  rows must add up to the batch's before anything is combined.
* **Fails fast** (no retry) when no version carries `champion`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowSkipException

from driftloop.core import alerts, bus
from driftloop_airflow import asset, dag_defaults, run_stage
from driftloop_airflow.factory import build_for_each_dataset

if TYPE_CHECKING:  # for the type checker only, so Airflow cannot infer multiple_outputs: each task says it
    from driftloop.serving.scoring_results import PartResult, PartValues, ScoringPlan, ScoringResult


def build(dataset: str) -> None:
    """One dataset's inference_pipeline."""

    @dag(
        dag_id=bus.dag_id(dataset, bus.INFERENCE_PIPELINE),
        schedule=[asset(dataset, "batches")],
        **dag_defaults(dataset, "inference", __doc__),
    )
    def inference_pipeline() -> None:
        @task(multiple_outputs=True)
        def plan_scoring() -> ScoringPlan:
            from driftloop.serving import scoring_parts

            return run_stage(dataset, scoring_parts.plan_scoring, alerts=alerts.move_alerts)

        @task
        def list_parts(planned: ScoringPlan) -> list[PartValues]:
            """The plan's parts, one mapped ``score_part`` each (Airflow maps over a whole XCom only)."""
            return planned["parts"]

        @task(map_index_template="{{ part_label }}", multiple_outputs=True)
        def score_part(part_values: PartValues) -> PartResult:
            from airflow.sdk import get_current_context

            from driftloop.serving import scoring_parts

            label = f"{part_values['batch_id']} part {part_values['part'] + 1}/{part_values['parts']}"
            get_current_context()["part_label"] = label  # type: ignore[typeddict-unknown-key]

            return run_stage(dataset, scoring_parts.score_part, part_values)

        @task(outlets=[asset(dataset, "predictions")], trigger_rule="none_failed", multiple_outputs=True)
        def score_pending_batches(planned: ScoringPlan) -> ScoringResult:
            from driftloop.serving import scoring_parts

            result = run_stage(dataset, scoring_parts.commit_scored_batches, planned)
            if not result["scored"]:
                raise AirflowSkipException("no batches waiting to be scored")
            return result

        planned = plan_scoring()
        parts = score_part.expand(part_values=list_parts(planned))  # type: ignore[arg-type]  # an XComArg
        parts >> score_pending_batches(planned)  # type: ignore[arg-type]  # resolved when the task runs

    inference_pipeline()


build_for_each_dataset(build)
