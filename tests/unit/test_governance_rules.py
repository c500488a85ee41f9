"""Sharper tests of the governance rules without models or MLflow: gate boundaries, the underpowered-window
rule, the gate's tags and summary, the audit store's chain and reconcile, the champion stack (from mutation
testing, docs/mutation.md)."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import pytest

from driftloop.core import bus
from driftloop.governance import audit, gates, rollback


def _cfg(floors=None, max_size_mb=None):
    return SimpleNamespace(
        name="ds",
        registered_model_name="ds-model",
        gates=SimpleNamespace(floors=floors or {}, max_model_size_mb=max_size_mb),
    )


# --- floors and ceilings: the boundary value passes, the next value out fails


def test_a_floor_passes_at_its_limit_and_fails_just_below():
    cfg = _cfg({"AUC": 0.8})
    (at,) = gates.floor_checks(cfg, {"holdout_auc": 0.8})
    (below,) = gates.floor_checks(cfg, {"holdout_auc": 0.7999})
    assert at == {
        "name": "floor.AUC",
        "passed": True,
        "value": 0.8,
        "limit": 0.8,
        "detail": "AUC 0.8000 >= floor 0.8",
    }
    assert (below["passed"], below["detail"]) == (False, "AUC 0.7999 < floor 0.8")


def test_an_error_metric_has_a_ceiling():
    cfg = _cfg({"RMSE": 2.5})
    (at,) = gates.floor_checks(cfg, {"holdout_rmse": 2.5})
    (above,) = gates.floor_checks(cfg, {"holdout_rmse": 2.5001})
    assert (at["passed"], at["detail"]) == (True, "RMSE 2.5000 <= ceiling 2.5")
    assert (above["passed"], above["detail"]) == (False, "RMSE 2.5001 > ceiling 2.5")


def test_a_missing_or_nan_metric_fails_its_floor():
    cfg = _cfg({"AUC": 0.5, "F1": 0.1})
    missing, nan = gates.floor_checks(cfg, {"holdout_f1": float("nan")})
    assert (missing["name"], missing["passed"], missing["value"]) == ("floor.AUC", False, None)
    assert missing["detail"] == "AUC missing < floor 0.5"
    assert (nan["name"], nan["passed"]) == ("floor.F1", False)


def test_size_passes_at_its_limit_and_is_only_reported_without_one():
    assert gates.sizecheck_entry(_cfg(max_size_mb=10.0), 10.0) == {
        "name": "size",
        "passed": True,
        "value": 10.0,
        "limit": 10.0,
        "detail": "10.00 MB (limit 10.0 MB)",
    }
    assert gates.sizecheck_entry(_cfg(max_size_mb=10.0), 10.01)["passed"] is False
    unlimited = gates.sizecheck_entry(_cfg(), 123.456)
    assert (unlimited["passed"], unlimited["detail"]) == (None, "123.46 MB (no limit)")


# --- a production window with fewer rows than its rule needs


def _window(passed, rows, needed, improvement_low, width, bound=0.0):
    return {
        "name": "beats_champion.production",
        "passed": passed,
        "rows": rows,
        "needed_rows": needed,
        "improvement_low": improvement_low,
        "ci_low": -width / 2,
        "ci_high": width / 2,
        "bound": bound,
        "detail": "d",
    }


def test_an_underpowered_failing_window_is_reported_not_enforced():
    check = _window(False, rows=300, needed=1200, improvement_low=-0.05, width=0.08)  # high end +0.03 > 0
    judged = gates._unless_underpowered(check)
    assert (judged["passed"], judged["underpowered"]) == (None, True)
    assert judged["detail"] == "d; reported, not enforced: 300 rows, fewer than the 1200 the rule needs"


def test_an_underpowered_window_still_blocks_a_credibly_worse_candidate():
    # Whole interval at or below the bound: the upper end of the improvement is -0.05 + 0.05 = 0 <= 0.
    check = _window(False, rows=300, needed=1200, improvement_low=-0.05, width=0.05)
    assert gates._unless_underpowered(check) is check


@pytest.mark.parametrize(
    ("passed", "rows", "needed"),
    [(True, 300, 1200), (None, 300, 1200), (False, 1200, 1200), (False, 300, None), (False, 300, 0)],
)
def test_a_window_with_enough_rows_or_not_failing_is_left_as_it_is(passed, rows, needed):
    check = _window(passed, rows=rows, needed=needed, improvement_low=-0.05, width=0.5)
    assert gates._unless_underpowered(check) is check


def test_a_window_without_rows_counts_as_zero_rows():
    check = _window(False, rows=0, needed=10, improvement_low=-0.05, width=0.5)
    del check["rows"]
    assert gates._unless_underpowered(check)["detail"].endswith(": 0 rows, fewer than the 10 the rule needs")


# --- the gate's tags and its one-line summary


def _head(rule="superiority", **extra):
    return {
        "name": "beats_champion",
        "passed": True,
        "detail": "AUC better",
        "rule": rule,
        "method": "delong",
        "difference": 0.0123456789,
        "ci_low": 0.001,
        "ci_high": float("nan"),
        "rows": 1500,
        "needed_rows": None,
        **extra,
    }


def test_evidence_tags_carry_the_head_to_head_window_and_positive_rates():
    window = {**_head(), "name": "beats_champion.production", "rows": 400, "difference": -0.5}
    rates = {"name": "decision.positive_rate", "holdout_positive_rate": 0.25, "oof_positive_rate": 0.2}
    tags = gates.evidence_tags({"checks": [_head(), window, rates]})
    assert tags[bus.GATE_RULE_TAG] == "superiority" and tags[bus.GATE_METHOD_TAG] == "delong"
    assert tags[bus.GATE_DIFFERENCE_TAG] == "0.0123457"  # six significant digits
    assert (tags[bus.GATE_CI_LOW_TAG], tags[bus.GATE_CI_HIGH_TAG]) == ("0.001", "")  # NaN: empty
    assert (tags[bus.GATE_ROWS_TAG], tags[bus.GATE_NEEDED_ROWS_TAG]) == ("1500", "")
    production = json.loads(tags[bus.GATE_PRODUCTION_COMPARISON_TAG])
    assert production == {
        "rule": "superiority",
        "method": "delong",
        "difference": "-0.5",
        "ci_low": "0.001",
        "ci_high": "",
        "rows": "400",
        "needed_rows": "",
    }
    assert (tags[bus.HOLDOUT_POSITIVE_RATE_TAG], tags[bus.OOF_POSITIVE_RATE_TAG]) == ("0.25", "0.2")
    assert len(tags) == 10


def test_evidence_tags_skip_what_the_report_lacks():
    window_without_rule = {"name": "beats_champion.production", "passed": None, "detail": "12 rows"}
    assert gates.evidence_tags({"checks": [window_without_rule]}) == {}
    assert gates._text(float("inf")) == "" and gates._text(3) == "3" and gates._text(None) == ""


def _report(checks, failed, champion="3"):
    return {"checks": checks, "failed": failed, "candidate_version": "4", "champion_version": champion}


def test_the_summary_of_a_promotion_names_the_rule_and_counts_the_other_checks():
    floor = {"name": "floor.AUC", "passed": True, "detail": "AUC 0.9 >= floor 0.8"}
    size = {"name": "size", "passed": True, "detail": "1 MB"}
    assert gates.summarize(_report([_head(), floor, size], [])) == (
        "beats champion: AUC better; every other check passes (2)"
    )
    ni = _head(rule="non_inferiority")
    assert gates.summarize(_report([ni, floor], [])) == (
        "within margin of champion: AUC better; every other check passes (1)"
    )
    assert gates.summarize(_report([floor, size], [], champion=None)) == (
        "first champion: version 4 passes every check (2): AUC 0.9 >= floor 0.8"
    )


def test_the_summary_of_a_rejection_leads_with_the_head_to_head_and_lists_the_rest():
    head = _head(passed=False, detail="AUC not better")
    floor = {"name": "floor.AUC", "passed": False, "detail": "AUC 0.7 < floor 0.8"}
    size = {"name": "size", "passed": False, "detail": "99 MB"}
    assert gates.summarize(_report([head, floor, size], ["beats_champion", "floor.AUC", "size"])) == (
        "does not beat champion: AUC not better; also fails: AUC 0.7 < floor 0.8; 99 MB; "
        "champion v3 keeps serving"
    )
    ni = {**head, "rule": "non_inferiority"}
    assert gates.summarize(_report([ni], ["beats_champion"])) == (
        "not shown within margin of champion: AUC not better; champion v3 keeps serving"
    )
    assert gates.summarize(_report([floor, size], ["floor.AUC", "size"], champion=None)) == (
        "version 4 fails 2 check(s): AUC 0.7 < floor 0.8; 99 MB"
    )


# --- the audit store: append-only, defaults, a chain per model, the promotion lock


@pytest.fixture
def store(tmp_path):
    store = audit.AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.ensure_schema()
    return store


def _entry(to_version, from_version=None, model="ds-model", **extra):
    return {
        "dataset": "ds",
        "model_name": model,
        "from_version": from_version,
        "to_version": to_version,
        "actor": "driftloop",
        "source": "driftloop",
        "reason": "r",
        **extra,
    }


def test_audit_entries_come_back_as_written_with_their_defaults(store):
    first = store.append(_entry("1"))
    assert (first["override"], first["gate_passed"], first["evidence"]) == (False, None, {})
    store.append(_entry("2", "1", gate_passed=True, evidence={"kind": "to", "n": 2}))
    store.append(_entry("5", model="other-model", gate_passed=False, override=True))
    store.append(_entry("3", "2", gate_passed=False, override=True))
    rows = store.entries("ds-model")
    assert [(r["from_version"], r["to_version"]) for r in rows] == [(None, "1"), ("1", "2"), ("2", "3")]
    assert [r["gate_passed"] for r in rows] == [None, True, False]
    assert [r["override"] for r in rows] == [False, False, True]
    assert rows[1]["evidence"] == {"kind": "to", "n": 2} and rows[0]["id"] == first["id"]
    assert rows[0]["recorded_at"] == first["recorded_at"] and rows[0]["recorded_at"].endswith("+00:00")
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert set(rows[0]) == set(audit.COLUMNS)


def test_the_audit_table_refuses_updates_and_deletes(store, tmp_path):
    store.append(_entry("1"))
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        for statement in ("UPDATE champion_audit SET to_version = '9'", "DELETE FROM champion_audit"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                conn.execute(statement)
    assert [r["to_version"] for r in store.entries("ds-model")] == ["1"]


def test_the_promotion_lock_commits_its_block_or_rolls_it_back(store):
    with store.locked("ds-model") as conn:
        store.append(_entry("1"), conn)
        assert [r["to_version"] for r in store.entries("ds-model", conn)] == ["1"]
    with pytest.raises(RuntimeError), store.locked("ds-model") as conn:
        store.append(_entry("2", "1"), conn)
        raise RuntimeError("decided against it")
    assert [r["to_version"] for r in store.entries("ds-model")] == ["1"]


def test_the_default_store_is_a_sqlite_file_under_home(tmp_path):
    home = tmp_path / "home"
    settings = SimpleNamespace(audit_db_uri="", home_dir=home)
    assert audit.AuditStore.url_for(settings) == f"sqlite:///{home / 'audit' / 'audit.db'}"
    assert (home / "audit").is_dir()
    configured = SimpleNamespace(audit_db_uri="sqlite:////elsewhere/a.db", home_dir=home)
    assert audit.AuditStore.url_for(configured) == "sqlite:////elsewhere/a.db"


# --- reconcile: a move nobody recorded


class _Registry:
    """The champion alias and the versions' tags, as reconcile_champion reads them."""

    def __init__(self, champion, tags):
        self.champion, self.tags = champion, tags

    def resolve_alias(self, cfg, alias, settings=None):
        assert alias == bus.CHAMPION
        return None if self.champion is None else {"model_version": self.champion}

    def get_model_version(self, name, version):
        assert name == "ds-model"
        return SimpleNamespace(tags=self.tags.get(version, {}))


