"""
### training_pipeline: PyCaret training, registration and the champion gate

Trains on a training snapshot (the newest, or `snapshot_uri` from the run conf) with PyCaret: `setup`,
`compare_models`, `tune_model`, `finalize_model`, scored on a held-out split. It logs the leaderboard, params,
holdout metrics and the governance evidence (SHAP by original feature, permutation importance, a surrogate
tree, fairness per sensitive attribute) to MLflow and registers a model version with lineage tags. The new
version gets alias `challenger`. `champion` moves only through the gate (floors, beating the champion on the
same holdout and the latest labelled production window, fairness limits, latency, size, behavioural tests) and
the dataset's policy (`auto` moves it, `manual` marks the version ready). The verdict, every check and the
model card land on the version; every move of `champion` is appended to the audit log.

* **Runs on:** the `training-snapshot` asset, the `drift_sensor` (conf `reason`, `monitoring_run_id`) or by
  hand (conf `snapshot_uri`, and `seed` to train unchanged inputs again on purpose).
* **One version per training key:** a training is keyed by its snapshot, its effective config and the code
  version. A trigger for a key that already has a version (a drift retrain of the snapshot a `new_data`
  retrain just trained on, a retry, two triggers at once) registers nothing, is recorded on that version and
  hands it to the gate. A drift retrain of the very snapshot the champion was trained on waits for labels.
* **Same evidence, same verdict:** the gate's rule follows whether the champion is degraded on its newest
  monitoring result, not which trigger asked; a version judged in the same state keeps its verdict.
* **Fails fast** (no retry) when the first version misses the floors or there is no snapshot to train on.
* **A rejected challenger is an outcome, not a fault:** the run succeeds, its note says
  `challenger vN rejected (champion stays vM): <reason>` and a `gate_rejected` alert goes out.
* **Approval (`gates.policy: manual`):** a passing version waits in `await_approval` (no worker slot) with
  the gate's evidence; `apply_approval` moves `champion` on Approve (audited as `airflow:<user>`) or records a
  Reject. `gates.approval_deadline_s` after the run was queued, an unfinished run sends `approval_overdue`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import dag, get_current_context, task

from driftloop.core import alerts, bus
from driftloop_airflow import airflow_ids, asset, dag_defaults, run_stage
from driftloop_airflow.approval import approval_deadline, approval_task
from driftloop_airflow.factory import build_for_each_dataset

if TYPE_CHECKING:  # for the type checker only, so Airflow cannot infer multiple_outputs: each task says it
    from driftloop.governance.governance_results import ApprovalPlan, ApprovalResult, TrainedPromotion
    from driftloop.training.training_results import TrainResult


def build(dataset: str) -> None:
    """One dataset's training_pipeline."""

    @dag(
        dag_id=bus.dag_id(dataset, bus.TRAINING_PIPELINE),
        schedule=[asset(dataset, "snapshot")],
        deadline=approval_deadline(dataset),
        **dag_defaults(dataset, "training", __doc__),
    )
    def training_pipeline() -> None:
        @task(multiple_outputs=True)
        def train_model() -> TrainResult:
            from driftloop.training import train

            context = get_current_context()
            conf = dict(context["dag_run"].conf or {})
            run_type = getattr(context["dag_run"].run_type, "value", context["dag_run"].run_type)
            default_reason = "new_data" if run_type == "asset_triggered" else "manual"
            trigger = {"reason": conf.get("reason", default_reason), **conf, **airflow_ids()}
            return run_stage(
                dataset, train.train_model, snapshot_uri=conf.get("snapshot_uri"), trigger=trigger
            )

        @task(multiple_outputs=True)
        def promote_model(trained: TrainResult) -> TrainedPromotion:
            from driftloop.governance import promotion

            ids = airflow_ids()
            actor = f"{ids['airflow_dag_id']}/{ids['airflow_run_id']}"
            return run_stage(
                dataset, promotion.promote_trained, trained, alerts=alerts.promotion_alerts, actor=actor
            )

        @task.short_circuit
        def plan_approval(promoted: TrainedPromotion) -> ApprovalPlan | None:
            from driftloop.governance import approval

            ids = airflow_ids()
            request_id = f"{ids['airflow_dag_id']}/{ids['airflow_run_id']}"
            plan = run_stage(dataset, approval.plan_approval, promoted, request_id=request_id)
            return plan if plan["needed"] else None  # None skips the approval tasks

        @task(multiple_outputs=True)
        def apply_approval(request: ApprovalPlan, answer: dict[str, Any]) -> ApprovalResult:
            from driftloop.governance import approval  # answer: the HITL task's response

            return run_stage(dataset, approval.apply_decision, request, answer, alerts=alerts.rollout_alerts)

        request = plan_approval(promote_model(train_model()))  # type: ignore[arg-type]  # XComArgs
        apply_approval(request, approval_task(request).output)  # type: ignore[arg-type]

    training_pipeline()


build_for_each_dataset(build)
