"""Data contracts: what a batch or label file must look like before any of its rows are stored.

A contract is a YAML file next to the dataset config (``<dataset>.contract.yaml``, or the path in the config's
``contract.path``). It lists every column with its dtype, nullability, range, allowed categories, maximum text
length and PII treatment, names the id and label columns, and sets batch-level limits (row-count bounds and the
largest share of bad rows a batch may carry before it is quarantined whole).

Validation has two levels:

* **File level** (:func:`inspect_file`, column checks): empty, binary or spreadsheet bytes, non-UTF-8 text, wrong
  delimiter, missing header, truncated or ragged CSV, parquet with an incompatible schema, missing or unexpected
  columns, an all-null column. These raise :class:`BatchRejected` with a reason code.
* **Row level** (:func:`validate_frame`): unparsable or non-integer numbers, NaN/inf, out-of-range values,
  unknown categories, nulls where not allowed, duplicate ids, over-long fields and spreadsheet formula
  injection. Bad rows come back with a ``_reason`` column (``code:column`` items joined by ``;``); good rows
  come back typed and in canonical column order. Column checks run through pandera.

Every received row is either accepted or rejected: ``rows_accepted + rows_quarantined == rows_received``.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from driftloop.config import ConfigError, DatasetConfig

SALT_ENV = "DRIFTLOOP_PII_SALT"
DEFAULT_MAX_BAD_ROW_SHARE = 0.2
DEFAULT_CHUNK_ROWS = 200_000
SEGMENT_BYTES = 16 << 20
DEFAULT_MAX_TEXT_LENGTH = 256
# Headroom applied to reference maxima by bootstrap: drifted-but-plausible values must pass the contract and
# reach monitoring; only physically impossible ones (negative charges, absurd magnitudes) are quarantined.
BOOTSTRAP_RANGE_HEADROOM = 2.0
# Read as null in CSV files; everything else is a value to be checked.
NULL_TOKENS = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "#N/A"]
# Spreadsheet formula injection (OWASP CSV injection): =, @, tab/CR always; + or - when command-like text follows
# (a letter, parenthesis, pipe or bang, e.g. -2+3+cmd|' /C calc'!A0), so "-12.5" written as text is not flagged.
FORMULA_PATTERN = r"^\s*(?:[=@\t\r]|[+\-].*[A-Za-z_(|!])"

DTYPES = ("string", "int64", "float64")
NUMERIC_DTYPES = ("int64", "float64")
PII_ACTIONS = ("drop", "hash")

# Row-level reason codes (a rejected row's ``_reason`` holds ``code:column`` items).
ROW_REASONS = {
    "unparsable": "value cannot be parsed as the column's dtype",
    "not_integer": "value of an integer column has a fractional part",
    "non_finite": "numeric value is inf or -inf",
    "null_not_allowed": "null in a column that is not nullable",
    "out_of_range": "numeric value outside the contract's [min, max]",
    "unknown_category": "value not among the contract's categories",
    "field_too_long": "text longer than the column's max_length",
    "formula_injection": "text starts like a spreadsheet formula (=, +, -, @ followed by command-like text)",
    "duplicate_id": "id already seen earlier in the same batch",
}

# File-level reason codes (the whole file is quarantined).
BATCH_REASONS = {
    "empty_file": "file has no bytes or no data rows",
    "wrong_format": "bytes are not the format the file name says (e.g. a spreadsheet or binary renamed .csv)",
    "unsupported_file_type": "file extension is neither .csv nor .parquet",
    "not_utf8": "CSV bytes are not valid UTF-8",
    "wrong_delimiter": "CSV uses another delimiter than ','",
    "no_header": "CSV first line is data, not column names",
    "malformed_csv": "CSV rows have more fields than the header or quoting is broken",
    "truncated_file": "file ends in the middle of a row or its parquet footer is missing",
    "unreadable_file": "file cannot be read",
    "schema_mismatch": "parquet column types cannot hold the contract's dtypes",
    "missing_columns": "required columns are missing",
    "unexpected_columns": "columns not in the contract",
    "all_null_column": "a contract column is null in every row",
    "row_count_out_of_bounds": "row count outside the contract's rows.min / rows.max",
    "too_many_bad_rows": "share of rejected rows above max_bad_row_share",
    "replayed_batch": "same bytes as an already ingested batch",
    "batch_id_conflict": "a different file with the same batch id was already ingested",
}


class ContractError(ConfigError):
    """The contract itself is missing or malformed, or a setting it needs (the PII salt) is absent."""


class BatchRejected(Exception):
    """A whole file fails the contract.

    Attributes:
        reason_code: One of :data:`BATCH_REASONS`.
        message: Operator-readable explanation with the numbers.
        rows_received: Rows counted before the problem was found (a line count when the file cannot be parsed).
    """

    def __init__(self, reason_code: str, message: str, rows_received: int = 0, **details: Any) -> None:
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message
        self.rows_received = rows_received
        self.details = details


@dataclass(frozen=True)
class ColumnRule:
    """What one column must hold."""

    name: str
    dtype: str
    nullable: bool = False
    required: bool = True
    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None
    max_length: int | None = None
    pii: str | None = None
    unique: bool = False
    description: str = ""


@dataclass(frozen=True)
class Contract:
    """A dataset's data contract (see the module docstring and ``include/configs/*.contract.yaml``)."""

    dataset: str
    id_column: str
    label_column: str
    columns: dict[str, ColumnRule]
    min_rows: int = 1
    max_rows: int | None = None
    max_bad_row_share: float = DEFAULT_MAX_BAD_ROW_SHARE
    path: str = ""
    stored_columns: tuple[str, ...] = field(default=())

    def batch_columns(self, has_label: bool) -> list[str]:
        """Canonical column order of a stored feature batch: id, features, then the label when present."""
        cols = [c for c in self.stored_columns if c != self.label_column]
        return [*cols, self.label_column] if has_label else cols

    @property
    def label_columns(self) -> list[str]:
        """Canonical column order of a stored label file."""
        return [self.id_column, self.label_column]


