"""Airflow plugin: task deep links into MLflow and the Driftloop view (nav page, DAG page, dashboard
strip)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from driftloop_airflow.links import MlflowRunLink, ModelVersionLink
from driftloop_airflow.view import EXTERNAL_VIEWS, FASTAPI_APP, REACT_APPS


class DriftloopPlugin(AirflowPlugin):
    """Registers the Driftloop task links ("MLflow run", "Model version") and the Driftloop view."""

    name = "driftloop"
    global_operator_extra_links = [MlflowRunLink(), ModelVersionLink()]
    fastapi_apps = [FASTAPI_APP]
    external_views = EXTERNAL_VIEWS
    react_apps = REACT_APPS
