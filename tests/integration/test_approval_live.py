"""Approval on the real embedded stack (what `make up` starts): a training run under ``gates.policy: manual``
waits in ``await_approval`` holding no worker slot, the deadline alert goes out while it waits, a person
approves through Airflow's HITL REST API, and ``champion`` moves once with that user in the audit log. Then a
second version waits and a person (``alice``) logs in to the Airflow UI in a real browser (Playwright and
Debian's Chromium), reads the evidence on the task's Required Actions page and approves there: with the
config's rollout of ``[shadow, 100]`` it enters the rollout in shadow (the first version, with nothing to
roll out against, became champion). Served by ``driftloop serve``'s app beside the stack and labelled by
``POST /labels`` (data_pipeline started by their arrival), ``ab_evaluation`` completes that rollout; a
rollout of the old champion begun by ``driftloop rollout begin`` is rolled back on live labels.

The config passes a second version against the first under non-inferiority with a wide margin (a test of
the approval path, not of the gate). Without Chromium the browser test skips locally and fails under CI; the
rollout test follows the version it approved.
"""

from __future__ import annotations

import json
import os
import secrets
import time

import pytest
import yaml

from driftloop.core import bus
from tests.config_copies import SHIPPED_DIR, copy_config
from tests.constants import AIRFLOW_HITL_SETTLE_S

# The container lane of `make test` runs it: its Docker waits leave room, the slow lane has none.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.container_lane,
    pytest.mark.timeout(1800, method="thread"),
]

DATASET = "telco_churn"
DEADLINE_S = 90
TRAINING = bus.dag_id(DATASET, bus.TRAINING_PIPELINE)
DATA, AB = bus.dag_id(DATASET, bus.DATA_PIPELINE), bus.dag_id(DATASET, bus.AB_EVALUATION)
ALICE, ALICE_PASSWORD = "alice", "alice-" + secrets.token_hex(6)
WAIT_MS = 180_000


ROLLOUT = {"stages": ["shadow", 100], "min_rows_per_stage": 300, "min_labelled_per_stage": 300}
ROWS_PER_STAGE = 400


def write_manual_config(config_dir) -> None:
    """telco_churn with fast training (first model family, two folds, no tuning), the manual policy, an
    approval deadline and a rollout of ``[shadow, 100]``."""
    raw = yaml.safe_load((SHIPPED_DIR / f"{DATASET}.yaml").read_text())
    fast = {**raw["training"], "models": raw["training"]["models"][:1], "folds": 2, "tune_iter": 0}
    gates = {**raw["gates"], "policy": "manual", "approval_deadline_s": DEADLINE_S}
    gates.update(rule="non_inferiority", margin=0.5)
    copy_config(
        config_dir,
        DATASET,
        DATASET,
        training=fast,
        gates=gates,
        rollout=ROLLOUT,
        model_name=raw["model_name"],
    )


@pytest.fixture(scope="module")
def hook():
    from tests.alert_sinks import WebhookReceiver

    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hook):
    """The embedded stack serving telco_churn under the manual policy, its alerts going to ``hook``."""
    from driftloop_ops.airflow_api import AirflowClient, read_generated_password
    from driftloop_ops.embedded import PASSWORD_FILE, TASK_API_USER, temporary_stack

    root = tmp_path_factory.mktemp("approval-stack")
    write_manual_config(root / "configs")
    (root / "home" / "airflow").mkdir(parents=True)
    (root / "home" / "airflow" / PASSWORD_FILE).write_text(json.dumps({ALICE: ALICE_PASSWORD}))
    saved = {k: os.environ.pop(k) for k in ("DRIFTLOOP_CONFIG_OVERRIDES",) if k in os.environ}
    extra = {
        "DRIFTLOOP_DATASETS": DATASET,
        "DRIFTLOOP_CONFIG_DIR": str(root / "configs"),
        "DRIFTLOOP_ALERT_WEBHOOK_URL": hook.url,
        "DRIFTLOOP_AB_SCHEDULE": "none",  # ab_evaluation runs when the test triggers it
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{TASK_API_USER}:user,{ALICE}:admin",
    }
    try:
        with temporary_stack(root / "home", extra) as layout:
            api = AirflowClient(layout.airflow_url, "admin", read_generated_password(layout.password_file))
            yield layout, api
    finally:
        os.environ.update(saved)


