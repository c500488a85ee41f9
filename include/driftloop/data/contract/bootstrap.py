"""``driftloop contract bootstrap``: a first contract derived from the reference data, for a person to review.

Each column's dtype comes from the source's dtype, never from the values it happens to hold: a float column
whose reference values are all whole (typical of a float column holding missing values) stays ``float64``, so
the first batch with a fraction in it is not quarantined. Integer columns stay ``int64``; text, booleans and
pandas categoricals are ``string``. Every rule comes with the reason it was inferred, printed by the command
and written as a comment above the column in the contract file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from driftloop.core.config import DatasetConfig
from driftloop.data.contract.schema import (
    DEFAULT_MAX_BAD_ROW_SHARE,
    DEFAULT_MAX_TEXT_LENGTH,
    ContractError,
    contract_path,
    parse_contract,
)
from driftloop.data.contract.text import FORMULA_PATTERN

# Headroom applied to reference maxima by bootstrap: drifted-but-plausible values must pass the contract and
# reach monitoring; only physically impossible ones (negative charges, absurd magnitudes) are quarantined.
BOOTSTRAP_RANGE_HEADROOM = 2.0
ID_MIN_LENGTH = 64


def _nice_ceiling(value: float) -> float:
    """Round up to two significant digits so bootstrapped bounds read like a person wrote them."""
    if value <= 0:
        return 0.0
    import math

    step = 10 ** (math.floor(math.log10(value)) - 1)
    return float(math.ceil(value / step) * step)


def source_dtype(series: Any) -> str:
    """The contract dtype of a source column, from its pandas dtype alone (never from its values).

    Signed and unsigned integers (numpy or pandas' nullable ``Int64``) are ``int64``, floats ``float64``;
    text, booleans, dates and pandas categoricals are ``string``.
    """
    kind = series.dtype.kind
    if kind in "iu":
        return "int64"
    return "float64" if kind == "f" else "string"


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def _nullable(series: Any) -> tuple[bool, str]:
    nulls = int(series.isna().sum())
    if nulls:
        return True, f"{nulls} of {len(series)} null"
    return False, f"no nulls in {len(series)}"


def _dtype_reason(series: Any, dtype: str) -> str:
    reason = f"source dtype {series.dtype}"
    values = series.dropna()
    if dtype == "float64" and len(values) and bool((values % 1 == 0).all()):
        reason += " (values all whole: kept float, so fractions pass)"
    return reason


def _id_rule(series: Any) -> tuple[dict[str, Any], list[str]]:
    longest = int(series.astype(str).str.len().max() or 0)
    limit = max(ID_MIN_LENGTH, 2 * longest)
    rule = {"dtype": "string", "nullable": False, "unique": True, "max_length": limit}
    return rule, [
        "id: text, unique, never null",
        f"max_length: the larger of {ID_MIN_LENGTH} and 2 x the longest id seen ({longest})",
    ]


def _category_rule(series: Any) -> tuple[dict[str, Any], list[str]]:
    dtype = source_dtype(series)
    values = series.dropna()
    if dtype == "int64":
        cats: list[Any] = sorted(int(v) for v in values.unique())
    elif dtype == "float64":
        cats = sorted(float(v) for v in values.unique())
    else:
        cats = sorted(str(v) for v in values.unique())
    nullable, null_reason = _nullable(series)
    rule = {"dtype": dtype, "nullable": nullable, "categories": cats}
    return rule, [_dtype_reason(series, dtype), null_reason, f"the {len(cats)} values seen"]


def _numeric_rule(series: Any) -> tuple[dict[str, Any], list[str]]:
    dtype = source_dtype(series)
    values = series.dropna().astype(float)
    nullable, null_reason = _nullable(series)
    rule: dict[str, Any] = {"dtype": dtype, "nullable": nullable}
    reasons = [_dtype_reason(series, dtype), null_reason]
    if values.empty:
        return rule, [*reasons, "no range (no value seen)"]
    low, high = float(values.min()), float(values.max())
    low_bound = 0.0 if low >= 0 else -_nice_ceiling(-low * BOOTSTRAP_RANGE_HEADROOM)
    high_bound = _nice_ceiling(high * BOOTSTRAP_RANGE_HEADROOM) if high > 0 else 0.0
    if dtype == "int64":
        rule["min"], rule["max"] = int(low_bound), int(high_bound)
    else:
        rule["min"] = 0 if low_bound == 0 else low_bound
        rule["max"] = high_bound
    headroom = f"{BOOTSTRAP_RANGE_HEADROOM:g}"
    low_why = "min 0 (no negatives)" if low >= 0 else f"min {headroom} x min, rounded down"
    high_why = f"max {headroom} x max, rounded up" if high > 0 else "max 0 (no positives)"
    return rule, [*reasons, f"seen {_fmt(low)}..{_fmt(high)}: {low_why}, {high_why}"]


def _text_rule(series: Any, role: str) -> tuple[dict[str, Any], list[str]]:
    longest = int(series.dropna().astype(str).str.len().max() or 0)
    limit = max(DEFAULT_MAX_TEXT_LENGTH, 2 * longest)
    nullable, null_reason = _nullable(series)
    rule = {"dtype": "string", "nullable": nullable, "max_length": limit}
    what = "free text" if role == "text" else f"text although the config calls it {role}: check the source"
    return rule, [
        f"source dtype {series.dtype}, {what}",
        null_reason,
        f"max_length: the larger of {DEFAULT_MAX_TEXT_LENGTH} and 2 x the longest value seen ({longest})",
    ]


def column_role(cfg: DatasetConfig, name: str) -> str:
    """What a column is to the dataset: ``id``, ``label``, ``categorical``, ``numeric`` or ``text``."""
    if name == cfg.id_column:
        return "id"
    if name == cfg.target:
        return "label"
    if name in cfg.categorical_features:
        return "categorical"
    return "numeric" if name in cfg.numeric_features else "text"


def infer_column_rule(cfg: DatasetConfig, name: str, series: Any) -> tuple[dict[str, Any], list[str]]:
    """The contract rule of one reference column and the reasons for each part of it.

    Args:
        cfg: Dataset config (says which column is the id, the label, categorical or numeric, and the task).
        name: Column name.
        series: The column's reference values, in the source's dtype.

    Returns:
        ``(rule, reasons)``: the column's contract mapping and one sentence per inferred key.
    """
    from driftloop.core.task_types import REGRESSION

    role = column_role(cfg, name)
    if role == "id":
        return _id_rule(series)
    if role == "categorical" or (role == "label" and cfg.task != REGRESSION):
        rule, reasons = _category_rule(series)
    elif source_dtype(series) != "string" and role in ("numeric", "label"):
        rule, reasons = _numeric_rule(series)
    else:
        rule, reasons = _text_rule(series, role)
    if role == "label":
        kind = "a value with a range" if cfg.task == REGRESSION else "classes"
        reasons = [f"{cfg.task} label: {kind}", *reasons]
    return rule, reasons


def _dump_contract(raw: dict[str, Any], reasons: dict[str, list[str]]) -> str:
    """YAML with one line per column under a comment saying why, so a reviewer sees each rule and its
    origin."""
    top = {k: v for k, v in raw.items() if k != "columns"}
    lines = [yaml.safe_dump(top, sort_keys=False, default_flow_style=None, width=110).rstrip(), "columns:"]
    for name, rule in raw["columns"].items():
        flow = yaml.safe_dump(rule, sort_keys=False, default_flow_style=True, width=10**6).strip()
        lines.append(f"  # {'; '.join(reasons[name])}")
        lines.append(f"  {yaml.safe_dump(name).splitlines()[0]}: {flow}")
    return "\n".join(lines) + "\n"


def _summary(rule: dict[str, Any]) -> str:
    if "categories" in rule:
        return f"{len(rule['categories'])} categories"
    if "min" in rule:
        return f"[{_fmt(rule['min'])}, {_fmt(rule['max'])}]"
    return f"max_length {rule.get('max_length')}" + (", unique" if rule.get("unique") else "")


def bootstrap_contract(
    cfg: DatasetConfig, out_path: str | Path | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Derive a contract from the dataset's reference data and write it as YAML for a person to review.

    Dtypes come from the source's dtypes (:func:`source_dtype`); numeric ranges start at 0 when the reference
    has no negatives and end at the reference maximum times :data:`BOOTSTRAP_RANGE_HEADROOM`; categories (of
    categorical features and of a classification label) are the reference's distinct values; a column is
    nullable when the reference has nulls. A regression label gets a numeric range like a numeric feature.

    Args:
        cfg: Dataset config (``driftloop.data.sources.load_source_frame(cfg)`` supplies the reference data).
        out_path: Where to write; defaults to :func:`contract_path`.
        overwrite: Replace an existing file (a reviewed contract is never overwritten by default).

    Returns:
        ``{"contract_path", "columns", "rows_profiled", "report"}``; ``report`` has one entry per column:
        ``{"column", "role", "source_dtype", "dtype", "nullable", "rule", "why"}``.

    Raises:
        ContractError: The file exists and ``overwrite`` is False.
    """
    from driftloop.data.sources import load_source_frame

    path = Path(out_path) if out_path else contract_path(cfg)
    if path.exists() and not overwrite:
        raise ContractError(f"{path} exists; pass overwrite (CLI: --force) to replace a reviewed contract")
    frame = load_source_frame(cfg)
    columns: dict[str, dict[str, Any]] = {}
    reasons: dict[str, list[str]] = {}
    report = []
    for name in frame.columns:
        columns[name], reasons[name] = infer_column_rule(cfg, name, frame[name])
        report.append(
            {
                "column": name,
                "role": column_role(cfg, name),
                "source_dtype": str(frame[name].dtype),
                "dtype": columns[name]["dtype"],
                "nullable": columns[name]["nullable"],
                "rule": _summary(columns[name]),
                "why": "; ".join(reasons[name]),
            }
        )
    raw = {
        "dataset": cfg.name,
        "id_column": cfg.id_column,
        "label_column": cfg.target,
        "rows": {"min": 1, "max": 10_000_000},
        "max_bad_row_share": DEFAULT_MAX_BAD_ROW_SHARE,
        "columns": columns,
    }
    check = check_source(cfg, frame, raw, reasons, str(path))
    for entry in report:
        entry["why"] = "; ".join(reasons[entry["column"]])
    header = (
        f"# Data contract for {cfg.name}, bootstrapped from the reference data ({len(frame)} rows); review "
        "it.\n"
        "# Column keys: dtype (string|int64|float64), nullable, required (default true; the label is "
        "optional in\n"
        "# feature batches), min/max, categories, max_length, unique, pii (drop|hash; hash is salted with\n"
        "# $DRIFTLOOP_PII_SALT), formula_check (default true; false accepts text starting like =, +, -, @).\n"
        "# Dtypes follow the source's dtypes. Numeric max = reference max x "
        f"{BOOTSTRAP_RANGE_HEADROOM:g} so drift\n# reaches monitoring. The comment above each column says "
        "why.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + _dump_contract(raw, reasons))
    return {
        "contract_path": str(path),
        "columns": len(columns),
        "rows_profiled": int(len(frame)),
        "report": report,
        "source_check": check,
    }


def _rejections(cfg: DatasetConfig, frame: Any, raw: dict[str, Any], where: str) -> dict[str, int]:
    """``{"code:column": rows}`` of the source rows the contract ``raw`` would reject."""
    from collections import Counter

    from driftloop.data.contract.rows import validate_frame

    contract = parse_contract(raw, cfg, where)
    _, rejected = validate_frame(cfg, frame, kind="batch", contract=contract, pii_salt="bootstrap")
    counts: Counter[str] = Counter()
    for reason in rejected["_reason"]:
        counts.update(set(reason.split(";")))
    return dict(sorted(counts.items()))


def check_source(
    cfg: DatasetConfig, frame: Any, raw: dict[str, Any], reasons: dict[str, list[str]], where: str
) -> dict[str, Any]:
    """Validate the source against the contract about to be written; adjust what can be, refuse the rest.

    A text column whose source values start like a spreadsheet formula (names such as ``-Andy Allanson``) gets
    ``formula_check: false`` with the count as its reason (such values are neutralised where CSVs are written
    for spreadsheets). Any other rejection (duplicate ids, above all) cannot be fixed by the contract:
    bootstrap refuses and says what to change. A label that is null in some rows is reported: those rows are
    excluded from training snapshots.

    Returns:
        ``{"rejected": {"code:column": rows} before adjusting, "adjusted": [sentences], "label_null_rows": n,
        "rows": n}``.

    Raises:
        ContractError: Source rows would still be rejected after adjusting; the message lists each rule with
            its row count and the fix.
    """
    rows = len(frame)
    before = _rejections(cfg, frame, raw, where)
    adjusted = []
    for item, count in before.items():
        code, column = item.split(":", 1)
        if code == "formula_injection":
            raw["columns"][column]["formula_check"] = False
            example = next(v for v in frame[column].astype(str) if re.match(FORMULA_PATTERN, v))
            why = (
                f"formula_check off: {count} of {rows} source values start like a formula (e.g. "
                f"{example!r}); "
                "accepted, and prefixed with ' in CSVs written for spreadsheets"
            )
            reasons[column].append(why)
            adjusted.append(f"{column}: {why}")
    after = _rejections(cfg, frame, raw, where) if adjusted else before
    if after:
        fixes = {
            "duplicate_id": "make the id column unique, or drop it (source.drop_columns) so ids are "
            "synthesised",
        }
        problems = [
            f"{item} rejects {count} of {rows} source rows"
            + (f" (fix: {fixes[item.split(':')[0]]})" if item.split(":")[0] in fixes else "")
            for item, count in after.items()
        ]
        raise ContractError(
            f"{where}: the contract bootstrap would write rejects its own source data: {'; '.join(problems)}"
        )
    label_nulls = int(frame[cfg.target].isna().sum())
    if label_nulls:
        reasons[cfg.target].append(
            f"{label_nulls} of {rows} source rows have no label: ingested, but excluded from training "
            "snapshots"
        )
    return {"rejected": before, "adjusted": adjusted, "label_null_rows": label_nulls, "rows": rows}


def format_bootstrap_report(result: dict[str, Any]) -> str:
    """The bootstrap result as text: one line per column with its role, dtype, nullability, rule and
    reasons."""
    rows = [("column", "role", "source", "dtype", "null", "rule", "why")]
    rows += [
        (
            r["column"],
            r["role"],
            r["source_dtype"],
            r["dtype"],
            "yes" if r["nullable"] else "no",
            r["rule"],
            r["why"],
        )
        for r in result["report"]
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(6)]
    lines = [
        f"Wrote {result['contract_path']}: {result['columns']} columns from {result['rows_profiled']} "
        "reference rows. Review it before use."
    ]
    lines += [
        "  ".join(str(v).ljust(w) for v, w in zip(row[:6], widths, strict=True)) + "  " + row[6]
        for row in rows
    ]
    check = result.get("source_check") or {}
    rejected = check.get("rejected") or {}
    lines.append(
        f"Source check: the written contract accepts all {check.get('rows', result['rows_profiled'])} source "
        "rows"
        + (
            f"; as first inferred it rejected {', '.join(f'{k} ({v} rows)' for k, v in rejected.items())}"
            if rejected
            else ""
        )
    )
    lines += [f"  adjusted {line}" for line in check.get("adjusted", [])]
    nulls = check.get("label_null_rows", 0)
    if nulls:
        share = nulls / max(check.get("rows", 1), 1)
        mostly = "WARNING: the label is mostly null; " if share > 0.5 else ""
        lines.append(
            f"  {mostly}{nulls} of {check['rows']} source rows ({share:.0%}) have no label: they are "
            "ingested "
            "but excluded from training snapshots (counted in the snapshot manifest)"
        )
    return "\n".join(lines) + "\n"
