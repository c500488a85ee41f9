"""Promotion: the gate's verdict, the dataset's policy, the audit log and the model card, in one serialised
step.

Every way a version comes to serve goes through here: the training gate (:func:`promote_model`), an A/B
decision (:func:`promote_version`), a person using the CLI (:func:`set_champion`) and a rollback
(:func:`driftloop.governance.rollback.rollback_champion`). Each one reconciles the audit log with the registry
first (so a move made in the MLflow UI is recorded before anything else), decides and moves ``champion`` under
the audit store's lock, and appends one audit entry per move.

Under ``gates.policy: auto`` a passing gate moves ``champion``; under ``manual`` it only marks the version
ready (``driftloop.ready_for_champion``) and a person moves ``champion`` in the MLflow UI (recorded by the
reconciler).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from driftloop.core import bus, registry
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import GateRejected
from driftloop.core.settings import Settings
from driftloop.core.tracking import get_client
from driftloop.governance import audit, gates, rollout_state
from driftloop.governance.governance_results import (
    AuditEntry,
    ChampionMove,
    GateDecision,
    PromotionResult,
    TrainedPromotion,
    VersionPromotion,
)
from driftloop.governance.verdict_evidence import headline_metrics, read_decision, read_evidence_state

if TYPE_CHECKING:  # a type only: governance does not import training
    from driftloop.training.training_results import TrainResult

log = logging.getLogger(__name__)

MAX_REJUDGE = 3


def _version_of(alias: dict[str, str] | None) -> str | None:
    return alias["model_version"] if alias else None


def _record_verdict(cfg: DatasetConfig, client: Any, report: GateDecision, reason: str, reused: bool) -> None:
    """The verdict on the version (tags, the latest report) and, when new, its record for its evidence."""
    name, version = cfg.registered_model_name, report["candidate_version"]
    headline = headline_metrics(cfg, report)
    tags = {
        bus.GATE_TAG: bus.GATE_PASSED if report["passed"] else bus.GATE_REJECTED,
        bus.GATE_REASON_TAG: reason[:5000],
        bus.GATE_FAILED_CHECKS_TAG: ",".join(report["failed"])[:5000],
        bus.GATE_CANDIDATE_METRIC_TAG: headline["candidate_metric"],
        bus.GATE_CHAMPION_METRIC_TAG: headline["champion_metric"],
        bus.GATE_CHAMPION_VERSION_TAG: report["champion_version"]
        if headline["champion_metric"] is not None
        else None,
        bus.GATE_EVIDENCE_KEY_TAG: report.get("evidence_key"),
    }
    run_id = client.get_model_version(name, version).run_id
    record = {**report, "model_name": name, "reason": reason, "policy": cfg.gates.policy}
    if not reused and report.get("evidence_key"):
        client.log_dict(run_id, record, bus.gate_decision_artifact(report["evidence_key"]))
    client.log_dict(run_id, record, bus.GATE_REPORT_ARTIFACT)
    for key, value in tags.items():  # after the report: a version tagged judged has its report logged
        if value is not None:
            client.set_model_version_tag(
                name, version, key, f"{value:.6f}" if isinstance(value, float) else str(value)
            )


def move_champion(
    cfg: DatasetConfig,
    client: Any,
    store: audit.AuditStore,
    conn: Any,
    to_version: str,
    *,
    from_version: str | None,
    actor: str,
    reason: str,
    evidence: dict[str, Any],
    settings: Settings | None,
    override: bool = False,
) -> AuditEntry:
    """Append the audit entry and move ``champion``, inside the caller's locked transaction.

    The entry is written first and committed with the caller's block; the move's intent goes on the version
    (``bus.PROMOTION_INTENT_TAG``) before the alias moves, so when the process dies between the move and the
    commit, :func:`driftloop.governance.audit.reconcile_champion` (run first by every retry) records this
    move, not an anonymous external one.
    """
    passed = audit.gate_passed(client, cfg, to_version)
    entry = store.append(
        {
            "dataset": cfg.name,
            "model_name": cfg.registered_model_name,
            "from_version": from_version,
            "to_version": to_version,
            "actor": actor,
            "source": "driftloop",
            "reason": reason[:5000],
            "gate_passed": passed,
            "override": passed is False or override,
            "evidence": evidence,
        },
        conn,
    )
    intent = {"from_version": from_version, "actor": actor, "reason": reason[:2000], "evidence": evidence}
    client.set_model_version_tag(
        cfg.registered_model_name, to_version, bus.PROMOTION_INTENT_TAG, json.dumps(intent, default=str)
    )
    registry.move_alias(cfg, bus.CHAMPION, to_version, settings)
    return entry


def finish_move(
    cfg: DatasetConfig,
    client: Any,
    store: audit.AuditStore,
    versions: list[str | None],
    settings: Settings | None,
) -> None:
    """What follows any move of ``champion`` (and what a retry redoes): clear the intent, drop a
    ``challenger`` alias left on the new champion, rebuild the cards of ``versions`` from their logged
    evidence and the registered model's description."""
    from driftloop.governance.model_card import describe_registered_model, publish_model_card

    name = cfg.registered_model_name
    champion = _version_of(registry.resolve_alias(cfg, bus.CHAMPION, settings))
    if champion is not None:
        if bus.PROMOTION_INTENT_TAG in client.get_model_version(name, champion).tags:
            client.delete_model_version_tag(name, champion, bus.PROMOTION_INTENT_TAG)
        if registry.drop_alias(cfg, bus.CHALLENGER, champion, settings):
            log.info("%s: dropped the stale %s alias of champion v%s", name, bus.CHALLENGER, champion)
    history = store.entries(name)
    for version in dict.fromkeys(v for v in [*versions, champion] if v):
        publish_model_card(cfg, client, version, history, settings)
    describe_registered_model(cfg, client, champion)


