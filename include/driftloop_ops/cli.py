"""``driftloop up``, ``driftloop down`` and ``driftloop demo``: the embedded stack from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any


def _one_line_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Print what stops ``up`` / ``down`` / ``demo`` as one line (no traceback) and exit 1: a stack, a port or
    a pid file in the way, a service that did not become healthy, an Airflow API wait that ran out."""

    @wraps(command)
    def run(args: argparse.Namespace) -> int:
        from driftloop_ops.airflow_api import AirflowApiError
        from driftloop_ops.front_door import StackInTheWay
        from driftloop_ops.services import ServiceError

        try:
            return command(args)
        except (StackInTheWay, ServiceError, AirflowApiError) as exc:
            first, _, rest = str(exc).partition("\n")
            print(f"driftloop {args.command}: {first}", file=sys.stderr)
            if rest and not isinstance(exc, StackInTheWay):
                print(rest[-3000:], file=sys.stderr)
            return 1

    return run


@_one_line_errors
def _cmd_up(args: argparse.Namespace) -> int:
    from driftloop_ops.embedded import StackLayout, start_stack

    layout = StackLayout.from_env()
    start_stack(layout)
    print(
        f"Airflow UI: {layout.airflow_url} (user admin, password in {layout.password_file})\n"
        f"MLflow UI: {layout.mlflow_url}"
    )
    return 0


@_one_line_errors
def _cmd_down(args: argparse.Namespace) -> int:
    from driftloop_ops.embedded import StackLayout, stop_stack

    stop_stack(StackLayout.from_env())
    return 0


@_one_line_errors
def _cmd_demo(args: argparse.Namespace) -> int:
    from driftloop_ops.demo import run_demo
    from driftloop_ops.embedded import StackLayout

    summary = run_demo(StackLayout.from_env(), args.dataset)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2))
    if summary.get("failed"):
        return 1
    ok = (
        summary["champion"]
        and summary["drift_share_that_fired"] is not None
        and not summary["clean_batch_fired"]
    )
    return 0 if ok else 1


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop up``, ``down`` and ``demo``."""
    from driftloop.core.commands import dataset_parent

    subparsers.add_parser(
        "up", parents=[dataset_parent()], help="start MLflow + Airflow in the background"
    ).set_defaults(func=_cmd_up)
    subparsers.add_parser("down", parents=[dataset_parent()], help="stop them (state is kept)").set_defaults(
        func=_cmd_down
    )
    demo = subparsers.add_parser(
        "demo", parents=[dataset_parent()], help="start the stack and drive the closed loop once"
    )
    demo.add_argument("--summary-json", help="also write the summary to this file")
    demo.set_defaults(func=_cmd_demo)
