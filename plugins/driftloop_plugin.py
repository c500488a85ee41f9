"""Airflow plugin: an "MLflow UI" link on every task, so operators jump from a task to the runs it logged."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink


class MlflowUILink(BaseOperatorLink):
    """Link to the MLflow UI (``DRIFTLOOP_MLFLOW_UI_URL``, default ``MLFLOW_TRACKING_URI`` when it is
    http)."""

    name = "MLflow UI"

    def get_link(self, operator, *, ti_key) -> str:  # noqa: ANN001 - Airflow's signature
        from driftloop.core.settings import Settings

        url = Settings.from_env().mlflow_ui_url
        return url if url.startswith("http") else ""


class DriftloopPlugin(AirflowPlugin):
    """Registers the Driftloop operator links."""

    name = "driftloop"
    global_operator_extra_links = [MlflowUILink()]