def reconcile_and_refresh(cfg: DatasetConfig, settings: Settings | None = None) -> AuditEntry | None:
    """:func:`driftloop.governance.audit.reconcile_champion`, then the cards of both versions of a move it
    recorded (rebuilt from their logged evidence) and the registered model's description.

    Returns:
        The audit entry appended, or None when the registry matched the log.
    """
    client, store = get_client(settings), audit.open_store(settings)
    with store.locked(cfg.registered_model_name) as conn:
        entry = audit.reconcile_champion(cfg, settings, store, conn)
    if entry is not None:
        log.info(
            "%s: recorded a move of %s v%s -> v%s by %s",
            cfg.registered_model_name,
            bus.CHAMPION,
            entry["from_version"],
            entry["to_version"],
            entry["actor"],
        )
        finish_move(cfg, client, store, [entry["to_version"], entry["from_version"]], settings)
    return entry


def _already_champion(version: Any, policy: str, recorded: list[AuditEntry]) -> PromotionResult:
    tags = version.tags
    return {
        "decision": "promoted",
        "reason": tags.get(bus.GATE_REASON_TAG, f"version {version.version} is already {bus.CHAMPION}"),
        "champion_version": str(version.version),
        "candidate_version": str(version.version),
        "candidate_metric": _float(tags.get(bus.GATE_CANDIDATE_METRIC_TAG)),
        "champion_metric": _float(tags.get(bus.GATE_CHAMPION_METRIC_TAG)),
        "failed": [f for f in tags.get(bus.GATE_FAILED_CHECKS_TAG, "").split(",") if f],
        "moved": False,
        "policy": policy,
        "recorded_moves": recorded,
    }


def _previous_champion(store: Any, name: str, version: str) -> str | None:
    return next(
        (e["from_version"] for e in reversed(store.entries(name)) if e["to_version"] == version), None
    )