@pytest.fixture
def registry(monkeypatch):
    fake = _Registry(None, {})
    monkeypatch.setattr("driftloop.core.registry.resolve_alias", fake.resolve_alias)
    monkeypatch.setattr("driftloop.core.tracking.get_client", lambda settings=None: fake)
    return fake


def test_reconcile_records_nothing_when_the_registry_matches_the_log(store, registry):
    assert audit.reconcile_champion(_cfg(), store=store) is None  # no champion, no entries
    store.append(_entry("1"))
    registry.champion = "1"
    assert audit.reconcile_champion(_cfg(), store=store) is None
    assert len(store.entries("ds-model")) == 1


def test_reconcile_records_an_outside_move_to_a_rejected_version_as_an_override(store, registry):
    store.append(_entry("1"))
    registry.champion = "2"
    registry.tags = {"2": {bus.GATE_TAG: "rejected"}}
    entry = audit.reconcile_champion(_cfg(), store=store)
    (recorded,) = store.entries("ds-model")[1:]
    assert recorded["id"] == entry["id"]
    assert {k: recorded[k] for k in ("from_version", "to_version", "source", "gate_passed", "override")} == {
        "from_version": "1",
        "to_version": "2",
        "source": "external",
        "gate_passed": False,
        "override": True,
    }
    assert recorded["actor"] == audit.EXTERNAL_ACTOR
    assert recorded["reason"] == "champion alias moved outside Driftloop"
    assert recorded["dataset"] == "ds"


