"""The Airflow plugin: the "MLflow UI" link on every task."""

from __future__ import annotations


def test_mlflow_link_points_at_the_ui_only_for_http_servers(monkeypatch):
    from driftloop_plugin import DriftloopPlugin, MlflowUILink

    link = MlflowUILink()
    assert any(isinstance(x, MlflowUILink) for x in DriftloopPlugin.global_operator_extra_links)
    monkeypatch.delenv("DRIFTLOOP_MLFLOW_UI_URL", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert link.get_link(None, ti_key=None) == "http://127.0.0.1:5000"
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_UI_URL", "https://mlflow.example.org")
    assert link.get_link(None, ti_key=None) == "https://mlflow.example.org"
    monkeypatch.delenv("DRIFTLOOP_MLFLOW_UI_URL")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")  # no UI to link to
    assert link.get_link(None, ti_key=None) == ""
