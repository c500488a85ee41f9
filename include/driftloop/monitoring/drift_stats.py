"""Per-column drift statistics on numpy counts: the tests Evidently 0.7 picks, computed without Evidently.

Evidently's ``ValueDrift`` (what ``DataDriftPreset`` runs per column) drops nulls and infinities, picks a test
from the reference size and the number of distinct values on both sides, and compares its score with the
test's default threshold:

================  ===================================  =====================================  ===========
reference rows    numeric, > 5 distinct values         numeric ≤ 5 distinct, or categorical   drifted when
================  ===================================  =====================================  ===========
≤ 1,000           K-S p-value (≤ 0.05)                 chi-square p-value (< 0.05); Z-test    p below
                                                       p-value (< 0.05) for ≤ 2 values
> 1,000           Wasserstein distance normed by the   Jensen-Shannon distance (≥ 0.1)        score above
                  reference's std (≥ 0.1)
================  ===================================  =====================================  ===========

Here every test but K-S runs on each side's distinct values and their counts (one ``np.unique`` or one
``value_counts`` per column and side), which is exact: the Wasserstein distance of two samples is that of
their value-count distributions (``scipy.stats.wasserstein_distance`` with weights), and chi-square, Z and
Jensen-Shannon only ever read counts. K-S calls ``scipy.stats.ks_2samp`` on the values as Evidently does. The
scores equal Evidently's up to float summation order (``tests/unit/test_drift_stats.py`` compares them).
Evidently spends its time on what its report draws (histograms, correlations and a binned scatter per
column, each column computed three times) and on turning every categorical value into a Python string; here
only the distinct values are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Evidently 0.7's choice (evidently.legacy.calculations.stattests.registry._get_default_stattest).
SMALL_REFERENCE_ROWS = 1000
FEW_NUMERIC_VALUES = 5
KS, CHI_SQUARE, Z_TEST = "K-S p_value", "chi-square p_value", "Z-test p_value"
WASSERSTEIN, JENSEN_SHANNON = "Wasserstein distance (normed)", "Jensen-Shannon distance"
THRESHOLDS = {KS: 0.05, CHI_SQUARE: 0.05, Z_TEST: 0.05, WASSERSTEIN: 0.1, JENSEN_SHANNON: 0.1}


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test.

    Attributes:
        score: The test's score (a p-value or a distance).
        drifted: Whether it crossed the threshold (p-values below it, distances at or above it).
        method: The test, named as Evidently names it (its ``ValueDrift`` method).
        threshold: The threshold compared with.
    """

    score: float
    drifted: bool
    method: str
    threshold: float


@dataclass(frozen=True)
class Counts:
    """A column's distinct non-null values and how often each occurs (the values sorted).

    Attributes:
        values: Distinct values (float64 for numeric columns, ``str`` objects for categorical ones).
        counts: Occurrences of each value (int64).
        raw: The numeric values themselves (K-S needs them); ``None`` for categorical columns.
    """

    values: Any
    counts: Any
    raw: Any = None

    @property
    def rows(self) -> int:
        """Non-null rows."""
        return int(self.counts.sum())


def numeric_counts(series: Any) -> Counts:
    """Distinct finite values of a numeric column and their counts (non-numbers, nulls and infinities
    dropped)."""
    import numpy as np
    import pandas as pd

    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    values = values[np.isfinite(values)]
    distinct, counts = np.unique(values, return_counts=True)
    return Counts(distinct, counts, values)


def category_counts(series: Any) -> Counts:
    """Distinct non-null values of a categorical column as strings, and their counts.

    Values are compared as strings (``0`` stored as int in one file and ``"0"`` in another are one value);
    only the distinct values are converted, so ``1`` and ``"1"`` are merged after counting.
    """
    import numpy as np
    import pandas as pd

    counted = series.value_counts(dropna=True, sort=False)
    keys = pd.Index(counted.index).astype(str)
    merged = pd.Series(counted.to_numpy(dtype="int64"), index=keys).groupby(level=0, sort=True).sum()
    return Counts(np.asarray(merged.index, dtype=object), merged.to_numpy(dtype="int64"))


def column_drift(reference: Counts, current: Counts, numeric: bool) -> ColumnDrift:
    """The test Evidently 0.7 picks for this column, its score and verdict.

    Args:
        reference: The reference column's counts (at least one row).
        current: The current column's counts (at least one row).
        numeric: The column is declared numeric (categorical otherwise).
    """
    import numpy as np

    keys = np.union1d(reference.values, current.values)
    ref_counts, cur_counts = _aligned(reference, keys), _aligned(current, keys)
    few = len(keys) <= FEW_NUMERIC_VALUES
    if reference.rows <= SMALL_REFERENCE_ROWS:
        if numeric and not few:
            return _verdict(KS, _ks(reference, current))
        if len(keys) > 2:
            return _verdict(CHI_SQUARE, _chi_square(ref_counts, cur_counts))
        return _verdict(Z_TEST, _z_test(ref_counts, cur_counts))
    if numeric and not few:
        return _verdict(WASSERSTEIN, _wasserstein_normed(reference, current))
    return _verdict(JENSEN_SHANNON, _jensen_shannon(ref_counts, cur_counts))


def _aligned(side: Counts, keys: Any) -> Any:
    """``side``'s counts over ``keys`` (both sorted; keys missing on this side count 0)."""
    import numpy as np

    out = np.zeros(len(keys), dtype="int64")
    out[np.searchsorted(keys, side.values)] = side.counts
    return out


def _verdict(method: str, score: float) -> ColumnDrift:
    threshold = THRESHOLDS[method]
    p_value = method in (KS, CHI_SQUARE, Z_TEST)
    if method == KS:
        drifted = score <= threshold
    else:
        drifted = score < threshold if p_value else score >= threshold
    return ColumnDrift(score=float(score), drifted=bool(drifted), method=method, threshold=threshold)


def _wasserstein_normed(reference: Counts, current: Counts) -> float:
    """First Wasserstein distance over the reference's population std (at least 0.001), as Evidently."""
    import numpy as np
    from scipy import stats

    std = float(np.std(reference.raw))
    distance = stats.wasserstein_distance(reference.values, current.values, reference.counts, current.counts)
    return float(distance) / max(std, 0.001)


def _jensen_shannon(ref_counts: Any, cur_counts: Any) -> float:
    """Jensen-Shannon distance (natural log) of the two sides' value shares."""
    from scipy.spatial import distance

    return float(distance.jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()))


def _chi_square(ref_counts: Any, cur_counts: Any) -> float:
    """Chi-square p-value of the current counts against the reference shares scaled to the current rows."""
    import warnings

    from scipy.stats import chisquare

    expected = ref_counts * (cur_counts.sum() / ref_counts.sum())
    with warnings.catch_warnings():  # a value new in current: p = 0, as in Evidently (scipy warns, not numpy)
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(chisquare(cur_counts, expected)[1])


def _z_test(ref_counts: Any, cur_counts: Any) -> float:
    """Two-sided p-value of the difference between the shares of the first (smallest) value."""
    import numpy as np
    from scipy.stats import norm

    if len(ref_counts) == 1:  # one value on both sides
        return 1.0
    n1, n2 = float(ref_counts.sum()), float(cur_counts.sum())
    p1, p2 = 1.0 - ref_counts[0] / n1, 1.0 - cur_counts[0] / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - norm.cdf(np.abs(z))))


def _ks(reference: Counts, current: Counts) -> float:
    from scipy.stats import ks_2samp

    return float(ks_2samp(reference.raw, current.raw)[1])
