"""Airflow plugin: an "MLflow UI" link on every task, so operators jump from a task to the runs it logged."""

from __future__ import annotations

import os

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink


class MlflowUILink(BaseOperatorLink):
    """Link to the MLflow UI (``DRIFTLOOP_MLFLOW_UI_URL``, default ``MLFLOW_TRACKING_URI`` when it is
    http)."""

    name = "MLflow UI"

    def get_link(self, operator, *, ti_key) -> str:  # noqa: ANN001 - Airflow's signature
        url = os.environ.get("DRIFTLOOP_MLFLOW_UI_URL") or os.environ.get("MLFLOW_TRACKING_URI", "")
        return url if url.startswith("http") else ""


class DriftloopPlugin(AirflowPlugin):
    """Registers the Driftloop operator links."""

    name = "driftloop"
    global_operator_extra_links = [MlflowUILink()]
