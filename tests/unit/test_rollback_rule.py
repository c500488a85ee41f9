"""The rollback rule as README writes it, on audit histories written by hand (no registry needed)."""

from __future__ import annotations

from driftloop.governance.rollback import champion_stack, undo_target


def _move(to, frm=None, kind=None):
    evidence = {} if kind is None else {"kind": kind, "rolled_back": frm}
    return {"from_version": frm, "to_version": to, "evidence": evidence}


def _passed_all(version):
    return True


def test_undo_after_rollback_to_returns_where_to_started():
    # v1 and v2 by the gate; rollback (v2 -> v1); rollback --to 2; rollback: back to v1, not "nothing moved".
    history = [_move("1"), _move("2", "1"), _move("1", "2", "undo"), _move("2", "1", "to")]
    assert champion_stack(history) == ["1", "2"]
    assert undo_target(history, "2", _passed_all) == "1"


def test_repeated_undo_walks_back_one_step_at_a_time_and_stops_at_the_bottom():
    history = [_move("1"), _move("2", "1"), _move("3", "2")]
    assert undo_target(history, "3", _passed_all) == "2"
    history.append(_move("2", "3", "undo"))
    assert undo_target(history, "2", _passed_all) == "1"
    history.append(_move("1", "2", "undo"))
    assert champion_stack(history) == ["1"]
    assert undo_target(history, "1", _passed_all) is None  # never toggles back to 2


def test_undo_skips_versions_that_failed_their_gate_and_an_external_move_is_a_step():
    gate = {"1": True, "2": False, "3": True}
    # v1 gate, external move to the rejected v2, v3 gate: undo from v3 skips v2 and lands on v1.
    history = [_move("1"), _move("2", "1"), _move("3", "2")]
    assert undo_target(history, "3", gate.get) == "1"
    history.append(_move("1", "3", "undo"))
    assert champion_stack(history) == ["1"]


def test_a_deleted_alias_is_undone_to_the_champion_before_it():
    history = [_move("1"), _move("2", "1"), _move(None, "2")]
    assert undo_target(history, None, _passed_all) == "2"


def test_entries_written_before_the_kind_field_count_as_undos():
    legacy = {"from_version": "2", "to_version": "1", "evidence": {"rolled_back": "2", "request_id": ""}}
    assert champion_stack([_move("1"), _move("2", "1"), legacy]) == ["1"]