def promote_model(
    cfg: DatasetConfig, model_version: str, settings: Settings | None = None, actor: str = "training_pipeline"
) -> PromotionResult:
    """Judge a new version with every gate check and apply the dataset's policy; record everything.

    The verdict and every check's numbers go on the version (tags, the model card in its description) and into
    ``bus.GATE_REPORT_ARTIFACT`` on its training run. A failing version stays ``challenger``; a promoted one
    loses ``challenger``. When the champion changes while the candidate is being judged (a racing promotion),
    it is judged again against the new one. A retry of a half-done promotion (``champion`` already moved)
    records the move if it was not, and redoes the cards, the alias clean-up and the registered model's
    description.

    Args:
        cfg: Dataset config (``gates``, ``fairness``).
        model_version: Registered version to judge.
        settings: Process settings.
        actor: Who asks (recorded in the audit log), e.g. ``training_pipeline/<run id>``.

    Returns:
        ``{"decision": "promoted"|"ready"|"rejected", "reason", "champion_version",
        "previous_champion_version" (the champion when the gate judged; None for the first),
        "candidate_version", "candidate_metric", "champion_metric", "failed", "policy", "moved",
        "recorded_moves", "rule", "evidence", "evidence_key", "reused_verdict"}``: ``evidence`` says the state
        the rule was chosen by (:mod:`.verdict_evidence`); ``reused_verdict`` is True when the version had
        been judged in the same state before and that verdict stands.

    Raises:
        GateRejected: No champion exists and the candidate fails the gate, so nothing can serve.
    """
    client = get_client(settings)
    store = audit.open_store(settings)
    name, candidate = cfg.registered_model_name, str(model_version)
    recorded: list[AuditEntry] = []
    with store.locked(name) as conn:
        _note(recorded, audit.reconcile_champion(cfg, settings, store, conn))  # a move a crashed try made
        already = _version_of(registry.resolve_alias(cfg, bus.CHAMPION, settings)) == candidate
    if already:  # a retried task: the recorded decision stands; finish what the first attempt left undone
        return _finish_as_champion(cfg, client, store, candidate, recorded, settings)
    run_id = client.get_model_version(name, candidate).run_id
    staged = False  # passed into a staged rollout: champion moves at its end (serving.online.rollout)
    for _ in range(MAX_REJUDGE):
        champion = registry.resolve_alias(cfg, bus.CHAMPION, settings)
        state = read_evidence_state(cfg, client, _version_of(champion), settings)
        report: GateDecision | None = read_decision(client, run_id, state.key(cfg, candidate))  # same verdict
        reused = report is not None
        if report is None:
            report = {
                **gates.judge(cfg, candidate, champion, client, settings, state=state),
                "decided_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "decided_for": actor,
            }
        reason = gates.summarize(report)
        with store.locked(name) as conn:
            _note(recorded, audit.reconcile_champion(cfg, settings, store, conn))
            now = _version_of(registry.resolve_alias(cfg, bus.CHAMPION, settings))
            if now != _version_of(champion):
                already = now == candidate  # a racing request for the same candidate promoted it
                if already:
                    break
                continue  # another promotion moved champion meanwhile: judge against the new one
            earlier = None if reused else read_decision(client, run_id, report["evidence_key"])
            if earlier is not None:  # a racing request judged it in this state first: its verdict stands
                report, reused, reason = earlier, True, gates.summarize(earlier)
            _record_verdict(cfg, client, report, reason, reused)
            moved, staged = _policy_outcome(cfg, report, champion is not None)
            if moved:
                entry = move_champion(
                    cfg,
                    client,
                    store,
                    conn,
                    candidate,
                    from_version=_version_of(champion),
                    actor=actor,
                    reason=reason,
                    evidence={"failed": report["failed"], "gate": "passed"},
                    settings=settings,
                )
                recorded.append(entry)
            elif report["passed"]:
                client.set_model_version_tag(
                    name, candidate, bus.READY_FOR_CHAMPION_TAG, f"{actor}: {reason}"[:5000]
                )
        break
    else:
        raise RuntimeError(f"{name}: champion kept moving while version {candidate} was judged")
    if already:  # never judged against itself: the verdict that promoted it stands
        return _finish_as_champion(cfg, client, store, candidate, recorded, settings)
    finish_move(cfg, client, store, [candidate, _version_of(champion)], settings)
    started = None
    if staged:  # champion moves at the rollout's end (driftloop.serving.online.rollout)
        started = rollout_state.begin_rollout(cfg, candidate, actor=actor, reason=reason, settings=settings)
    why = f"rule {report['rule']}: {state.describe()}" if report.get("rule") else state.describe()
    log.info("gate verdict v%s (policy %s, %s; evidence key %s%s): %s; champion %s: %s", candidate,
             cfg.gates.policy, why, report.get("evidence_key"),
             f", the verdict of {report.get('decided_at')} reused" if reused else "",
             "passed" if report["passed"] else "rejected", f"moved to v{candidate}" if moved else
             f"stays v{_version_of(champion)}", reason)  # fmt: skip
    if not report["passed"] and champion is None:
        raise GateRejected(f"{name}: {reason}")
    return {
        "decision": "promoted"
        if moved
        else ("rollout" if staged else "ready" if report["passed"] else "rejected"),
        "reason": reason,
        "champion_version": candidate if moved else _version_of(champion),
        "previous_champion_version": _version_of(champion),
        "candidate_version": candidate,
        **headline_metrics(cfg, report),
        "failed": report["failed"],
        "policy": cfg.gates.policy,
        "moved": moved,
        "recorded_moves": recorded,
        "rollout_entries": [started] if started else [],
        "rule": report.get("rule"),
        "evidence": state.describe(),
        "evidence_key": report.get("evidence_key"),
        "reused_verdict": reused,
    }


def _policy_outcome(cfg: DatasetConfig, report: GateDecision, has_champion: bool) -> tuple[bool, bool]:
    """``(moved, staged)``: whether a verdict moves ``champion`` now, or starts a staged rollout instead
    (not for a first version: a rollout compares a challenger with a champion; none would serve meanwhile)."""
    moved = report["passed"] and cfg.gates.policy == "auto"
    if moved and gates.undecided_checks(report) and cfg.gates.approve_undecided:
        moved = False  # a person decides what the gate could not: marked ready, approved in Airflow
    staged = bool(cfg.rollout.stages) and has_champion
    return moved and not staged, moved and staged


