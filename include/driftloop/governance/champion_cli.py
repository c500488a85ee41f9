"""``driftloop promote``, ``champion``, ``rollback``, ``audit`` and ``audit-init``: the champion's moves
from a shell, each audited and alerted like the DAGs' (:func:`driftloop.core.alerts.send_package_alerts`)."""

from __future__ import annotations

from typing import Any

from driftloop.governance import audit, promotion, rollback


def _cli_actor(args: Any) -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def _move_from_the_shell(args: Any, move: Any, alerts_of: Any = None) -> int:
    """Run ``move(cfg, settings)`` for the command's dataset, send the alerts its result calls for (default:
    one per move it recorded) and print the result."""
    from driftloop.core.alerts import send_package_alerts
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    cfg, settings = load_dataset_config(args.dataset), Settings.from_env()
    result = move(cfg, settings)
    send_package_alerts(cfg, result, settings, alerts_of)
    print_result(result)
    return 0


def _cmd_promote(args: Any) -> int:
    from driftloop.core.alerts import promotion_alerts

    return _move_from_the_shell(
        args,
        lambda cfg, settings: promotion.promote_model(cfg, args.version, settings, actor=_cli_actor(args)),
        promotion_alerts,
    )


def _cmd_champion(args: Any) -> int:
    return _move_from_the_shell(
        args,
        lambda cfg, settings: promotion.set_champion(
            cfg, args.version, actor=_cli_actor(args), reason=args.reason, settings=settings
        ),
    )


def _cmd_audit(args: Any) -> int:
    from driftloop.core.alerts import send_package_alerts
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    cfg, settings = load_dataset_config(args.dataset), Settings.from_env()
    recorded = promotion.reconcile_and_refresh(cfg, settings)
    send_package_alerts(cfg, {"recorded_moves": [recorded] if recorded else []}, settings)
    print_result(audit.open_store(settings).entries(cfg.registered_model_name))
    return 0


def _cmd_audit_init(args: Any) -> int:
    from driftloop.core.settings import Settings

    settings = Settings.from_env()
    url = settings.audit_owner_db_uri or settings.audit_db_uri
    store = audit.AuditStore(url) if url else audit.AuditStore.from_settings(settings)
    store.ensure_schema(writer_role=args.writer_role)
    print(f"audit schema ready ({'PostgreSQL' if store.postgres else 'SQLite'})")
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop promote``, ``champion``, ``rollback``, ``audit`` and ``audit-init``."""
    from driftloop.core.commands import dataset_parent

    promote = subparsers.add_parser("promote", parents=[dataset_parent()], help="run the gate on a version")
    promote.add_argument("version", help="registered model version to judge")
    promote.set_defaults(func=_cmd_promote)
    champion = subparsers.add_parser(
        "champion",
        parents=[dataset_parent()],
        help="move champion to a version by hand (audited; an override if it failed the gate)",
    )
    champion.add_argument("version")
    champion.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    champion.set_defaults(func=_cmd_champion)
    log = subparsers.add_parser(
        "audit", parents=[dataset_parent()], help="every move of champion, oldest first"
    )
    log.set_defaults(func=_cmd_audit)
    init = subparsers.add_parser(
        "audit-init",
        parents=[dataset_parent()],
        help="create the audit table as its owner ($DRIFTLOOP_AUDIT_OWNER_DB_URI)",
    )
    init.add_argument("--writer-role", default="", help="PostgreSQL role that gets INSERT and SELECT only")
    init.set_defaults(func=_cmd_audit_init)
    _add_rollback(subparsers)


def _cmd_rollback(args: Any) -> int:
    return _move_from_the_shell(
        args,
        lambda cfg, settings: rollback.rollback_champion(
            cfg,
            actor=_cli_actor(args),
            reason=args.reason,
            to_version=args.to,
            override=args.override,
            settings=settings,
        ),
    )


def _add_rollback(subparsers: Any) -> None:
    from driftloop.core.commands import dataset_parent

    rollback = subparsers.add_parser(
        "rollback",
        parents=[dataset_parent()],
        help="undo the last move of champion (back to the previous champion that passed its gate; "
        "repeating it goes one step further back), or move it --to V (audited)",
    )
    rollback.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    rollback.add_argument("--to", help="target version (default: undo the last move)")
    rollback.add_argument(
        "--override", action="store_true", help="allow a --to version that did not pass its gate (audited)"
    )
    rollback.set_defaults(func=_cmd_rollback)