# --------------------------------------------------------------------------------------------------------------
# Loading, writing and bootstrapping contracts


def contract_path(cfg: DatasetConfig) -> Path:
    """Where ``cfg``'s contract lives: ``contract.path`` (relative to the config's folder) or ``<name>.contract.yaml``."""
    config_dir = Path(cfg.config_path).parent if cfg.config_path else Path.cwd()
    raw = (cfg.contract or {}).get("path") or f"{cfg.name}.contract.yaml"
    path = Path(raw)
    return path if path.is_absolute() else config_dir / path


def parse_contract(raw: dict[str, Any], cfg: DatasetConfig, where: str = "contract") -> Contract:
    """Validate a raw contract mapping against the dataset config and build a :class:`Contract`.

    Args:
        raw: Parsed YAML mapping.
        cfg: Dataset config the contract belongs to (its id, target and features must all be covered).
        where: Name used in error messages.

    Returns:
        The contract.

    Raises:
        ContractError: A key is unknown, a dtype or PII action is invalid, or a configured column is missing.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), dict):
        raise ContractError(f"{where}: must be a mapping with a 'columns' mapping")
    known_rule_keys = set(ColumnRule.__dataclass_fields__) - {"name"}
    columns: dict[str, ColumnRule] = {}
    for name, spec in raw["columns"].items():
        spec = dict(spec or {})
        unknown = set(spec) - known_rule_keys
        if unknown:
            raise ContractError(f"{where}: column {name!r}: unknown keys {sorted(unknown)}")
        dtype = spec.get("dtype", "string")
        if dtype not in DTYPES:
            raise ContractError(f"{where}: column {name!r}: dtype {dtype!r} not in {DTYPES}")
        if spec.get("pii") not in (None, *PII_ACTIONS):
            raise ContractError(f"{where}: column {name!r}: pii must be one of {PII_ACTIONS}")
        if spec.get("categories") is not None:
            spec["categories"] = tuple(spec["categories"])
        columns[str(name)] = ColumnRule(name=str(name), **spec)
    id_column = raw.get("id_column", cfg.id_column)
    not_id_unique = [c for c, rule in columns.items() if rule.unique and c != id_column]
    if not_id_unique:
        raise ContractError(f"{where}: unique is supported on the id column only, not on {not_id_unique}")
    label_column = raw.get("label_column", cfg.target)
    if (id_column, label_column) != (cfg.id_column, cfg.target):
        raise ContractError(
            f"{where}: id/label columns {id_column!r}/{label_column!r} differ from the dataset config's "
            f"{cfg.id_column!r}/{cfg.target!r}"
        )
    missing = [c for c in [id_column, *cfg.features, label_column] if c not in columns]
    if missing:
        raise ContractError(f"{where}: dataset columns missing from the contract: {missing}")
    for name in [id_column, *cfg.features, label_column]:
        if columns[name].pii == "drop":
            raise ContractError(f"{where}: column {name!r} is the id, a feature or the label and cannot be dropped")
    rows = raw.get("rows") or {}
    share = float(raw.get("max_bad_row_share", DEFAULT_MAX_BAD_ROW_SHARE))
    if not 0 <= share <= 1:
        raise ContractError(f"{where}: max_bad_row_share must be in [0, 1], got {share}")
    return Contract(
        dataset=raw.get("dataset", cfg.name),
        id_column=id_column,
        label_column=label_column,
        columns=columns,
        min_rows=int(rows.get("min", 1)),
        max_rows=int(rows["max"]) if rows.get("max") is not None else None,
        max_bad_row_share=share,
        path=where,
        stored_columns=(id_column, *cfg.features, label_column),
    )


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def load_contract(cfg: DatasetConfig) -> Contract:
    """Read and validate ``cfg``'s contract.

    The config's ``contract`` mapping names the file (``path``) and may override any contract key, e.g.
    ``contract: {path: telco_churn.contract.yaml, max_bad_row_share: 0.05, rows: {max: 100000}}`` (so
    ``DRIFTLOOP_CONFIG_OVERRIDES`` can tighten a threshold without editing the file). A ``columns`` mapping
    with no file is a complete inline contract.

    Raises:
        ContractError: No contract exists for the dataset, or it is invalid.
    """
    inline = {k: v for k, v in (cfg.contract or {}).items() if k != "path"}
    path = contract_path(cfg)
    if path.is_file():
        raw = yaml.safe_load(path.read_text()) or {}
        where = str(path)
    elif "columns" in inline and "path" not in (cfg.contract or {}):
        raw, where = {}, f"{cfg.config_path or cfg.name}: contract"
    else:
        raise ContractError(
            f"no data contract for dataset {cfg.name!r} at {path}; create one with "
            f"`driftloop --dataset {cfg.name} contract bootstrap` and review it"
        )
    return parse_contract(_merge(raw, inline), cfg, where)


def _nice_ceiling(value: float) -> float:
    """Round up to two significant digits so bootstrapped bounds read like a person wrote them."""
    if value <= 0:
        return 0.0
    import math

    step = 10 ** (math.floor(math.log10(value)) - 1)
    return float(math.ceil(value / step) * step)


def _dump_contract(raw: dict[str, Any]) -> str:
    """YAML with one line per column, so a reviewer sees each column's rules at a glance."""
    top = {k: v for k, v in raw.items() if k != "columns"}
    lines = [yaml.safe_dump(top, sort_keys=False, default_flow_style=None, width=110).rstrip(), "columns:"]
    for name, rule in raw["columns"].items():
        flow = yaml.safe_dump(rule, sort_keys=False, default_flow_style=True, width=10**6).strip()
        lines.append(f"  {yaml.safe_dump(name).splitlines()[0]}: {flow}")
    return "\n".join(lines) + "\n"


