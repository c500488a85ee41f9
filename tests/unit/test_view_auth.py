"""The Driftloop view's FastAPI app inside Airflow's own api-server app: every data route needs the Airflow
login."""

from __future__ import annotations

import pytest

PAGES = [
    "/driftloop/api/overview",
    "/driftloop/api/health",
    "/driftloop/api/dags/telco_churn__training_pipeline",
]


@pytest.fixture(scope="module")
def api(tmp_path_factory, mlflow_uri):
    """Airflow's api-server app (plugins mounted, simple auth manager with one admin) and an admin's JWT."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(tmp_path_factory.mktemp("view-auth")))
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        mp.setenv("DRIFTLOOP_DATASETS", "telco_churn")
        for name in ("DRIFTLOOP_CONFIG_OVERRIDES", "DRIFTLOOP_CONFIG_DIR", "DRIFTLOOP_DATASET"):
            mp.delenv(name, raising=False)
        yield from _serve()


def _serve():
    from airflow import settings
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken
    from fastapi.testclient import TestClient

    # The one table a token check reads (logged-out tokens); a full `airflow db migrate` costs a minute.
    RevokedToken.__table__.create(settings.engine, checkfirst=True)
    app = create_app()
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    with TestClient(app, follow_redirects=False) as client:
        yield client, token


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_callers_get_401_from_the_api(api, path):
    client, _ = api
    response = client.get(path)
    assert response.status_code == 401, response.text


def test_a_forged_token_is_refused(api):
    client, _ = api
    response = client.get("/driftloop/api/overview", headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code in (401, 403)


def test_an_anonymous_browser_is_sent_to_the_login_page_and_back(api):
    client, _ = api
    response = client.get("/driftloop/")
    assert response.status_code == 303
    assert "/auth/login" in response.headers["location"] and "driftloop" in response.headers["location"]


def test_a_logged_in_user_gets_the_data_and_the_page(api):
    client, token = api
    client.cookies.set("_token", token)  # what Airflow's login sets in the browser
    data = client.get("/driftloop/api/overview").json()
    assert [d["dataset"] for d in data["datasets"]] == ["telco_churn"]
    health = client.get("/driftloop/api/health").json()
    assert health["datasets"][0]["dataset"] == "telco_churn"
    assert health["datasets"][0]["state"] == data["datasets"][0]["loop_state"]["state"]
    assert health["datasets"][0]["detail"] == data["datasets"][0]["loop_state"]["detail"]
    page = client.get("/driftloop/")
    assert page.status_code == 200 and 'data-dataset="telco_churn"' in page.text
    client.cookies.clear()
    bearer = client.get("/driftloop/api/health", headers={"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 200


def test_the_dashboard_bundle_is_public_code_that_registers_the_component(api):
    client, _ = api
    response = client.get("/driftloop/static/health-strip.js")
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert "globalThis.DriftloopHealth" in response.text and "../api/health" in response.text
    assert "chip.title = d.detail" in response.text  # the loop state's detail on hover


def test_the_strip_shows_the_loop_state_and_its_detail_not_the_last_decision():
    """The reported bug: the last decision says ``fired`` forever; the strip's state is the loop's state."""
    from driftloop_airflow.view import summarize_health

    overview = {
        "datasets": [
            {
                "dataset": "telco_churn",
                "champion": {"version": "3", "mlflow_url": "http://mlflow/#/models/m/versions/3"},
                "kpis": {"primary_metric": "AUC", "primary_value": 0.84},
                "last_decision": {"drift_share": 0.5, "decision": "fired: drift__abc"},
                "drift_threshold": 0.3,
                "loop_state": {
                    "state": "retrained",
                    "detail": "champion v3 (drift, gate passed) after the firing",
                },
            }
        ]
    }
    assert summarize_health(overview) == [
        {
            "dataset": "telco_churn",
            "champion": "3",
            "champion_url": "http://mlflow/#/models/m/versions/3",
            "metric": "AUC",
            "metric_value": 0.84,
            "drift_share": 0.5,
            "drift_threshold": 0.3,
            "decision": "fired: drift__abc",
            "state": "retrained",
            "detail": "champion v3 (drift, gate passed) after the firing",
        }
    ]
