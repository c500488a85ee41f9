"""
### champion_rollback: put the previous champion back

Triggered by hand (conf `{"reason": "..."}`, required): moves `champion` back to the version it pointed at
    before
its last move, as recorded in the audit log, and appends the rollback to the log with the reason and the
Airflow run that did it. The next `inference_pipeline` run scores with the restored version. The same is
`driftloop rollback --reason "..."` on the command line.

* **Fails fast** when there is no earlier champion to return to, or no reason was given.
* **Idempotent:** a retried run finds its own entry in the audit log and moves nothing again.
"""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task

from driftloop.core import bus
from driftloop.governance import promotion
from driftloop_airflow import airflow_ids, dag_defaults, run_stage
from driftloop_airflow.factory import build_for_each_dataset


def build(dataset: str) -> None:
    """One dataset's champion_rollback."""

    @dag(
        dag_id=bus.dag_id(dataset, bus.CHAMPION_ROLLBACK),
        schedule=None,
        **dag_defaults(dataset, "governance", __doc__),
    )
    def champion_rollback():
        @task
        def rollback_champion() -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            reason = (get_current_context()["dag_run"].conf or {}).get("reason", "").strip()
            if not reason:
                raise AirflowFailException('a rollback needs a reason: trigger with conf {"reason": "..."}')
            ids = airflow_ids()
            return run_stage(
                dataset,
                promotion.rollback_champion,
                actor=f"{ids['airflow_dag_id']}/{ids['airflow_run_id']}",
                reason=reason,
                request_id=ids["airflow_run_id"],
            )

        rollback_champion()

    champion_rollback()


build_for_each_dataset(build)
