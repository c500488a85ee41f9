"""Promotion's bookkeeping against an in-memory registry: which verdict, which move, which tags and which
audit entries each way of moving ``champion`` leaves. The gate's judging is replaced by a fixed report (the
real gate and MLflow are tested in test_governance and test_registry); these run in milliseconds, for
mutation testing (docs/mutation.md)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from driftloop.core import bus, registry
from driftloop.core.errors import GateRejected
from driftloop.governance import audit, promotion, rollback

NAME = "ds-model"


class World:
    """The registry (aliases, version tags, logged dicts), the audit store and what the gate would say."""

    def __init__(self, store, policy="auto"):
        self.store = store
        self.cfg = SimpleNamespace(
            name="ds",
            registered_model_name=NAME,
            gates=SimpleNamespace(policy=policy, primary_metric="AUC", min_improvement=0.01),
            rollout=SimpleNamespace(stages=[]),  # no staged rollout: a passing gate moves champion at once
        )
        self.aliases: dict[str, str] = {}
        self.tags: dict[str, dict[str, str]] = {}
        self.logged: list[tuple[str, str, dict]] = []
        self.decisions: dict[tuple[str, str], dict] = {}
        self.cards: list[str] = []
        self.descriptions: list[str | None] = []
        self.judged: list[tuple[str, str | None]] = []
        self.verdict = {"passed": True, "failed": [], "auc": 0.9}
        self.on_judge = None
        self.settings = SimpleNamespace(name="the caller's settings")  # handed on, never replaced

    def check(self, settings):
        assert settings is self.settings, settings

    # registry functions (module driftloop.core.registry)
    def resolve_alias(self, cfg, alias, settings=None):
        assert cfg is self.cfg
        self.check(settings)
        version = self.aliases.get(alias)
        return None if version is None else {"model_version": version}

    def move_alias(self, cfg, alias, version, settings=None):
        self.check(settings)
        self.aliases[alias] = version

    def drop_alias(self, cfg, alias, version, settings=None):
        self.check(settings)
        if self.aliases.get(alias) == version:
            del self.aliases[alias]
            return True
        return False

    # the MLflow client
    def get_model_version(self, name, version):
        assert name == NAME
        return SimpleNamespace(
            version=version, run_id=f"run-{version}", tags=self.tags.setdefault(version, {})
        )

    def set_model_version_tag(self, name, version, key, value):
        assert isinstance(value, str)
        self.tags.setdefault(version, {})[key] = value

    def delete_model_version_tag(self, name, version, key):
        del self.tags[version][key]

    def log_dict(self, run_id, record, artifact):
        self.logged.append((run_id, artifact, record))
        if artifact != bus.GATE_REPORT_ARTIFACT:
            self.decisions[(run_id, artifact)] = record

    # the evidence state and the gate
    def read_evidence_state(self, cfg, client, champion_version, settings=None):
        self.check(settings)
        assert client is self
        return SimpleNamespace(
            key=lambda cfg, candidate: f"key-{candidate}-vs-{champion_version}",
            describe=lambda: f"state vs {champion_version}",
        )

    def read_decision(self, client, run_id, key):
        assert client is self and run_id.startswith("run-")
        return self.decisions.get((run_id, bus.gate_decision_artifact(key)))

    def judge(self, cfg, candidate, champion, client, settings, state):
        self.check(settings)
        assert client is self
        champion_version = champion["model_version"] if champion else None
        self.judged.append((candidate, champion_version))
        if self.on_judge:
            self.on_judge()
        checks = [{"name": "floor.AUC", "passed": True, "detail": "AUC ok", "value": 0.9, "limit": 0.5}]
        if champion_version:
            checks.insert(
                0,
                {
                    "name": "beats_champion",
                    "passed": self.verdict["passed"],
                    "detail": "AUC compared",
                    "value": self.verdict["auc"],
                    "limit": 0.86,
                    "rule": "superiority",
                },
            )
        return {
            "passed": self.verdict["passed"],
            "failed": self.verdict["failed"],
            "checks": checks,
            "candidate_version": candidate,
            "champion_version": champion_version,
            "metrics": {"holdout_auc": self.verdict["auc"]},
            "evidence_key": state.key(cfg, candidate),
            "rule": "superiority" if champion_version else None,
        }

    def publish_model_card(self, cfg, client, version, history, settings=None):
        self.check(settings)
        assert history == self.entries()
        self.cards.append(version)

    def describe_registered_model(self, cfg, client, champion_version):
        self.descriptions.append(champion_version)
        return ""

    def entries(self):
        return self.store.entries(NAME)


@pytest.fixture
def world(tmp_path, monkeypatch):
    store = audit.AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.ensure_schema()
    w = World(store)
    for name in ("resolve_alias", "move_alias", "drop_alias"):
        monkeypatch.setattr(registry, name, getattr(w, name))

    def client(settings=None):
        w.check(settings)
        return w

    def open_store(settings=None):
        w.check(settings)
        return store

    monkeypatch.setattr("driftloop.core.tracking.get_client", client)
    monkeypatch.setattr(promotion, "get_client", client)
    monkeypatch.setattr(rollback, "get_client", client)
    monkeypatch.setattr(audit, "open_store", open_store)
    monkeypatch.setattr(promotion, "read_evidence_state", w.read_evidence_state)
    monkeypatch.setattr(promotion, "read_decision", w.read_decision)
    monkeypatch.setattr("driftloop.governance.gates.judge", w.judge)
    monkeypatch.setattr("driftloop.governance.model_card.publish_model_card", w.publish_model_card)
    monkeypatch.setattr(
        "driftloop.governance.model_card.describe_registered_model", w.describe_registered_model
    )
    return w


def test_a_first_passing_version_becomes_champion_with_its_verdict_tags_and_one_audit_entry(world):
    world.aliases[bus.CHALLENGER] = "1"
    result = promotion.promote_model(world.cfg, "1", actor="train/abc", settings=world.settings)
    reason = "first champion: version 1 passes every check (1): AUC ok"
    assert {
        k: result[k] for k in ("decision", "reason", "champion_version", "previous_champion_version")
    } == {
        "decision": "promoted",
        "reason": reason,
        "champion_version": "1",
        "previous_champion_version": None,
    }
    assert (result["candidate_metric"], result["champion_metric"]) == (0.9, None)
    assert (result["moved"], result["policy"], result["failed"], result["reused_verdict"]) == (
        True,
        "auto",
        [],
        False,
    )
    assert (result["evidence"], result["evidence_key"], result["rule"]) == (
        "state vs None",
        "key-1-vs-None",
        None,
    )
    assert world.aliases == {bus.CHAMPION: "1"}  # the challenger alias of the new champion is dropped
    assert world.tags["1"] == {
        bus.GATE_TAG: bus.GATE_PASSED,
        bus.GATE_REASON_TAG: reason,
        bus.GATE_FAILED_CHECKS_TAG: "",
        bus.GATE_CANDIDATE_METRIC_TAG: "0.900000",
        bus.GATE_EVIDENCE_KEY_TAG: "key-1-vs-None",
    }  # the move's intent tag is cleared once the move is recorded
    (entry,) = world.entries()
    assert {k: entry[k] for k in ("from_version", "to_version", "actor", "source", "reason")} == {
        "from_version": None,
        "to_version": "1",
        "actor": "train/abc",
        "source": "driftloop",
        "reason": reason,
    }
    assert (entry["gate_passed"], entry["override"]) == (True, False)
    assert entry["evidence"] == {"failed": [], "gate": "passed"}
    assert result["recorded_moves"][0]["id"] == entry["id"]
    artifacts = [(run, artifact) for run, artifact, _ in world.logged]
    assert artifacts == [
        ("run-1", bus.gate_decision_artifact("key-1-vs-None")),
        ("run-1", bus.GATE_REPORT_ARTIFACT),
    ]
    record = world.logged[1][2]
    assert (record["model_name"], record["reason"], record["policy"], record["decided_for"]) == (
        NAME,
        reason,
        "auto",
        "train/abc",
    )
    assert world.cards == ["1"] and world.descriptions == ["1"]


def test_a_better_version_replaces_the_champion_and_reports_the_champion_metric_without_the_margin(world):
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    world.verdict = {"passed": True, "failed": [], "auc": 0.91}
    result = promotion.promote_model(world.cfg, "2", settings=world.settings)
    assert (result["decision"], result["champion_version"], result["previous_champion_version"]) == (
        "promoted",
        "2",
        "1",
    )
    assert result["champion_metric"] == pytest.approx(0.85)  # the check's limit 0.86 less min_improvement
    assert result["reason"] == "beats champion: AUC compared; every other check passes (1)"
    assert world.tags["2"][bus.GATE_CHAMPION_METRIC_TAG] == "0.850000"
    assert world.tags["2"][bus.GATE_CHAMPION_VERSION_TAG] == "1"
    assert [(e["from_version"], e["to_version"]) for e in world.entries()] == [(None, "1"), ("1", "2")]
    assert world.cards == ["1", "2", "1"]  # both versions of the move get their cards rebuilt


def test_a_failing_version_stays_out_and_is_tagged_rejected(world):
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    world.verdict = {"passed": False, "failed": ["beats_champion"], "auc": 0.8}
    result = promotion.promote_model(world.cfg, "2", settings=world.settings)
    assert (result["decision"], result["moved"], result["champion_version"]) == ("rejected", False, "1")
    assert result["failed"] == ["beats_champion"]
    assert world.tags["2"][bus.GATE_TAG] == bus.GATE_REJECTED
    assert world.tags["2"][bus.GATE_FAILED_CHECKS_TAG] == "beats_champion"
    assert world.aliases[bus.CHAMPION] == "1" and len(world.entries()) == 1
    assert bus.READY_FOR_CHAMPION_TAG not in world.tags["2"]


def test_a_failing_first_version_raises_with_the_reason(world):
    world.verdict = {"passed": False, "failed": ["floor.AUC"], "auc": 0.4}
    with pytest.raises(GateRejected, match="ds-model: version 1 fails 1 check"):
        promotion.promote_model(world.cfg, "1", settings=world.settings)
    assert bus.CHAMPION not in world.aliases and world.entries() == []


def test_under_manual_policy_a_passing_version_is_only_marked_ready(world):
    world.cfg.gates.policy = "manual"
    result = promotion.promote_model(world.cfg, "1", actor="person", settings=world.settings)
    assert (result["decision"], result["moved"], result["champion_version"]) == ("ready", False, None)
    assert world.tags["1"][bus.READY_FOR_CHAMPION_TAG] == f"person: {result['reason']}"
    assert bus.CHAMPION not in world.aliases and world.entries() == []


def test_the_same_evidence_reuses_the_recorded_verdict(world):
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    world.verdict = {"passed": False, "failed": ["beats_champion"], "auc": 0.8}
    promotion.promote_model(world.cfg, "2", settings=world.settings)
    again = promotion.promote_model(world.cfg, "2", settings=world.settings)
    assert again["reused_verdict"] is True and again["decision"] == "rejected"
    assert world.judged == [("1", None), ("2", "1")]  # judged once in this state


def test_a_retry_of_the_champion_returns_its_recorded_verdict_without_judging(world):
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    again = promotion.promote_model(world.cfg, "1", settings=world.settings)
    assert world.judged == [("1", None)]
    assert {
        k: again[k] for k in ("decision", "champion_version", "candidate_version", "moved", "failed")
    } == {
        "decision": "promoted",
        "champion_version": "1",
        "candidate_version": "1",
        "moved": False,
        "failed": [],
    }
    assert again["reason"].startswith("first champion") and again["candidate_metric"] == 0.9
    assert (again["champion_metric"], again["policy"], again["recorded_moves"]) == (None, "auto", [])


def test_a_champion_moved_while_judging_means_judging_again_against_the_new_one(world):
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    world.aliases[bus.CHAMPION] = "2"  # moved outside Driftloop, recorded by reconcile
    world.tags["2"] = {bus.GATE_TAG: bus.GATE_PASSED}
    moves = iter(["3"])

    def move_once():
        version = next(moves, None)
        if version:
            world.aliases[bus.CHAMPION] = version

    world.on_judge = move_once
    result = promotion.promote_model(world.cfg, "4", settings=world.settings)
    assert world.judged[1:] == [("4", "2"), ("4", "3")]
    assert (result["previous_champion_version"], result["champion_version"]) == ("3", "4")
    assert [(e["from_version"], e["to_version"], e["source"]) for e in world.entries()] == [
        (None, "1", "driftloop"),
        ("1", "2", "external"),
        ("2", "3", "external"),
        ("3", "4", "driftloop"),
    ]
    assert [e["to_version"] for e in result["recorded_moves"]] == ["2", "3", "4"]


def test_a_champion_that_never_settles_is_an_error(world):
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    counter = iter(range(100, 200))
    world.on_judge = lambda: world.aliases.__setitem__(bus.CHAMPION, str(next(counter)))
    with pytest.raises(RuntimeError, match="champion kept moving while version 9 was judged"):
        promotion.promote_model(world.cfg, "9", settings=world.settings)
    assert len(world.judged) == 1 + promotion.MAX_REJUDGE


def test_an_ab_winner_moves_champion_under_auto_and_is_marked_ready_under_manual(world):
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    result = promotion.promote_version(world.cfg, 2, actor="ab", reason="won", settings=world.settings)
    assert result == {
        "policy": "auto",
        "version": "2",
        "champion_version": "2",
        "moved": True,
        "recorded_moves": result["recorded_moves"],
    }
    last = world.entries()[-1]
    assert (last["from_version"], last["to_version"], last["actor"], last["reason"]) == (
        "1",
        "2",
        "ab",
        "won",
    )
    assert (last["gate_passed"], last["override"]) == (None, False)  # never judged by the gate
    assert (
        promotion.promote_version(world.cfg, "2", actor="ab", reason="again", settings=world.settings)[
            "moved"
        ]
        is False
    )
    world.cfg.gates.policy = "manual"
    manual = promotion.promote_version(world.cfg, "3", actor="ab", reason="won too", settings=world.settings)
    assert (manual["moved"], manual["champion_version"], manual["policy"]) == (False, "2", "manual")
    assert world.tags["3"][bus.READY_FOR_CHAMPION_TAG] == "ab: won too"


def test_a_person_moving_champion_to_a_rejected_version_is_an_audited_override(world):
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    world.tags["2"] = {bus.GATE_TAG: bus.GATE_REJECTED}
    entry = promotion.set_champion(world.cfg, "2", actor="alice", reason="hotfix", settings=world.settings)
    assert (entry["from_version"], entry["to_version"], entry["actor"]) == ("1", "2", "alice")
    assert (entry["gate_passed"], entry["override"]) == (False, True)
    assert [e["id"] for e in entry["recorded_moves"]] == [entry["id"]]
    assert world.aliases[bus.CHAMPION] == "2" and world.entries()[-1]["override"] is True
    intent_gone = bus.PROMOTION_INTENT_TAG not in world.tags["2"]
    assert intent_gone and world.cards[-2:] == ["2", "1"]


def test_the_move_intent_on_the_version_names_where_the_move_came_from(world, monkeypatch):
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    seen = []
    original = world.move_alias

    def look_then_move(cfg, alias, version, settings=None):
        seen.append(json.loads(world.tags[version][bus.PROMOTION_INTENT_TAG]))
        original(cfg, alias, version, settings)

    monkeypatch.setattr("driftloop.core.registry.move_alias", look_then_move)
    promotion.set_champion(world.cfg, "2", actor="alice", reason="x" * 3000, settings=world.settings)
    assert seen == [{"from_version": "1", "actor": "alice", "reason": "x" * 2000, "evidence": {}}]


def test_promote_trained_skips_a_run_that_registered_nothing(world):
    assert promotion.promote_trained(
        world.cfg, {"reason": "waiting for labels"}, settings=world.settings
    ) == {
        "decision": "skipped",
        "reason": "waiting for labels",
        "moved": False,
    }
    assert (
        promotion.promote_trained(world.cfg, {}, settings=world.settings)["reason"] == "no version registered"
    )
    assert (
        promotion.promote_trained(world.cfg, {"model_version": "1"}, actor="t", settings=world.settings)[
            "decision"
        ]
        == "promoted"
    )
    assert world.entries()[0]["actor"] == "t"


def test_reconcile_and_refresh_rebuilds_both_cards_of_an_outside_move(world):
    assert promotion.reconcile_and_refresh(world.cfg, settings=world.settings) is None and world.cards == []
    world.aliases[bus.CHAMPION] = "5"
    entry = promotion.reconcile_and_refresh(world.cfg, settings=world.settings)
    assert (entry["from_version"], entry["to_version"]) == (None, "5")
    assert world.cards == ["5"] and world.descriptions == ["5"]


@pytest.mark.parametrize(("text", "value"), [("0.5", 0.5), ("", None), (None, None), ("n/a", None)])
def test_a_tag_reads_as_a_number_or_none(text, value):
    assert promotion._float(text) == value


def _champions(world, *versions):
    """Promote ``versions`` in turn; each passes the gate."""
    for version in versions:
        world.tags.setdefault(version, {})[bus.GATE_TAG] = bus.GATE_PASSED
        promotion.set_champion(world.cfg, version, actor="setup", reason="setup", settings=world.settings)


def test_an_undo_returns_to_the_previous_champion_and_records_why(world):
    _champions(world, "1", "2")
    result = rollback.rollback_champion(
        world.cfg, actor="ops", reason="bad day", request_id="run-7", settings=world.settings
    )
    assert (result["from_version"], result["to_version"], result["moved"]) == ("2", "1", True)
    assert (result["actor"], result["reason"], result["override"], result["gate_passed"]) == (
        "ops",
        "rollback: bad day",
        False,
        True,
    )
    assert result["evidence"] == {
        "kind": "undo",
        "rolled_back": "2",
        "request_id": "run-7",
        "override": False,
    }
    assert [e["id"] for e in result["recorded_moves"]] == [result["id"]]
    assert world.aliases[bus.CHAMPION] == "1" and world.cards[-2:] == ["1", "2"]
    retried = rollback.rollback_champion(
        world.cfg, actor="ops", reason="bad day", request_id="run-7", settings=world.settings
    )
    assert (retried["moved"], retried["id"], retried["recorded_moves"]) == (False, result["id"], [])
    assert world.aliases[bus.CHAMPION] == "1" and len(world.entries()) == 3


def test_an_undo_skips_a_version_that_did_not_pass_and_says_when_there_is_nothing_below(world):
    _champions(world, "1", "2", "3")
    world.tags["2"][bus.GATE_TAG] = bus.GATE_REJECTED
    assert (
        rollback.rollback_champion(world.cfg, actor="ops", reason="r", settings=world.settings)["to_version"]
        == "1"
    )
    with pytest.raises(rollback.RollbackImpossible) as raised:
        rollback.rollback_champion(world.cfg, actor="ops", reason="r", settings=world.settings)
    assert str(raised.value) == (
        "ds-model: champion is v1 and no version below it in the rollback stack (v1) passed its gate; "
        "use --to V (with --override for a version the gate rejected)"
    )


def test_an_undo_without_any_champion_names_an_empty_stack(world):
    with pytest.raises(rollback.RollbackImpossible, match=r"champion is unset .* stack \(empty\)"):
        rollback.rollback_champion(world.cfg, actor="ops", reason="r", settings=world.settings)


def test_a_rollback_to_a_rejected_version_needs_an_override_and_is_flagged(world):
    _champions(world, "1", "2")
    world.tags["5"] = {bus.GATE_TAG: bus.GATE_REJECTED, bus.GATE_REASON_TAG: "AUC too low"}
    with pytest.raises(rollback.RollbackRefused) as refused:
        rollback.rollback_champion(
            world.cfg, actor="ops", reason="r", to_version="5", settings=world.settings
        )
    assert str(refused.value) == (
        "ds-model: v5 was rejected by the gate (AUC too low); roll back to it only with --override"
    )
    with pytest.raises(
        rollback.RollbackRefused, match="v6 was never judged by the gate \\(no reason recorded\\)"
    ):
        rollback.rollback_champion(
            world.cfg, actor="ops", reason="r", to_version="6", settings=world.settings
        )
    entry = rollback.rollback_champion(
        world.cfg, actor="ops", reason="r", to_version=5, override=True, settings=world.settings
    )
    assert (entry["to_version"], entry["reason"], entry["override"], entry["moved"]) == (
        "5",
        "rollback (override): r",
        True,
        True,
    )
    assert entry["evidence"] == {"kind": "to", "rolled_back": "2", "request_id": "", "override": True}
    assert world.aliases[bus.CHAMPION] == "5"


def test_a_rollback_to_the_current_champion_moves_nothing(world):
    _champions(world, "1", "2")
    result = rollback.rollback_champion(
        world.cfg, actor="ops", reason="r", to_version="2", settings=world.settings
    )
    assert result == {"to_version": "2", "moved": False, "recorded_moves": []}
    assert len(world.entries()) == 2


def test_a_rollback_first_records_a_move_made_outside_driftloop(world):
    _champions(world, "1", "2")
    world.aliases[bus.CHAMPION] = "3"
    world.tags["3"] = {bus.GATE_TAG: bus.GATE_PASSED}
    result = rollback.rollback_champion(world.cfg, actor="ops", reason="r", settings=world.settings)
    assert [(e["source"], e["to_version"]) for e in result["recorded_moves"]] == [
        ("external", "3"),
        ("driftloop", "2"),
    ]


def test_each_decision_logs_one_line_with_its_numbers(world, caplog):
    caplog.set_level("INFO", logger="driftloop.governance")
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    world.verdict = {"passed": False, "failed": ["beats_champion"], "auc": 0.8}
    promotion.promote_model(world.cfg, "2", settings=world.settings)
    promotion.promote_model(world.cfg, "2", settings=world.settings)
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    world.aliases[bus.CHAMPION] = "3"
    promotion.reconcile_and_refresh(world.cfg, settings=world.settings)
    promotion.promote_trained(world.cfg, {"reason": "waiting"}, settings=world.settings)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("driftloop.governance.promotion")]
    verdicts = [line for line in lines if line.startswith("gate verdict")]
    assert verdicts[0] == (
        "gate verdict v1 (policy auto, state vs None; evidence key key-1-vs-None): passed; "
        "champion moved to v1: first champion: version 1 passes every check (1): AUC ok"
    )
    assert verdicts[1].startswith("gate verdict v2 (policy auto, rule superiority: state vs 1; evidence key ")
    assert verdicts[1].endswith(
        "): rejected; champion stays v1: does not beat champion: AUC compared; champion v1 keeps serving"
    )
    assert ", the verdict of " in verdicts[2] and " reused)" in verdicts[2]
    assert "ds-model: v1 is already champion; finishing its cards and aliases" in lines
    assert "ds-model: recorded a move of champion v1 -> v3 by " + audit.EXTERNAL_ACTOR in lines
    assert "ds: nothing to promote: waiting" in lines


def test_the_stale_challenger_alias_of_a_new_champion_is_dropped_and_logged(world, caplog):
    caplog.set_level("INFO", logger="driftloop.governance")
    world.aliases[bus.CHALLENGER] = "1"
    promotion.set_champion(world.cfg, "1", actor="a", reason="r", settings=world.settings)
    assert bus.CHALLENGER not in world.aliases
    assert "ds-model: dropped the stale challenger alias of champion v1" in caplog.messages


def test_the_recorded_verdict_carries_when_and_for_whom_it_was_decided(world):
    promotion.promote_model(world.cfg, "1", actor="train/1", settings=world.settings)
    record = world.logged[-1][2]
    assert record["decided_for"] == "train/1" and record["decided_at"].endswith("+00:00")


def test_a_retried_champion_reads_its_champion_metric_from_its_tags(world):
    promotion.promote_model(world.cfg, "1", settings=world.settings)
    world.verdict = {"passed": True, "failed": [], "auc": 0.95}
    promotion.promote_model(world.cfg, "2", settings=world.settings)
    again = promotion.promote_model(world.cfg, "2", settings=world.settings)
    assert (again["candidate_metric"], again["champion_metric"]) == (0.95, pytest.approx(0.85))
    assert again["reason"].startswith("beats champion")


def test_a_rollback_logs_where_champion_went(world, caplog):
    caplog.set_level("INFO", logger="driftloop.governance")
    _champions(world, "1", "2")
    rollback.rollback_champion(world.cfg, actor="ops", reason="bad day", settings=world.settings)
    rollback.rollback_champion(world.cfg, actor="ops", reason="r", to_version="1", settings=world.settings)
    assert "ds-model: rolled champion back from v2 to v1 (undo, bad day)" in caplog.messages
    assert "ds-model: champion is already v1; nothing moved" in caplog.messages


def test_with_rollout_stages_a_first_version_becomes_champion_and_the_next_enters_the_rollout(
    world, monkeypatch
):
    from driftloop.governance import rollout_state

    begun: list[str] = []

    def begin(cfg, version, **kw):
        begun.append(version)
        return {"version": version}

    monkeypatch.setattr(rollout_state, "begin_rollout", begin)
    world.cfg.rollout = SimpleNamespace(stages=["shadow", 100])
    first = promotion.promote_model(world.cfg, "1", actor="train/a", settings=world.settings)
    # Nothing to roll out against: a rollout waiting for a champion would leave nothing serving.
    assert (first["decision"], first["moved"], first["rollout_entries"]) == ("promoted", True, [])
    assert world.aliases == {bus.CHAMPION: "1"} and begun == []
    second = promotion.promote_model(world.cfg, "2", actor="train/b", settings=world.settings)
    assert (second["decision"], second["moved"], second["champion_version"]) == ("rollout", False, "1")
    assert begun == ["2"] and world.aliases[bus.CHAMPION] == "1"
    assert [(e["from_version"], e["to_version"]) for e in world.entries()] == [(None, "1")]
