"""Approval on the real embedded stack (what `make up` starts): a training run under ``gates.policy: manual``
waits in ``await_approval`` holding no worker slot, the deadline alert goes out while it waits, a person
approves through Airflow's HITL REST API, and ``champion`` moves once with that user in the audit log.
"""

from __future__ import annotations

import os
import time

import pytest
import yaml

from driftloop.core import bus
from tests.config_copies import SHIPPED_DIR, copy_config

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1800, method="thread")]

DATASET = "telco_churn"
DEADLINE_S = 90
TRAINING = bus.dag_id(DATASET, bus.TRAINING_PIPELINE)


def write_manual_config(config_dir) -> None:
    """telco_churn with fast training (first model family, two folds, no tuning), the manual policy and an
    approval deadline."""
    raw = yaml.safe_load((SHIPPED_DIR / f"{DATASET}.yaml").read_text())
    fast = {**raw["training"], "models": raw["training"]["models"][:1], "folds": 2, "tune_iter": 0}
    gates = {**raw["gates"], "policy": "manual", "approval_deadline_s": DEADLINE_S}
    copy_config(config_dir, DATASET, DATASET, training=fast, gates=gates, model_name=raw["model_name"])


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
    from driftloop_ops.embedded import temporary_stack

    root = tmp_path_factory.mktemp("approval-stack")
    write_manual_config(root / "configs")
    saved = {k: os.environ.pop(k) for k in ("DRIFTLOOP_CONFIG_OVERRIDES",) if k in os.environ}
    extra = {
        "DRIFTLOOP_DATASETS": DATASET,
        "DRIFTLOOP_CONFIG_DIR": str(root / "configs"),
        "DRIFTLOOP_ALERT_WEBHOOK_URL": hook.url,
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
