"""A staged rollout driven by Airflow: ``ab_evaluation`` run with ``dag.test()`` on served traffic, its
``advance_rollout`` task completing a rollout (one stage entry, one champion move, their alerts through an
Airflow HTTP connection) or rolling one back, and a rerun on the same evidence recording nothing twice."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from driftloop.core import bus
from tests.config_copies import copy_config
from tests.serving.rollout_sim import log_shadow_pairs

pytestmark = pytest.mark.timeout(600, method="thread")

PROJECT_DIR = Path(__file__).resolve().parents[2]
ALERT_ENV = (
    "DRIFTLOOP_ALERT_WEBHOOK_URL",
    "DRIFTLOOP_ALERT_SLACK_CONN_ID",
    "DRIFTLOOP_ALERT_SMTP_CONN_ID",
    "DRIFTLOOP_ALERT_EMAIL_TO",
)


@pytest.fixture
def hook():
    from tests.alert_sinks import WebhookReceiver

    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture
def rollout(driftloop_env, tmp_path, monkeypatch, telco_frame, hook):
    """A telco copy of its own in a rollout of ``[shadow, 100]``: champion v1, challenger v2 in shadow, alerts
    through an Airflow HTTP connection."""
    from driftloop.core.config import load_dataset_config
    from driftloop.governance.promotion import reconcile_and_refresh
    from driftloop.governance.rollout_state import begin_rollout
    from tests.serving.helpers import fit_pipeline, register_model

    dataset = f"rollout_{uuid.uuid4().hex[:8]}"
    copy_config(
        tmp_path / "configs",
        "telco_churn",
        dataset,
        rollout={"stages": ["shadow", 100], "min_rows_per_stage": 100, "min_labelled_per_stage": 100},
    )
    monkeypatch.setenv("DRIFTLOOP_CONFIG_DIR", str(tmp_path / "configs"))
    monkeypatch.setenv("DRIFTLOOP_DATASETS", dataset)
    for name in (*ALERT_ENV, "DRIFTLOOP_AUDIT_DB_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRIFTLOOP_ALERT_HTTP_CONN_ID", "rollout_alerts")
    monkeypatch.setenv("AIRFLOW_CONN_ROLLOUT_ALERTS", json.dumps({"conn_type": "http", "host": hook.url}))
    cfg = load_dataset_config(dataset)
    model = fit_pipeline(cfg, telco_frame)
    champion, _ = register_model(cfg, model, telco_frame, alias=bus.CHAMPION)
    reconcile_and_refresh(cfg)  # the first champion, set by hand: recorded before the rollout begins
    challenger, _ = register_model(cfg, model, telco_frame)
    begin_rollout(cfg, challenger, actor="training_pipeline/test", reason="passed the gate")
    return SimpleNamespace(cfg=cfg, dataset=dataset, champion=champion, challenger=challenger)


def run_ab_evaluation(dataset: str) -> dict[str, str]:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(PROJECT_DIR / "dags")).dags[bus.dag_id(dataset, bus.AB_EVALUATION)]
    dag_run = dag.test()
    return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}


def stages(cfg, version: str) -> list[tuple[str | None, str, str]]:
    from driftloop.governance.audit import open_store
    from driftloop.governance.rollout_state import rollout_entries

    return [
        (e["from_stage"], e["to_stage"], e["actor"].split("/")[0])
        for e in rollout_entries(open_store(), cfg.registered_model_name, version)
    ]


def test_ab_evaluation_completes_a_rollout_once_with_its_audit_entries_and_alerts(airflow_db, rollout, hook):
    from driftloop.core.registry import resolve_alias
    from driftloop.governance.audit import open_store

    cfg = rollout.cfg
    log_shadow_pairs(cfg, rollout.champion, rollout.challenger, challenger_right=True)
    states = run_ab_evaluation(rollout.dataset)
    assert (states["evaluate_ab"], states["advance_rollout"]) == ("success", "success"), states
    assert stages(cfg, rollout.challenger) == [
        (None, "shadow", "training_pipeline"),
        ("shadow", bus.ROLLOUT_COMPLETED, "ab_evaluation"),
    ]
    assert resolve_alias(cfg, bus.CHAMPION)["model_version"] == rollout.challenger
    moves = [(e["from_version"], e["to_version"]) for e in open_store().entries(cfg.registered_model_name)]
    assert moves == [(None, rollout.champion), (rollout.champion, rollout.challenger)]  # once, at the end
    assert hook.kinds() == ["rollout_stage_changed", "champion_moved"]
    fields = hook.bodies[0]["driftloop"]["fields"]
    assert (fields["from_stage"], fields["to_stage"]) == ("shadow", bus.ROLLOUT_COMPLETED)

    # The same DAG again (a retry, the next schedule): nothing in a rollout, nothing recorded or sent twice.
    again = run_ab_evaluation(rollout.dataset)
    assert again["advance_rollout"] == "skipped", again
    assert len(stages(cfg, rollout.challenger)) == 2 and hook.kinds() == [
        "rollout_stage_changed",
        "champion_moved",
    ]


def test_ab_evaluation_rolls_back_a_worse_challenger_and_champion_stays(airflow_db, rollout, hook):
    from driftloop.core.registry import resolve_alias
    from driftloop.governance.audit import open_store

    cfg = rollout.cfg
    log_shadow_pairs(cfg, rollout.champion, rollout.challenger, challenger_right=False)
    states = run_ab_evaluation(rollout.dataset)
    assert states["advance_rollout"] == "success", states
    assert stages(cfg, rollout.challenger)[-1] == ("shadow", bus.ROLLOUT_ROLLED_BACK, "ab_evaluation")
    assert resolve_alias(cfg, bus.CHAMPION)["model_version"] == rollout.champion
    assert resolve_alias(cfg, bus.CHALLENGER) is None
    assert len(open_store().entries(cfg.registered_model_name)) == 1  # champion never moved after it was set
    assert hook.kinds() == ["rollout_stage_changed"]
    assert "live accuracy credibly worse" in hook.bodies[0]["driftloop"]["fields"]["reason"]
