"""Rollback as an undo: ``champion`` goes back one step in the history of moves, by a written rule; audited.

The audit log's entries are replayed into a stack of champions (:func:`champion_stack`):

* a **forward move** (the gate, an A/B promotion, ``driftloop champion``, a move in the MLflow UI or REST API,
  an alias deletion, or ``rollback --to V``) pushes its target, unless it already is on top;
* an **undo** (``rollback`` without ``--to``) pops the version it left and every version above the one it
  landed on.

``rollback`` without ``--to`` (:func:`undo_target`) pops the current champion and lands on the next version
down the stack that passed its gate, skipping versions that failed or were never judged. Repeating it walks
further back, one step at a time, never toggling between two versions; at the bottom it is refused
(:class:`RollbackImpossible`). ``rollback --to V`` is a forward move to ``V``: refused when ``V`` did not pass
its gate unless ``override`` is given (then flagged as an override), so a later undo returns to where ``--to``
started. The CLI and the ``champion_rollback`` DAG call the same :func:`rollback_champion`, so they give the
same answer; a request id (the Airflow run id) makes a retried request a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from driftloop.core import bus, registry
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import Verdict
from driftloop.core.settings import Settings
from driftloop.core.tracking import get_client
from driftloop.governance import audit, promotion
from driftloop.governance.governance_results import AuditEntry, RollbackResult

log = logging.getLogger(__name__)


class RollbackImpossible(Verdict):
    """There is no earlier champion that passed its gate to roll back to (or no champion at all)."""


class RollbackRefused(Verdict):
    """The chosen target did not pass its gate and no override was given."""


UNDO, TO = "undo", "to"  # evidence["kind"] of a rollback entry


def is_undo(entry: AuditEntry) -> bool:
    """Whether an audit entry is an undo (a rollback without a target); older entries carry only
    ``rolled_back``."""
    evidence = entry.get("evidence") or {}
    kind = evidence.get("kind")
    return kind == UNDO or (kind is None and "rolled_back" in evidence)


def champion_stack(history: list[AuditEntry]) -> list[str | None]:
    """The stack of champions the audit log describes, oldest at the bottom, the current champion on top.

    Args:
        history: Audit entries of one model, oldest first.
    """
    stack: list[str | None] = []
    for entry in history:
        target = entry["to_version"]
        if not is_undo(entry):
            if not stack or stack[-1] != target:
                stack.append(target)
            continue
        if stack and stack[-1] == entry["from_version"]:
            stack.pop()
        while stack and stack[-1] != target:
            stack.pop()
        if not stack:
            stack.append(target)
    return stack


def undo_target(
    history: list[AuditEntry], current: str | None, passed: Callable[[str], bool | None]
) -> str | None:
    """Where ``rollback`` without ``--to`` leads: the next version down :func:`champion_stack` below
    ``current`` that passed its gate (``passed(version) is True``); None at the bottom."""
    stack = champion_stack(history)
    if stack and stack[-1] == current:
        stack.pop()
    while stack and (stack[-1] is None or stack[-1] == current or passed(stack[-1]) is not True):
        stack.pop()
    return stack[-1] if stack else None


def rollback_champion(
    cfg: DatasetConfig,
    *,
    actor: str,
    reason: str,
    request_id: str = "",
    to_version: str | None = None,
    override: bool = False,
    settings: Settings | None = None,
) -> RollbackResult:
    """Undo the last move of ``champion`` (or move it to ``to_version``) by the rule of this module; audited.

    Args:
        cfg: Dataset config.
        actor: Who rolls back (recorded).
        reason: Why (recorded as ``rollback: <reason>``).
        request_id: Makes a retried request a no-op (e.g. the Airflow run id).
        to_version: Target version (a forward move); None: undo (:func:`undo_target`).
        override: Allow a ``to_version`` that did not pass its gate (flagged in the audit log).
        settings: Process settings.

    Returns:
        The audit entry of the move with ``moved`` (False: a retried request, or ``to_version`` is already
        champion) and ``recorded_moves`` (the audit entries this call appended: its move, and a move made
        outside Driftloop that it recorded first).

    Raises:
        RollbackImpossible: No version below the current champion in the rollback stack passed its gate.
        RollbackRefused: ``to_version`` did not pass its gate and ``override`` is False.
    """
    client, store = get_client(settings), audit.open_store(settings)
    name = cfg.registered_model_name
    with store.locked(name) as conn:
        recorded = [e for e in [audit.reconcile_champion(cfg, settings, store, conn)] if e]
        history = store.entries(name, conn)
        done = [e for e in history if request_id and e["evidence"].get("request_id") == request_id]
        if done:  # a retry of a rollback that went through
            return cast(RollbackResult, {**done[-1], "moved": False, "recorded_moves": recorded})  # its entry
        current = promotion._version_of(registry.resolve_alias(cfg, bus.CHAMPION, settings))
        target = None if to_version is None else str(to_version)
        if target is not None and target == current:
            log.info("%s: champion is already v%s; nothing moved", name, current)
            return {"to_version": current, "moved": False, "recorded_moves": recorded}
        if target is None:
            target = undo_target(history, current, lambda v: audit.gate_passed(client, cfg, v))
            if target is None:
                stack = " -> ".join(f"v{v}" if v else "none" for v in champion_stack(history)) or "empty"
                raise RollbackImpossible(
                    f"{name}: champion is {f'v{current}' if current else 'unset'} and no version below it in "
                    f"the rollback stack ({stack}) passed its gate; use --to V (with --override for a "
                    "version the gate rejected)"
                )
        passed = audit.gate_passed(client, cfg, target)
        if passed is not True and not override:
            why = client.get_model_version(name, target).tags.get(bus.GATE_REASON_TAG, "no reason recorded")
            raise RollbackRefused(
                f"{name}: v{target} {'was rejected by' if passed is False else 'was never judged by'} "
                f"the gate ({why}); roll back to it only with --override"
            )
        kind = UNDO if to_version is None else TO
        entry = promotion.move_champion(
            cfg,
            client,
            store,
            conn,
            target,
            from_version=current,
            actor=actor,
            reason=f"rollback{' (override)' if passed is not True else ''}: {reason}",
            evidence={
                "kind": kind,
                "rolled_back": current,
                "request_id": request_id,
                "override": passed is not True,
            },
            settings=settings,
            override=passed is not True,
        )
    log.info("%s: rolled champion back from v%s to v%s (%s, %s)", name, current, target, kind, reason)
    promotion.finish_move(cfg, client, store, [target, current], settings)
    return cast(RollbackResult, {**entry, "moved": True, "recorded_moves": [*recorded, entry]})  # the entry
