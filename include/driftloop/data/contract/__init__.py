"""Data contracts: what a batch or label file must look like before any of its rows are stored.

The subpackage is split by job:

* :mod:`~driftloop.data.contract.schema`: the contract (column rules, YAML loading, column-set checks);
* :mod:`~driftloop.data.contract.bootstrap`: a first contract derived from the reference data;
* :mod:`~driftloop.data.contract.inspection`: byte-level file checks (format, encoding, truncation, record
  boundaries);
* :mod:`~driftloop.data.contract.text` and :mod:`~driftloop.data.contract.ids`: vectorised text kernels, id
  hashing;
* :mod:`~driftloop.data.contract.rows`: row checks through pandera;
* :mod:`~driftloop.data.contract.files`: a whole file in bounded-memory chunks, and its report;
* :mod:`~driftloop.data.contract.cli`: ``driftloop validate`` and ``driftloop contract bootstrap``.

Validation has two levels. **File level**: empty, binary or spreadsheet bytes, non-UTF-8 text, wrong
delimiter, missing header, truncated or ragged CSV, parquet with an incompatible schema, missing or unexpected
columns, an all-null column; these reject the whole file with a reason code. **Row level**: unparsable or
non-integer numbers, NaN/inf, out-of-range values, unknown categories, nulls where not allowed, duplicate ids,
over-long fields and spreadsheet formula injection. Every received row is either accepted or rejected:
``rows_accepted + rows_quarantined == rows_received``.
"""

from driftloop.data.contract.bootstrap import bootstrap_contract
from driftloop.data.contract.cli import add_cli
from driftloop.data.contract.files import ValidationReport, format_report, iter_file_frames, validate_file
from driftloop.data.contract.ids import HASH_SCHEME, LEGACY_SCHEME, hash_scheme, hash_values, join_hashed_ids
from driftloop.data.contract.inspection import FileInfo, inspect_file, sha256_file
from driftloop.data.contract.rows import validate_frame
from driftloop.data.contract.schema import (
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
    "FileInfo",
    "add_cli",
    "arrow_schema",
    "bootstrap_contract",
    "check_columns",
    "contract_path",
    "format_report",
    "hash_values",
    "hash_scheme",
    "join_hashed_ids",
    "HASH_SCHEME",
    "LEGACY_SCHEME",
    "inspect_file",
    "iter_file_frames",
    "load_contract",
    "parse_contract",
    "sha256_file",
    "ValidationReport",
    "validate_file",
    "validate_frame",
]