def bootstrap_contract(cfg: DatasetConfig, out_path: str | Path | None = None, overwrite: bool = False) -> dict:
    """Derive a contract from the dataset's reference data and write it as YAML for a person to review.

    Numeric ranges start at 0 when the reference has no negatives and end at the reference maximum times
    :data:`BOOTSTRAP_RANGE_HEADROOM`; categories are the reference's distinct values; a column is nullable when
    the reference has nulls.

    Args:
        cfg: Dataset config (``driftloop.sources.load_source_frame(cfg)`` supplies the reference data).
        out_path: Where to write; defaults to :func:`contract_path`.
        overwrite: Replace an existing file (a reviewed contract is never overwritten by default).

    Returns:
        ``{"contract_path", "columns", "rows_profiled"}``.

    Raises:
        ContractError: The file exists and ``overwrite`` is False.
    """
    from driftloop.sources import load_source_frame

    path = Path(out_path) if out_path else contract_path(cfg)
    if path.exists() and not overwrite:
        raise ContractError(f"{path} exists; pass overwrite (CLI: --force) to replace a reviewed contract")
    frame = load_source_frame(cfg)
    columns: dict[str, dict[str, Any]] = {}
    for name in frame.columns:
        series = frame[name]
        rule: dict[str, Any] = {}
        is_numeric = series.dtype.kind in "iuf" and name != cfg.id_column
        if name == cfg.id_column:
            longest = int(series.astype(str).str.len().max())
            rule = {"dtype": "string", "nullable": False, "unique": True, "max_length": max(64, 2 * longest)}
        elif name in cfg.categorical_features or name == cfg.target:
            values = series.dropna()
            if is_numeric:
                rule["dtype"] = "int64" if (values % 1 == 0).all() else "float64"
                cats = sorted(int(v) if rule["dtype"] == "int64" else float(v) for v in values.unique())
            else:
                rule["dtype"] = "string"
                cats = sorted(str(v) for v in values.unique())
            rule["nullable"] = bool(series.isna().any())
            rule["categories"] = cats
        elif is_numeric:
            values = series.dropna()
            integer = series.dtype.kind in "iu" or bool((values % 1 == 0).all())
            rule["dtype"] = "int64" if integer else "float64"
            rule["nullable"] = bool(series.isna().any())
            low, high = float(values.min()), float(values.max())
            rule["min"] = 0 if low >= 0 else -_nice_ceiling(-low * BOOTSTRAP_RANGE_HEADROOM)
            rule["max"] = _nice_ceiling(high * BOOTSTRAP_RANGE_HEADROOM) if high > 0 else 0
            if integer:
                rule["min"], rule["max"] = int(rule["min"]), int(rule["max"])
        else:
            longest = int(series.dropna().astype(str).str.len().max() or 0)
            rule = {"dtype": "string", "nullable": bool(series.isna().any()),
                    "max_length": max(DEFAULT_MAX_TEXT_LENGTH, 2 * longest)}
        columns[name] = rule
    raw = {
        "dataset": cfg.name,
        "id_column": cfg.id_column,
        "label_column": cfg.target,
        "rows": {"min": 1, "max": 10_000_000},
        "max_bad_row_share": DEFAULT_MAX_BAD_ROW_SHARE,
        "columns": columns,
    }
    parse_contract(raw, cfg, str(path))
    header = (
        f"# Data contract for {cfg.name}, bootstrapped from the reference data ({len(frame)} rows); review it.\n"
        "# Column keys: dtype (string|int64|float64), nullable, required (default true; the label is optional in\n"
        "# feature batches), min/max, categories, max_length, unique, pii (drop|hash; hash is salted with\n"
        f"# ${SALT_ENV}). Numeric max = reference max x {BOOTSTRAP_RANGE_HEADROOM:g} so drift reaches monitoring.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + _dump_contract(raw))
    return {"contract_path": str(path), "columns": len(columns), "rows_profiled": int(len(frame))}


# --------------------------------------------------------------------------------------------------------------
# File-level inspection


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (0 if last == b"\n" else 1)


def inspect_file(path: str | Path) -> dict[str, Any]:
    """File-level checks that need no contract: format, encoding, header line, truncation.

    One streaming pass computes the sha256, checks UTF-8 and counts lines, so memory stays flat for any size.

    Args:
        path: A ``.csv`` or ``.parquet`` file.

    Returns:
        ``{"sha256", "format", "size_bytes", "header", "lines", "rows"}`` (``header`` is the CSV's first record;
        ``rows`` the data line count of a CSV or the footer's row count of a parquet file).

    Raises:
        BatchRejected: empty_file, unsupported_file_type, wrong_format, not_utf8, truncated_file, unreadable_file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    size = path.stat().st_size
    if suffix not in (".csv", ".parquet"):
        raise BatchRejected("unsupported_file_type", f"{path.name}: extension {suffix!r} is not .csv or .parquet")
    if size == 0:
        raise BatchRejected("empty_file", f"{path.name} has 0 bytes")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if suffix == ".parquet":
        if head[:4] != b"PAR1":
            raise BatchRejected("wrong_format", f"{path.name} does not start with the parquet magic bytes")
        with open(path, "rb") as handle:
            handle.seek(max(0, size - 4))
            if handle.read(4) != b"PAR1":
                raise BatchRejected("truncated_file", f"{path.name}: parquet footer missing ({size} bytes)")
        try:
            import pyarrow.parquet as pq

            rows = pq.read_metadata(path).num_rows
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt footers
            raise BatchRejected("unreadable_file", f"{path.name}: {str(exc)[:300]}") from None
        return {"sha256": sha256_file(path), "format": "parquet", "size_bytes": size, "header": None, "lines": 0,
                "rows": rows}
    for magic, what in ((b"PK\x03\x04", "a zip container such as an .xlsx spreadsheet"),
                        (b"\xd0\xcf\x11\xe0", "an OLE container such as an .xls spreadsheet"),
                        (b"PAR1", "a parquet file")):
        if head.startswith(magic):
            lines = _count_lines(path)
            raise BatchRejected("wrong_format", f"{path.name} is {what}, not CSV text", rows_received=max(lines - 1, 0))
    import numpy as np

    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines, offset, last, first_line = 0, 0, b"", b""
    longest, line_start = 0, -1
    # Record boundaries (a newline outside quotes) about every SEGMENT_BYTES: the reader parses one segment at a
    # time, so memory is bounded by the segment, never by the file.
    quotes, header_end, cuts, next_mark = 0, None, [], SEGMENT_BYTES
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            nul = block.find(b"\x00")
            if nul >= 0:
                raise BatchRejected(
                    "wrong_format", f"{path.name} contains NUL bytes at offset {offset + nul}: binary data, not "
                    "CSV text", rows_received=max(_count_lines(path) - 1, 0))
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                raise BatchRejected(
                    "not_utf8", f"{path.name}: byte {offset + exc.start} is not valid UTF-8 ({exc.reason})",
                    rows_received=max(_count_lines(path) - 1, 0)) from None
            if not first_line:
                first_line = block.split(b"\n", 1)[0]
            newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            if len(newlines):
                ends = newlines + offset
                longest = max(longest, int(ends[0] - line_start), int(np.diff(ends).max(initial=0)))
                line_start = int(ends[-1])
            if len(newlines) and (header_end is None or offset + len(block) > next_mark):
                parity = (np.cumsum(np.frombuffer(block, dtype=np.uint8) == 34) + quotes) % 2
                boundaries = newlines[parity[newlines] == 0] + offset + 1
                if header_end is None and len(boundaries):
                    header_end = int(boundaries[0])
                while offset + len(block) > next_mark:
                    after = boundaries[boundaries > next_mark]
                    if not len(after):
                        break  # the next record boundary lies in a later block
                    cuts.append(int(after[0]))
                    next_mark = cuts[-1] + SEGMENT_BYTES
            quotes += block.count(b'"')
            lines += len(newlines)
            offset += len(block)
            last = block[-1:]
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise BatchRejected("not_utf8", f"{path.name}: file ends inside a UTF-8 sequence",
                            rows_received=max(lines, 0)) from None
    ends_with_newline = last == b"\n"
    lines += 0 if ends_with_newline else 1
    header_text = first_line.decode("utf-8").lstrip("\ufeff").rstrip("\r")
    header = next(csv.reader([header_text]), [])
    if not any(h.strip() for h in header):
        raise BatchRejected("empty_file", f"{path.name} has no header line", rows_received=max(lines - 1, 0))
    if lines <= 1:
        raise BatchRejected("empty_file", f"{path.name} has a header but 0 data rows", rows_received=0)
    if not ends_with_newline:
        last_line = _read_last_line(path)
        fields = next(csv.reader([last_line.decode("utf-8", "replace")]), [])
        if len(fields) < len(header) or last_line.count(b'"') % 2:
            raise BatchRejected(
                "truncated_file", f"{path.name}: last line has {len(fields)} of {len(header)} fields and no "
                "line ending: the file was cut off", rows_received=lines - 1)
    longest = max(longest, offset - line_start)
    return {"sha256": digest.hexdigest(), "format": "csv", "size_bytes": size, "header": header, "lines": lines,
            "rows": lines - 1, "longest_line": longest, "segments": [header_end or size, *cuts, size]}


def _read_last_line(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = handle.tell()
        pos, tail = end, b""
        while pos > 0 and b"\n" not in tail:
            step = min(1 << 16, pos)
            pos -= step
            handle.seek(pos)
            tail = handle.read(step) + tail
    return tail.rsplit(b"\n", 1)[-1]


def check_columns(contract: Contract, columns: list[str], kind: str = "batch") -> dict[str, Any]:
    """Column-set checks for a feature batch (``kind="batch"``) or a label file (``kind="labels"``).

    Returns:
        ``{"has_label": bool, "drop": [pii or declared columns not stored]}``.

    Raises:
        BatchRejected: wrong_delimiter, no_header, missing_columns, unexpected_columns.
    """
    names = [str(c) for c in columns]
    known = set(contract.columns)
    if len(names) == 1:
        for delimiter, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            parts = names[0].split(delimiter)
            if len(parts) > 1 and len(set(parts) & known) >= min(2, len(known)):
                raise BatchRejected("wrong_delimiter", f"columns are separated by {label}, not comma")
    if kind == "labels":
        required = contract.label_columns
        allowed = set(required)
    else:
        required = [c for c, rule in contract.columns.items() if rule.required and c != contract.label_column]
        allowed = known
    overlap = set(names) & known
    if not overlap and len(names) in {len(required), len(required) + 1}:
        raise BatchRejected("no_header", f"none of the {len(names)} header fields is a contract column "
                                         f"(first: {names[0][:40]!r}): the first line looks like data")
    missing = [c for c in required if c not in names]
    if missing:
        raise BatchRejected("missing_columns", f"{len(missing)} required column(s) missing: {missing}")
    duplicated = sorted({c for c in names if names.count(c) > 1})
    if duplicated:
        raise BatchRejected("unexpected_columns", f"column(s) appear more than once: {duplicated}")
    extra = [c for c in names if c not in allowed]
    if extra:
        raise BatchRejected("unexpected_columns", f"{len(extra)} column(s) not in the contract: {extra[:20]}")
    drop = [c for c in names if c not in contract.stored_columns or contract.columns[c].pii == "drop"]
    return {"has_label": contract.label_column in names, "drop": drop}


# --------------------------------------------------------------------------------------------------------------
# Row-level validation


def _pii_salt() -> str:
    salt = os.environ.get(SALT_ENV, "")
    if not salt:
        raise ContractError(
            f"the contract hashes PII columns but ${SALT_ENV} is not set; set it to a secret (the same value for "
            "every run, or ids stop joining)"
        )
    return salt


def hash_values(series: Any, salt: str) -> Any:
    """Salted sha256 hex digest of every non-null value (nulls stay null)."""
    import pandas as pd

    def digest(value: Any) -> Any:
        return hashlib.sha256(f"{salt}\x1f{value}".encode()).hexdigest()

    return series.map(lambda v: None if pd.isna(v) else digest(v))


def _arrow_text(series: Any) -> Any:
    """``series`` as a pyarrow string array (C++ string kernels are ~30x faster than ``Series.str``)."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
        return series.array.__arrow_array__()
    values = series.to_numpy(dtype=object)
    try:
        return pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string(), from_pandas=True)


