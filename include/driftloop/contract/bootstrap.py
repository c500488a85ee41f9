"""``driftloop contract bootstrap``: a first contract derived from the reference data, for a person to review."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from driftloop.config import DatasetConfig
from driftloop.contract.schema import (
    DEFAULT_MAX_BAD_ROW_SHARE,
    DEFAULT_MAX_TEXT_LENGTH,
    ContractError,
    contract_path,
    parse_contract,
)

# Headroom applied to reference maxima by bootstrap: drifted-but-plausible values must pass the contract and
# reach monitoring; only physically impossible ones (negative charges, absurd magnitudes) are quarantined.
BOOTSTRAP_RANGE_HEADROOM = 2.0


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
        f"# $DRIFTLOOP_PII_SALT). Numeric max = reference max x {BOOTSTRAP_RANGE_HEADROOM:g} so drift reaches monitoring.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + _dump_contract(raw))
    return {"contract_path": str(path), "columns": len(columns), "rows_profiled": int(len(frame))}

