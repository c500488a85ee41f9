"""
### training_pipeline: PyCaret training, registration and the champion gate

Trains on a training snapshot (the newest, or `snapshot_uri` from the run conf) with PyCaret: `setup`,
`compare_models`, `tune_model`, `finalize_model`, scored on a held-out split. It logs the leaderboard, params,
holdout metrics and SHAP summary to MLflow and registers a model version with lineage tags (snapshot, DAG run,
git commit, trigger reason). The new version gets alias `challenger`. `champion` moves only through the gate:
a first version must meet the absolute floors, and a later one must beat the champion on the same holdout.

* **Runs on:** the `training-snapshot` asset, the `drift_sensor` (conf `reason`, `monitoring_run_id`) or by hand.
* **Idempotent:** a retry of the same run reuses the registered version instead of registering another.
* **Fails fast** (no retry) when the first version misses the floors or there is no snapshot to train on.
"""

from __future__ import annotations

from airflow.sdk import dag, get_current_context, task

from driftloop import registry, training
from driftloop_airflow import airflow_ids, asset, dag_defaults, run_stage


@dag(dag_id="training_pipeline", schedule=[asset("snapshot")], **dag_defaults("training", __doc__))
def training_pipeline():
    @task
    def train_model() -> dict:
        context = get_current_context()
        conf = dict(context["dag_run"].conf or {})
        run_type = getattr(context["dag_run"].run_type, "value", context["dag_run"].run_type)
        default_reason = "new_data" if run_type == "asset_triggered" else "manual"
        trigger = {"reason": conf.get("reason", default_reason), **conf, **airflow_ids()}
        return run_stage(training.train_model, snapshot_uri=conf.get("snapshot_uri"), trigger=trigger)

    @task
    def promote_model(trained: dict) -> dict:
        return run_stage(registry.promote_model, trained["model_version"])

    promote_model(train_model())


training_pipeline()
