"""Data contracts: what a batch or label file must look like before any of its rows are stored.

The subpackage is split by job:

* :mod:`~driftloop.contract.schema`: the contract (column rules, YAML loading, column-set checks);
* :mod:`~driftloop.contract.bootstrap`: a first contract derived from the reference data;
* :mod:`~driftloop.contract.inspection`: byte-level file checks (format, encoding, truncation, record boundaries);
* :mod:`~driftloop.contract.text` and :mod:`~driftloop.contract.ids`: vectorised text kernels, id hashing;
* :mod:`~driftloop.contract.rows`: row checks through pandera;
* :mod:`~driftloop.contract.files`: a whole file in bounded-memory chunks, and its report;
* :mod:`~driftloop.contract.cli`: ``driftloop validate`` and ``driftloop contract bootstrap``.

Validation has two levels. **File level**: empty, binary or spreadsheet bytes, non-UTF-8 text, wrong delimiter,
missing header, truncated or ragged CSV, parquet with an incompatible schema, missing or unexpected columns, an
all-null column; these reject the whole file with a reason code. **Row level**: unparsable or non-integer
numbers, NaN/inf, out-of-range values, unknown categories, nulls where not allowed, duplicate ids, over-long fields
and spreadsheet formula injection. Every received row is either accepted or rejected:
``rows_accepted + rows_quarantined == rows_received``.
"""

from driftloop.contract.bootstrap import bootstrap_contract
from driftloop.contract.cli import add_cli
from driftloop.contract.files import format_report, iter_file_frames, validate_file
from driftloop.contract.ids import hash_values
from driftloop.contract.inspection import inspect_file, sha256_file
from driftloop.contract.rows import validate_frame
from driftloop.contract.schema import (
    BATCH_REASONS,
    ROW_REASONS,
    BatchRejected,
    ColumnRule,
    Contract,
    ContractError,
    arrow_schema,
    check_columns,
    contract_path,
    load_contract,
    parse_contract,
)

__all__ = [
    "BATCH_REASONS",
    "ROW_REASONS",
    "BatchRejected",
    "ColumnRule",
    "Contract",
    "ContractError",
    "add_cli",
    "arrow_schema",
    "bootstrap_contract",
    "check_columns",
    "contract_path",
    "format_report",
    "hash_values",
    "inspect_file",
    "iter_file_frames",
    "load_contract",
    "parse_contract",
    "sha256_file",
    "validate_file",
    "validate_frame",
]
