"""
### registry_watch: every move of `champion` is on record and alerted within a minute

The MLflow registry keeps no history of its aliases and says nothing when a person moves one, so this DAG
watches `champion` for moves made outside Driftloop (the MLflow UI or REST API). A deferrable
`RegistryWatchSensor` waits in Airflow's triggerer and compares the registry with Driftloop's audit log every
`DRIFTLOOP_WATCH_POKE_S` seconds (default 15). It fires when `champion` differs from the log's last entry, or
when a recorded move was never alerted (a `driftloop champion` run from a shell without the alert settings, a
process that died between its move and its alert). Then `watch_champion` appends an entry for the move (when,
from which version to which, and whether the new champion had passed the gate: a human override of a rejected
version is allowed and flagged), rebuilds the model cards of both versions from their logged evidence, and
sends one `champion_moved` alert per move not alerted yet. `inference_pipeline` records such moves too before
it scores.

* **Waiting costs nothing:** the sensor starts in the triggerer, holds no worker slot and launches no task
  until something fires. One run waits until it fires and the next starts right after (`@continuous`, set by
  `DRIFTLOOP_WATCH_SCHEDULE`; `none` switches the watch off). The DAG is created unpaused.
* **Idempotent:** the check only reads; a registry that matches the log appends nothing, and each move is
  alerted once (the alert is keyed by its audit entry).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import dag, task

from driftloop.core import alerts, bus
from driftloop_airflow import dag_defaults, dag_settings, run_stage
from driftloop_airflow.factory import build_for_each_dataset
from driftloop_airflow.sensors import RegistryWatchSensor

if TYPE_CHECKING:  # for the type checker only, so Airflow cannot infer multiple_outputs: the task says it
    from driftloop.governance.governance_results import WatchResult

WAIT_TASK = "wait_for_move"


def build(dataset: str) -> None:
    """One dataset's registry_watch."""
    settings = dag_settings()

    @dag(
        dag_id=bus.dag_id(dataset, bus.REGISTRY_WATCH),
        schedule=settings.watch_schedule,
        is_paused_upon_creation=False,  # the watch must run under `make up` and compose without a click
        **dag_defaults(dataset, "governance", __doc__),
    )
    def registry_watch() -> None:
        wait_for_move = RegistryWatchSensor(task_id=WAIT_TASK, dataset=dataset, poll_s=settings.watch_poll_s)

        @task(multiple_outputs=True)
        def watch_champion() -> WatchResult:
            from driftloop.governance import move_watch

            return run_stage(dataset, move_watch.watch_champion, alerts=alerts.move_alerts)

        wait_for_move >> watch_champion()

    registry_watch()


build_for_each_dataset(build)
