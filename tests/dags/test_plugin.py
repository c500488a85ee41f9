"""The Airflow plugin: task deep links into MLflow read from the task's result, and the view's
registration."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest


def test_the_plugin_registers_the_links_and_the_view():
    from driftloop_plugin import DriftloopPlugin

    assert sorted(link.name for link in DriftloopPlugin.global_operator_extra_links) == [
        "MLflow run",
        "Model version",
    ]
    [app] = DriftloopPlugin.fastapi_apps
    assert app["url_prefix"] == "/driftloop"
    assert {v["destination"] for v in DriftloopPlugin.external_views} == {"nav", "dag"}
    assert "{DAG_ID}" in next(v["href"] for v in DriftloopPlugin.external_views if v["destination"] == "dag")
    [strip] = DriftloopPlugin.react_apps
    assert strip["destination"] == "dashboard" and strip["bundle_url"].startswith("/driftloop/static/")


@pytest.mark.parametrize(
    ("result", "run_id"),
    [
        ({"run_id": "train1", "model_version": "2", "model_name": "m"}, "train1"),
        (
            {"monitoring_run_id": "mon1", "inference_run_id": "inf1"},
            "mon1",
        ),  # monitoring's own run, not its input
        ({"inference_run_id": "inf1", "model_run_id": "train1"}, "inf1"),
        ({"decision": "promoted", "champion_version": "2"}, ""),
        ("not a dict", ""),
        (None, ""),
    ],
)
def test_the_run_link_names_the_run_the_task_logged(result, run_id):
    from driftloop_airflow.links import pick_run_id

    assert pick_run_id(result) == run_id


def test_links_point_at_the_exact_run_and_version_from_the_task_result(monkeypatch):
    import driftloop_airflow.links as links

    results = {
        "train_model": {"run_id": "abc123", "model_name": "telco-churn", "model_version": "3"},
        "promote_model": {"decision": "rejected", "candidate_version": "4", "champion_version": "3"},
        "wait_for_drift": None,
    }
    monkeypatch.setattr(links, "read_task_result", lambda key: results[key.task_id])
    monkeypatch.setattr(links, "model_name_of_dag", lambda dag_id: "from-config")
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_UI_URL", "http://mlflow.example:5000/")

    def key(task_id):
        return SimpleNamespace(
            dag_id="telco_churn__training_pipeline", task_id=task_id, run_id="r", map_index=-1
        )

    run, version = links.MlflowRunLink(), links.ModelVersionLink()
    assert run.get_link(None, ti_key=key("train_model")) == "http://mlflow.example:5000/#/runs/abc123"
    assert version.get_link(None, ti_key=key("train_model")) == (
        "http://mlflow.example:5000/#/models/telco-churn/versions/3"
    )
    # Promotion returns no model name: the DAG's dataset config names it; the candidate is the version it
    # judged.
    assert version.get_link(None, ti_key=key("promote_model")) == (
        "http://mlflow.example:5000/#/models/from-config/versions/4"
    )
    assert run.get_link(None, ti_key=key("wait_for_drift")) == ""  # no run: no link, never the MLflow root
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_UI_URL", "")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")  # no UI to link to
    assert run.get_link(None, ti_key=key("train_model")) == ""


def test_mlflow_records_reach_the_task_log_at_their_level_and_nothing_goes_to_stderr():
    """A task runner under a scheduler records every stderr line as ERROR: MLflow's "Created version" INFO
    line showed red on green runs until its logger propagated to the task's own logging instead."""
    import subprocess
    import sys

    code = (
        "import logging, mlflow\n"
        "from driftloop_airflow import route_mlflow_logs_to_the_task_log\n"
        "records = []\n"
        "class Keep(logging.Handler):\n"
        "    def emit(self, record): records.append((record.name, record.levelname, record.getMessage()))\n"
        "logging.getLogger().addHandler(Keep()); logging.getLogger().setLevel(logging.INFO)\n"
        "route_mlflow_logs_to_the_task_log()\n"
        "registry = logging.getLogger('mlflow.tracking._model_registry.client')\n"
        "registry.info(\"Created version '2' of model 'm'.\")\n"
        "import mlflow.store.model_registry.abstract_store\n"
        "print(records)\n"
    )
    plugins = str(Path(__file__).resolve().parents[2] / "plugins")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Created version" not in out.stderr, out.stderr[-2000:]
    assert (
        "('mlflow.tracking._model_registry.client', 'INFO', \"Created version '2' of model 'm'.\")"
        in out.stdout
    )


def test_a_storage_connection_becomes_the_aws_variables_of_the_task(
    monkeypatch: pytest.MonkeyPatch, s3_env, tmp_path: Path
) -> None:
    """DRIFTLOOP_STORAGE_CONN_ID names an Airflow connection whose credentials reach the object store."""
    import json

    from driftloop.core import storage
    from driftloop.core.settings import Settings
    from driftloop_airflow import use_storage_connection

    conn = {
        "conn_type": "aws",
        "login": s3_env.env()["AWS_ACCESS_KEY_ID"],
        "password": s3_env.env()["AWS_SECRET_ACCESS_KEY"],
        "extra": {"endpoint_url": s3_env.endpoint_url, "region_name": "eu-west-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DRIFTLOOP_STORE", json.dumps(conn))
    monkeypatch.setenv("DRIFTLOOP_STORAGE_CONN_ID", "driftloop_store")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name)
    use_storage_connection(Settings.from_env())
    assert os.environ["AWS_ENDPOINT_URL"] == s3_env.endpoint_url
    assert os.environ["AWS_DEFAULT_REGION"] == "eu-west-1"
    bucket = s3_env.new_bucket()
    storage.write_json(storage.location(f"s3://{bucket}/zones/probe.json"), {"ok": True})
    assert s3_env.keys(bucket) == ["zones/probe.json"]


def test_without_a_storage_connection_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from driftloop.core.settings import Settings
    from driftloop_airflow import use_storage_connection

    monkeypatch.delenv("DRIFTLOOP_STORAGE_CONN_ID", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
    use_storage_connection(Settings.from_env())
    assert os.environ["AWS_ACCESS_KEY_ID"] == "from-the-environment"