def _text_flags(series: Any, pattern: str) -> Any:
    """Boolean Series: does each value match the regex ``pattern`` (nulls: False)."""
    import numpy as np
    import pandas as pd
    import pyarrow.compute as pc

    matched = pc.fill_null(pc.match_substring_regex(_arrow_text(series), pattern), False)
    return pd.Series(np.asarray(matched, dtype=bool), index=series.index)


def _text_lengths(series: Any) -> Any:
    """Character count of each value (nulls: 0)."""
    import numpy as np
    import pandas as pd
    import pyarrow.compute as pc

    lengths = pc.fill_null(pc.utf8_length(_arrow_text(series)), 0)
    return pd.Series(np.asarray(lengths), index=series.index)


def _parse_numbers(values: Any) -> Any:
    """Parse text to float64; values that are not numbers become NaN (the caller flags them)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        parsed = pc.cast(_arrow_text(values), pa.float64())
        return pd.Series(parsed.to_numpy(zero_copy_only=False), index=values.index, dtype="float64")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = pd.to_numeric(values, errors="coerce")
        if parsed.dtype.kind not in "iuf":
            return pd.Series(np.nan, index=values.index, dtype="float64")
        return parsed.astype("float64")


# Multipliers of the id hash below (odd 64-bit constants from splitmix64); positions cycle every 256 bytes.
_HASH_SPAN = 256


def _text_hashes(values: Any) -> Any:
    """64-bit hash of every string of an Arrow string array, computed on its raw buffers (no Python strings).

    A polynomial hash over the bytes (mod 2**64) mixed with the length and finished with splitmix64, so two
    different ids collide with probability ~n**2 / 2**64 (a collision would quarantine a row as a duplicate,
    never accept a duplicate). Nulls hash to 0.
    """
    import numpy as np
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.large_string())
    n = len(values)
    _, offsets_buf, data_buf = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[values.offset: values.offset + n + 1]
    lengths = np.diff(offsets)
    first, last = int(offsets[0]), int(offsets[-1])
    hashes = np.zeros(n, dtype=np.uint64)
    if last > first:
        data = np.frombuffer(data_buf, dtype=np.uint8)[first:last].astype(np.uint64)
        starts = offsets[:-1] - first
        position = np.arange(last - first, dtype=np.int64) - np.repeat(starts, lengths)
        with np.errstate(over="ignore"):
            weights = np.cumprod(np.full(_HASH_SPAN, 0x9E3779B97F4A7C15, dtype=np.uint64))
            terms = (data + np.uint64(1)) * weights[position % _HASH_SPAN]
            nonempty = lengths > 0
            hashes[nonempty] = np.add.reduceat(terms, starts[nonempty])
    with np.errstate(over="ignore"):
        h = hashes ^ ((lengths.astype(np.uint64) + np.uint64(1)) * np.uint64(0xBF58476D1CE4E5B9))
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def _duplicate_positions(ids: Any, seen_ids: list[Any] | None) -> Any:
    """Positions of non-null ids already seen earlier in this frame or in ``seen_ids`` (earlier chunks).

    Ids are compared by a 64-bit hash of their bytes (:func:`_text_hashes`), so ``seen_ids`` costs 8 bytes per
    distinct id and the check never materialises Python strings.
    """
    import numpy as np
    import pandas as pd

    values = _arrow_text(ids)
    hashes = _text_hashes(values)
    present = ~np.asarray(values.is_null(), dtype=bool)
    hashes = hashes[present]  # null ids are reported as null_not_allowed, never as duplicates
    duplicate = pd.Series(hashes).duplicated(keep="first").to_numpy()
    if seen_ids is not None:
        # seen_ids[0] is one sorted array of every earlier chunk's hashes: a binary search per id, and merging
        # two sorted runs (stable sort = timsort) is linear, so a file costs O(n log n), not O(n^2 / chunk).
        earlier = seen_ids[0] if seen_ids else np.empty(0, dtype=np.uint64)
        if len(earlier):
            slots = np.minimum(np.searchsorted(earlier, hashes), len(earlier) - 1)
            duplicate |= earlier[slots] == hashes
        merged = np.concatenate([earlier, np.sort(hashes[~duplicate])])
        merged.sort(kind="stable")
        seen_ids[:] = [merged]
    return np.flatnonzero(present)[duplicate]


def _formula_flags(series: Any, categorical: bool) -> Any:
    """Formula-injection check; for categorical text only the distinct values are matched (few, so cheap)."""
    import numpy as np
    import pandas as pd
    import pyarrow.compute as pc

    if not categorical:
        return _text_flags(series, FORMULA_PATTERN)
    values = _arrow_text(series)
    distinct = pc.unique(values)
    flagged = pc.filter(distinct, pc.fill_null(pc.match_substring_regex(distinct, FORMULA_PATTERN), False))
    if len(flagged) == 0:
        return pd.Series(False, index=series.index)
    hits = pc.fill_null(pc.is_in(values, value_set=flagged), False)
    return pd.Series(np.asarray(hits, dtype=bool), index=series.index)


def _in_categories(series: Any, allowed: list[Any]) -> Any:
    """``series.isin(allowed)``; for a few numeric categories, chained equality is several times faster."""
    import pandas as pd

    if series.dtype.kind == "f" and len(allowed) <= 8:
        values = series.to_numpy()
        hit = values == allowed[0]
        for value in allowed[1:]:
            hit |= values == value
        return pd.Series(hit, index=series.index)
    return series.isin(allowed)


_SCHEMAS: dict[tuple[int, tuple[str, ...]], tuple[Contract, Any]] = {}


def _cached_schema(contract: Contract, columns: list[str]) -> Any:
    """:func:`_schema`, built once per contract and column set (building costs ~30 ms, chunks repeat it)."""
    key = (id(contract), tuple(columns))
    hit = _SCHEMAS.get(key)
    if hit is None or hit[0] is not contract:
        if len(_SCHEMAS) > 64:
            _SCHEMAS.clear()
        hit = _SCHEMAS[key] = (contract, _schema(contract, columns))
    return hit[1]


def _schema(contract: Contract, columns: list[str]) -> Any:
    """The pandera schema for the coerced columns present; each check is named by its row reason code.

    Checks treat nulls as passing themselves (``ignore_na=False`` spares pandera a filtered copy per check);
    nulls are the nullable check's business.
    """
    import numpy as np
    import pandera.pandas as pa

    schema_columns = {}
    for name in columns:
        rule = contract.columns[name]
        checks = []
        if rule.dtype in NUMERIC_DTYPES:
            checks.append(pa.Check(lambda s: ~np.isinf(s), name="non_finite", ignore_na=False))
            low = -np.inf if rule.min is None else rule.min
            high = np.inf if rule.max is None else rule.max
            if rule.min is not None or rule.max is not None:
                checks.append(pa.Check(lambda s, lo=low, hi=high: ~np.isfinite(s) | ((s >= lo) & (s <= hi)),
                                       name="out_of_range", ignore_na=False))
        else:
            categorical = rule.categories is not None
            checks.append(pa.Check(lambda s, c=categorical: ~_formula_flags(s, c), name="formula_injection",
                                   ignore_na=False))
            limit = rule.max_length or (None if rule.categories else DEFAULT_MAX_TEXT_LENGTH)
            if limit:
                checks.append(pa.Check(lambda s, n=limit: _text_lengths(s) <= n, name="field_too_long",
                                       ignore_na=False))
        if rule.categories is not None:
            allowed = list(rule.categories) if rule.dtype != "string" else [str(c) for c in rule.categories]
            checks.append(pa.Check(lambda s, a=allowed: _in_categories(s, a) | s.isna(), name="unknown_category",
                                   ignore_na=False))
        schema_columns[name] = pa.Column(nullable=rule.nullable, checks=checks, required=False)
    return pa.DataFrameSchema(schema_columns, strict=False, coerce=False)


def _coerce(contract: Contract, raw: Any, reasons: dict[int, list[str]]) -> Any:
    """Typed copy of ``raw``'s contract columns; unparsable values become null and get a reason."""
    import numpy as np
    import pandas as pd

    typed: dict[str, Any] = {}
    positions = np.arange(len(raw))
    for name in raw.columns:
        if name not in contract.columns:
            continue
        rule = contract.columns[name]
        values = raw[name]
        if rule.dtype in NUMERIC_DTYPES:
            if values.dtype.kind in "iufb":
                parsed = values.astype("float64")
            else:
                parsed = _parse_numbers(values)
                bad = values.notna().to_numpy() & parsed.isna().to_numpy()
                for pos in positions[bad]:
                    reasons.setdefault(int(pos), []).append(f"unparsable:{name}")
            if rule.dtype == "int64":
                with np.errstate(invalid="ignore"):
                    fractional = (np.isfinite(parsed.to_numpy()) & (parsed.to_numpy() % 1 != 0))
                for pos in positions[fractional]:
                    reasons.setdefault(int(pos), []).append(f"not_integer:{name}")
            typed[name] = parsed
        elif _is_text(values):
            typed[name] = values
        else:
            text = _arrow_text(values)
            typed[name] = pd.Series(text.to_numpy(zero_copy_only=False), index=raw.index, dtype=object)
    return pd.DataFrame(typed, index=raw.index)


