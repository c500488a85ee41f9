"""The holdout: its split, the direction of metrics and scoring a model on a training run's holdout.

Training computes a new version's metrics with these functions and the gate re-scores champion and challenger
with the same ones, so both sides of every comparison are measured the same way.
"""

from __future__ import annotations

from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.task_types import Decision, holdout_metrics


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
    from driftloop.core.tracking import read_run_frame

    return read_run_frame(client, run_id, bus.HOLDOUT_ARTIFACT)


def score_on_holdout(cfg: DatasetConfig, model: Any, holdout_df: Any, decision: Decision) -> dict[str, float]:
    """Every holdout metric of the task for ``model`` deciding by ``decision`` on labelled rows."""
    outputs = decision.predict(model, holdout_df[cfg.features])
    return holdout_metrics(decision, decision.encode(holdout_df[cfg.target]).to_numpy(), outputs)
