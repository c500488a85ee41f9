"""Pieces shared by every module's sub-commands of the ``driftloop`` command line (see
:mod:`driftloop.cli`)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def dataset_parent() -> argparse.ArgumentParser:
    """A parent parser that gives a sub-command its own ``--dataset`` option.

    Its default is suppressed, so ``driftloop --dataset X cmd`` and ``driftloop cmd --dataset X`` both work.
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--dataset",
        default=argparse.SUPPRESS,
        help="dataset config name (default: $DRIFTLOOP_DATASET or telco_churn)",
    )
    return parent


def print_result(result: Any) -> None:
    """Print a command's small result as indented JSON."""
    print(json.dumps(result, indent=2, default=str))
