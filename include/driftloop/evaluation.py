"""Evaluation: the holdout split, holdout metrics and scoring a model on a training run's holdout.

Training computes a new version's metrics with these functions and the gate re-scores champion and challenger
with the same ones, so both sides of every comparison are measured the same way.
"""

from __future__ import annotations

from typing import Any

from driftloop import bus
from driftloop.config import DatasetConfig


def encode_target(labels: Any, positive_label: str) -> Any:
    """1 where the label is the positive class, else 0 (labels compared as strings)."""
    return (labels.astype(str) == str(positive_label)).astype(int)


def predict_positive_proba(model: Any, features_df: Any) -> Any:
    """Positive-class probabilities; the index is reset because PyCaret pipelines multiply duplicate indexes."""
    return model.predict_proba(features_df.reset_index(drop=True))[:, 1]


def evaluate_predictions(y_true: Any, proba: Any, threshold: float = 0.5) -> dict[str, float]:
    """Holdout metrics from positive-class probabilities.

    Args:
        y_true: 1/0 true labels.
        proba: Positive-class probabilities.
        threshold: Probability at or above which a row is predicted positive.

    Returns:
        ``holdout_{auc,f1,precision,recall,accuracy}``; AUC is NaN when ``y_true`` has a single class.
    """
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=float)
    y_pred = (proba >= threshold).astype(int)
    auc = roc_auc_score(y_true, proba) if len(np.unique(y_true)) > 1 else float("nan")
    return dict(
        zip(
            bus.HOLDOUT_METRICS,
            (
                float(auc),
                float(f1_score(y_true, y_pred, zero_division=0)),
                float(precision_score(y_true, y_pred, zero_division=0)),
                float(recall_score(y_true, y_pred, zero_division=0)),
                float(accuracy_score(y_true, y_pred)),
            ),
            strict=True,
        )
    )


def gate_metric_key(metric: str) -> str:
    """The holdout metric key for a gate metric name such as ``AUC`` or ``F1``.

    Raises:
        ValueError: The name is not a known metric.
    """
    key = bus.GATE_METRIC_KEYS.get(metric.strip().lower(), metric if metric in bus.HOLDOUT_METRICS else None)
    if key is None:
        raise ValueError(f"unknown gate metric {metric!r} (known: {sorted(bus.GATE_METRIC_KEYS)})")
    return key


def split_holdout(cfg: DatasetConfig, snapshot_df: Any) -> tuple[Any, Any]:
    """(train, holdout) split of the snapshot, decided per entity id by a seeded hash.

    An id is in the holdout of every snapshot or of none, so when snapshots grow, a champion trained on an
    earlier snapshot never saw the rows of a later candidate's holdout, and the gate's head-to-head comparison
    on that holdout is fair to both. The split is not stratified: the class balance of the holdout follows the
    hash, which on thousands of rows stays within a point or two of the snapshot's.
    """
    import pandas as pd

    key = f"{cfg.training.seed:016d}"[-16:]
    buckets = pd.util.hash_pandas_object(snapshot_df[cfg.id_column].astype(str), index=False, hash_key=key)
    in_holdout = (buckets % 10_000).to_numpy() < int(round(cfg.training.test_size * 10_000))
    return snapshot_df[~in_holdout].reset_index(drop=True), snapshot_df[in_holdout].reset_index(drop=True)


def load_holdout(client: Any, run_id: str) -> Any:
    """The holdout rows (id + features + target labels) a training run logged."""
    from driftloop.tracking import read_run_frame

    return read_run_frame(client, run_id, bus.HOLDOUT_ARTIFACT)


def score_on_holdout(cfg: DatasetConfig, model: Any, holdout_df: Any) -> dict[str, float]:
    """Every holdout metric of ``model`` on labelled holdout rows (threshold ``cfg.inference.threshold``)."""
    y_true = encode_target(holdout_df[cfg.target], cfg.positive_label)
    proba = predict_positive_proba(model, holdout_df[cfg.features])
    return evaluate_predictions(y_true, proba, cfg.inference.threshold)
