"""The Driftloop view inside the Airflow UI, in a real browser (Playwright + Debian's Chromium).

A short loop runs with ``dag.test()`` (reference data → v1 champion → a drifted batch scored and monitored →
the sensor fires; the retrain it queues is not run), then Airflow's real api-server serves the plugin from the
same metadata DB. The browser logs in through Airflow's login form, opens the Driftloop view, follows a task's
"MLflow run" link to that run's page in the MLflow UI, and an anonymous browser is refused. Screenshots are
kept in ``artifacts/screenshots/``. Without Chromium the test skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from driftloop.core import bus
from driftloop.governance import loop_state
from tests.integration.test_model_card_ui import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, require_chromium

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200, method="thread")]
PROJECT_DIR = Path(__file__).resolve().parents[2]
DATASET = "telco_churn"
PASSWORD = "view-" + secrets.token_hex(6)
WAIT_MS = 180_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """MLflow server, a short telco loop through dag.test(), and Airflow's api-server with the plugin."""
    from driftloop_ops.services import (
        free_port,
        start_mlflow_server,
        start_process,
        stop_process_group,
        wait_http_ok,
    )
    from tests.integration.test_closed_loop import write_fast_configs

    require_chromium()
    root = tmp_path_factory.mktemp("view-ui")
    write_fast_configs(root / "configs")
    # One worker: under load (CI runs other lanes beside this one) uvicorn killed workers that answered late.
    mlflow = start_mlflow_server(root / "mlflow", timeout_s=300, extra_args=["--workers", "1"])
    env = {
        "MLFLOW_TRACKING_URI": mlflow.url,
        "DRIFTLOOP_MLFLOW_UI_URL": mlflow.url,
        "DRIFTLOOP_HOME": str(root / "home"),
        "DRIFTLOOP_DATASET": DATASET,
        "DRIFTLOOP_DATASETS": DATASET,
        "DRIFTLOOP_CONFIG_DIR": str(root / "configs"),
        "DRIFTLOOP_SENSOR_POKE_S": "1",
        "DRIFTLOOP_SENSOR_TIMEOUT_S": "2",
    }
    api_server = None
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("DRIFTLOOP_CONFIG_OVERRIDES", raising=False)
        try:
            airflow = str(Path(sys.executable).with_name("airflow"))
            migrate = subprocess.run([airflow, "db", "migrate"], capture_output=True, text=True, timeout=300)
            assert migrate.returncode == 0, migrate.stderr[-3000:]
            runs = run_short_loop()
            port = free_port()
            passwords = root / "passwords.json"
            passwords.write_text(json.dumps({"admin": PASSWORD}))
            url = f"http://127.0.0.1:{port}"
            server_env = {
                **os.environ,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__BASE_URL": url,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR / "include"), str(PROJECT_DIR / "plugins")]),
            }
            log_path = root / "api-server.log"
            api_server = start_process(
                "api-server", [airflow, "api-server", "--port", str(port)], log_path, server_env
            )
            wait_http_ok(f"{url}/api/v2/monitor/health", 300, api_server, log_path)
            yield {"url": url, "mlflow_url": mlflow.url, "runs": runs, "log": log_path}
        finally:
            if api_server is not None:
                stop_process_group(api_server.pid)
            mlflow.stop()


def run_short_loop() -> dict[str, str]:
    """Reference → data → v1; a strongly drifted batch and its labels → data → inference → monitoring → the
    sensor fires."""
    from airflow.dag_processing.dagbag import DagBag

    from driftloop.core.config import load_dataset_config
    from driftloop_ops.loop import InProcessRunner, InProcessSimulator

    bag = DagBag(dag_folder=str(PROJECT_DIR / "dags"))
    assert bag.import_errors == {}
    runner = InProcessRunner(dict(bag.dags))
    simulator = InProcessSimulator(load_dataset_config(DATASET))
    simulator.reference()
    runs = {}
    for name in (bus.DATA_PIPELINE, bus.TRAINING_PIPELINE):
        runs[name] = runner.start(bus.dag_id(DATASET, name))
    simulator.batch(1, 600, "strong")
    simulator.labels(1)  # a drifted period without new labels makes the sensor wait instead of firing
    for name in (bus.DATA_PIPELINE, bus.INFERENCE_PIPELINE, bus.MONITORING_PIPELINE, bus.DRIFT_SENSOR):
        runs[name] = runner.start(bus.dag_id(DATASET, name))
    states = {name: runner.finish(bus.dag_id(DATASET, name), run_id)[0] for name, run_id in runs.items()}
    assert set(states.values()) == {"success"}, states
    return runs