def test_reconcile_records_a_deleted_alias_and_an_unjudged_version_without_override(store, registry):
    store.append(_entry("1"))
    entry = audit.reconcile_champion(_cfg(), store=store)
    assert (entry["to_version"], entry["reason"], entry["override"]) == (
        None,
        "champion alias deleted outside Driftloop",
        False,
    )
    registry.champion = "3"  # no gate tag: never judged
    entry = audit.reconcile_champion(_cfg(), store=store)
    assert (entry["from_version"], entry["gate_passed"], entry["override"]) == (None, None, False)


def test_reconcile_finishes_a_driftloop_move_from_the_intent_it_left(store, registry):
    store.append(_entry("1"))
    intent = {"from_version": "1", "actor": "promote", "reason": "beats champion", "evidence": {"x": 1}}
    registry.champion = "2"
    registry.tags = {"2": {bus.GATE_TAG: bus.GATE_PASSED, bus.PROMOTION_INTENT_TAG: json.dumps(intent)}}
    entry = audit.reconcile_champion(_cfg(), store=store)
    assert {k: entry[k] for k in ("from_version", "to_version", "actor", "source", "reason")} == {
        "from_version": "1",
        "to_version": "2",
        "actor": "promote",
        "source": "driftloop",
        "reason": "beats champion",
    }
    assert (entry["gate_passed"], entry["override"]) == (True, False)
    assert entry["evidence"] == {"x": 1, "recorded_by": "reconcile (the move's own entry was lost)"}
    assert store.entries("ds-model")[-1]["evidence"] == entry["evidence"]


