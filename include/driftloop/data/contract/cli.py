"""``driftloop validate`` and ``driftloop contract bootstrap``."""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_validate(args: argparse.Namespace) -> int:
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config
    from driftloop.data.contract.files import format_report, validate_file

    cfg = load_dataset_config(args.dataset)
    report = validate_file(cfg, args.file, kind=args.kind)
    if args.json:
        print_result(report)
    else:
        print(format_report(report), end="")
    return 0 if report["ok"] and (args.allow_rejected_rows or not report["rows_quarantined"]) else 1


def _cmd_contract_bootstrap(args: argparse.Namespace) -> int:
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config
    from driftloop.data.contract.bootstrap import bootstrap_contract, format_bootstrap_report

    cfg = load_dataset_config(args.dataset)
    result = bootstrap_contract(cfg, args.out, overwrite=args.force)
    if args.json:
        print_result(result)
    else:
        print(format_bootstrap_report(result), end="")
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop validate`` and ``driftloop contract bootstrap``."""
    from driftloop.core.commands import dataset_parent

    validate = subparsers.add_parser(
        "validate", parents=[dataset_parent()], help="validate a file against the dataset's contract"
    )
    validate.add_argument("file", help="a .csv or .parquet batch or label file")
    validate.add_argument("--kind", choices=["batch", "labels"], default="batch")
    validate.add_argument("--json", action="store_true", help="print the full report as JSON")
    validate.add_argument(
        "--allow-rejected-rows",
        action="store_true",
        help="exit 0 when only some rows fail (within max_bad_row_share)",
    )
    validate.set_defaults(func=_cmd_validate)
    contract = subparsers.add_parser("contract", help="data contract tools")
    contract_sub = contract.add_subparsers(dest="contract_command", required=True)
    boot = contract_sub.add_parser(
        "bootstrap", parents=[dataset_parent()], help="derive a contract from the reference data"
    )
    boot.add_argument("--out", help="output path (default: next to the dataset config)")
    boot.add_argument("--force", action="store_true", help="overwrite an existing contract")
    boot.add_argument("--json", action="store_true", help="print the result and per-column report as JSON")
    boot.set_defaults(func=_cmd_contract_bootstrap)