def log_in(page, url: str) -> None:
    """Airflow's own login form, as a person would use it."""
    page.goto(f"{url}/auth/login", wait_until="domcontentloaded", timeout=WAIT_MS)
    page.locator("input[name='username']").fill("admin", timeout=WAIT_MS)
    page.locator("input[name='password']").fill(PASSWORD)
    page.locator("button[type='submit']").click()
    page.wait_for_url(lambda u: "/auth/login" not in u, timeout=WAIT_MS)


def test_a_logged_in_user_sees_the_champion_and_the_last_drift_decision(stack):
    from playwright.sync_api import sync_playwright

    from driftloop.core.tracking import get_client

    client = get_client()
    name = client.search_registered_models()[0].name
    champion = client.get_model_version_by_alias(name, bus.CHAMPION).version
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1500})
            log_in(page, stack["url"])
            page.goto(f"{stack['url']}/driftloop/", wait_until="domcontentloaded", timeout=WAIT_MS)
            section = page.locator(f"section[data-dataset='{DATASET}']")
            section.wait_for(timeout=WAIT_MS)
            text = section.inner_text()
            page.screenshot(path=str(SCREENSHOTS / "driftloop_view.png"), full_page=True)
            version_href = section.locator("[data-role='champion'] a").first.get_attribute("href")
            page.goto(f"{stack['url']}/", wait_until="domcontentloaded", timeout=WAIT_MS)
            strip = page.locator("[data-driftloop='health-strip'] [data-dataset]")
            strip.first.wait_for(timeout=WAIT_MS)
            strip_text = strip.first.inner_text()
            strip_state = strip.first.get_attribute("data-state")
            page.screenshot(path=str(SCREENSHOTS / "driftloop_dashboard_strip.png"))
        finally:
            browser.close()
    assert f"Champion\nv{champion}" in text, text[:2000]
    assert "Last drift decision: fired" in text, text[:2000]
    assert "Loop: " in text, text[:2000]  # the loop's state and its detail under the dataset's name
    assert version_href == f"{stack['mlflow_url']}/#/models/{name}/versions/{champion}"
    assert strip_text.startswith(f"{DATASET}: {strip_state} · ") and f"champion v{champion}" in strip_text
    assert strip_state in loop_state.STATES, strip_state


def test_the_mlflow_run_link_of_a_task_lands_on_the_run_it_logged(stack):
    from playwright.sync_api import sync_playwright

    from driftloop.core.tracking import get_client

    dag_id = bus.dag_id(DATASET, bus.TRAINING_PIPELINE)
    run_id = stack["runs"][bus.TRAINING_PIPELINE]
    name = get_client().search_registered_models()[0].name
    v1_run = get_client().get_model_version(name, "1").run_id
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            log_in(page, stack["url"])
            # The links the task instance page shows, asked the way the Airflow UI asks (the session cookie).
            links = page.request.get(
                f"{stack['url']}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/train_model/links"
            ).json()["extra_links"]
            page.goto(links["MLflow run"], wait_until="domcontentloaded", timeout=WAIT_MS)
            page.get_by_text(v1_run).first.wait_for(timeout=WAIT_MS)
            landed = page.url
            page.screenshot(path=str(SCREENSHOTS / "driftloop_task_mlflow_run.png"))
        finally:
            browser.close()
    assert links["MLflow run"] == f"{stack['mlflow_url']}/#/runs/{v1_run}"
    assert links["Model version"] == f"{stack['mlflow_url']}/#/models/{name}/versions/1"
    assert v1_run in landed


def test_anonymous_access_to_the_view_is_refused(stack):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            api = page.request.get(f"{stack['url']}/driftloop/api/overview")
            status, body = api.status, api.text()
            page.goto(f"{stack['url']}/driftloop/", wait_until="domcontentloaded", timeout=WAIT_MS)
            landed = page.url
        finally:
            browser.close()
    assert status == 401 and DATASET not in body
    assert "/auth/login" in landed
