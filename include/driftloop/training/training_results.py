"""What training returns: JSON-ready dicts, as they travel from ``training_pipeline``'s ``train_model`` task
to the gate (:func:`driftloop.governance.promotion.promote_trained`) through XCom and are printed by
``driftloop train``.

Each type names the keys the next task reads; the results are built in :mod:`driftloop.training.keys`.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class AskedAgain(TypedDict):
    """A trigger that asked for a training key that already had its version."""

    trigger_id: str
    reason: str  # why it asked: drift | new_data | manual
    first_reason: str  # why the version was trained ("?" when its tag is missing)


class TrainingResult(TypedDict):
    """A registered version, trained now or before (:func:`~driftloop.training.keys.result_from_run`)."""

    run_id: str  # the training run
    model_name: str
    model_version: str
    model_uri: str
    snapshot_hash: str  # "" when the run's tag is missing
    best_model: str  # PyCaret's name of the chosen estimator
    metrics: dict[str, float]  # holdout metrics (bus.HOLDOUT_METRICS the run logged)
    threshold: str | None  # the decision threshold tag, as logged
    reused: bool  # True: not trained by this call (the training key had a version)
    timings: NotRequired[dict[str, float]]  # seconds per stage: only when trained now
    asked_again: NotRequired[AskedAgain]  # only when another trigger had the key trained first


class WaitingResult(TypedDict):
    """A drift retrain that registers nothing until labels of the drifted period land
    (:func:`~driftloop.training.keys.waiting_result`)."""

    run_id: None
    model_name: str
    model_version: None  # what tells it from a TrainingResult
    snapshot_hash: str
    registered: Literal[False]
    waiting_for_labels: Literal[True]
    reason: str  # why nothing is registered (the sentence noted on the monitoring run)
    reused: Literal[False]


TrainResult = TrainingResult | WaitingResult
"""What :func:`~driftloop.training.train.train_model` returns: a version to judge, or none yet."""
