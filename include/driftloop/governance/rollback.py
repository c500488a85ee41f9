"""Rollback: ``champion`` back to the last champion that passed its gate, or to a chosen version; idempotent,
audited.

Without a target, a rollback goes to the newest earlier champion in the audit log that passed its gate, is not
the current one and was never rolled back from; repeating it (the last entry is a rollback to the current
champion) moves nothing, so two rollbacks never toggle between two versions. ``to_version`` picks the target;
a version that did not pass its gate is refused unless ``override`` is given (the entry is then flagged as an
override).
"""

from __future__ import annotations

import logging
from typing import Any

from driftloop.core import bus, registry
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import Verdict
from driftloop.core.settings import Settings
from driftloop.core.tracking import get_client
from driftloop.governance import audit, promotion

log = logging.getLogger(__name__)


class RollbackImpossible(Verdict):
    """There is no earlier champion that passed its gate to roll back to (or no champion at all)."""


class RollbackRefused(Verdict):
    """The chosen target did not pass its gate and no override was given."""


def last_good_champion(
    client: Any, cfg: DatasetConfig, history: list[dict[str, Any]], current: str | None
) -> str | None:
    """The newest earlier champion that passed its gate, is not ``current`` and was never rolled back from."""
    rolled_back = {e["evidence"].get("rolled_back") for e in history}
    for entry in reversed(history):
        version = entry["to_version"]
        if version in (None, current) or version in rolled_back:
            continue
        if audit.gate_passed(client, cfg, version):
            return version
    return None


def rollback_champion(
    cfg: DatasetConfig,
    *,
    actor: str,
    reason: str,
    request_id: str = "",
    to_version: str | None = None,
    override: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Point ``champion`` at the last good champion (or ``to_version``); audited, and a no-op when repeated.

    Args:
        cfg: Dataset config.
        actor: Who rolls back (recorded).
        reason: Why (recorded as ``rollback: <reason>``).
        request_id: Makes a retried request a no-op (e.g. the Airflow run id).
        to_version: Target version; None: the last champion that passed its gate.
        override: Allow a ``to_version`` that did not pass its gate (flagged in the audit log).
        settings: Process settings.

    Returns:
        The audit entry of the move, with ``moved`` (False: nothing to do, the entry that already did it).

    Raises:
        RollbackImpossible: No champion, or no earlier champion that passed its gate.
        RollbackRefused: ``to_version`` did not pass its gate and ``override`` is False.
    """
    client, store = get_client(settings), audit.open_store(settings)
    name = cfg.registered_model_name
    with store.locked(name) as conn:
        audit.reconcile_champion(cfg, settings, store, conn)
        history = store.entries(name, conn)
        done = [e for e in history if request_id and e["evidence"].get("request_id") == request_id]
        if done:
            return {**done[-1], "moved": False}  # a retry of a rollback that went through
        current = promotion._version_of(registry.resolve_alias(cfg, bus.CHAMPION, settings))
        last = history[-1] if history else None
        if current is None:
            raise RollbackImpossible(f"{name}: no champion to roll back")
        target = None if to_version is None else str(to_version)
        if target == current or (
            target is None and last and last["evidence"].get("rolled_back") and last["to_version"] == current
        ):
            log.info("%s: champion v%s is already where this rollback leads; nothing moved", name, current)
            return {**(last or {}), "moved": False}
        if target is None:
            target = last_good_champion(client, cfg, history, current)
            if target is None:
                raise RollbackImpossible(
                    f"{name}: champion is v{current}; the audit log ({len(history)} entries) knows no "
                    "earlier "
                    "champion that passed its gate and was not rolled back from (use --to V --override)"
                )
        passed = audit.gate_passed(client, cfg, target)
        if passed is not True and not override:
            why = client.get_model_version(name, target).tags.get(bus.GATE_REASON_TAG, "no reason recorded")
            raise RollbackRefused(
                f"{name}: v{target} {'was rejected by' if passed is False else 'was never judged by'} "
                f"the gate "
                f"({why}); roll back to it only with --override"
            )
        entry = promotion._move(
            cfg,
            client,
            store,
            conn,
            target,
            from_version=current,
            actor=actor,
            reason=f"rollback{' (override)' if passed is not True else ''}: {reason}",
            evidence={"rolled_back": current, "request_id": request_id, "override": passed is not True},
            settings=settings,
            override=passed is not True,
        )
    log.info("%s: rolled champion back from v%s to v%s (%s)", name, current, target, reason)
    promotion.finish_move(cfg, client, store, [target, current], settings)
    return {**entry, "moved": True}


def _cmd_rollback(args: Any) -> int:
    import getpass

    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config

    print_result(
        rollback_champion(
            load_dataset_config(args.dataset),
            actor=f"cli:{getpass.getuser()}",
            reason=args.reason,
            to_version=args.to,
            override=args.override,
        )
    )
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop rollback``."""
    from driftloop.core.commands import dataset_parent

    rollback = subparsers.add_parser(
        "rollback",
        parents=[dataset_parent()],
        help="move champion back to the last champion that passed its gate, or --to V (audited; "
        "repeating it moves nothing)",
    )
    rollback.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    rollback.add_argument("--to", help="target version (default: the last champion that passed its gate)")
    rollback.add_argument(
        "--override", action="store_true", help="allow a --to version that did not pass its gate (audited)"
    )
    rollback.set_defaults(func=_cmd_rollback)