def test_reconcile_ignores_an_intent_from_another_starting_point_or_unreadable(store, registry):
    store.append(_entry("1"))
    stale = {"from_version": "0", "actor": "promote", "reason": "old"}
    registry.champion = "2"
    registry.tags = {"2": {bus.PROMOTION_INTENT_TAG: json.dumps(stale)}}
    assert audit.reconcile_champion(_cfg(), store=store)["source"] == "external"
    registry.champion = "3"
    registry.tags = {"3": {bus.PROMOTION_INTENT_TAG: "{not json"}}
    assert audit.reconcile_champion(_cfg(), store=store)["source"] == "external"


def test_an_intent_with_an_override_in_its_evidence_stays_an_override(store, registry):
    store.append(_entry("1"))
    intent = {"from_version": "1", "evidence": {"override": True}}
    registry.champion = "2"
    registry.tags = {"2": {bus.GATE_TAG: bus.GATE_PASSED, bus.PROMOTION_INTENT_TAG: json.dumps(intent)}}
    entry = audit.reconcile_champion(_cfg(), store=store)
    assert (entry["actor"], entry["reason"], entry["override"]) == ("driftloop", "", True)


def test_gate_passed_reads_the_version_tag(registry):
    registry.tags = {"1": {bus.GATE_TAG: bus.GATE_PASSED}, "2": {bus.GATE_TAG: "rejected"}}
    assert [audit.gate_passed(registry, _cfg(), v) for v in ("1", "2", "3", None)] == [
        True,
        False,
        None,
        None,
    ]


