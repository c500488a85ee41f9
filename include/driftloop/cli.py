"""``driftloop`` command line: one sub-command group per module, each registered by its ``add_cli``.

Modules are imported lazily per command so ``driftloop --help`` stays fast. Every sub-command accepts
``--dataset`` (before or after the sub-command name) and its handler is called ``_cmd_<command>``. A verdict
(:class:`driftloop.core.errors.Verdict`) is printed as one line and exits 1; third-party warnings and progress
bars are not printed (ours are).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

# Warnings attributed to these modules (the regex is matched against the warning's module) stay visible.
OWN_MODULES = r"(driftloop|driftloop_ops|driftloop_airflow)(\.|$)"
# Third-party progress bars (MLflow's artifact downloads, tqdm's) are set off here for every command and,
# through the embedded stack's environment, for its tasks: on stderr they read as errors.
QUIET_ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "TQDM_DISABLE": "1"}
# Modules that contribute sub-commands through ``add_cli(subparsers)``.
COMMAND_MODULES = (
    "driftloop.data.simulate",
    "driftloop.data.contract",
    "driftloop.data.ingest",
    "driftloop.training.train",
    "driftloop.core.registry",
    "driftloop.governance.champion_cli",
    "driftloop.monitoring.monitor",
    "driftloop.monitoring.sensor",
    "driftloop.governance.lineage",
    "driftloop.serving.online.cli",
    "driftloop.serving.online.rollout_cli",
    "driftloop_ops.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every module's sub-commands."""
    parser = argparse.ArgumentParser(
        prog="driftloop",
        description="Driftloop command line: run any stage of the closed loop without Airflow.",
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``driftloop`` command.

    Returns:
        The process exit code: 0 on success, 1 when the command reports a failure or a verdict, 2 on usage
        errors.
    """
    from driftloop.core.errors import Verdict

    parser = build_parser()
    args = parser.parse_args(argv)
    for name, value in QUIET_ENV.items():
        os.environ[name] = value
    with warnings.catch_warnings():
        # Third-party notices (deprecations in PyCaret, sklearn, MLflow...) are for developers, not for
        # operators at a terminal; a warning raised from our own code is about their data or setup: shown.
        warnings.simplefilter("ignore")
        warnings.filterwarnings("default", module=OWN_MODULES)
        try:
            code = args.func(args)
        except Verdict as exc:
            print(f"driftloop {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
