"""
### champion_rollback: undo the last move of `champion`

Triggered by hand (conf `{"reason": "...", "to_version": "3", "override": false}`; `reason` required). Without
`to_version` it is an undo: `champion` goes back to the previous champion in the audit log's stack that passed
its gate, and running it again goes one step further back, never toggling between two versions (the rule is in
README, "Governance"). With `to_version` it moves `champion` there, refused when that version did not pass its
gate unless `override` is true (then audited as an override). The move is appended to the audit log with the
reason and this Airflow run, and alerted once (`champion_moved`). The next `inference_pipeline` run scores
with the restored version. The same is `driftloop rollback --reason "..." [--to V [--override]]` on the
command line, with the same answer.

* **Fails fast** when nothing below the current champion passed its gate, the target did not pass its gate, or
  no reason was given.
* **Idempotent:** a retried run finds its own entry in the audit log and moves nothing.
* **Ready when needed:** the DAG is created unpaused, so a rollback is one trigger away under `make up` and
  compose, with nothing to unpause first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import Param, dag, get_current_context, task

from driftloop.core import alerts, bus
from driftloop_airflow import airflow_ids, dag_defaults, run_stage
from driftloop_airflow.factory import build_for_each_dataset

if TYPE_CHECKING:  # for the type checker only, so Airflow cannot infer multiple_outputs: the task says it
    from driftloop.governance.governance_results import RollbackResult


def build(dataset: str) -> None:
    """One dataset's champion_rollback."""

    @dag(
        dag_id=bus.dag_id(dataset, bus.CHAMPION_ROLLBACK),
        schedule=None,
        is_paused_upon_creation=False,  # a rollback must be one trigger away under `make up` and compose
        params={
            "reason": Param("", type="string", description="why (recorded in the audit log; required)"),
            "to_version": Param(
                None, type=["null", "string"], description="target version (empty: last good champion)"
            ),
            "override": Param(False, type="boolean", description="allow a to_version that failed its gate"),
        },
        **dag_defaults(dataset, "governance", __doc__),
    )
    def champion_rollback() -> None:
        @task(multiple_outputs=True)
        def rollback_champion() -> RollbackResult:
            from airflow.sdk.exceptions import AirflowFailException

            from driftloop.governance import rollback

            context = get_current_context()
            conf = {**(context.get("params") or {}), **(context["dag_run"].conf or {})}
            reason = str(conf.get("reason", "")).strip()
            if not reason:
                raise AirflowFailException('a rollback needs a reason: trigger with conf {"reason": "..."}')
            ids = airflow_ids()
            return run_stage(
                dataset,
                rollback.rollback_champion,
                alerts=alerts.move_alerts,
                actor=f"{ids['airflow_dag_id']}/{ids['airflow_run_id']}",
                reason=reason,
                request_id=ids["airflow_run_id"],
                to_version=str(conf["to_version"]) if conf.get("to_version") else None,
                override=bool(conf.get("override", False)),
            )

        rollback_champion()

    champion_rollback()


build_for_each_dataset(build)
