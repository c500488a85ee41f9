"""Retraining policy: when new labelled data alone is reason enough to train.

The drift sensor and operators can always trigger training. New data triggers it by itself only for the first
snapshot (nothing trained yet) or when the labelled data grew materially since the last training, so a trickle
of late labels does not retrain on every batch and pre-empt the drift signal.
"""

from __future__ import annotations

from typing import TypedDict

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.tracking import FINISHED, get_client, search_runs


class NewSnapshot(TypedDict):
    """What the decision reads of a snapshot (:class:`driftloop.data.data_results.SnapshotResult` has it)."""

    snapshot_hash: str
    rows: int
    created: bool  # False: the same content was snapshotted before


class RetrainingDecision(TypedDict):
    """Whether new data alone trains, and the rule that decided, with its numbers."""

    train: bool
    reason: str


def decide_retraining(
    cfg: DatasetConfig, snapshot: NewSnapshot, settings: Settings | None = None
) -> RetrainingDecision:
    """Decide whether a snapshot built by the data stage should trigger training.

    Args:
        cfg: Dataset config (``training.retrain_min_growth``).
        snapshot: Result of :func:`driftloop.data.snapshots.build_snapshot`: ``snapshot_hash``, ``rows``,
            ``created``.
        settings: Process settings.

    Returns:
        Whether to train; the reason says which rule applied, with the numbers.
    """
    if not snapshot.get("created"):
        return {"train": False, "reason": f"snapshot {snapshot.get('snapshot_hash', '')[:12]} is not new"}
    client = get_client(settings)
    trained = search_runs(client, cfg.experiment_name("training"), extra_filter=FINISHED, max_results=1)
    if not trained:
        return {"train": True, "reason": "first snapshot: no model has been trained yet"}
    last = trained[0]
    if last.data.tags.get(bus.SNAPSHOT_HASH_TAG) == snapshot["snapshot_hash"]:
        return {"train": False, "reason": "the last training already used this snapshot"}
    last_rows = last.data.metrics.get(bus.TRAIN_ROWS, 0) + last.data.metrics.get(bus.HOLDOUT_ROWS, 0)
    growth = (snapshot["rows"] - last_rows) / last_rows if last_rows else float("inf")
    threshold = cfg.training.retrain_min_growth
    if growth >= threshold:
        return {
            "train": True,
            "reason": f"labelled data grew {growth:.0%} since the last training (>= {threshold:.0%})",
        }
    return {
        "train": False,
        "reason": f"labelled data grew {growth:.0%} since the last training (< {threshold:.0%}); "
        "retraining waits for the drift sensor or a manual run",
    }
