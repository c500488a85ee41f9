"""DeLong's test for AUC differences of two models scored on the same rows (binary, and one-vs-rest averaged).

DeLong, DeLong & Clarke-Pearson (1988), computed with midranks in O(n log n) and vectorised over simulated
samples, so the gate's comparison stays within a second on 100k rows.
"""

from __future__ import annotations

import math
from typing import Any

from driftloop.governance.governance_results import AucDifference, AucDifferences


def z_quantile(p: float) -> float:
    """The standard normal quantile of ``p``."""
    from scipy.stats import norm

    return float(norm.ppf(p))


def _midranks(scores: Any) -> Any:
    """Average ranks (1-based) along the last axis, ties sharing their mean rank; vectorised over leading
    axes."""
    import numpy as np

    x = np.asarray(scores, dtype=float)
    order = np.argsort(x, axis=-1, kind="stable")
    ordered = np.take_along_axis(x, order, axis=-1)
    n, idx = x.shape[-1], np.arange(x.shape[-1])
    first = np.ones(x.shape, dtype=bool)
    first[..., 1:] = ordered[..., 1:] != ordered[..., :-1]  # a tie group starts here
    last = np.ones(x.shape, dtype=bool)
    last[..., :-1] = first[..., 1:]
    start = np.maximum.accumulate(np.where(first, idx, 0), axis=-1)
    end = np.minimum.accumulate(np.where(last, idx, n - 1)[..., ::-1], axis=-1)[..., ::-1]
    ranks = np.empty(x.shape)
    np.put_along_axis(ranks, order, (start + end) / 2 + 1, axis=-1)
    return ranks


def _components(y: Any, scores: Any) -> tuple[Any, Any, Any, Any]:
    """DeLong's structural components of ``scores`` (models x samples x rows) for labels ``y`` (samples x
    rows).

    Ranks within a class come from one ranking with the other class pushed to -inf, so every sample may have
    its own labels. Returns ``(v10, v01, positives, negatives)``; a component is 0 on rows of the other class.
    """
    import numpy as np

    m, n = y.sum(axis=-1), (~y).sum(axis=-1)
    ranks = _midranks(scores)
    within_pos = _midranks(np.where(y, scores, -np.inf)) - n[:, None]
    within_neg = _midranks(np.where(~y, scores, -np.inf)) - m[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        v10 = np.where(y, (ranks - within_pos) / n[:, None], 0.0)
        v01 = np.where(~y, 1.0 - (ranks - within_neg) / m[:, None], 0.0)
    return v10, v01, m, n


def delong_auc_differences(
    labels: Any, score_champion: Any, score_challenger: Any, level: float = 0.95
) -> AucDifferences:
    """Binary AUC differences (challenger minus champion) with DeLong's variance of the paired difference,
    vectorised over samples (e.g. simulations): one value per sample.

    Ranks within each class come from one ranking with the other class pushed to -inf, so every sample may
    have its own labels.

    Args:
        labels: 0/1 (or boolean) truth, samples x rows (one row of labels: one sample).
        score_champion: The champion's positive-class scores on the same rows.
        score_challenger: The challenger's.
        level: Two-sided level of the normal interval.

    Returns:
        The difference, its standard error and interval and both AUCs, per sample; NaN for a sample whose rows
        hold a single class.
    """
    import numpy as np

    y = np.atleast_2d(np.asarray(labels).astype(bool))
    scores = np.stack([np.atleast_2d(np.asarray(s, float)) for s in (score_champion, score_challenger)])
    v10, v01, m, n = _components(y, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = v10.sum(axis=-1) / m
        diff = auc[1] - auc[0]  # also the mean of each class's component differences
        d10, d01 = v10[1] - v10[0] - diff[:, None], v01[1] - v01[0] - diff[:, None]
        var10 = (d10**2 * y).sum(axis=-1) / np.maximum(m - 1, 1) / m
        var01 = (d01**2 * ~y).sum(axis=-1) / np.maximum(n - 1, 1) / n
    champion, challenger, diff, se = np.where(
        (m == 0) | (n == 0), np.nan, [*auc, diff, np.sqrt(var10 + var01)]
    )
    half = z_quantile(0.5 + level / 2) * se
    return {
        "champion": champion,
        "challenger": challenger,
        "difference": diff,
        "se": se,
        "ci_low": diff - half,
        "ci_high": diff + half,
        "rows": int(y.shape[1]),
    }


def delong_auc_difference(
    labels: Any, score_champion: Any, score_challenger: Any, level: float = 0.95
) -> AucDifference:
    """Binary AUC difference (challenger minus champion) with DeLong's variance of the paired difference.

    Args:
        labels: 0/1 (or boolean) truth per row.
        score_champion: The champion's positive-class scores on the same rows.
        score_challenger: The challenger's.
        level: Two-sided level of the normal interval.

    Returns:
        The difference, its standard error and interval, both AUCs and the rows; NaN when the rows hold a
        single class.

    Raises:
        ValueError: ``labels`` is not one row of labels (many samples: :func:`delong_auc_differences`).
    """
    import numpy as np

    if np.ndim(labels) != 1:
        raise ValueError(f"labels of {np.ndim(labels)} dimensions: one sample's labels (1-D) expected")
    found = delong_auc_differences(labels, score_champion, score_challenger, level)
    return {
        "champion": float(found["champion"][0]),
        "challenger": float(found["challenger"][0]),
        "difference": float(found["difference"][0]),
        "se": float(found["se"][0]),
        "ci_low": float(found["ci_low"][0]),
        "ci_high": float(found["ci_high"][0]),
        "rows": found["rows"],
    }


def delong_ovr_difference(codes: Any, proba_champion: Any, proba_challenger: Any) -> dict[str, float]:
    """Macro one-vs-rest AUC difference over the classes present, with a DeLong-type variance.

    Each row's influence on the macro difference is the average over classes of its structural component (as a
    positive of its own class, as a negative of the others); the variance is the sum of squared influences.

    Args:
        codes: Class index per row (-1: unknown class, left out).
        proba_champion: rows x classes probabilities of the champion.
        proba_challenger: The challenger's, same columns.
    """
    import numpy as np

    y = np.asarray(codes).astype(int)
    keep = y >= 0
    present = [c for c in range(np.asarray(proba_champion).shape[1]) if np.any(y[keep] == c)]
    nan = float("nan")
    if len(present) < 2:
        return {"champion": nan, "challenger": nan, "difference": nan, "se": nan, "rows": int(keep.sum())}
    keep &= np.isin(y, present)
    y = y[keep]
    a, b = np.asarray(proba_champion, float)[keep], np.asarray(proba_challenger, float)[keep]
    influence = np.zeros(len(y))
    aucs = np.zeros(2)
    for c in present:
        positive = y == c
        v10, v01, m, n = _components(positive[None, :], np.stack([a[:, c], b[:, c]])[:, None, :])
        auc = v10.sum(axis=-1)[:, 0] / m[0]
        aucs += auc / len(present)
        d10, d01 = (v[1, 0] - v[0, 0] - (auc[1] - auc[0]) for v in (v10, v01))
        influence += np.where(positive, d10 / m[0], d01 / n[0]) / len(present)
    return {
        "champion": float(aucs[0]),
        "challenger": float(aucs[1]),
        "difference": float(aucs[1] - aucs[0]),
        "se": float(math.sqrt((influence**2).sum() * len(y) / max(len(y) - 1, 1))),
        "rows": int(len(y)),
    }