def _decision_word(moved: bool, staged: bool, passed: bool) -> str:
    return "promoted" if moved else "rollout" if staged else "ready" if passed else "rejected"


def _finish_as_champion(
    cfg: DatasetConfig,
    client: Any,
    store: Any,
    candidate: str,
    recorded: list[AuditEntry],
    settings: Settings | None,
) -> PromotionResult:
    """The result for a candidate that already is champion (a retry, or a racing request that promoted it):
    its recorded verdict stands; the cards and aliases a first attempt left undone are finished."""
    name = cfg.registered_model_name
    log.info("%s: v%s is already %s; finishing its cards and aliases", name, candidate, bus.CHAMPION)
    finish_move(cfg, client, store, [candidate, _previous_champion(store, name, candidate)], settings)
    return _already_champion(client.get_model_version(name, candidate), cfg.gates.policy, recorded)


def _note(recorded: list[AuditEntry], entry: AuditEntry | None) -> None:
    """Keep ``entry`` (an audit entry this call appended) in ``recorded``: each one is alerted once."""
    if entry is not None:
        recorded.append(entry)


def promote_version(
    cfg: DatasetConfig, version: str, *, actor: str, reason: str, settings: Settings | None = None
) -> VersionPromotion:
    """Apply the dataset's policy to a version that earned it elsewhere (e.g. an A/B test); audited.

    Returns:
        ``{"policy", "version", "champion_version", "moved"}``.
    """
    client, store = get_client(settings), audit.open_store(settings)
    name = cfg.registered_model_name
    recorded: list[AuditEntry] = []
    with store.locked(name) as conn:
        _note(recorded, audit.reconcile_champion(cfg, settings, store, conn))
        current = _version_of(registry.resolve_alias(cfg, bus.CHAMPION, settings))
        if cfg.gates.policy == "manual":
            client.set_model_version_tag(
                name, str(version), bus.READY_FOR_CHAMPION_TAG, f"{actor}: {reason}"[:5000]
            )
            return {
                "policy": "manual",
                "version": str(version),
                "moved": False,
                "champion_version": current,
                "recorded_moves": recorded,
            }
        moved = current != str(version)
        if moved:
            entry = move_champion(
                cfg,
                client,
                store,
                conn,
                str(version),
                from_version=current,
                actor=actor,
                reason=reason,
                evidence={},
                settings=settings,
            )
            recorded.append(entry)
    finish_move(cfg, client, store, [str(version), current], settings)
    return {
        "policy": "auto",
        "version": str(version),
        "champion_version": str(version),
        "moved": moved,
        "recorded_moves": recorded,
    }


def set_champion(
    cfg: DatasetConfig, version: str, *, actor: str, reason: str, settings: Settings | None = None
) -> ChampionMove:
    """Move ``champion`` to ``version`` by hand (an override when it did not pass the gate); audited.

    Returns:
        The audit entry with ``recorded_moves`` (every entry this call appended).
    """
    client, store = get_client(settings), audit.open_store(settings)
    recorded: list[AuditEntry] = []
    with store.locked(cfg.registered_model_name) as conn:
        _note(recorded, audit.reconcile_champion(cfg, settings, store, conn))
        current = _version_of(registry.resolve_alias(cfg, bus.CHAMPION, settings))
        entry = move_champion(
            cfg,
            client,
            store,
            conn,
            str(version),
            from_version=current,
            actor=actor,
            reason=reason,
            evidence={},
            settings=settings,
        )
    finish_move(cfg, client, store, [str(version), current], settings)
    return cast(ChampionMove, {**entry, "recorded_moves": [*recorded, entry]})  # the entry's columns


def promote_trained(
    cfg: DatasetConfig,
    trained: TrainResult,
    settings: Settings | None = None,
    actor: str = "training_pipeline",
) -> TrainedPromotion:
    """:func:`promote_model` of what :func:`driftloop.training.train.train_model` registered; nothing when it
    registered nothing (a drift retrain waiting for labels of the drifted period)."""
    version = trained.get("model_version")
    if not version:  # a WaitingResult says why in its reason
        reason = str(dict(trained).get("reason", "no version registered"))
        log.info("%s: nothing to promote: %s", cfg.name, reason)
        return {"decision": "skipped", "reason": reason, "moved": False}
    return promote_model(cfg, version, settings, actor)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None
