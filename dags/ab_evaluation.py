"""
### ab_evaluation: served traffic into monitoring, and the champion vs challenger decision

Works on what `driftloop serve` logs (every served row: inputs, score, arm, model version, request and entity
id) and on the labels that arrived for it (file drops or `POST /labels`, accepted by `data_pipeline`).

* **export_served_windows:** each closed window of served traffic (`serving.window_s`) becomes an accepted
  scoring batch, a predictions partition and a finished inference run per model version, like a scored batch.
  Outlet: `predictions`, so `monitoring_pipeline` computes drift and live F1/AUC on served traffic and the
  drift sensor's performance trigger fires on served labels.
* **evaluate_ab:** per-arm accuracy, F1 and AUC on labelled entities; a fixed-horizon two-proportion test
  sized by a power analysis plus an always-valid sequential test (A/B), or McNemar and a paired bootstrap
  (shadow). The decision (`promote_challenger`, `keep_champion`, `not_enough_data`) is a run in
  `driftloop/<dataset>/serving`; a promotion follows the dataset's `gates.policy` through the registry.
* **advance_rollout:** when the challenger is in a staged rollout (`rollout.stages`), judge its stage on what
  was served since it began: advance (the last stage makes it champion), hold, or roll back at once when a
  guardrail breaks (error share, p99 latency, live accuracy credibly worse, estimated accuracy before labels).
  Every stage entered is audited and alerted once. Skipped when no rollout runs.
* **Idempotent:** an exported window is never exported twice; the same look at the same data is recorded once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowSkipException

from driftloop.core import alerts, bus
from driftloop_airflow import airflow_ids, asset, dag_defaults, dag_settings, run_stage
from driftloop_airflow.factory import build_for_each_dataset

if TYPE_CHECKING:  # for the type checker only, so Airflow cannot infer multiple_outputs: each task says it
    from driftloop.serving.online.rollout import RolloutResult
    from driftloop.serving.online.serving_results import AbEvaluation, ExportResult


def build(dataset: str) -> None:
    """One dataset's ab_evaluation."""
    settings = dag_settings()

    @dag(
        dag_id=bus.dag_id(dataset, bus.AB_EVALUATION),
        schedule=settings.ab_schedule,
        **dag_defaults(dataset, "serving", __doc__),
    )
    def ab_evaluation() -> None:
        @task(outlets=[asset(dataset, "predictions")], multiple_outputs=True)
        def export_served_windows() -> ExportResult:
            from driftloop.serving.online import export

            result = run_stage(dataset, export.export_served_windows)
            if not result["exported"]:
                raise AirflowSkipException(
                    f"no closed window of served traffic to export (until {result['until']})"
                )
            return result

        @task(multiple_outputs=True)
        def evaluate_ab() -> AbEvaluation:
            from driftloop.serving.online import ab_decision

            return run_stage(
                dataset,
                ab_decision.evaluate_ab,
                actor=f"ab_evaluation/{airflow_ids()['airflow_run_id']}",
                alerts=alerts.ab_alerts,
            )

        @task(multiple_outputs=True)
        def advance_rollout() -> RolloutResult:
            from driftloop.serving.online import rollout

            result = run_stage(
                dataset,
                rollout.advance_rollout,
                actor=f"ab_evaluation/{airflow_ids()['airflow_run_id']}",
                alerts=alerts.rollout_alerts,
            )
            if result["action"] == "none":
                raise AirflowSkipException(result["reason"])
            return result

        export_served_windows()
        evaluate_ab() >> advance_rollout()

    ab_evaluation()


build_for_each_dataset(build)
