"""
### inference_pipeline: batch scoring with the champion

Scores every accepted batch that has no predictions yet with `models:/<name>@champion`, resolved when the run
starts, so moving the `champion` alias in the MLflow UI takes effect on the next run with no Airflow change.
Each batch gets `predictions/<batch_id>.parquet` (entity id, score, 0/1 prediction, model name, version, run
id, timestamp) and a run in the inference experiment. Batches are read and written in chunks.

* **Runs on:** the `scoring-batches` asset, or by hand. **Outlet:** `predictions` (runs
  `monitoring_pipeline`).
* **Idempotent:** a scored batch is not scored again; a rerun after a crash rewrites the same partition.
* **Fails fast** (no retry) when no version carries `champion`.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowSkipException

from driftloop.core import alerts, bus
from driftloop_airflow import asset, dag_defaults, run_stage
from driftloop_airflow.factory import build_for_each_dataset


def build(dataset: str) -> None:
    """One dataset's inference_pipeline."""

    @dag(
        dag_id=bus.dag_id(dataset, bus.INFERENCE_PIPELINE),
        schedule=[asset(dataset, "batches")],
        **dag_defaults(dataset, "inference", __doc__),
    )
    def inference_pipeline() -> None:
        @task(outlets=[asset(dataset, "predictions")])
        def score_pending_batches() -> dict[str, Any]:
            from driftloop.serving import batch_scoring

            result = run_stage(dataset, batch_scoring.score_pending_batches, alerts=alerts.move_alerts)
            if not result["scored"]:
                raise AirflowSkipException("no batches waiting to be scored")
            return result

        score_pending_batches()

    inference_pipeline()


build_for_each_dataset(build)
