"""Approval by a person (driftloop.governance.approval) against a real SQLite MLflow registry and audit log.

A registry holds ``tiny`` (40 customers) as v1, the champion, and ``good`` (1,500) as v2, which passes the
gate under the manual policy and waits. The request must show the gate report's own numbers; an approval moves
``champion`` once, audited with the responding user; a rejection moves nothing and is recorded on the
version.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from types import SimpleNamespace

import pytest

from driftloop.core import bus
from tests.conftest import write_snapshot
from tests.unit.conftest import FAST_OVERRIDES, SNAPSHOT_ROWS, TINY_ROWS, alias_version, fresh_registry

ALICE = {"id": "7", "name": "alice"}


@pytest.fixture(scope="module")
def models(tmp_path_factory, mlflow_uri, telco_frame):
    """``good`` and ``tiny`` of tests/unit/conftest.py's ``models``, trained once for this module."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.tracking import get_client
    from driftloop.training.train import train_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(tmp_path_factory.mktemp("approval-home")))
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        mp.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps(FAST_OVERRIDES))
        mp.setenv("DRIFTLOOP_N_JOBS", "1")
        mp.setenv("DRIFTLOOP_MLFLOW_UI_URL", "http://mlflow.example:5000")
        for name in ("DRIFTLOOP_DATASET", "DRIFTLOOP_CONFIG_DIR"):
            mp.delenv(name, raising=False)
        suffix = uuid.uuid4().hex[:8]
        cfg = dataclasses.replace(
            load_dataset_config("telco_churn"),
            name=f"telco_churn_{suffix}",
            model_name=f"telco-churn-{suffix}",
        )
        frame = telco_frame.sample(SNAPSHOT_ROWS, random_state=11).reset_index(drop=True)
        good = train_model(cfg, snapshot_uri=write_snapshot(cfg, frame)["snapshot_uri"])
        tiny_uri = write_snapshot(cfg, frame.head(TINY_ROWS))["snapshot_uri"]
        tiny = train_model(cfg, snapshot_uri=tiny_uri, trigger={"trigger_id": "tiny"})
        yield SimpleNamespace(cfg=cfg, good=good, tiny=tiny, client=get_client())


def waiting_registry(models, *extra):
    """v1 (tiny) champion under auto, then v2 (good) judged under manual: returns (cfg, promote result)."""
    from driftloop.governance.promotion import promote_model

    cfg = fresh_registry(models, models.tiny, models.good, *extra, floors={"AUC": 0.5})
    promote_model(cfg, "1")
    cfg = dataclasses.replace(cfg, gates=dataclasses.replace(cfg.gates, policy="manual"))
    promoted = promote_model(cfg, "2", actor="training_pipeline/run-1")
    assert promoted["decision"] == "ready"
    return cfg, promoted


