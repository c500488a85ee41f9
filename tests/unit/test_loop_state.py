"""The loop's state (driftloop.governance.loop_state) from hand-written facts, one scenario per state.

Times are 2026-01-01 00:00 UTC (``T``, epoch 1767225600) plus hours, so every detail is written out by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from driftloop.governance.loop_state import (
    STATES,
    Firing,
    LoopFacts,
    LoopState,
    MonitoringResult,
    Move,
    VersionFact,
    loop_state,
)

PROJECT_DIR = Path(__file__).resolve().parents[2]
T, H = 1_767_225_600.0, 3600.0
FIRED = "the sensor fired 2026-01-01 00:00 UTC (monitoring run m1)"
FIRING = Firing(at_s=T, monitoring_run_id="m1", trigger_run_id="drift__1", champion_version="2")
V2 = VersionFact("2", T - 24 * H, "passed", "first", "new_data")  # the champion before the firing
FIRED_RESULT = MonitoringResult(T - 60, 0.50, 0.30, fired=True, decision="fired: drift__1")


def state(**facts) -> tuple[str, str]:
    result = loop_state(LoopFacts(**facts))
    return result.state, result.detail


def test_no_champion():
    assert state(champion=None) == ("no champion", "no version holds champion yet")


def test_ok_below_the_thresholds_and_without_a_result():
    below = MonitoringResult(T, 0.10, 0.30, live_drop=0.01, drop_threshold=0.05)
    assert state(champion="2", versions=(V2,), newest_result=below) == (
        "ok",
        "champion v2; monitoring result 2026-01-01 00:00 UTC: drift share 0.10 < 0.30",
    )
    assert state(champion="2") == ("ok", "champion v2; no monitoring result yet")


def test_drift_when_the_newest_result_crosses_without_a_firing():
    crossing = MonitoringResult(T, 0.45, 0.30, decision="suppressed: cooldown")
    assert state(champion="2", versions=(V2,), newest_result=crossing) == (
        "drift",
        "monitoring result 2026-01-01 00:00 UTC: drift share 0.45 >= 0.30, no retrain fired "
        "(suppressed: cooldown); champion v2",
    )
    live_drop = MonitoringResult(T, 0.10, 0.30, live_drop=0.12, drop_threshold=0.05)
    assert state(champion="2", newest_result=live_drop) == (
        "drift",
        "monitoring result 2026-01-01 00:00 UTC: live drop 0.120 > 0.050, no retrain fired; champion v2",
    )


def test_a_crossing_older_than_the_champions_last_move_is_not_drift():
    crossing = MonitoringResult(T, 0.45, 0.30)
    move = Move(T + H, "1", "2", "alice", "manual")
    assert state(champion="2", newest_move=move, newest_result=crossing) == (
        "ok",
        "champion v2 moved 2026-01-01 01:00 UTC, after the result of 2026-01-01 00:00 UTC "
        "(drift share 0.45 >= 0.30)",
    )


def test_retraining_while_no_version_answers_the_firing():
    later = MonitoringResult(T + H, 0.48, 0.30, decision="suppressed: cooldown")  # covered by the firing
    for newest in (FIRED_RESULT, later):
        assert state(champion="2", firing=FIRING, versions=(V2,), newest_result=newest) == (
            "retraining",
            f"{FIRED}; no version registered since; champion v2",
        )


def test_retraining_while_the_answering_version_waits_for_its_gate():
    v3 = VersionFact("3", T + H, "", "", "drift", frozenset({"m1"}))
    assert state(champion="2", firing=FIRING, versions=(V2, v3), newest_result=FIRED_RESULT) == (
        "retraining",
        f"v3 registered 2026-01-01 01:00 UTC, gate verdict pending; {FIRED}",
    )


def test_waiting_for_labels():
    waiting = Firing(T, "m1", "drift__1", "2", waiting="no labelled rows since snapshot ab12")
    assert state(champion="2", firing=waiting, versions=(V2,), newest_result=FIRED_RESULT) == (
        "waiting for labels",
        f"{FIRED}; no version since: no labelled rows since snapshot ab12",
    )


def test_the_reported_bug_a_finished_retrain_whose_version_serves_is_retrained_not_retraining():
    v3 = VersionFact("3", T + H, "passed", "AUC up", "drift", frozenset({"m1", "drift__1"}))
    promoted = Move(T + 1.5 * H, "2", "3", "promote_model", "gate passed")
    got = state(
        champion="3", firing=FIRING, versions=(v3, V2), newest_move=promoted, newest_result=FIRED_RESULT
    )
    assert got == (
        "retrained",
        "champion v3 (drift, registered 2026-01-01 01:00 UTC, gate passed, promoted 2026-01-01 01:30 UTC by "
        f"promote_model) after {FIRED}",
    )


def test_retrained_when_labels_came_later_and_a_new_data_version_became_champion():
    waiting = Firing(T, "m1", "drift__1", "2", waiting="no labelled rows since snapshot ab12")
    v3 = VersionFact("3", T + 2 * H, "passed", "", "new_data")  # answers by time: registered after the firing
    assert state(champion="3", firing=waiting, versions=(V2, v3), newest_result=FIRED_RESULT) == (
        "retrained",
        f"champion v3 (new_data, registered 2026-01-01 02:00 UTC, gate passed) after {FIRED}",
    )


def test_retrained_champion_kept_when_the_gate_rejected_the_retrain():
    v3 = VersionFact("3", T + H, "rejected", "AUC fell", "drift", frozenset({"m1"}))
    assert state(champion="2", firing=FIRING, versions=(V2, v3), newest_result=FIRED_RESULT) == (
        "retrained, champion kept",
        f"v3 rejected (AUC fell); champion v2 kept; {FIRED}",
    )


def test_a_retrain_answered_by_an_older_version_of_the_same_training_key():
    v1 = VersionFact(
        "1", T - 48 * H, "passed", "", "new_data", frozenset({"drift__1"})
    )  # asked_by the trigger
    assert state(champion="2", firing=FIRING, versions=(v1, V2), newest_result=FIRED_RESULT) == (
        "retrained, champion kept",
        f"v1 passed; champion v2 kept; {FIRED}",
    )
    v2_again = VersionFact("2", T - 24 * H, "passed", "", "new_data", frozenset({"drift__1"}))
    assert state(champion="2", firing=FIRING, versions=(v2_again,), newest_result=FIRED_RESULT) == (
        "retrained, champion kept",
        f"champion v2's training key again; champion v2 kept; {FIRED}",
    )


def test_rolled_back_when_an_undo_follows_the_firing():
    v3 = VersionFact("3", T + H, "passed", "", "drift", frozenset({"m1"}))
    undo = Move(T + 3 * H, "3", "2", "alice", "rollback: p99 latency doubled", undo=True)
    assert state(
        champion="2", firing=FIRING, versions=(V2, v3), newest_move=undo, newest_result=FIRED_RESULT
    ) == (
        "rolled back",
        "champion rolled back from v3 to v2 2026-01-01 03:00 UTC by alice: rollback: p99 latency doubled",
    )
    assert state(champion="2", newest_move=undo)[0] == "rolled back"


def test_an_undo_older_than_the_firing_gives_way_to_it():
    undo = Move(T - H, "3", "2", "alice", "rollback: bad", undo=True)
    assert state(champion="2", firing=FIRING, versions=(V2,), newest_move=undo)[0] == "retraining"


def test_a_rollback_to_a_named_version_is_a_forward_move_not_an_undo():
    to = Move(T + 3 * H, "3", "2", "alice", "rollback: pin v2", undo=False)
    v3 = VersionFact("3", T + H, "passed", "", "drift", frozenset({"m1"}))
    assert state(
        champion="2", firing=FIRING, versions=(V2, v3), newest_move=to, newest_result=FIRED_RESULT
    ) == (
        "retrained, champion kept",
        f"v3 passed; champion v2 kept; {FIRED}",
    )


def test_drift_after_an_outcome_replaces_it_but_not_before():
    v3 = VersionFact("3", T + H, "passed", "", "drift", frozenset({"m1"}))
    facts = {"champion": "3", "firing": FIRING, "versions": (V2, v3)}
    newer = MonitoringResult(T + 5 * H, 0.41, 0.30, decision="suppressed: cooldown")
    assert state(**facts, newest_result=newer) == (
        "drift",
        "monitoring result 2026-01-01 05:00 UTC: drift share 0.41 >= 0.30, no retrain fired "
        "(suppressed: cooldown); champion v3",
    )
    older = MonitoringResult(T + 0.5 * H, 0.41, 0.30, decision="suppressed: covered_by:m1")
    assert state(**facts, newest_result=older)[0] == "retrained"
    undo = Move(T + 3 * H, "3", "2", "alice", "rollback: bad", undo=True)
    after_undo = MonitoringResult(T + 4 * H, 0.41, 0.30)
    assert state(champion="2", newest_move=undo, newest_result=after_undo)[0] == "drift"


def test_the_states_and_their_colours_on_the_strip_and_the_page():
    from driftloop.governance.overview_page import LOOP_COLORS

    assert STATES == (
        "no champion",
        "ok",
        "drift",
        "retraining",
        "waiting for labels",
        "retrained",
        "retrained, champion kept",
        "rolled back",
    )
    assert set(LOOP_COLORS) == set(STATES)
    script = (PROJECT_DIR / "plugins" / "driftloop_airflow" / "static" / "health-strip.js").read_text()
    colours = script[script.index("const COLORS") : script.index("};", script.index("const COLORS"))]
    keys = {m.group(1) or m.group(2) for m in re.finditer(r'^\s*(?:"([^"]+)"|(\w+)):', colours, re.M)}
    assert keys == set(STATES)
    assert LoopState("ok", "fine").as_dict() == {"state": "ok", "detail": "fine"}