def hitl_path(run_id: str) -> str:
    return f"/dags/{TRAINING}/dagRuns/{run_id}/taskInstances/await_approval/-1/hitlDetails"


def test_a_person_approves_through_the_rest_api_and_champion_moves_once_in_their_name(
    stack, hook, telco_frame
):
    from driftloop.core.config import load_dataset_config
    from driftloop.core.tracking import get_client
    from driftloop.governance.audit import open_store
    from tests.conftest import write_snapshot

    layout, api = stack
    api.wait_for_dags([TRAINING], timeout_s=300, unpause=False)
    api.unpause(TRAINING)
    cfg = load_dataset_config(DATASET)
    snapshot = write_snapshot(cfg, telco_frame.sample(2000, random_state=3).reset_index(drop=True))
    run_id = api.trigger(TRAINING, {"snapshot_uri": snapshot["snapshot_uri"]})

    api.wait_task_state(TRAINING, run_id, "await_approval", ("awaiting_input",), timeout_s=900)
    pool = api.call("GET", "/pools/default_pool")
    assert pool["running_slots"] == 0, pool  # the waiting approval holds no worker slot
    detail = api.call("GET", hitl_path(run_id))
    assert detail["options"] == ["Approve", "Reject"] and detail["response_received"] is False
    assert "v1" in detail["subject"] and cfg.registered_model_name in detail["subject"]
    for section in (
        "### Checks",
        "### Against the champion",
        "### Fairness",
        "`floor.AUC`",
        "| senior_citizen |",
    ):
        assert section in detail["body"], section
    client = get_client()
    assert client.get_registered_model(cfg.registered_model_name).aliases.get(bus.CHAMPION) is None

    started = time.monotonic()  # the deadline alert goes out while the approval waits
    while "approval_overdue" not in hook.kinds():
        assert time.monotonic() - started < DEADLINE_S + 300, hook.kinds()
        time.sleep(1)
    overdue = next(b for b in hook.bodies if b["driftloop"]["kind"] == "approval_overdue")
    assert overdue["driftloop"]["fields"]["run_id"] == run_id
    assert api.task_instance(TRAINING, run_id, "await_approval")["state"] == "awaiting_input"  # not decided

    answer = api.call(
        "PATCH",
        hitl_path(run_id),
        json={"chosen_options": ["Approve"], "params_input": {"comment": "e2e ok"}},
    )
    assert answer["responded_by"]["name"] == "admin"
    api.wait_for_run(TRAINING, run_id, timeout_s=600, ok=("success",))
    states = api.task_states(TRAINING, run_id)
    assert (states["await_approval"], states["apply_approval"]) == ("success", "success"), states

    name = cfg.registered_model_name
    assert str(client.get_model_version_by_alias(name, bus.CHAMPION).version) == "1"
    history = open_store().entries(name)
    assert [(e["from_version"], e["to_version"], e["actor"]) for e in history] == [
        (None, "1", "airflow:admin")
    ]
    assert history[0]["reason"].startswith("approved in Airflow") and "e2e ok" in history[0]["reason"]
    moved = [b for b in hook.bodies if b["driftloop"]["kind"] == "champion_moved"]
    assert len(moved) == 1 and moved[0]["driftloop"]["fields"]["actor"] == "airflow:admin"


