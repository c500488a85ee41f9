"""Staged rollout: a challenger goes through shadow, shares of live traffic and then becomes champion, and is
rolled back at once when a guardrail breaks.

The stages come from ``rollout.stages`` (:class:`~driftloop.core.serving_config.RolloutConfig`); the stage
a version is in is a tag on it (:mod:`driftloop.governance.rollout_state`). The pieces:

* **Start:** a version the gate passes (or a person approves) under a non-empty ``rollout.stages`` becomes
  ``challenger`` in the first stage instead of ``champion``
  (:func:`driftloop.governance.rollout_state.begin_rollout`).
* **Routing:** the service reads the challenger's stage on its registry poll and routes by it
  (:func:`stage_routing`): shadow scores every row with both models and returns the champion's answer; a
  share ``s`` sends ``s`` % of entities (sticky) to the challenger, both models still scoring every row, so
  every stage yields paired evidence.
* **Decision:** ``ab_evaluation``'s ``advance_rollout`` task (:func:`advance_rollout`) judges the current
  stage on what was logged since it began (:mod:`.rollout_evidence`): advance, hold or roll back. Advancing
  past the last share moves ``champion`` through :func:`driftloop.governance.promotion.set_champion` (one
  champion audit entry); rolling back drops ``challenger``. Every stage entered is one rollout audit entry
  and one alert (``rollout_stage_changed``); a rerun on the same evidence enters nothing twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypedDict

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.serving_config import SHADOW_STAGE
from driftloop.core.settings import Settings
from driftloop.core.tracking import get_client
from driftloop.governance.governance_results import AuditEntry, RolloutEntry
from driftloop.serving.online.router import Routing

if TYPE_CHECKING:
    from driftloop.governance.rollout_state import RolloutStage
    from driftloop.serving.online.rollout_evidence import StageEvidence, StageVerdict

log = logging.getLogger(__name__)


class RolloutResult(TypedDict, total=False):
    """What :func:`advance_rollout` did (XCom-safe)."""

    action: str  # advance | hold | roll_back | none
    reason: str
    version: str | None  # the challenger in the rollout
    champion_version: str | None
    stage: str | None  # the stage judged
    next_stage: str | None
    evidence: dict[str, Any]
    rollout_entries: list[RolloutEntry]  # rollout audit entries this call appended (each alerted once)
    recorded_moves: list[AuditEntry]  # champion audit entries (the completing move)


def stage_routing(stage: str | None, default: Routing) -> Routing:
    """The routing a rollout stage asks for; ``default`` (the config's) outside a running rollout."""
    if stage == SHADOW_STAGE:
        return Routing(0.0, True)
    if stage is not None and stage.isdigit():
        return Routing(min(int(stage), 100) / 100, True)
    return default


def read_challenger_stage(cfg: DatasetConfig, settings: Settings, version: str | None) -> str | None:
    """The rollout stage of the served challenger ``version`` (None: none, or no rollout)."""
    from driftloop.governance.rollout_state import read_stage

    return None if version is None else read_stage(get_client(settings), cfg, version).stage


def _calibrations(cfg: DatasetConfig, client: Any, versions: dict[str, str]) -> dict[str, Any]:
    from driftloop.monitoring.estimated import read_estimator

    name = cfg.registered_model_name
    return {
        arm: read_estimator(client, client.get_model_version(name, v).run_id, cfg.task)
        for arm, v in versions.items()
    }


def _judge(
    cfg: DatasetConfig, settings: Settings, client: Any, champion_v: str, stage: RolloutStage
) -> tuple[StageEvidence, StageVerdict]:
    """Evidence and verdict of the running stage of ``stage.version`` against ``champion_v``, by the plan the
    rollout began with."""
    from driftloop.core.task_types import read_decision
    from driftloop.serving.online import rollout_evidence
    from driftloop.serving.online.labels import read_accepted_labels
    from driftloop.serving.online.prediction_log import log_uri, read_log

    plan, running = stage.plan, stage.stage
    if running is None:
        raise ValueError(f"{cfg.registered_model_name} v{stage.version} is in no rollout: nothing to judge")
    experiment = bus.ab_experiment_id(champion_v, stage.version)
    stage_log = read_log(
        log_uri(cfg, settings), cfg.registered_model_name, since_s=stage.started_s, experiment=experiment
    )
    decision = read_decision(cfg, client.get_model_version(cfg.registered_model_name, champion_v).tags)
    evidence = rollout_evidence.gather_evidence(
        running,
        stage_log,
        read_accepted_labels(cfg, settings),
        decision,
        plan.guardrails.alpha,
        _calibrations(cfg, client, {bus.CHAMPION: champion_v, bus.CHALLENGER: stage.version}),
    )
    return evidence, rollout_evidence.judge_stage(plan, evidence)


def _finish_completed(
    cfg: DatasetConfig, client: Any, champion_v: str | None, actor: str, settings: Settings
) -> RolloutResult:
    """A rollout whose champion move happened but whose stage was not recorded (a retried task)."""
    from driftloop.governance import audit, rollout_state

    if champion_v is None:
        return {"action": "none", "reason": "no champion", "version": None}
    stage = rollout_state.read_stage(client, cfg, champion_v)
    if not stage.active:
        return {"action": "none", "reason": "no challenger in a running rollout", "version": None}
    store = audit.open_store(settings)
    with store.locked(cfg.registered_model_name) as conn:
        entry = rollout_state.enter_stage(
            cfg, client, store, conn, champion_v, bus.ROLLOUT_COMPLETED,
            actor=actor, reason="champion moved by an earlier attempt", evidence={},
        )  # fmt: skip
    return {
        "action": bus.ROLLOUT_ADVANCE,
        "reason": f"v{champion_v} is champion: its rollout completed",
        "version": champion_v,
        "champion_version": champion_v,
        "next_stage": bus.ROLLOUT_COMPLETED,
        "rollout_entries": [entry] if entry else [],
    }


def _make_champion(
    cfg: DatasetConfig, version: str, actor: str, reason: str, settings: Settings
) -> list[AuditEntry]:
    """Move ``champion`` to a version whose rollout completed, through the audited path (nothing when it is
    champion already); returns the champion audit entries appended.

    The check and the move share one hold of the promotion lock: two retries racing to finish the same
    completion (each seeing champion not moved yet) must not both move it.
    """
    from driftloop.core import registry
    from driftloop.governance import audit, promotion

    client, store = get_client(settings), audit.open_store(settings)
    moved: list[AuditEntry] = []
    with store.locked(cfg.registered_model_name) as conn:
        external = audit.reconcile_champion(cfg, settings, store, conn)  # a move made elsewhere comes first
        moved += [external] if external else []
        champion = registry.resolve_alias(cfg, bus.CHAMPION, settings)
        current = champion["model_version"] if champion else None
        if current != version:
            entry = promotion.move_champion(
                cfg, client, store, conn, version, from_version=current,
                actor=actor, reason=reason, evidence={}, settings=settings,
            )  # fmt: skip
            moved.append(entry)
    if moved:
        promotion.finish_move(cfg, client, store, [version, current], settings)
    return moved


def advance_rollout(
    cfg: DatasetConfig, settings: Settings | None = None, actor: str = "driftloop rollout", apply: bool = True
) -> RolloutResult:
    """Judge the running stage of the challenger's rollout and act on it (see the module docstring).

    Args:
        cfg: Dataset config (``rollout``, for a rollout that recorded no plan of its own).
        settings: Process settings; defaults to :meth:`Settings.from_env`.
        actor: Who asks, recorded in the audit entries (e.g. ``ab_evaluation/<Airflow run id>``).
        apply: False to judge and report without acting (``driftloop rollout status``).
    """
    from driftloop.core import registry
    from driftloop.governance import audit, rollout_state

    settings = settings or Settings.from_env()
    client = get_client(settings)
    champion, challenger = (registry.resolve_alias(cfg, a, settings) for a in (bus.CHAMPION, bus.CHALLENGER))
    champion_v = champion["model_version"] if champion else None
    if challenger is None or champion_v is None or challenger["model_version"] == champion_v:
        return _finish_completed(cfg, client, champion_v, actor, settings)
    stage = rollout_state.read_stage(client, cfg, challenger["model_version"])
    if stage.stage == bus.ROLLOUT_ROLLED_BACK:  # a retry after the stage was recorded: drop the alias
        registry.drop_alias(cfg, bus.CHALLENGER, stage.version, settings)
    if stage.stage == bus.ROLLOUT_COMPLETED:  # a retry after the stage was recorded: move champion
        why = "rollout completed (recorded by an earlier attempt)"
        return {
            "action": "none",
            "reason": f"v{stage.version} completed its rollout",
            "version": stage.version,
            "recorded_moves": _make_champion(cfg, stage.version, actor, why, settings),
        }
    if not stage.active:
        return {
            "action": "none",
            "reason": f"v{stage.version} is in no running rollout",
            "version": stage.version,
        }
    evidence, verdict = _judge(cfg, settings, client, champion_v, stage)
    result: RolloutResult = {
        "action": verdict.action,
        "reason": verdict.reason,
        "version": stage.version,
        "champion_version": champion_v,
        "stage": stage.stage,
        "next_stage": verdict.next_stage,
        "evidence": evidence.to_dict(),
        "rollout_entries": [],
        "recorded_moves": [],
    }
    log.info("rollout of v%s (champion v%s): %s: %s; evidence %s", stage.version, champion_v,
             verdict.action, verdict.reason, evidence.to_dict())  # fmt: skip
    if verdict.action == bus.ROLLOUT_HOLD or not apply:
        return result
    store = audit.open_store(settings)
    with store.locked(cfg.registered_model_name) as conn:
        now = rollout_state.read_stage(client, cfg, stage.version)
        if now.stage != stage.stage:  # a racing evaluation acted on this stage first: its verdict stands
            return {**result, "action": "none", "reason": f"stage {stage.stage} became {now.stage} meanwhile"}
        entry = rollout_state.enter_stage(
            cfg, client, store, conn, stage.version, str(verdict.next_stage),
            actor=actor, reason=verdict.reason, evidence=result["evidence"],
        )  # fmt: skip
    if verdict.next_stage == bus.ROLLOUT_COMPLETED:  # recorded first: a crash here is finished by a retry
        why = f"rollout: {verdict.reason}"
        result["recorded_moves"] = _make_champion(cfg, stage.version, actor, why, settings)
    if verdict.action == bus.ROLLOUT_ROLL_BACK:
        registry.drop_alias(cfg, bus.CHALLENGER, stage.version, settings)
    result["rollout_entries"] = [entry] if entry else []
    return result


def stop_rollout(
    cfg: DatasetConfig, *, actor: str, reason: str, settings: Settings | None = None
) -> RolloutResult:
    """Roll the running rollout back by hand (``driftloop rollout stop``): audited and alerted like a broken
    guardrail; ``champion`` does not move."""
    from driftloop.core import registry
    from driftloop.governance import audit, rollout_state

    settings = settings or Settings.from_env()
    client = get_client(settings)
    challenger = registry.resolve_alias(cfg, bus.CHALLENGER, settings)
    stage = rollout_state.read_stage(client, cfg, challenger["model_version"]) if challenger else None
    if stage is None or not stage.active:
        return {"action": "none", "reason": "no challenger in a running rollout", "version": None}
    store = audit.open_store(settings)
    with store.locked(cfg.registered_model_name) as conn:
        entry = rollout_state.enter_stage(
            cfg, client, store, conn, stage.version, bus.ROLLOUT_ROLLED_BACK,
            actor=actor, reason=f"stopped by hand: {reason}", evidence={},
        )  # fmt: skip
    registry.drop_alias(cfg, bus.CHALLENGER, stage.version, settings)
    return {
        "action": bus.ROLLOUT_ROLL_BACK,
        "reason": f"stopped by hand: {reason}",
        "version": stage.version,
        "stage": stage.stage,
        "next_stage": bus.ROLLOUT_ROLLED_BACK,
        "rollout_entries": [entry] if entry else [],
        "recorded_moves": [],
    }


def rollout_status(cfg: DatasetConfig, settings: Settings | None = None) -> dict[str, Any]:
    """Where the challenger's rollout stands (``driftloop rollout status``): its stage, the plan it follows,
    every stage it entered, and the verdict its evidence gets now (judged, nothing done)."""
    from dataclasses import asdict

    from driftloop.core import registry
    from driftloop.governance import audit, rollout_state

    settings = settings or Settings.from_env()
    client = get_client(settings)
    challenger = registry.resolve_alias(cfg, bus.CHALLENGER, settings)
    if challenger is None:
        return {"challenger": None, "reason": "no challenger"}
    version = challenger["model_version"]
    stage = rollout_state.read_stage(client, cfg, version)
    entries = rollout_state.rollout_entries(audit.open_store(settings), cfg.registered_model_name, version)
    now = advance_rollout(cfg, settings, apply=False) if stage.active else None
    return {
        "challenger": version,
        "stage": stage.stage,
        "stage_started_s": stage.started_s,
        "plan": asdict(stage.plan),
        "history": [
            {k: e[k] for k in ("recorded_at", "from_stage", "to_stage", "actor", "reason")} for e in entries
        ],
        "verdict_now": None if now is None else {k: now.get(k) for k in ("action", "next_stage", "reason")},
        "evidence_now": None if now is None else now.get("evidence"),
    }
