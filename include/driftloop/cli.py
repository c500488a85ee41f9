"""``driftloop`` command line: one sub-command group per stage module, each registered by ``add_cli``.

Modules are imported lazily per command so ``driftloop --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

# Modules that contribute sub-commands through ``add_cli(subparsers)``.
COMMAND_MODULES = (
    "driftloop.simulate",
    "driftloop.contract",
    "driftloop.data",
    "driftloop.training",
    "driftloop.registry",
    "driftloop.monitoring",
    "driftloop.lineage",
    "driftloop.demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every module's sub-commands."""
    parser = argparse.ArgumentParser(
        prog="driftloop", description="Driftloop command line: run any stage of the closed loop without Airflow."
    )
    parser.add_argument("--dataset", help="dataset config name (default: $DRIFTLOOP_DATASET or telco_churn)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.add_cli(subparsers)
    return parser


def print_result(result: Any) -> None:
    """Print a command's small result as indented JSON."""
    print(json.dumps(result, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``driftloop`` command.

    Returns:
        The process exit code: 0 on success, 1 when the command reports a failure, 2 on usage errors.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    code = args.func(args)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
