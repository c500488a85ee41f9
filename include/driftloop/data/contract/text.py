"""Vectorised text kernels on Arrow strings: parsing numbers, lengths, regex flags, category membership.

pyarrow's C++ string kernels are ~30x faster than ``Series.str``; validation of a million rows spends most of
its time here.
"""

from __future__ import annotations

from typing import Any

# Spreadsheet formula injection (OWASP CSV injection): =, @, tab/CR always; + or - when command-like text
# follows (a letter, parenthesis, pipe or bang, e.g. -2+3+cmd|' /C calc'!A0), so "-12.5" written as text is
# not flagged.
FORMULA_PATTERN = r"^\s*(?:[=@\t\r]|[+\-].*[A-Za-z_(|!])"


def arrow_text(series: Any) -> Any:
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


def text_flags(series: Any, pattern: str) -> Any:
    """Boolean Series: does each value match the regex ``pattern`` (nulls: False)."""
    import numpy as np
    import pandas as pd
    import pyarrow.compute as pc

    matched = pc.fill_null(pc.match_substring_regex(arrow_text(series), pattern), False)
    return pd.Series(np.asarray(matched, dtype=bool), index=series.index)


def text_lengths(series: Any) -> Any:
    """Character count of each value (nulls: 0)."""
    import numpy as np
    import pandas as pd
    import pyarrow.compute as pc

    lengths = pc.fill_null(pc.utf8_length(arrow_text(series)), 0)
    return pd.Series(np.asarray(lengths), index=series.index)


def parse_numbers(values: Any) -> Any:
    """Parse text to float64; values that are not numbers become NaN (the caller flags them)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        parsed = pc.cast(arrow_text(values), pa.float64())
        return pd.Series(parsed.to_numpy(zero_copy_only=False), index=values.index, dtype="float64")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = pd.to_numeric(values, errors="coerce")
        if parsed.dtype.kind not in "iuf":
            return pd.Series(np.nan, index=values.index, dtype="float64")
        return parsed.astype("float64")


def formula_flags(series: Any, categorical: bool) -> Any:
    """Formula-injection check; for categorical text only the distinct values are matched (few, so cheap)."""
    import numpy as np
    import pandas as pd
    import pyarrow.compute as pc

    if not categorical:
        return text_flags(series, FORMULA_PATTERN)
    values = arrow_text(series)
    distinct = pc.unique(values)
    flagged = pc.filter(distinct, pc.fill_null(pc.match_substring_regex(distinct, FORMULA_PATTERN), False))
    if len(flagged) == 0:
        return pd.Series(False, index=series.index)
    hits = pc.fill_null(pc.is_in(values, value_set=flagged), False)
    return pd.Series(np.asarray(hits, dtype=bool), index=series.index)


def neutralise_formulas(frame: Any) -> Any:
    """A copy of ``frame`` safe to open in a spreadsheet: formula-looking text gets a leading ``'`` (OWASP).

    Text cells matching :data:`FORMULA_PATTERN` (``=SUM(A1)``, ``-Andy Allanson``, ``@cmd``) are prefixed with
    a single quote, so a spreadsheet shows them as text instead of evaluating them; numbers are left alone.
    """
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if column.dtype.kind in "iufbmM":
            continue
        flags = text_flags(column.where(column.map(lambda v: isinstance(v, str)), None), FORMULA_PATTERN)
        if flags.any():
            out[name] = column.astype(object).where(~flags, "'" + column.astype(str))
    return out


def write_spreadsheet_csv(frame: Any, path: Any) -> None:
    """Write ``frame`` as CSV for people to open in a spreadsheet, formula-looking text neutralised."""
    neutralise_formulas(frame).to_csv(path, index=False)


def in_categories(series: Any, allowed: list[Any]) -> Any:
    """``series.isin(allowed)``; for a few numeric categories, chained equality is several times faster."""
    import pandas as pd

    if series.dtype.kind == "f" and len(allowed) <= 8:
        values = series.to_numpy()
        hit = values == allowed[0]
        for value in allowed[1:]:
            hit |= values == value
        return pd.Series(hit, index=series.index)
    return series.isin(allowed)


def is_text(series: Any) -> bool:
    """True when every non-null value is already a ``str`` (Arrow-backed or object dtype)."""
    import pandas as pd

    if isinstance(series.dtype, pd.StringDtype):
        return True
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")