# --- the champion stack


def _move(to_version, from_version=None, **evidence):
    return {"from_version": from_version, "to_version": to_version, "evidence": evidence}


def test_the_champion_stack_pops_undos_and_keeps_targeted_rollbacks():
    history = [
        _move("1"),
        _move("2", "1"),
        _move("2", "2"),  # a repeat is not a new level
        _move("3", "2"),
        _move("2", "3", kind=rollback.UNDO),
        _move("4", "2"),
        _move("1", "4", kind=rollback.TO),  # a targeted rollback is a move
    ]
    assert rollback.champion_stack(history) == ["1", "2", "4", "1"]
    legacy_undo = _move("1", "2", rolled_back="2")  # entries before `kind` existed
    assert rollback.is_undo(legacy_undo) and not rollback.is_undo(_move("1", "2"))
    assert rollback.champion_stack([_move("1"), _move("2", "1"), legacy_undo]) == ["1"]
    assert rollback.champion_stack([_move("1"), _move("7", "1", kind=rollback.UNDO)]) == ["7"]
    assert rollback.champion_stack([_move("3", "9", kind=rollback.UNDO)]) == ["3"]


def test_undo_skips_versions_that_did_not_pass_and_the_current_one():
    history = [_move("1"), _move("2", "1"), _move("3", "2"), _move("4", "3")]
    passed = {"1": True, "2": None, "3": False, "4": True}.get
    assert rollback.undo_target(history, "4", passed) == "1"
    assert rollback.undo_target(history, "4", lambda v: True) == "3"
    assert rollback.undo_target(history, "9", lambda v: True) == "4"  # current is not on the stack
    assert rollback.undo_target([_move("1")], "1", lambda v: True) is None
    assert rollback.undo_target([_move(None), _move("1", None)], "1", lambda v: True) is None


def test_audit_and_rollback_log_what_they_record(store, registry, caplog):
    caplog.set_level("INFO", logger="driftloop.governance")
    store.append(_entry("1"))
    registry.champion = "1"
    audit.reconcile_champion(_cfg(), store=store)
    registry.champion = "2"
    registry.tags = {"2": {bus.GATE_TAG: "rejected"}}
    audit.reconcile_champion(_cfg(), store=store)
    assert caplog.messages == [
        "registry matches the audit log: champion is v1 (1 entries)",
        "champion moved outside Driftloop: v1 -> v2, gate passed: False (OVERRIDE); "
        "recorded in the audit log",
    ]


def test_a_postgresql_url_makes_a_postgresql_store():
    pytest.importorskip("psycopg2")
    assert audit.AuditStore("postgresql+psycopg2://writer@db.invalid/audit").postgres is True
    assert audit.AuditStore("sqlite:///:memory:").postgres is False