def gate_report(client, name, version):
    import tempfile

    run_id = client.get_model_version(name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        with open(client.download_artifacts(run_id, bus.GATE_REPORT_ARTIFACT, tmp)) as handle:
            return json.load(handle)


def table_row(body: str, first_cell: str) -> list[str]:
    """The cells of the Markdown table row whose first cell is ``first_cell``."""
    for line in body.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{body}")


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", cell)]


def entries(cfg):
    from driftloop.governance import audit

    return audit.open_store().entries(cfg.registered_model_name)


def test_nothing_waits_unless_the_gate_passed_under_the_manual_policy():
    from driftloop.governance.approval import needs_approval

    assert needs_approval({"decision": "ready", "candidate_version": "3"})[0] is True
    for decision in ("promoted", "rejected", "skipped"):
        assert needs_approval({"decision": decision})[0] is False, decision


def test_checks_the_gate_could_not_decide_are_found():
    from driftloop.governance.approval import undecided_checks

    report = {
        "checks": [
            {"name": "beats_champion", "passed": True},
            {"name": "beats_champion.production", "passed": None, "underpowered": True},
            {"name": "fairness.gender.equalized_odds_difference", "passed": None, "outcome": "undecided"},
            {"name": "fairness.senior.demographic_parity_difference", "passed": None, "outcome": "no limit"},
            {"name": "latency", "passed": None},
        ]
    }
    assert undecided_checks(report) == [
        "beats_champion.production",
        "fairness.gender.equalized_odds_difference",
    ]


def test_the_request_shows_every_check_with_the_reports_numbers_the_link_and_fairness(models):
    from driftloop.governance.approval import plan_approval

    cfg, promoted = waiting_registry(models)
    name = cfg.registered_model_name
    request = plan_approval(cfg, promoted, request_id="telco__training_pipeline/run-1")
    assert (request["needed"], request["version"], request["champion_version"]) == (True, "2", "1")
    assert "v2" in request["subject"] and "v1" in request["subject"]
    body = request["body"]
    report = gate_report(models.client, name, "2")
    for check in report["checks"]:
        cells = table_row(body, f"`{check['name']}`")
        if isinstance(check.get("value"), float):
            assert numbers(cells[2])[0] == pytest.approx(check["value"], rel=1e-3), check["name"]
        if check.get("ci_low") is not None:
            assert numbers(cells[4]) == pytest.approx([check["ci_low"], check["ci_high"]], rel=1e-3, abs=1e-4)
        expected = {True: "pass", False: "**FAIL**", None: "measured"}[check["passed"]]
        assert cells[1] in (expected, "**undecided**"), check["name"]
    head = next(c for c in report["checks"] if c["name"] == "beats_champion")
    holdout = table_row(body, "holdout")
    assert numbers(holdout[4]) == pytest.approx([head["difference"]], rel=1e-3, abs=1e-4)
    assert numbers(holdout[5]) == pytest.approx([head["ci_low"], head["ci_high"]], rel=1e-3, abs=1e-4)
    fairness = [c for c in report["checks"] if c["name"].startswith("fairness.")]
    assert fairness, "telco declares sensitive attributes: the report has fairness checks"
    for check in fairness:
        _, attribute, gap = check["name"].split(".", 2)
        row = next(
            line for line in body.split("### Fairness")[1].splitlines() if f"| {attribute} | {gap} |" in line
        )
        assert numbers(row.split("|")[3])[0] == pytest.approx(check["value"], rel=1e-3)
    assert f"http://mlflow.example:5000/#/models/{name}/versions/2" in body
    run_id = models.client.get_model_version(name, "2").run_id
    assert f"runs:/{run_id}/{bus.MODEL_CARD_MD_ARTIFACT}" in body


def test_an_approval_moves_champion_once_audited_with_the_user_and_shown_on_the_card(models):
    from driftloop.core import alerts
    from driftloop.governance.approval import apply_decision, plan_approval

    cfg, promoted = waiting_registry(models)
    name, client = cfg.registered_model_name, models.client
    request = plan_approval(cfg, promoted, request_id="telco__training_pipeline/run-1")
    before = len(entries(cfg))
    response = {"chosen_options": ["Approve"], "params_input": {"comment": "looks right"},
                "responded_by_user": ALICE, "responded_at": "2026-12-07T16:00:00+00:00"}  # fmt: skip
    first = apply_decision(cfg, request, response)
    retried = apply_decision(cfg, request, response)
    assert alias_version(client, name, "champion") == "2"
    new = entries(cfg)[before:]
    assert len(new) == 1
    assert (new[0]["from_version"], new[0]["to_version"], new[0]["actor"]) == ("1", "2", "airflow:alice")
    assert new[0]["reason"].startswith("approved in Airflow") and "looks right" in new[0]["reason"]
    assert new[0]["override"] in (False, 0)
    assert alerts.moved_by(new[0]) == "approval"
    assert (first["moved"], len(first["recorded_moves"]), retried["moved"]) == (True, 1, False)
    assert first["decision"] == retried["decision"] == bus.APPROVED
    tags = client.get_model_version(name, "2").tags
    assert (tags[bus.APPROVAL_DECISION_TAG], tags[bus.APPROVAL_BY_TAG]) == (bus.APPROVED, "airflow:alice")
    assert tags[bus.APPROVAL_COMMENT_TAG] == "looks right"
    assert "airflow:alice" in client.get_model_version(name, "2").description  # the card's history


def test_a_rejection_moves_nothing_and_is_recorded_on_the_version(models):
    from driftloop.governance.approval import apply_decision, plan_approval

    cfg, promoted = waiting_registry(models)
    name, client = cfg.registered_model_name, models.client
    request = plan_approval(cfg, promoted, request_id="telco__training_pipeline/run-2")
    before = entries(cfg)
    response = {
        "chosen_options": ["Reject"],
        "params_input": {"comment": "fairness gap too close"},
        "responded_by_user": {"id": "9", "name": "bob"},
        "responded_at": "2026-12-07T16:05:00+00:00",
    }
    result = apply_decision(cfg, request, response)
    assert (result["decision"], result["moved"]) == (bus.REJECTED, False)
    assert alias_version(client, name, "champion") == "1" and entries(cfg) == before
    version = client.get_model_version(name, "2")
    assert (version.tags[bus.APPROVAL_DECISION_TAG], version.tags[bus.APPROVAL_BY_TAG]) == (
        bus.REJECTED,
        "airflow:bob",
    )
    assert bus.READY_FOR_CHAMPION_TAG not in version.tags
    record_path = bus.approval_record_artifact("telco__training_pipeline/run-2")
    assert "/" not in record_path.removeprefix(bus.APPROVAL_RECORDS_DIR + "/")
    record = client.download_artifacts(version.run_id, record_path)
    with open(record) as handle:
        saved = json.load(handle)
    assert (saved["decision"], saved["actor"], saved["comment"]) == (
        "rejected",
        "airflow:bob",
        "fairness gap too close",
    )
    card = client.get_model_version(name, "2").description
    decided = "**rejected** by airflow:bob at 2026-12-07T16:05:00+00:00: fairness gap too close"
    assert f"Approval in Airflow: {decided}" in card


def test_an_approval_after_champion_moved_elsewhere_is_not_applied(models):
    from driftloop.governance.approval import apply_decision, plan_approval
    from driftloop.governance.promotion import set_champion

    cfg, promoted = waiting_registry(models, models.tiny)  # v3: another copy of tiny
    request = plan_approval(cfg, promoted, request_id="telco__training_pipeline/run-3")
    set_champion(cfg, "3", actor="cli:carol", reason="hotfix")
    before = entries(cfg)
    response = {"chosen_options": ["Approve"], "params_input": {}, "responded_by_user": ALICE}
    result = apply_decision(cfg, request, response)
    assert (result["decision"], result["moved"]) == (bus.APPROVAL_STALE, False)
    assert alias_version(models.client, cfg.registered_model_name, "champion") == "3"
    assert entries(cfg) == before


@pytest.mark.parametrize(
    "response",
    [
        {"chosen_options": ["Approve"], "responded_by_user": None},
        {"chosen_options": ["Approve", "Reject"], "responded_by_user": ALICE},
        {"chosen_options": ["Maybe"], "responded_by_user": ALICE},
    ],
)
def test_an_answer_without_a_user_or_a_single_known_option_is_refused(response, telco_cfg):
    from driftloop.governance.approval import apply_decision

    with pytest.raises(ValueError):
        apply_decision(telco_cfg, {"version": "2", "request_id": "r", "champion_version": "1"}, response)


UNDECIDED = {
    "name": "fairness.senior_citizen.equalized_odds_difference",
    "passed": None,
    "value": 0.31,
    "limit": 0.3,
    "ci_low": 0.21,
    "ci_high": 0.42,
    "outcome": "undecided",
    "detail": "equalized odds difference 0.31 above its limit 0.3, interval too wide to decide",
}


def test_under_auto_a_verdict_with_an_undecided_check_waits_for_a_person_only_when_configured(
    models, monkeypatch
):
    from driftloop.governance import gates
    from driftloop.governance.approval import plan_approval
    from driftloop.governance.promotion import promote_model

    real_judge = gates.judge
    monkeypatch.setattr(
        gates,
        "judge",
        lambda *a, **kw: (lambda r: {**r, "checks": [*r["checks"], UNDECIDED]})(real_judge(*a, **kw)),
    )
    held = fresh_registry(models, models.tiny, models.good, floors={"AUC": 0.5})
    promote_model(held, "1")
    held = dataclasses.replace(held, gates=dataclasses.replace(held.gates, approve_undecided=True))
    promoted = promote_model(held, "2")
    name = held.registered_model_name
    assert (promoted["decision"], promoted["moved"], promoted["policy"]) == ("ready", False, "auto")
    assert alias_version(models.client, name, "champion") == "1"
    assert bus.READY_FOR_CHAMPION_TAG in models.client.get_model_version(name, "2").tags
    request = plan_approval(held, promoted, request_id="r-undecided")
    assert request["needed"] and request["undecided"] == [UNDECIDED["name"]]
    undecided_section = request["body"].split("### Undecided")[1].split("### Checks")[0]
    assert UNDECIDED["name"] in undecided_section and UNDECIDED["detail"] in undecided_section

    default = fresh_registry(models, models.tiny, models.good, floors={"AUC": 0.5})
    promote_model(default, "1")
    assert promote_model(default, "2")["decision"] == "promoted"  # off by default: the gate's verdict stands
    assert alias_version(models.client, default.registered_model_name, "champion") == "2"


def test_with_rollout_stages_an_approval_starts_a_rollout_and_a_first_approval_makes_a_champion(models):
    from driftloop.core.serving_config import RolloutConfig
    from driftloop.governance.approval import apply_decision, plan_approval
    from driftloop.governance.promotion import promote_model

    stages = RolloutConfig(stages=("shadow", 100))
    response = {"chosen_options": ["Approve"], "responded_by_user": ALICE}
    client = models.client
    # A first version: nothing to roll out against, so the approval makes it champion.
    cfg = fresh_registry(models, models.good, floors={"AUC": 0.5}, policy="manual")
    cfg = dataclasses.replace(cfg, rollout=stages)
    promoted = promote_model(cfg, "1", actor="training_pipeline/run-0")
    first = apply_decision(cfg, plan_approval(cfg, promoted, request_id="t/run-0"), response)
    assert (first["moved"], first["rollout_entries"]) == (True, [])
    assert alias_version(client, cfg.registered_model_name, "champion") == "1"
    # With a champion, the approved version enters the rollout's first stage; champion stays.
    cfg, promoted = waiting_registry(models)
    cfg = dataclasses.replace(cfg, rollout=stages)
    second = apply_decision(cfg, plan_approval(cfg, promoted, request_id="t/run-1"), response)
    assert second["moved"] is False and second["decision"] == bus.APPROVED
    assert [(e["version"], e["to_stage"]) for e in second["rollout_entries"]] == [("2", "shadow")]
    name = cfg.registered_model_name
    assert alias_version(client, name, "champion") == "1" and alias_version(client, name, "challenger") == "2"
