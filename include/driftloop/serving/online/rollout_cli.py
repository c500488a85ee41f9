"""``driftloop rollout``: see where a staged rollout stands, begin one, advance it, stop it, from a shell.

Each command acts as its Airflow counterpart does and alerts through the package's channel
(``DRIFTLOOP_ALERT_WEBHOOK_URL``); the actor recorded is ``cli:<user>``.
"""

from __future__ import annotations

from typing import Any

from driftloop.core.commands import dataset_parent


def add_cli(subparsers: Any) -> None:
    """Register ``rollout status``, ``rollout begin``, ``rollout advance`` and ``rollout stop``."""
    rollout = subparsers.add_parser("rollout", help="staged rollout of the challenger (rollout.stages)")
    commands = rollout.add_subparsers(dest="rollout_command", required=True)
    status = commands.add_parser(
        "status",
        parents=[dataset_parent()],
        help="the challenger's stage, its plan, its history and the verdict its evidence gets now",
    )
    status.set_defaults(func=_cmd_status)
    begin = commands.add_parser(
        "begin", parents=[dataset_parent()], help="start the rollout of a version that passed the gate"
    )
    begin.add_argument("--version", required=True, help="registered version to roll out")
    begin.add_argument("--reason", default="started by hand", help="recorded in the rollout audit log")
    begin.set_defaults(func=_cmd_begin)
    advance = commands.add_parser(
        "advance",
        parents=[dataset_parent()],
        help="judge the running stage and act (what ab_evaluation does)",
    )
    advance.set_defaults(func=_cmd_advance)
    stop = commands.add_parser("stop", parents=[dataset_parent()], help="roll the running rollout back now")
    stop.add_argument("--reason", required=True, help="why (recorded and alerted)")
    stop.set_defaults(func=_cmd_stop)


def _actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def _run(args: Any, act: Any) -> int:
    from driftloop.core.alerts import rollout_alerts, send_package_alerts
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    settings = Settings.from_env()
    cfg = load_dataset_config(getattr(args, "dataset", None), settings)
    result = act(cfg, settings)
    send_package_alerts(cfg, result, settings, rollout_alerts)
    print_result(result)
    return 0


def _cmd_status(args: Any) -> int:
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config
    from driftloop.serving.online.rollout import rollout_status

    print_result(rollout_status(load_dataset_config(getattr(args, "dataset", None))))
    return 0


def _cmd_begin(args: Any) -> int:
    from driftloop.governance.rollout_state import begin_checked_rollout

    return _run(
        args,
        lambda cfg, settings: begin_checked_rollout(
            cfg, args.version, actor=_actor(), reason=args.reason, settings=settings
        ),
    )


def _cmd_advance(args: Any) -> int:
    from driftloop.serving.online.rollout import advance_rollout

    return _run(args, lambda cfg, settings: advance_rollout(cfg, settings, actor=_actor()))


def _cmd_stop(args: Any) -> int:
    from driftloop.serving.online.rollout import stop_rollout

    return _run(
        args, lambda cfg, settings: stop_rollout(cfg, actor=_actor(), reason=args.reason, settings=settings)
    )
