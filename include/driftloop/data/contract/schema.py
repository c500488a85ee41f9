"""The contract itself: column rules, loading and validating the YAML, and column-set checks of a file.

A contract is a YAML file next to the dataset config (``<dataset>.contract.yaml``, or the path in the config's
``contract.path``). It lists every column with its dtype, nullability, range, allowed categories, maximum text
length and PII treatment, names the id and label columns, and sets batch-level limits (row-count bounds and
the largest share of bad rows a batch may carry before it is quarantined whole).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import yaml

from driftloop.core.config import DatasetConfig
from driftloop.core.errors import ConfigError

DEFAULT_MAX_BAD_ROW_SHARE = 0.2
DEFAULT_MAX_TEXT_LENGTH = 256

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


class BatchRejected(Exception):  # a file-level outcome, caught per file, never raised to callers
    """A whole file fails the contract.

    Attributes:
        reason_code: One of :data:`BATCH_REASONS`.
        message: Operator-readable explanation with the numbers.
        rows_received: Rows counted before the problem was found (a line count when the file cannot be
            parsed).
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
    # False for columns whose values may start like a formula (ids, names such as "-Andy Allanson"): such
    # values are then accepted on the way in and neutralised where a CSV is written for a spreadsheet.
    formula_check: bool = True


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


def contract_path(cfg: DatasetConfig) -> Path:
    """Where ``cfg``'s contract lives: ``contract.path`` (relative to the config's folder) or
    ``<name>.contract.yaml``."""
    config_dir = Path(cfg.config_path).parent if cfg.config_path else Path.cwd()
    raw = (cfg.contract or {}).get("path") or f"{cfg.name}.contract.yaml"
    path = Path(raw)
    return path if path.is_absolute() else config_dir / path


def _parse_rule(name: str, spec: dict[str, Any] | None, where: str) -> ColumnRule:
    spec = dict(spec or {})
    unknown = set(spec) - (set(ColumnRule.__dataclass_fields__) - {"name"})
    if unknown:
        raise ContractError(f"{where}: column {name!r}: unknown keys {sorted(unknown)}")
    dtype = spec.get("dtype", "string")
    if dtype not in DTYPES:
        raise ContractError(f"{where}: column {name!r}: dtype {dtype!r} not in {DTYPES}")
    if spec.get("pii") not in (None, *PII_ACTIONS):
        raise ContractError(f"{where}: column {name!r}: pii must be one of {PII_ACTIONS}")
    if spec.get("categories") is not None:
        spec["categories"] = tuple(spec["categories"])
    return ColumnRule(name=name, **spec)


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
    columns = {str(name): _parse_rule(str(name), spec, where) for name, spec in raw["columns"].items()}
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
            raise ContractError(
                f"{where}: column {name!r} is the id, a feature or the label and cannot be dropped"
            )
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
        merged[key] = (
            _merge(merged[key], value)
            if isinstance(value, dict) and isinstance(merged.get(key), dict)
            else value
        )
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


class ColumnCheck(TypedDict):
    """What :func:`check_columns` says of a column set that passes."""

    has_label: bool
    drop: list[str]  # PII or declared columns not stored


def check_columns(contract: Contract, columns: list[str], kind: str = "batch") -> ColumnCheck:
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
        raise BatchRejected(
            "no_header",
            f"none of the {len(names)} header fields is a contract column "
            f"(first: {names[0][:40]!r}): the first line looks like data",
        )
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


def arrow_schema(contract: Contract, columns: list[str]) -> Any:
    """The Arrow schema stored batches and snapshots use for ``columns``: text, int64 when never null, else
    float64.

    Nullable integers are stored as float64 so a missing value stays a null, never a sentinel.
    """
    import pyarrow as pa

    fields = []
    for name in columns:
        rule = contract.columns[name]
        if rule.dtype == "string" or rule.pii == "hash":
            fields.append(pa.field(name, pa.string()))
        elif rule.dtype == "int64" and not rule.nullable:
            fields.append(pa.field(name, pa.int64()))
        else:
            fields.append(pa.field(name, pa.float64()))
    return pa.schema(fields)
