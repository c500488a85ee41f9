"""``driftloop`` command line: one sub-command group per module, each registered by its ``add_cli``.

Modules are imported lazily per command so ``driftloop --help`` stays fast. Every sub-command accepts
``--dataset`` (before or after the sub-command name) and its handler is called ``_cmd_<command>``. A verdict
(:class:`driftloop.errors.Verdict`) is printed as one line and exits 1; library warnings are not printed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from typing import Any

# Modules that contribute sub-commands through ``add_cli(subparsers)``.
COMMAND_MODULES = (
    "driftloop.simulate",
    "driftloop.contract",
    "driftloop.ingest",
    "driftloop.training",
    "driftloop.registry",
    "driftloop.promotion",
    "driftloop.monitoring",
    "driftloop.sensor",
    "driftloop.lineage",
    "driftloop.serving.cli",
    "driftloop_ops.cli",
)


def dataset_parent() -> argparse.ArgumentParser:
    """A parent parser that gives a sub-command its own ``--dataset`` option.

    Its default is suppressed, so ``driftloop --dataset X cmd`` and ``driftloop cmd --dataset X`` both work.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--dataset", default=argparse.SUPPRESS,
                        help="dataset config name (default: $DRIFTLOOP_DATASET or telco_churn)")
    return parent


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
        The process exit code: 0 on success, 1 when the command reports a failure or a verdict, 2 on usage errors.
    """
    from driftloop.errors import Verdict

    # Third-party deprecation notices are for developers (tests show them), not for operators at a terminal.
    warnings.simplefilter("ignore")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except Verdict as exc:
        print(f"driftloop {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
