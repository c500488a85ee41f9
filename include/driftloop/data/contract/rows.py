"""Row-level validation: parse every value, run the pandera checks and split rows into accepted and rejected.

Bad rows come back with a ``_reason`` column (``code:column`` items joined by ``;``); good rows come back
typed and in canonical column order. Column checks run through pandera; each check is named by its row reason
code.
"""

from __future__ import annotations

from typing import Any

from driftloop.core.config import DatasetConfig
from driftloop.data.contract.ids import duplicate_positions, hash_values
from driftloop.data.contract.schema import (
    DEFAULT_MAX_TEXT_LENGTH,
    NUMERIC_DTYPES,
    Contract,
    ContractError,
    check_columns,
    load_contract,
)
from driftloop.data.contract.text import (
    arrow_text,
    formula_flags,
    in_categories,
    is_text,
    parse_numbers,
    text_lengths,
)

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
                checks.append(
                    pa.Check(
                        lambda s, lo=low, hi=high: ~np.isfinite(s) | ((s >= lo) & (s <= hi)),
                        name="out_of_range",
                        ignore_na=False,
                    )
                )
        else:
            categorical = rule.categories is not None
            if rule.formula_check:
                checks.append(
                    pa.Check(
                        lambda s, c=categorical: ~formula_flags(s, c),
                        name="formula_injection",
                        ignore_na=False,
                    )
                )
            limit = rule.max_length or (None if rule.categories else DEFAULT_MAX_TEXT_LENGTH)
            if limit:
                checks.append(
                    pa.Check(lambda s, n=limit: text_lengths(s) <= n, name="field_too_long", ignore_na=False)
                )
        if rule.categories is not None:
            allowed = list(rule.categories) if rule.dtype != "string" else [str(c) for c in rule.categories]
            checks.append(
                pa.Check(
                    lambda s, a=allowed: in_categories(s, a) | s.isna(),
                    name="unknown_category",
                    ignore_na=False,
                )
            )
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
                parsed = parse_numbers(values)
                bad = values.notna().to_numpy() & parsed.isna().to_numpy()
                for pos in positions[bad]:
                    reasons.setdefault(int(pos), []).append(f"unparsable:{name}")
            if rule.dtype == "int64":
                with np.errstate(invalid="ignore"):
                    fractional = np.isfinite(parsed.to_numpy()) & (parsed.to_numpy() % 1 != 0)
                for pos in positions[fractional]:
                    reasons.setdefault(int(pos), []).append(f"not_integer:{name}")
            typed[name] = parsed
        elif is_text(values):
            typed[name] = values
        else:
            text = arrow_text(values)
            typed[name] = pd.Series(text.to_numpy(zero_copy_only=False), index=raw.index, dtype=object)
    return pd.DataFrame(typed, index=raw.index)


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


def _schema_reasons(contract: Contract, typed: Any, reasons: dict[int, list[str]]) -> None:
    """Run the pandera checks and add each failure to ``reasons`` as ``code:column``."""
    import pandera.pandas as pa

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


def _rejected_rows(
    raw: Any, bad: Any, drop: list[str], reasons: dict[int, list[str]], row_offset: int
) -> Any:
    """The rejected rows as received (values as text), with their 1-based ``_row`` and ``_reason``."""
    import numpy as np

    rejected = raw.loc[bad].drop(columns=[c for c in drop if c in raw.columns])
    rejected = rejected.astype(object).where(rejected.notna(), None)
    for name in rejected.columns:
        rejected[name] = rejected[name].map(lambda v: v if v is None else str(v))
    positions = np.flatnonzero(bad)
    rejected.insert(0, "_row", positions + row_offset + 1)
    rejected["_reason"] = [";".join(dict.fromkeys(reasons[int(p)])) for p in positions]
    return rejected


def validate_frame(
    cfg: DatasetConfig,
    df: Any,
    kind: str = "batch",
    contract: Contract | None = None,
    seen_ids: Any = None,
    row_offset: int = 0,
    pii_salt: str = "",
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
        pii_salt: Salt of columns marked ``pii: hash`` (``Settings.pii_salt``).

    Returns:
        ``(accepted_df, rejected_df)``: accepted rows typed in canonical column order (PII hashed, dropped PII
        gone); rejected rows with their original values as text, PII treated the same way, plus ``_row`` and
        ``_reason``. ``len(accepted_df) + len(rejected_df) == len(df)``.

    Raises:
        BatchRejected: Missing, unexpected or misdelimited columns.
        ContractError: A column is hashed and no salt (``DRIFTLOOP_PII_SALT``) is given.
    """
    import numpy as np

    contract = contract or load_contract(cfg)
    layout = check_columns(contract, list(df.columns), kind)
    stored = contract.label_columns if kind == "labels" else contract.batch_columns(layout["has_label"])
    hashed_cols = [c for c in stored if contract.columns[c].pii == "hash"]
    if hashed_cols and not pii_salt:
        raise ContractError(
            f"the contract hashes PII columns {hashed_cols} but DRIFTLOOP_PII_SALT is not set; set it to a "
            "secret "
            "(the same value for every run, or ids stop joining)"
        )
    raw = df.reset_index(drop=True)
    reasons: dict[int, list[str]] = {}
    typed = _coerce(contract, raw, reasons)
    _schema_reasons(contract, typed, reasons)
    id_col = contract.id_column
    if id_col in typed.columns:
        for pos in duplicate_positions(typed[id_col], seen_ids):
            reasons.setdefault(int(pos), []).append(f"duplicate_id:{id_col}")
    bad = np.zeros(len(raw), dtype=bool)
    if reasons:
        bad[list(reasons)] = True
    accepted = _canonical(contract, typed.loc[~bad], stored)
    rejected = _rejected_rows(raw, bad, layout["drop"], reasons, row_offset)
    for name in hashed_cols:
        accepted[name] = hash_values(accepted[name], pii_salt)
        if name in rejected.columns:
            rejected[name] = hash_values(rejected[name], pii_salt)
    return accepted, rejected.reset_index(drop=True)
