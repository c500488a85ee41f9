"""Task deep links into the MLflow UI: "MLflow run" (the run the task logged) and "Model version" (the version
it registered, scored with or promoted), read from the small dict the task returned (its XCom
``return_value``).

They are global operator links: the api-server computes them when the UI asks, reading the task's XCom from
the metadata DB. A task that returned no run id or version gets no link (empty), never the MLflow root.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

# Keys of the task results (see the package functions the DAGs call), in order of preference: the task's own
# run.
RUN_ID_KEYS = ("run_id", "monitoring_run_id", "inference_run_id", "data_run_id", "model_run_id")
VERSION_KEYS = ("model_version", "candidate_version", "champion_version")


def pick_run_id(result: Any) -> str:
    """The MLflow run id a task result names (its own run first); empty when it names none."""
    if not isinstance(result, dict):
        return ""
    return next((str(result[k]) for k in RUN_ID_KEYS if result.get(k)), "")


def pick_model_version(result: Any) -> tuple[str, str]:
    """``(model name or "", version)`` a task result names; ``("", "")`` when it names no version."""
    if not isinstance(result, dict):
        return "", ""
    version = next((str(result[k]) for k in VERSION_KEYS if result.get(k)), "")
    return (str(result.get("model_name") or ""), version) if version else ("", "")


def read_task_result(ti_key: TaskInstanceKey) -> Any:
    """The task instance's XCom ``return_value`` from the metadata DB (api-server side), or None."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=ti_key.run_id,
                key="return_value",
                task_ids=ti_key.task_id,
                dag_ids=ti_key.dag_id,
                map_indexes=ti_key.map_index,
                limit=1,
            )
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def model_name_of_dag(dag_id: str) -> str:
    """The registered model of the dataset a Driftloop DAG belongs to; empty for another DAG."""
    from driftloop.core import bus
    from driftloop.core.config import load_dataset_config
    from driftloop.core.errors import ConfigError

    try:
        return load_dataset_config(bus.split_dag_id(dag_id)[0]).registered_model_name
    except (ValueError, ConfigError):
        return ""


def _ui_url() -> str:
    from driftloop.core.settings import Settings

    return Settings.from_env().mlflow_ui_url.rstrip("/")


class MlflowRunLink(BaseOperatorLink):
    """The MLflow run the task logged (its page in the MLflow UI)."""

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:  # Airflow's signature
        """The run's page, or empty when the task returned no run id or no UI is configured."""
        ui_url, run_id = _ui_url(), pick_run_id(read_task_result(ti_key))
        return f"{ui_url}/#/runs/{run_id}" if ui_url and run_id else ""


class ModelVersionLink(BaseOperatorLink):
    """The model version the task registered, scored with or promoted (its page in the MLflow UI)."""

    name = "Model version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:  # Airflow's signature
        """The version's page, or empty when the task returned no version or no UI is configured."""
        ui_url = _ui_url()
        name, version = pick_model_version(read_task_result(ti_key))
        if not (ui_url and version):
            return ""
        name = name or model_name_of_dag(ti_key.dag_id)
        return f"{ui_url}/#/models/{quote(name, safe='')}/versions/{version}" if name else ""
