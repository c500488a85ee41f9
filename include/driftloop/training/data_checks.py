"""Training data checks: a snapshot that cannot train a model is a verdict naming the cause, never a retried
fault.

PyCaret reports such data as a ``ValueError`` deep inside ``setup`` or cross-validation (missing target
values, a class with fewer members than folds, a single class); retrying cannot change the data, so the checks
run before fitting and PyCaret's own data errors are translated into
:class:`~driftloop.core.errors.TrainingDataError`.
"""

from __future__ import annotations

import re
from typing import Any

from driftloop.core.config import DatasetConfig
from driftloop.core.errors import TrainingDataError
from driftloop.core.task_types import REGRESSION

# Fewest training rows PyCaret's cross-validation can work with at all.
MIN_TRAIN_ROWS = 20

# PyCaret / scikit-learn messages that describe the data, not a passing fault.
DATA_ERROR_PATTERNS = (
    r"missing values found in the target",
    r"least populated class",
    r"n_splits=\d+ cannot be greater than the number of members",
    r"only one class",
    r"contains only one class",
    r"needs samples of at least 2 classes",
    r"Input (?:X|y) contains NaN",
)


def check_training_frames(cfg: DatasetConfig, train_df: Any, holdout_df: Any) -> None:
    """Raise :class:`TrainingDataError` when the training rows cannot train and evaluate a model.

    Checks: no null label, at least :data:`MIN_TRAIN_ROWS` training rows and some holdout rows, and for
    classification at least two classes, each with at least ``training.folds`` training rows.

    Raises:
        TrainingDataError: The first problem found, with the numbers and the fix.
    """
    target = cfg.target
    nulls = int(train_df[target].isna().sum() + holdout_df[target].isna().sum())
    if nulls:
        raise TrainingDataError(
            f"{cfg.name}: {nulls} snapshot rows have no {target!r} (rebuild the snapshot: unlabelled rows "
            "are "
            "excluded from new snapshots)"
        )
    if len(train_df) < MIN_TRAIN_ROWS or holdout_df.empty:
        raise TrainingDataError(
            f"{cfg.name}: too few rows to train: {len(train_df)} training and {len(holdout_df)} holdout rows "
            f"(need at least {MIN_TRAIN_ROWS} and 1); land more labelled data"
        )
    if cfg.task == REGRESSION:
        return
    counts = train_df[target].value_counts()
    if len(counts) < 2:
        raise TrainingDataError(
            f"{cfg.name}: the training rows hold a single class ({counts.index[0]!r} x "
            f"{int(counts.iloc[0])}); "
            "a classifier needs at least two"
        )
    folds = cfg.training.folds
    rare = {str(k): int(v) for k, v in counts.items() if v < folds}
    if rare:
        raise TrainingDataError(
            f"{cfg.name}: classes with fewer training rows than training.folds={folds}: {rare}; land more "
            "rows "
            "of these classes, lower training.folds, or merge the classes"
        )


def training_data_error(cfg: DatasetConfig, exc: BaseException) -> TrainingDataError | None:
    """:class:`TrainingDataError` for an exception PyCaret raised about the data, None for anything else."""
    text = str(exc)
    if isinstance(exc, ValueError) and any(re.search(p, text, re.IGNORECASE) for p in DATA_ERROR_PATTERNS):
        return TrainingDataError(f"{cfg.name}: the training data cannot train a model: {text.strip()[:500]}")
    return None
