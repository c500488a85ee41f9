"""The model card in the MLflow UI, checked in a real browser (Playwright + Debian's Chromium).

A version is trained and promoted through the gate against a real MLflow server; the test opens the version's
page as a data scientist would and reads the card there. The screenshot is kept in ``artifacts/screenshots/``.
Without Chromium (``apt-get install chromium``) the test skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import write_snapshot
from tests.constants import FAST_OVERRIDES

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]
# `make test` runs the container lane beside this one: on two loaded cores the MLflow UI's bundle once took
# over Playwright's default 30 s to reach network idle. Wait for the DOM, then for the card's own text.
PAGE_LOAD = {"wait_until": "domcontentloaded", "timeout": 180_000}
TEXT_WAIT_MS = 180_000

PROJECT_DIR = Path(__file__).resolve().parents[2]
SCREENSHOTS = PROJECT_DIR / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = "Debian's chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{message}; CI must provide it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def promoted(tmp_path_factory, telco_frame):
    """A real MLflow server with one trained and promoted telco version (fast training)."""
    from driftloop_ops.services import start_mlflow_server

    require_chromium()
    root = tmp_path_factory.mktemp("card-ui")
    server = start_mlflow_server(root / "mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", server.url)
        mp.setenv("DRIFTLOOP_HOME", str(root / "home"))
        mp.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps({**FAST_OVERRIDES, "model_name": "card-ui-telco"}))
        mp.delenv("DRIFTLOOP_DATASET", raising=False)
        try:
            from driftloop.core.config import load_dataset_config
            from driftloop.governance.promotion import promote_model
            from driftloop.training.train import train_model

            cfg = load_dataset_config("telco_churn")
            snapshot = write_snapshot(cfg, telco_frame.sample(2000, random_state=3))
            trained = train_model(cfg, snapshot_uri=snapshot["snapshot_uri"])
            decision = promote_model(cfg, trained["model_version"], actor="test_model_card_ui")
            yield {"url": server.url, "cfg": cfg, "version": trained["model_version"], "decision": decision}
        finally:
            server.stop()


def test_the_model_card_is_what_the_mlflow_ui_shows_on_the_version_page(promoted):
    from playwright.sync_api import sync_playwright

    name, version = promoted["cfg"].registered_model_name, promoted["version"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "model_card_version_page.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2200})
            page.goto(f"{promoted['url']}/#/models/{name}/versions/{version}", **PAGE_LOAD)
            page.get_by_text("Gate verdict").first.wait_for(timeout=TEXT_WAIT_MS)
            text = page.inner_text("body")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    for heading in (
        "Model details",
        "Intended use",
        "Training data",
        "Evaluation",
        "Gate verdict",
        "Fairness",
        "Explanations",
        "Limitations",
        "Promotion history",
    ):
        assert heading in text, f"the version page does not show the card's {heading!r} section"
    assert "floor.AUC" in text and "pass" in text
    assert f"{name} v{version}" in text
    assert shot.stat().st_size > 10_000


def test_the_registered_model_page_says_what_the_model_is_for_and_which_version_serves(promoted):
    from playwright.sync_api import sync_playwright

    name = promoted["cfg"].registered_model_name
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            page.goto(f"{promoted['url']}/#/models/{name}", **PAGE_LOAD)
            page.get_by_text("Promotion policy").first.wait_for(timeout=TEXT_WAIT_MS)
            text = page.inner_text("body")
            page.screenshot(path=str(SCREENSHOTS / "registered_model_page.png"), full_page=True)
        finally:
            browser.close()
    assert "IBM telco customer churn" in text and f"v{promoted['version']}" in text
