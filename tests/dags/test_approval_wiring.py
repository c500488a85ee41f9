"""training_pipeline's approval steps: the graph after promote_model, the waiting HITL task, the deadline."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from driftloop.core import bus
from tests.config_copies import SHIPPED_DIR, copy_config

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEADLINE_S = 5400


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    """dags/ parsed with two configs: ``manual_one`` (manual policy, a 90-minute approval deadline) and
    ``auto_one`` (the shipped gates, no deadline)."""
    from airflow.dag_processing.dagbag import DagBag

    configs = tmp_path_factory.mktemp("configs")
    gates = yaml.safe_load((SHIPPED_DIR / "telco_churn.yaml").read_text())["gates"]
    copy_config(configs, "telco_churn", "manual_one", gates={**gates, "policy": "manual",
                                                             "approval_deadline_s": DEADLINE_S})  # fmt: skip
    copy_config(configs, "telco_churn", "auto_one")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_CONFIG_DIR", str(configs))
        mp.setenv("DRIFTLOOP_DATASETS", "")
        mp.setenv("DRIFTLOOP_HOME", str(tmp_path_factory.mktemp("home")))
        mp.delenv("DRIFTLOOP_CONFIG_OVERRIDES", raising=False)
        parsed = DagBag(dag_folder=str(PROJECT_DIR / "dags"))
    assert parsed.import_errors == {}
    return parsed


def training(bag, dataset):
    return bag.dags[bus.dag_id(dataset, bus.TRAINING_PIPELINE)]


@pytest.mark.parametrize("dataset", ["manual_one", "auto_one"])
def test_approval_follows_promotion_and_is_skipped_as_a_whole_when_nothing_waits(bag, dataset):
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.providers.standard.operators.python import ShortCircuitOperator

    dag = training(bag, dataset)
    edges = {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}
    assert edges == {
        ("train_model", "promote_model"),
        ("promote_model", "plan_approval"),
        ("plan_approval", "await_approval"),
        ("plan_approval", "apply_approval"),
        ("await_approval", "apply_approval"),
    }
    plan, waiting = dag.get_task("plan_approval"), dag.get_task("await_approval")
    assert isinstance(plan, ShortCircuitOperator) and plan.ignore_downstream_trigger_rules is True
    assert isinstance(waiting, HITLOperator)
    assert dag.get_task("apply_approval").trigger_rule == "all_success"


def test_the_approval_task_offers_the_decisions_apply_understands_and_decides_nothing_by_itself(bag):
    from driftloop.governance import approval

    waiting = training(bag, "manual_one").get_task("await_approval")
    assert waiting.options == [approval.APPROVE, approval.REJECT] and waiting.multiple is False
    assert waiting.defaults is None and waiting.response_timeout is None  # no answer without a person
    assert "comment" in waiting.params


def test_the_approval_task_shows_the_planned_subject_and_body(bag):
    waiting = training(bag, "manual_one").get_task("await_approval")
    request = {
        "subject": "telco: make v7 champion?",
        "body": "| check | verdict |\n|---|---|\n| `latency` | pass |",
    }

    class TaskInstance:
        def xcom_pull(self, task_ids):
            assert task_ids == "plan_approval"
            return request

    context = {"ti": TaskInstance()}
    assert waiting.render_template(waiting.subject, context) == request["subject"]
    assert waiting.render_template(waiting.body, context) == request["body"]


def test_the_waiting_task_leaves_its_worker(bag, monkeypatch):
    """On Airflow 3.3 the HITL task parks in ``awaiting_input`` (raises TaskAwaitingInput): no worker slot."""
    from types import SimpleNamespace

    from airflow.providers.standard.operators import hitl
    from airflow.sdk.exceptions import TaskAwaitingInput

    written = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **kw: written.append(kw))
    waiting = training(bag, "manual_one").get_task("await_approval")
    with pytest.raises(TaskAwaitingInput) as parked:
        waiting.execute({"task_instance": SimpleNamespace(id="ti-1")})
    assert parked.value.method_name == "execute_complete"
    assert written and written[0]["options"] == ["Approve", "Reject"]


def test_the_deadline_alerts_after_the_configured_seconds_only_where_configured(bag):
    from airflow.sdk.definitions.deadline import DeadlineReference
    from airflow.serialization.serialized_objects import DagSerialization

    from driftloop_airflow import notifiers

    dag = training(bag, "manual_one")
    deadlines = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    assert len(deadlines) == 1
    deadline = deadlines[0]
    assert deadline.interval == timedelta(seconds=DEADLINE_S)
    assert isinstance(deadline.reference, type(DeadlineReference.DAGRUN_QUEUED_AT))
    assert deadline.callback.path == "driftloop_airflow.notifiers.approval_deadline_missed"
    assert deadline.callback.kwargs == {"dataset": "manual_one"}
    assert inspect.iscoroutinefunction(notifiers.approval_deadline_missed)  # it runs in the triggerer
    DagSerialization.to_dict(dag)  # the dag-processor can store it
    assert not training(bag, "auto_one").deadline


def test_a_missed_deadline_sends_one_approval_overdue_alert_naming_the_run(monkeypatch):
    from driftloop.core import alerts
    from driftloop_airflow import notifiers

    sent = []
    monkeypatch.setattr(notifiers, "send_alerts", lambda found, settings: sent.extend(found) or [])
    queued = datetime.now(UTC) - timedelta(hours=2)
    context = {"dag_run": {"dag_id": "telco__training_pipeline", "dag_run_id": "manual__1", "queued_at":
               queued.isoformat()}, "deadline": {"id": "d-1"}}  # fmt: skip
    import asyncio

    asyncio.run(notifiers.approval_deadline_missed("telco", context=context))
    assert [a.kind for a in sent] == [alerts.APPROVAL_OVERDUE]
    assert sent[0].dedupe_key == "approval_overdue:telco:telco__training_pipeline:manual__1"
    assert 7200 <= sent[0].fields["waited_s"] < 7200 + 600
