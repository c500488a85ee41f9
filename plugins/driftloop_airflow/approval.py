"""The approval steps of ``training_pipeline`` on the Airflow side: the human-in-the-loop task and the
deadline alert.

:func:`approval_task` is the task a person answers (Browse > Required Actions in the Airflow UI, or the HITL
REST API ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails``):
its subject and Markdown body are :func:`driftloop.governance.approval.plan_approval`'s, pulled from XCom
when it runs. On Airflow 3.3 it waits in the ``awaiting_input`` state: no worker slot, no trigger. It has no
timeout and no default answer, so nothing is decided without a person; :func:`approval_deadline` only
alerts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

APPROVE, REJECT = "Approve", "Reject"  # driftloop.governance.approval.APPROVE / REJECT
APPROVAL_DEADLINE_CALLBACK = "driftloop_airflow.notifiers.approval_deadline_missed"
COMMENT_PARAM = "comment"


def approval_task(request: Any, task_id: str = "await_approval") -> Any:
    """The HITL task, downstream of ``request`` (the XComArg of the task returning
    :func:`~driftloop.governance.approval.plan_approval`'s ``subject`` and ``body``), with the options Approve
    and Reject and a free-text comment."""
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk import Param

    pulled = f"ti.xcom_pull(task_ids='{request.operator.task_id}')"
    waiting = HITLOperator(
        task_id=task_id,
        subject="{{ " + pulled + "['subject'] }}",
        body="{{ " + pulled + "['body'] }}",
        options=[APPROVE, REJECT],
        # Nullable, so the form does not require it: Approve and Reject stay enabled without a comment.
        params={
            COMMENT_PARAM: Param(None, type=["null", "string"], title="Comment (goes into the audit log)")
        },
    )
    request >> waiting
    return waiting


def approval_deadline(dataset: str) -> Any:
    """The training DAG's approval deadline: a ``DeadlineAlert`` ``gates.approval_deadline_s`` after a run
    was queued that sends an ``approval_overdue`` alert (:func:`driftloop_airflow.notifiers.
    approval_deadline_missed`); None when the dataset's config (as the catalog read it) sets none."""
    from driftloop_airflow.factory import read_deployment_catalog

    entry = next((e for e in read_deployment_catalog().entries if e.name == dataset), None)
    seconds = entry.config.gates.approval_deadline_s if entry is not None and entry.config else None
    if not seconds:
        return None
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(seconds=seconds),
        callback=AsyncCallback(APPROVAL_DEADLINE_CALLBACK, kwargs={"dataset": dataset}),
        name=f"{dataset}__approval_deadline",
    )