def test_a_person_logs_in_reads_the_evidence_and_approves_in_the_browser(stack, telco_frame):
    from playwright.sync_api import sync_playwright

    from driftloop.core.config import load_dataset_config
    from driftloop.core.tracking import get_client
    from driftloop.governance.audit import open_store
    from driftloop.governance.rollout_state import rollout_entries
    from tests.conftest import write_snapshot
    from tests.integration.test_model_card_ui import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, require_chromium

    require_chromium()
    layout, api = stack
    cfg = load_dataset_config(DATASET)
    name, client = cfg.registered_model_name, get_client()
    champion, before = client.get_registered_model(name).aliases[bus.CHAMPION], open_store().entries(name)
    snapshot = write_snapshot(cfg, telco_frame.sample(2000, random_state=4).reset_index(drop=True))
    run_id = api.trigger(TRAINING, {"snapshot_uri": snapshot["snapshot_uri"]})
    api.wait_task_state(TRAINING, run_id, "await_approval", ("awaiting_input",), timeout_s=900)
    time.sleep(AIRFLOW_HITL_SETTLE_S)  # a person reads before deciding; see AIRFLOW_HITL_SETTLE_S
    candidate = api.call("GET", hitl_path(run_id))["subject"].split(": make v")[1].split(" ")[0]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(f"{layout.airflow_url}/auth/login", wait_until="domcontentloaded", timeout=WAIT_MS)
            page.locator("input[name='username']").fill(ALICE, timeout=WAIT_MS)
            page.locator("input[name='password']").fill(ALICE_PASSWORD)
            page.locator("button[type='submit']").click()
            page.wait_for_url(lambda u: "/auth/login" not in u, timeout=WAIT_MS)
            page.goto(
                f"{layout.airflow_url}/dags/{TRAINING}/runs/{run_id}/tasks/await_approval/required_actions",
                wait_until="domcontentloaded",
                timeout=WAIT_MS,
            )
            page.get_by_text("Against the champion").first.wait_for(timeout=WAIT_MS)
            text = page.locator("body").inner_text()
            links = [a.get_attribute("href") for a in page.locator("a").all()]
            page.screenshot(path=str(SCREENSHOTS / "approval_required_action.png"), full_page=True)
            approve = page.get_by_role("button", name="Approve")
            approve.wait_for(timeout=WAIT_MS)
            assert approve.is_enabled()  # a comment is optional
            page.locator("#element_comment").first.fill("seen in the browser")
            approve.click()
            api.wait_for_run(TRAINING, run_id, timeout_s=600, ok=("success",))
            page.screenshot(path=str(SCREENSHOTS / "approval_after_approve.png"), full_page=True)
        finally:
            browser.close()
    for shown in (
        f"v{candidate}",
        f"v{champion}",
        "beats_champion",
        "beats_champion.production",
        "senior_citizen",
    ):
        assert shown in text, (shown, text[:3000])
    assert f"{layout.mlflow_url}/#/models/{name}/versions/{candidate}" in links, links
    # Approved into the rollout: the candidate is challenger in shadow, champion has not moved.
    aliases = client.get_registered_model(name).aliases
    assert (aliases[bus.CHAMPION], aliases[bus.CHALLENGER]) == (champion, candidate), aliases
    assert open_store().entries(name) == before
    began = rollout_entries(open_store(), name, candidate)
    assert [(e["from_stage"], e["to_stage"], e["actor"]) for e in began] == [
        (None, "shadow", f"airflow:{ALICE}")
    ]
    assert "seen in the browser" in began[0]["reason"]


def _serve_and_label(api, server, client, cfg, rows, side_with: str) -> dict[str, dict[str, str]]:
    """Score ``rows`` through the service, then land labels equal to version ``side_with``'s predictions by
    ``POST /labels``: data_pipeline, started by their arrival, accepts them. Returns each version's
    predictions by entity."""
    from driftloop.serving.online.prediction_log import log_uri, read_log
    from tests.serving.helpers import split_body

    service = server.service
    settings = service.settings
    before = service.log.written_rows
    for offset in range(0, len(rows), 50):
        answer = client.post("/invocations", json=split_body(cfg, rows.iloc[offset : offset + 50]))
        assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 120
    while service.log.written_rows < before + 2 * len(rows) or service.log.pending_rows:
        assert time.monotonic() < deadline, (service.log.written_rows, before + 2 * len(rows))
        time.sleep(0.1)
    ids = set(rows[cfg.id_column].astype(str))
    log_df = read_log(log_uri(cfg, settings), cfg.registered_model_name)
    log_df = log_df[log_df["entity_id"].isin(ids)]
    predicted = {
        str(v): dict(zip(part["entity_id"], part["prediction"], strict=True))
        for v, part in log_df.groupby("model_version")
    }
    body = {"labels": [{cfg.id_column: i, cfg.target: p} for i, p in predicted[side_with].items()]}
    known = api.run_ids(DATA)
    assert client.post("/labels", json=body).status_code == 202
    run = api.wait_new_run(DATA, known, run_type="asset_triggered", timeout_s=300)
    api.wait_for_run(DATA, run["dag_run_id"], timeout_s=600, ok=("success",))
    return predicted


