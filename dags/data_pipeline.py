"""
### data_pipeline: the front door for batches and late labels

**Starts when a file lands** (`DRIFTLOOP_DATA_SCHEDULE=on_arrival`, the default): the triggerer lists the
landing zones (`landing/batches/`, `landing/labels/`) every `DRIFTLOOP_LANDING_POKE_S` seconds and announces
each new file once: nothing runs while nothing lands (a cron expression polls instead; `none`: manual runs).
The run validates every landed file against the contract, accepts good rows, quarantines bad files and rows
with a reason, and builds a content-addressed training snapshot of all labelled rows, logged to MLflow.

* **Outlets:** `scoring-batches` when new batches are ready to score (runs `inference_pipeline`);
  `training-snapshot` when the new data warrants training on its own (runs `training_pipeline`).
* **Fails** (after the good batches are processed) when a file or batch was quarantined, naming each one and
  why (`quarantine/<batch_id>/reason.json`). A file a failed run left in landing is not announced again until
  it changes: the next arrival's run or a manual run retries it.
* **Idempotent:** a replayed file is quarantined as a replay and the same data gives the same snapshot.
* **Skips** the snapshot tasks while no labelled row has arrived yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowSkipException

from driftloop.core import alerts, bus, errors
from driftloop_airflow import asset, dag_defaults, dag_settings, data_schedule, fail_fast, run_stage
from driftloop_airflow.factory import build_for_each_dataset

if TYPE_CHECKING:  # for the type checker only, so Airflow cannot infer multiple_outputs: each task says it
    from driftloop.data.data_results import BatchIngestResult, DataRunResult, IngestResult, SnapshotResult
    from driftloop.monitoring.retraining import RetrainingDecision


def build(dataset: str) -> None:
    """One dataset's data_pipeline."""

    @dag(
        dag_id=bus.dag_id(dataset, bus.DATA_PIPELINE),
        schedule=data_schedule(dataset, dag_settings()),
        **dag_defaults(dataset, "data", __doc__),
    )
    def data_pipeline() -> None:
        @task(multiple_outputs=True)
        def ingest_batches() -> BatchIngestResult:
            from driftloop.data import ingest

            return run_stage(dataset, ingest.ingest_batches, alerts=alerts.quarantine_alerts)

        @task(multiple_outputs=True)
        def ingest_labels() -> IngestResult:
            from driftloop.data import ingest

            return run_stage(dataset, ingest.ingest_labels, alerts=alerts.quarantine_alerts)

        @task(multiple_outputs=True)
        def build_snapshot() -> SnapshotResult:
            from driftloop.data import snapshots

            return run_stage(dataset, snapshots.build_snapshot, skip_on=(errors.NoLabelledData,))  # no labels

        @task(multiple_outputs=True)
        def record_snapshot(snapshot: SnapshotResult) -> DataRunResult:
            from driftloop.data import snapshots

            return run_stage(dataset, snapshots.record_snapshot, snapshot["snapshot_hash"])

        @task(outlets=[asset(dataset, "snapshot")], multiple_outputs=True)
        def announce_snapshot(snapshot: SnapshotResult) -> RetrainingDecision:
            from driftloop.monitoring import retraining

            decision = run_stage(dataset, retraining.decide_retraining, snapshot)
            if not decision["train"]:
                raise AirflowSkipException(decision["reason"])
            return decision

        @task(outlets=[asset(dataset, "batches")])
        def announce_batches(ingested: BatchIngestResult) -> list[str]:
            if not ingested["scoring_batch_ids"]:
                raise AirflowSkipException("no new scoring batches")
            return ingested["scoring_batch_ids"]

        @task
        def check_quarantine(ingested: BatchIngestResult, labels: IngestResult) -> None:
            from driftloop.data import ingest

            with fail_fast():  # a verdict on the data: retrying cannot help
                ingest.raise_for_quarantine(ingested, labels)

        batches, labels = ingest_batches(), ingest_labels()
        [batches, labels] >> (snapshot := build_snapshot())
        record_snapshot(snapshot)  # type: ignore[arg-type]  # XComArgs, resolved when the tasks run (#39514)
        announce_snapshot(snapshot)  # type: ignore[arg-type]
        announce_batches(batches)  # type: ignore[arg-type]
        check_quarantine(batches, labels)  # type: ignore[arg-type]

    data_pipeline()


build_for_each_dataset(build)
