"""
### registry_watch: every move of `champion` is on record

The MLflow registry keeps no history of its aliases, so this DAG compares the registry with Driftloop's audit
log every few minutes and appends an entry for any move of `champion` made outside Driftloop (the MLflow UI or
REST API): when, from which version to which, and whether the new champion had passed the gate (a human
override of a rejected version is allowed and flagged), then rebuilds the model cards of both versions from
their logged evidence. `inference_pipeline` records such moves too before it scores.

* **Schedule:** `DRIFTLOOP_WATCH_SCHEDULE` (default every 5 minutes; `none` to switch it off).
* **Idempotent:** a registry that matches the last entry appends nothing.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from driftloop.core import bus
from driftloop_airflow import dag_defaults, dag_settings, run_stage
from driftloop_airflow.factory import build_for_each_dataset


def build(dataset: str) -> None:
    """One dataset's registry_watch."""
    settings = dag_settings()

    @dag(
        dag_id=bus.dag_id(dataset, bus.REGISTRY_WATCH),
        schedule=settings.watch_schedule,
        **dag_defaults(dataset, "governance", __doc__),
    )
    def registry_watch():
        @task
        def reconcile_champion() -> dict | None:
            from driftloop.governance import promotion

            return run_stage(dataset, promotion.reconcile_and_refresh)

        reconcile_champion()

    registry_watch()


build_for_each_dataset(build)