def _is_text(series: Any) -> bool:
    """True when every non-null value is already a ``str`` (Arrow-backed or object dtype)."""
    import pandas as pd

    if isinstance(series.dtype, pd.StringDtype):
        return True
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")


def _canonical(contract: Contract, typed: Any, columns: list[str]) -> Any:
    """Accepted rows in canonical order and dtypes: non-null ints int64, nullable ints float64, text str.

    Text read from files stays Arrow-backed (``string[pyarrow]``); it is written to parquet as is.
    """
    import pandas as pd

    out = typed[columns].copy()
    for name in columns:
        rule = contract.columns[name]
        if rule.dtype == "int64" and not rule.nullable:
            out[name] = out[name].astype("int64")
        elif rule.dtype in NUMERIC_DTYPES:
            out[name] = out[name].astype("float64")
        elif not isinstance(out[name].dtype, pd.StringDtype):
            out[name] = out[name].astype(object)
    return out.reset_index(drop=True)


def validate_frame(
    cfg: DatasetConfig,
    df: Any,
    kind: str = "batch",
    contract: Contract | None = None,
    seen_ids: Any = None,
    row_offset: int = 0,
) -> tuple[Any, Any]:
    """Split a frame into rows that meet the contract and rows that do not.

    Column-set problems raise; row problems never do. ``df`` may hold raw strings (as read from CSV) or typed
    columns (parquet); numbers are parsed per value so one bad cell rejects one row.

    Args:
        cfg: Dataset config.
        df: The rows to check.
        kind: ``"batch"`` (id + features, label optional) or ``"labels"`` (id + label).
        contract: Defaults to :func:`load_contract`.
        seen_ids: A list that collects distinct ids across chunks of one file, so duplicates across chunks are
            caught; pass the same list for every chunk (None: this frame is the whole file).
        row_offset: Row number of ``df``'s first row in the file, for the rejected rows' ``_row`` column.

    Returns:
        ``(accepted_df, rejected_df)``: accepted rows typed in canonical column order (PII hashed, dropped PII
        gone); rejected rows with their original values as text, PII treated the same way, plus ``_row`` and
        ``_reason``. ``len(accepted_df) + len(rejected_df) == len(df)``.

    Raises:
        BatchRejected: Missing, unexpected or misdelimited columns.
        ContractError: A column is hashed and ``DRIFTLOOP_PII_SALT`` is not set.
    """
    import numpy as np
    import pandera.pandas as pa

    contract = contract or load_contract(cfg)
    layout = check_columns(contract, list(df.columns), kind)
    raw = df.reset_index(drop=True)
    reasons: dict[int, list[str]] = {}
    typed = _coerce(contract, raw, reasons)
    checked = [c for c in typed.columns if c in contract.columns]
    try:
        _cached_schema(contract, checked).validate(typed[checked], lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        cases = cases[cases["index"].notna()]
        for pos, column, check in zip(cases["index"], cases["column"], cases["check"], strict=True):
            code = "null_not_allowed" if check == "not_nullable" else str(check)
            items = reasons.setdefault(int(pos), [])
            if code != "null_not_allowed" or f"unparsable:{column}" not in items:  # parsing made that null
                items.append(f"{code}:{column}")
    id_col = contract.id_column
    if id_col in typed.columns:
        for pos in _duplicate_positions(typed[id_col], seen_ids):
            reasons.setdefault(int(pos), []).append(f"duplicate_id:{id_col}")
    bad = np.zeros(len(raw), dtype=bool)
    if reasons:
        bad[list(reasons)] = True
    stored = contract.label_columns if kind == "labels" else contract.batch_columns(layout["has_label"])
    hashed_cols = [c for c in stored if contract.columns[c].pii == "hash"]
    salt = _pii_salt() if hashed_cols else ""
    accepted = _canonical(contract, typed.loc[~bad], stored)
    rejected = raw.loc[bad].drop(columns=[c for c in layout["drop"] if c in raw.columns])
    rejected = rejected.astype(object).where(rejected.notna(), None)
    for name in rejected.columns:
        rejected[name] = rejected[name].map(lambda v: v if v is None else str(v))
    for name in hashed_cols:
        accepted[name] = hash_values(accepted[name], salt)
        if name in rejected.columns:
            rejected[name] = hash_values(rejected[name], salt)
    positions = np.flatnonzero(bad)
    rejected.insert(0, "_row", positions + row_offset + 1)
    rejected["_reason"] = [";".join(dict.fromkeys(reasons[int(p)])) for p in positions]
    return accepted, rejected.reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------
# Files


def _to_pandas(table: Any) -> Any:
    """Arrow → pandas keeping text as Arrow-backed strings (null checks and string kernels stay in C++)."""
    import pandas as pd
    import pyarrow as pa

    text = pd.StringDtype("pyarrow")
    return table.to_pandas(types_mapper=lambda t: text if t in (pa.string(), pa.large_string()) else None)


def iter_file_frames(path: str | Path, info: dict[str, Any], chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Any:
    """Yield the file's rows as DataFrames of at most ``chunk_rows`` rows (CSV values as text).

    CSV is parsed by pyarrow with every column typed as text, so a bad value never fails the parse. It is read
    one segment at a time (~16 MiB between record boundaries found by :func:`inspect_file`), which bounds memory
    whatever the file size; Arrow's own streaming reader reads ahead without bound when validation is slower.

    Raises:
        BatchRejected: malformed_csv, unreadable_file, schema_mismatch.
    """
    import pyarrow as pa

    path = Path(path)
    if info["format"] == "parquet":
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
            raise BatchRejected("unreadable_file", f"{path.name}: {str(exc)[:300]}") from None
        rows = parquet.metadata.num_rows
        for fld in parquet.schema_arrow:
            if not (pa.types.is_integer(fld.type) or pa.types.is_floating(fld.type) or pa.types.is_string(fld.type)
                    or pa.types.is_large_string(fld.type) or pa.types.is_boolean(fld.type)
                    or pa.types.is_null(fld.type) or pa.types.is_dictionary(fld.type)):
                raise BatchRejected("schema_mismatch", f"{path.name}: column {fld.name!r} has parquet type "
                                                       f"{fld.type}, not a number or text", rows_received=rows)
        try:
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                yield _to_pandas(pa.Table.from_batches([batch]))
        except Exception as exc:  # noqa: BLE001
            raise BatchRejected("unreadable_file", f"{path.name}: {str(exc)[:300]}", rows_received=rows) from None
        return
    import pyarrow.csv as pv

    rows = info.get("rows", 0)
    header = info["header"]
    read_options = pv.ReadOptions(column_names=header, use_threads=True,
                                  block_size=max(4 << 20, 2 * info.get("longest_line", 0) + (1 << 20)))
    parse_options = pv.ParseOptions(newlines_in_values=True)
    convert_options = pv.ConvertOptions(column_types={name: pa.string() for name in header},
                                        null_values=NULL_TOKENS, strings_can_be_null=True)
    bounds = info["segments"]
    with open(path, "rb") as handle:
        for start, end in zip(bounds, bounds[1:], strict=False):
            if end <= start:
                continue
            handle.seek(start)
            segment = handle.read(end - start)
            try:
                table = pv.read_csv(pa.py_buffer(segment), read_options=read_options,
                                    parse_options=parse_options, convert_options=convert_options)
            except pa.ArrowInvalid as exc:
                raise BatchRejected("malformed_csv", f"{path.name}: {str(exc)[:300]}", rows_received=rows) from None
            del segment
            for first in range(0, table.num_rows, chunk_rows):
                yield _to_pandas(table.slice(first, chunk_rows))


def validate_file(
    cfg: DatasetConfig,
    path: str | Path,
    kind: str = "batch",
    contract: Contract | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_accepted: Any = None,
    on_rejected: Any = None,
) -> dict[str, Any]:
    """Validate a file against the dataset's contract in bounded-memory chunks; writes nothing itself.

    Args:
        cfg: Dataset config.
        path: ``.csv`` or ``.parquet`` file.
        kind: ``"batch"`` or ``"labels"``.
        contract: Defaults to :func:`load_contract`.
        chunk_rows: Rows per chunk.
        on_accepted: Called with each chunk's accepted rows (e.g. to stream them to parquet).
        on_rejected: Called with each chunk's rejected rows.

    Returns:
        A report: ``ok``, ``reason_code`` (None when ok), ``message``, ``rows_received``, ``rows_accepted``,
        ``rows_quarantined``, ``reason_counts`` (``code:column`` → rows), ``has_label``, ``sha256``, ``format``,
        ``file_level`` (True when the whole file is rejected) and ``problems`` (readable lines). A file whose
        bad-row share exceeds ``max_bad_row_share`` is not ok (``too_many_bad_rows``) and counts every row as
        quarantined. Always ``rows_accepted + rows_quarantined == rows_received``.
    """
    contract = contract or load_contract(cfg)
    path = Path(path)
    report: dict[str, Any] = {
        "path": str(path), "kind": kind, "ok": False, "reason_code": None, "message": "", "file_level": False,
        "rows_received": 0, "rows_accepted": 0, "rows_quarantined": 0, "reason_counts": {}, "has_label": False,
        "sha256": None, "format": None, "columns": [], "problems": [],
    }
    counts: dict[str, int] = {}
    seen_ids: list[Any] = []
    received = accepted_rows = counted_rows = 0
    null_counts: dict[str, int] = {}
    try:
        info = inspect_file(path)
        counted_rows = info["rows"]
        report.update(sha256=info["sha256"], format=info["format"])
        if info["header"] is not None:
            check_columns(contract, info["header"], kind)
        for frame in iter_file_frames(path, info, chunk_rows):
            if received == 0:
                report["has_label"] = check_columns(contract, list(frame.columns), kind)["has_label"]
                report["columns"] = [str(c) for c in frame.columns]
            accepted, rejected = validate_frame(cfg, frame, kind, contract, seen_ids, row_offset=received)
            received += len(frame)
            accepted_rows += len(accepted)
            for name in frame.columns:
                if name in contract.columns:
                    null_counts[name] = null_counts.get(name, 0) + int(frame[name].isna().sum())
            for reason in rejected["_reason"]:
                for item in reason.split(";"):
                    counts[item] = counts.get(item, 0) + 1
            if on_accepted is not None and len(accepted):
                on_accepted(accepted)
            if on_rejected is not None and len(rejected):
                on_rejected(rejected)
        if received == 0:
            raise BatchRejected("empty_file", f"{path.name} has 0 data rows")
        all_null = [c for c, n in null_counts.items() if n == received]
        if all_null:
            raise BatchRejected("all_null_column", f"column(s) {all_null} are null in all {received} rows",
                                rows_received=received)
        if received < contract.min_rows or (contract.max_rows is not None and received > contract.max_rows):
            raise BatchRejected("row_count_out_of_bounds", f"{received} rows, contract allows "
                                f"[{contract.min_rows}, {contract.max_rows}]", rows_received=received)
        bad_rows = received - accepted_rows
        share = bad_rows / received
        if share > contract.max_bad_row_share:
            raise BatchRejected("too_many_bad_rows", f"{bad_rows} of {received} rows ({share:.1%}) fail the "
                                f"contract; at most {contract.max_bad_row_share:.1%} may", rows_received=received)
    except BatchRejected as exc:
        # Unparsed rows still count as received: the file's line count (CSV) or footer row count (parquet).
        rows = max(exc.rows_received, received, counted_rows + (exc.reason_code == "no_header"))
        report.update(reason_code=exc.reason_code, message=exc.message, file_level=True, rows_received=rows,
                      rows_accepted=0, rows_quarantined=rows)
    else:
        report.update(ok=True, rows_received=received, rows_accepted=accepted_rows,
                      rows_quarantined=received - accepted_rows)
    report["reason_counts"] = dict(sorted(counts.items()))
    report["problems"] = _problem_lines(report)
    return report


def _problem_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    if report["reason_code"]:
        lines.append(f"FILE {report['reason_code']}: {report['message']}")
    for item, rows in report["reason_counts"].items():
        code, _, column = item.partition(":")
        lines.append(f"ROWS {code} in column {column!r}: {rows} row(s) ({ROW_REASONS.get(code, '')})")
    return lines


def format_report(report: dict[str, Any]) -> str:
    """Operator-readable multi-line text of a :func:`validate_file` report."""
    verdict = "PASS" if report["ok"] and not report["rows_quarantined"] else ("PASS with rejected rows"
                                                                             if report["ok"] else "FAIL")
    out = io.StringIO()
    out.write(f"{verdict}: {report['path']}\n")
    out.write(f"  rows received {report['rows_received']}, accepted {report['rows_accepted']}, "
              f"quarantined {report['rows_quarantined']}\n")
    for line in report["problems"]:
        out.write(f"  - {line}\n")
    return out.getvalue()


# --------------------------------------------------------------------------------------------------------------
# CLI


def _cmd_validate(args: argparse.Namespace) -> int:
    from driftloop.cli import print_result
    from driftloop.config import load_dataset_config

    cfg = load_dataset_config(args.dataset)
    report = validate_file(cfg, args.file, kind=args.kind)
    if args.json:
        print_result(report)
    else:
        print(format_report(report), end="")
    return 0 if report["ok"] and (args.allow_rejected_rows or not report["rows_quarantined"]) else 1


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    from driftloop.cli import print_result
    from driftloop.config import load_dataset_config

    cfg = load_dataset_config(args.dataset)
    print_result(bootstrap_contract(cfg, args.out, overwrite=args.force))
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop validate`` and ``driftloop contract bootstrap``."""
    validate = subparsers.add_parser("validate", help="validate a file against the dataset's contract")
    validate.add_argument("file", help="a .csv or .parquet batch or label file")
    validate.add_argument("--dataset", default=argparse.SUPPRESS, help="dataset config name")
    validate.add_argument("--kind", choices=["batch", "labels"], default="batch")
    validate.add_argument("--json", action="store_true", help="print the full report as JSON")
    validate.add_argument("--allow-rejected-rows", action="store_true",
                          help="exit 0 when only some rows fail (within max_bad_row_share)")
    validate.set_defaults(func=_cmd_validate)
    contract = subparsers.add_parser("contract", help="data contract tools")
    contract_sub = contract.add_subparsers(dest="contract_command", required=True)
    boot = contract_sub.add_parser("bootstrap", help="derive a contract from the reference data")
    boot.add_argument("--out", help="output path (default: next to the dataset config)")
    boot.add_argument("--force", action="store_true", help="overwrite an existing contract")
    boot.add_argument("--dataset", default=argparse.SUPPRESS, help="dataset config name")
    boot.set_defaults(func=_cmd_bootstrap)