def test_a_rollout_completes_and_the_next_is_rolled_back_on_the_embedded_stack(stack, hook, telco_frame):
    """The version approved in the browser, in shadow: served by ``driftloop serve``'s app beside the stack,
    labelled as it predicts, completed by ``ab_evaluation``; then ``driftloop rollout begin`` of the old
    champion, labelled as the new one predicts where they differ, rolled back."""
    import httpx

    from driftloop import cli
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.core.tracking import get_client
    from driftloop.governance.audit import open_store
    from driftloop.governance.rollout_state import rollout_entries
    from driftloop.serving.online.app import create_app
    from tests.serving.helpers import LiveServer

    layout, api = stack
    for dag_id in (DATA, AB):
        api.unpause(dag_id)
    cfg = load_dataset_config(DATASET)
    name, client = cfg.registered_model_name, get_client()
    old = str(client.get_model_version_by_alias(name, bus.CHAMPION).version)
    new = str(client.get_model_version_by_alias(name, bus.CHALLENGER).version)
    frame = telco_frame.reset_index(drop=True)
    with (
        LiveServer(create_app(cfg, Settings.from_env())) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        _serve_and_label(api, server, http, cfg, frame.iloc[4000 : 4000 + ROWS_PER_STAGE], side_with=new)
        api.wait_for_run(AB, api.trigger(AB), timeout_s=600, ok=("success",))
        assert str(client.get_model_version_by_alias(name, bus.CHAMPION).version) == new
        assert (
            cli.main(["rollout", "begin", "--dataset", DATASET, "--version", old, "--reason", "again"]) == 0
        )
        server.run_coroutine(server.service.models.refresh())  # the registry poll, now
        rows = frame.iloc[5000 : 5000 + ROWS_PER_STAGE]
        predicted = _serve_and_label(api, server, http, cfg, rows, side_with=new)
        run_id = api.trigger(AB)
        api.wait_for_run(AB, run_id, timeout_s=600, ok=("success",))
    differ = sum(predicted[old][i] != predicted[new][i] for i in predicted[new])
    assert differ >= 3, differ  # the paired test needs a few differing rows to call one credibly worse
    assert str(client.get_model_version_by_alias(name, bus.CHAMPION).version) == new, api.describe_run(
        AB, run_id
    )
    store = open_store()
    assert [(e["from_stage"], e["to_stage"]) for e in rollout_entries(store, name, new)] == [
        (None, "shadow"),
        ("shadow", bus.ROLLOUT_COMPLETED),
    ]
    back = rollout_entries(store, name, old)
    assert [(e["from_stage"], e["to_stage"]) for e in back] == [
        (None, "shadow"),
        ("shadow", bus.ROLLOUT_ROLLED_BACK),
    ]
    assert back[0]["actor"].startswith("cli:") and "credibly worse" in back[1]["reason"], back
    moves = [(e["from_version"], e["to_version"]) for e in store.entries(name)]
    assert moves[-1] == (old, new), moves  # the completion's move; the rollback moved nothing
    stages = [
        (b["driftloop"]["fields"]["version"], b["driftloop"]["fields"]["to_stage"])
        for b in hook.bodies
        if b["driftloop"]["kind"] == "rollout_stage_changed"
    ]
    assert stages == [
        (new, "shadow"),
        (new, bus.ROLLOUT_COMPLETED),
        (old, "shadow"),
        (old, bus.ROLLOUT_ROLLED_BACK),
    ], stages
