"""Sharper tests of the governance rules without models or MLflow: gate boundaries, the underpowered-window
rule, the gate's tags and summary, the audit store's chain and reconcile, the champion stack (from mutation
testing, docs/mutation.md)."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest

from driftloop.core import bus
from driftloop.governance import audit, comparison, gates, rollback


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


# --- the paired comparison: each side's metric as sklearn computes it, the sign of the difference


def _binary_outputs():
    truth = np.array(["Yes", "No", "Yes", "No", "No", "Yes", "No", "No", "Yes", "No"] * 3)
    champion = np.array(["No"] * 30, dtype=object)
    champion[0] = "Yes"  # one predicted positive: precision's denominator is exactly 1
    challenger = truth.copy()
    challenger[[1, 2, 4, 11]] = ["Yes", "No", "Yes", "No"]
    return truth, {bus.PREDICTION_COLUMN: champion}, {bus.PREDICTION_COLUMN: challenger}


@pytest.mark.parametrize(
    ("key", "score"),
    [
        ("holdout_precision", "precision_score"),
        ("holdout_recall", "recall_score"),
        ("holdout_f1", "f1_score"),
        ("holdout_accuracy", "accuracy_score"),
    ],
)
def test_binary_label_metrics_of_each_side_match_sklearn(key, score):
    from sklearn import metrics

    truth, champion, challenger = _binary_outputs()
    result = comparison.compare_outputs(
        key, "binary", truth, champion, challenger, positive_label="Yes", resamples=50
    )
    kwargs = {} if score == "accuracy_score" else {"pos_label": "Yes", "zero_division": 0}
    expected = [
        getattr(metrics, score)(truth, side[bus.PREDICTION_COLUMN], **kwargs)
        for side in (champion, challenger)
    ]
    assert [result["champion"], result["challenger"]] == pytest.approx(expected, abs=1e-12)
    assert result["difference"] == pytest.approx(expected[1] - expected[0], abs=1e-12)
    assert set(result) == {
        "champion", "challenger", "difference", "ci_low", "ci_high", "se", "rows", "method", "level",
    }  # fmt: skip
    assert (result["method"], result["level"], result["rows"]) == ("paired_bootstrap", 0.95, 30)
    assert result["ci_low"] <= result["difference"] <= result["ci_high"]


def _multiclass_outputs(rng, labels=("a", "b", "c")):
    truth = rng.choice([*labels, "z"], 400, p=[0.3, 0.3, 0.35, 0.05])  # "z": a label neither model knows
    sides = []
    for accuracy in (0.5, 0.7):
        proba = rng.dirichlet(np.ones(len(labels)), 400)
        known = np.isin(truth, labels)
        hit = (rng.random(400) < accuracy) & known
        proba[hit] += 2 * np.eye(len(labels))[np.searchsorted(labels, truth[hit])]
        proba /= proba.sum(axis=1, keepdims=True)
        side = {bus.proba_column(label): proba[:, i] for i, label in enumerate(labels)}
        side[bus.PREDICTION_COLUMN] = np.array(labels)[proba.argmax(axis=1)]
        sides.append(side)
    return truth, sides[0], sides[1]


def test_multiclass_macro_f1_counts_every_label_seen_in_truth_or_predictions_as_sklearn():
    from sklearn.metrics import f1_score

    truth, champion, challenger = _multiclass_outputs(np.random.default_rng(11))
    champion[bus.PREDICTION_COLUMN][:40] = "c"  # a class predicted where the truth never is
    result = comparison.compare_outputs(
        "holdout_macro_f1", "multiclass", truth, champion, challenger, resamples=50
    )
    expected = [f1_score(truth, s[bus.PREDICTION_COLUMN], average="macro") for s in (champion, challenger)]
    assert [result["champion"], result["challenger"]] == pytest.approx(expected, abs=1e-12)
    accuracy = comparison.compare_outputs(
        "holdout_accuracy", "multiclass", truth, champion, challenger, resamples=50
    )
    expected = [np.mean(truth == s[bus.PREDICTION_COLUMN]) for s in (champion, challenger)]
    assert [accuracy["champion"], accuracy["challenger"]] == pytest.approx(expected, abs=1e-12)


def test_one_vs_rest_auc_sides_and_interval_follow_the_normal_approximation():
    from scipy.stats import norm
    from sklearn.metrics import roc_auc_score

    truth, champion, challenger = _multiclass_outputs(np.random.default_rng(12))
    result = comparison.compare_outputs(
        "holdout_auc_ovr", "multiclass", truth, champion, challenger, level=0.9
    )
    known = truth != "z"

    def ovr(side):
        return np.mean([roc_auc_score(truth[known] == c, side[bus.proba_column(c)][known]) for c in "abc"])

    assert (result["champion"], result["challenger"]) == pytest.approx((ovr(champion), ovr(challenger)))
    assert (result["method"], result["rows"]) == ("delong_ovr", int(known.sum()))
    half = norm.ppf(0.95) * result["se"]
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(
        (result["difference"] - half, result["difference"] + half)
    )


@pytest.mark.parametrize(
    ("key", "score"),
    [
        ("holdout_mae", "mean_absolute_error"),
        ("holdout_mape", "mean_absolute_percentage_error"),
        ("holdout_r2", "r2_score"),
    ],
)
def test_regression_metrics_of_each_side_match_sklearn(key, score):
    from sklearn import metrics

    rng = np.random.default_rng(13)
    y = rng.normal(50, 10, 300)
    champion, challenger = y + rng.normal(0, 4, 300), y + rng.normal(1, 3, 300)
    result = comparison.compare_outputs(
        key,
        "regression",
        y,
        {bus.PREDICTION_COLUMN: champion},
        {bus.PREDICTION_COLUMN: challenger},
        resamples=100,
    )
    expected = [getattr(metrics, score)(y, side) for side in (champion, challenger)]
    assert [result["champion"], result["challenger"]] == pytest.approx(expected, rel=1e-9)
    assert result["ci_low"] <= result["difference"] <= result["ci_high"]


def test_a_decision_reports_its_rule_bound_and_one_sided_alpha():
    compared = {
        "champion": 0.8, "challenger": 0.85, "difference": 0.05, "ci_low": 0.01, "ci_high": 0.09,
        "se": 0.02, "rows": 500, "method": "delong", "level": 0.9,
    }  # fmt: skip
    verdict = comparison.decide(compared, "holdout_auc", "superiority", min_improvement=0.005, margin=0.02)
    assert set(verdict) == set(compared) | {
        "rule", "passed", "improvement_low", "bound", "margin", "alpha", "needed_rows",
    }  # fmt: skip
    assert (verdict["rule"], verdict["passed"], verdict["bound"]) == ("superiority", True, 0.005)
    assert verdict["alpha"] == pytest.approx(0.05)
    vectorised = {**compared, "ci_low": np.array([0.01, -0.01]), "ci_high": np.array([0.09, 0.07])}
    many = comparison.decide(vectorised, "holdout_auc", "superiority", min_improvement=0.0, margin=0.02)
    assert many["passed"].tolist() == [True, False]
    assert (many["rule"], many["bound"], many["alpha"]) == ("superiority", 0.0, pytest.approx(0.05))
    unknown = {**compared, "ci_low": float("nan")}
    undecided = comparison.decide(unknown, "holdout_auc", "superiority", min_improvement=0.0, margin=0.02)
    assert (undecided["passed"], undecided["needed_rows"]) == (False, None)


# --- the decisions themselves: degenerate regressors, named checks


def _decision(task, classes=None):
    return SimpleNamespace(task=task, classes=classes, threshold=0.5)


def test_a_regressor_predicting_one_value_is_degenerate_and_any_spread_is_not():
    one = gates.decision_checks(None, _decision("regression"), {bus.PREDICTION_COLUMN: [3, 3, 3]}, None, None)
    assert one == [
        {
            "name": "decision.degenerate",
            "passed": False,
            "value": 0.0,
            "limit": 0,
            "detail": "predictions on 3 holdout rows range over 0 (one value)",
        }
    ]
    (spread,) = gates.decision_checks(
        None, _decision("regression"), {bus.PREDICTION_COLUMN: [3, 4.5, 3]}, None, None
    )
    assert (spread["passed"], spread["value"]) == (True, 1.5)
    assert spread["detail"] == "predictions on 3 holdout rows range over 1.5"


# --- the head-to-head checks on the holdout and the production window


def _h2h_cfg(window_min_rows=50, min_improvement=0.0):
    return SimpleNamespace(
        target="y",
        task="binary",
        positive_label="Yes",
        id_column="id",
        features=["x"],
        training=SimpleNamespace(seed=0),
        gates=SimpleNamespace(
            primary_metric="AUC",
            confidence=0.95,
            bootstrap_resamples=200,
            min_improvement=min_improvement,
            margin=0.01,
            production_window_min_rows=window_min_rows,
            max_latency_ms_per_row=None,
        ),
    )


def _h2h_outputs(rows=400, seed=3):
    import pandas as pd

    rng = np.random.default_rng(seed)
    truth = rng.random(rows) < 0.4
    holdout = pd.DataFrame({"id": np.arange(rows), "y": np.where(truth, "Yes", "No"), "x": rng.random(rows)})
    sides = []
    for signal in (2.0, 0.3):  # the candidate separates the classes far better than the champion
        score = 1 / (1 + np.exp(-(signal * (truth - 0.5) + rng.normal(0, 1, rows))))
        sides.append({bus.SCORE_COLUMN: score, bus.PREDICTION_COLUMN: np.where(score > 0.5, "Yes", "No")})
    return holdout, (sides[0], sides[1])


def test_the_head_to_head_checks_report_the_champion_delong_interval_and_the_window(monkeypatch):
    from sklearn.metrics import roc_auc_score

    holdout, outputs = _h2h_outputs()
    window = holdout.iloc[:120]
    monkeypatch.setattr(gates, "production_window", lambda cfg, df, settings: window)
    cfg = _h2h_cfg(window_min_rows=100, min_improvement=0.02)
    head, production = gates.champion_checks(cfg, outputs, "7", holdout, None, "superiority")
    truth = holdout["y"] == "Yes"
    candidate_auc = roc_auc_score(truth, outputs[0][bus.SCORE_COLUMN])
    champion_auc = roc_auc_score(truth, outputs[1][bus.SCORE_COLUMN])
    assert head["name"] == "beats_champion" and head["passed"] is True
    assert head["candidate"] == pytest.approx(candidate_auc) and head["value"] == pytest.approx(candidate_auc)
    assert head["champion"] == pytest.approx(champion_auc)
    assert head["limit"] == pytest.approx(champion_auc + 0.02)  # the champion's value plus min_improvement
    assert head["difference"] == pytest.approx(candidate_auc - champion_auc)
    assert (head["rule"], head["method"], head["rows"]) == ("superiority", "delong", 400)
    assert "challenger" not in head
    assert head["detail"].startswith(
        f"AUC on the candidate's holdout (400 rows, delong): candidate {candidate_auc:.4f}"
    )
    assert f"vs champion v7 {champion_auc:.4f}" in head["detail"] and "95% CI" in head["detail"]
    assert " > +0.0200" in head["detail"]
    assert production["name"] == "beats_champion.production" and production["rows"] == 120
    w = truth.iloc[:120]
    assert production["candidate"] == pytest.approx(roc_auc_score(w, outputs[0][bus.SCORE_COLUMN][:120]))
    assert "the latest labelled production window (120 rows" in production["detail"]


def test_a_window_below_its_minimum_rows_is_measured_not_judged(monkeypatch):
    holdout, outputs = _h2h_outputs()
    monkeypatch.setattr(gates, "production_window", lambda cfg, df, settings: holdout.iloc[:99])
    _, production = gates.champion_checks(
        _h2h_cfg(window_min_rows=100), outputs, "7", holdout, None, "superiority"
    )
    assert production == {
        "name": "beats_champion.production",
        "passed": None,
        "value": 99,
        "limit": 100,
        "detail": "99 labelled production rows in the holdout; 100 needed to compare there",
    }
    monkeypatch.setattr(gates, "production_window", lambda cfg, df, settings: holdout.iloc[:100])
    _, judged = gates.champion_checks(
        _h2h_cfg(window_min_rows=100), outputs, "7", holdout, None, "superiority"
    )
    assert judged["rows"] == 100 and "rule" in judged


def test_an_error_metric_limit_is_the_champion_minus_the_improvement(monkeypatch):
    import pandas as pd

    rng = np.random.default_rng(8)
    y = rng.normal(10, 2, 300)
    holdout = pd.DataFrame({"id": np.arange(300), "y": y, "x": y})
    outputs = (
        {bus.PREDICTION_COLUMN: y + rng.normal(0, 0.5, 300)},
        {bus.PREDICTION_COLUMN: y + rng.normal(0, 2, 300)},
    )
    monkeypatch.setattr(gates, "production_window", lambda cfg, df, settings: holdout.iloc[:0])
    cfg = _h2h_cfg(min_improvement=0.1)
    cfg.task, cfg.gates.primary_metric = "regression", "RMSE"
    head, _ = gates.champion_checks(cfg, outputs, "2", holdout, None, "superiority")
    champion_rmse = float(np.sqrt(np.mean((outputs[1][bus.PREDICTION_COLUMN] - y) ** 2)))
    assert head["champion"] == pytest.approx(champion_rmse)
    assert head["limit"] == pytest.approx(champion_rmse - 0.1)
    assert head["passed"] is True and head["difference"] < 0


def test_latency_is_measured_on_a_1000_row_batch_and_judged_against_its_limit():
    import pandas as pd

    seen = []
    decision = SimpleNamespace(predict=lambda model, batch: seen.append(batch))
    holdout = pd.DataFrame({"x": np.arange(30.0), "y": 0})
    cfg = _h2h_cfg()
    unlimited = gates.latencycheck_entry(cfg, None, holdout, decision)
    assert [len(b) for b in seen] == [1000, 1000, 1000] and list(seen[0].columns) == ["x"]
    assert seen[0].index.tolist() == list(range(1000))
    assert (unlimited["name"], unlimited["passed"], unlimited["limit"]) == ("latency", None, None)
    assert unlimited["detail"].endswith(" ms per row on a 1000-row batch (no limit)")
    cfg.gates.max_latency_ms_per_row = 1e6
    assert gates.latencycheck_entry(cfg, None, holdout, decision)["passed"] is True
    cfg.gates.max_latency_ms_per_row = -1.0
    slow = gates.latencycheck_entry(cfg, None, holdout, decision)
    assert slow["passed"] is False and slow["detail"].endswith("(limit -1.0 ms)")


# --- judge: every check in one report, the failing ones named, the evidence on the version


class _JudgeClient:
    def __init__(self):
        self.tags: dict[tuple[str, str], str] = {}

    def get_model_version(self, name, version):
        return SimpleNamespace(run_id=f"run-{version}", tags={"v": version})

    def get_run(self, run_id):
        assert run_id == "run-4"
        return SimpleNamespace(data=SimpleNamespace(metrics={bus.OOF_POSITIVE_RATE: 0.35}))

    def set_model_version_tag(self, name, version, key, value):
        self.tags[(version, key)] = value


@pytest.fixture
def judged(monkeypatch):
    """gates.judge with the model loading, holdout, fairness, size and behaviour replaced by fakes."""
    import pandas as pd

    holdout, outputs = _h2h_outputs()
    by_uri = {"models:/ds-model/4": outputs[0], "models:/ds-model/1": outputs[1]}
    seen = {}

    def predict(model, frame):
        assert list(frame.columns) == ["x"]
        return by_uri[model]

    def read_decision(cfg, tags):
        seen.setdefault("decisions", []).append(tags["v"])
        return SimpleNamespace(task="binary", predict=predict, encode=lambda s: (s == "Yes").astype(int))

    def oof_rate(cfg, decision, outputs, holdout_df, oof):
        seen["oof"] = oof
        return [{"name": "decision.degenerate", "passed": True, "detail": "ok"}]

    behaviour = [
        {"name": "inv", "passed": False, "kind": "invariance", "detail": "3 flips", "pass_share": 0.7,
         "min_pass_share": 0.9},
    ]  # fmt: skip
    monkeypatch.setattr("driftloop.core.registry.load_model", lambda uri, settings=None: uri)
    monkeypatch.setattr(gates, "read_decision", read_decision)

    def load_holdout(client, run_id):
        assert isinstance(client, _JudgeClient) and run_id == "run-4"
        return holdout

    def holdout_metrics(decision, y, outputs_):
        assert decision.task == "binary" and outputs_ is outputs[0] and list(y) == list(holdout["y"] == "Yes")
        return {"holdout_auc": 0.9}

    def assess_decisions(cfg, holdout_df, decision, outputs_):
        assert holdout_df is holdout and decision.task == "binary" and outputs_ is outputs[0]
        return {}

    def run_behaviour_tests(cfg, model, holdout_df, decision):
        assert model == "models:/ds-model/4" and holdout_df is holdout and decision.task == "binary"
        return behaviour

    monkeypatch.setattr(gates.holdout, "load_holdout", load_holdout)
    monkeypatch.setattr(gates.task_types, "holdout_metrics", holdout_metrics)
    monkeypatch.setattr(gates, "decision_checks", oof_rate)
    monkeypatch.setattr("driftloop.governance.fairness.assess_decisions", assess_decisions)
    monkeypatch.setattr(gates, "model_size_mb", lambda uri, settings: 2.5)
    monkeypatch.setattr("driftloop.governance.behaviour.run_behaviour_tests", run_behaviour_tests)
    monkeypatch.setattr(gates, "production_window", lambda cfg, df, settings: pd.DataFrame())
    cfg = _h2h_cfg()
    cfg.registered_model_name = "ds-model"
    cfg.gates.floors = {"AUC": 0.95}
    cfg.gates.max_model_size_mb = None
    cfg.gates.rule_on_new_data = "non_inferiority"
    state = SimpleNamespace(
        rule=lambda cfg: None, to_dict=lambda: {"state": "new"}, describe=lambda: "new data",
        key=lambda cfg, version: f"key-{version}",
    )  # fmt: skip
    return cfg, state, seen


def test_judge_reports_every_check_and_names_the_failing_ones(judged, caplog):
    caplog.set_level("INFO", logger="driftloop.governance.gates")
    cfg, state, seen = judged
    client = _JudgeClient()
    champion = {"model_version": "1", "model_uri": "models:/ds-model/1"}
    report = gates.judge(cfg, 4, champion, client, state=state)
    assert "vs champion v1 " in report["checks"][2]["detail"]
    assert "gate v4 check floor.AUC: FAIL: AUC 0.9000 < floor 0.95" in caplog.messages
    assert (
        "gate v4 check beats_champion.production: measured: " + report["checks"][3]["detail"]
        in caplog.messages
    )
    assert "gate v4 check behaviour.inv: FAIL: invariance: 3 flips" in caplog.messages
    assert "gate v4 check decision.degenerate: pass: ok" in caplog.messages
    names = [c["name"] for c in report["checks"]]
    assert names == [
        "floor.AUC", "decision.degenerate", "beats_champion", "beats_champion.production", "latency", "size",
        "behaviour.inv",
    ]  # fmt: skip
    assert report["failed"] == ["floor.AUC", "behaviour.inv"] and report["passed"] is False
    assert (report["candidate_version"], report["champion_version"], report["rule"]) == (
        "4",
        "1",
        "non_inferiority",
    )
    assert report["metrics"] == {"holdout_auc": 0.9} and report["fairness"] == {}
    assert report["evidence_state"] == {"state": "new", "summary": "new data"}
    assert report["evidence_key"] == "key-4" and seen["oof"] == 0.35 and seen["decisions"] == [4, "1"]
    behaviour = report["checks"][-1]
    assert (behaviour["value"], behaviour["limit"], behaviour["detail"]) == (0.7, 0.9, "invariance: 3 flips")
    assert report["checks"][5]["value"] == 2.5
    assert client.tags[("4", bus.GATE_RULE_TAG)] == "non_inferiority"
    assert client.tags[("4", bus.GATE_METHOD_TAG)] == "delong"
    assert client.tags[("4", bus.GATE_ROWS_TAG)] == "400"


def test_judge_without_a_champion_has_no_rule_and_no_head_to_head(judged):
    cfg, state, _ = judged
    cfg.gates.floors = {"AUC": 0.5}
    client = _JudgeClient()
    report = gates.judge(cfg, "4", None, client, state=state)
    assert [c["name"] for c in report["checks"]] == [
        "floor.AUC", "decision.degenerate", "latency", "size", "behaviour.inv",
    ]  # fmt: skip
    assert (report["rule"], report["champion_version"], report["failed"]) == (None, None, ["behaviour.inv"])
    assert client.tags == {}


def test_fairness_gaps_block_only_when_enforced_and_carry_their_interval(monkeypatch):
    from driftloop.governance import fairness

    monkeypatch.setattr(fairness, "describe_gap", lambda cfg, attribute, gap, judged: f"{attribute}/{gap}")

    def judged(outcome, enforced, value):
        interval = {"ci_low": value - 0.05, "ci_high": value + 0.05, "smallest_group_rows": 40}
        return {"outcome": outcome, "limit": 0.1, "enforced": enforced, "value": value, **interval}

    report = {
        "gender": {
            "judged": {"dp": judged(fairness.FAIL, True, 0.3), "eo": judged(fairness.PASS, True, 0.02)}
        },
        "senior": {
            "judged": {"dp": judged(fairness.FAIL, False, 0.3), "eo": judged(fairness.UNDECIDED, True, 0.12)}
        },
        "region": {},
    }
    checks = gates.fairness_checks(None, report)
    assert [(c["name"], c["passed"]) for c in checks] == [
        ("fairness.gender.dp", False),
        ("fairness.gender.eo", True),
        ("fairness.senior.dp", None),
        ("fairness.senior.eo", None),
    ]
    assert checks[0] == {
        "name": "fairness.gender.dp",
        "passed": False,
        "value": 0.3,
        "limit": 0.1,
        "detail": "gender/dp",
        "ci_low": pytest.approx(0.25),
        "ci_high": pytest.approx(0.35),
        "smallest_group_rows": 40,
        "outcome": fairness.FAIL,
    }


def test_behaviour_cases_become_checks_with_their_share_or_score(monkeypatch):
    seen = []

    def run(cfg, model, holdout_df, decision):
        seen.append((cfg, model, holdout_df, decision))
        return [
            {
                "name": "a",
                "passed": True,
                "kind": "invariance",
                "detail": "ok",
                "pass_share": 1.0,
                "min_pass_share": 0.9,
            },
            {"name": "b", "passed": None, "kind": "minimum", "detail": "d", "score": 0.5},
        ]

    monkeypatch.setattr("driftloop.governance.behaviour.run_behaviour_tests", run)
    checks = gates.behaviour_checks("cfg", "model", "holdout", "decision")
    assert seen == [("cfg", "model", "holdout", "decision")]
    assert checks == [
        {"name": "behaviour.a", "passed": True, "value": 1.0, "limit": 0.9, "detail": "invariance: ok"},
        {"name": "behaviour.b", "passed": None, "value": 0.5, "limit": None, "detail": "minimum: d"},
    ]


def test_the_binary_positive_rate_is_reported_beside_the_out_of_fold_rate(telco_cfg):
    import pandas as pd

    from driftloop.core.task_types import Decision
    from driftloop.governance.decision_checks import decision_checks

    truth = ["No"] * 60 + ["Yes"] * 40
    predicted = np.array(["No"] * 75 + ["Yes"] * 25)
    holdout = pd.DataFrame({telco_cfg.target: truth})
    checks = decision_checks(
        telco_cfg, Decision("binary", ["No", "Yes"], 0.5), {bus.PREDICTION_COLUMN: predicted}, holdout, 0.3
    )
    assert [c["name"] for c in checks] == ["decision.degenerate", "decision.positive_rate"]
    rate = checks[1]
    assert (rate["passed"], rate["value"], rate["limit"]) == (None, 0.25, 0.3)
    assert (rate["holdout_positive_rate"], rate["oof_positive_rate"], rate["flagged"]) == (0.25, 0.3, False)
    assert rate["detail"] == "threshold 0.5 predicts 25.0% of holdout rows positive; out of fold 30.0%"
    unrecorded = decision_checks(
        telco_cfg, Decision("binary", ["No", "Yes"], 0.5), {bus.PREDICTION_COLUMN: predicted}, holdout, None
    )[1]
    assert unrecorded["detail"].endswith("out of fold not recorded") and unrecorded["flagged"] is False


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
