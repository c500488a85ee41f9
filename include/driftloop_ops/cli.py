"""``driftloop up``, ``driftloop down`` and ``driftloop demo``: the embedded stack from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _cmd_up(args: argparse.Namespace) -> int:
    from driftloop_ops.embedded import StackLayout, start_stack

    layout = StackLayout.from_env()
    start_stack(layout)
    print(
        f"Airflow UI: {layout.airflow_url} (user admin, password in {layout.password_file})\n"
        f"MLflow UI: {layout.mlflow_url}"
    )
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from driftloop_ops.embedded import StackLayout, stop_stack

    stop_stack(StackLayout.from_env())
    return 0


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
