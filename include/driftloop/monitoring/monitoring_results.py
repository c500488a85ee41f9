"""What monitoring's steps and the drift sensor return: JSON-ready dicts, as they travel between the tasks of
``monitoring_pipeline`` and ``drift_sensor`` through XCom and are committed as small JSON objects.

Each type names the keys the next step (and an alert builder) reads; the steps are
:mod:`driftloop.monitoring.monitor` (plan, commit), :mod:`driftloop.monitoring.samples` (sample a part) and
:mod:`driftloop.monitoring.sensor` (the trigger).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

# One monitoring run's ids (``monitoring_run_id``, ``batch_id``, ...) and the numbers it logged (drift share,
# drifted columns, prediction drift score, estimated and live metrics). The metric keys depend on the task
# and on whether labels have arrived, so it is a dict, not a TypedDict.
RunNumbers = dict[str, str | float]


class MonitoringPartValues(TypedDict):
    """A :class:`~driftloop.monitoring.samples.MonitoringPart` as plain values: what a mapped task gets."""

    inference_run_id: str
    batch_id: str
    batch_uri: str
    predictions_uri: str
    part: int  # from 0
    parts: int
    row_start: int  # inclusive
    row_stop: int  # exclusive
    rows: int  # of the predictions file
    scored_columns: Sequence[str]  # a tuple in process, a list once through XCom
    output_columns: Sequence[str]
    max_rows: int
    max_live_rows: int
    label_uris: Sequence[str]


class SkippedBatch(TypedDict):
    """A scored batch that cannot be monitored, and why (its files or tags are missing)."""

    inference_run_id: str
    reason: str


class MonitoringPlan(TypedDict):
    """What :func:`~driftloop.monitoring.monitor.plan_monitoring` returns: the parts to sample now."""

    parts: list[MonitoringPartValues]
    skipped: list[SkippedBatch]
    label_uris: list[str]  # the accepted label files when planned, in order
    labels_fingerprint: str  # their identity, recorded on the runs that joined them
    max_rows: int  # drift rows of a batch at most


class SampleCommit(TypedDict):
    """``monitoring/parts/<inference run>/<part>.json``: one part sampled (written after its rows)."""

    inference_run_id: str
    part: int
    rows: int
    labelled_rows: int
    drift_rows: int
    seconds: float


class SampledPart(SampleCommit):
    """A part's commit, as :func:`~driftloop.monitoring.samples.sample_part` returns it."""

    reused: bool  # True: committed by an earlier attempt, not sampled again


class SampleError(TypedDict):
    """A part whose files cannot be monitored: committed with the reason, so the batch is skipped."""

    inference_run_id: str
    part: int
    error: str


class UnsampledPart(SampleError):
    """A :class:`SampleError` as :func:`~driftloop.monitoring.samples.sample_part` returns it."""

    reused: bool


PartResult = SampledPart | UnsampledPart


class MonitoringResult(TypedDict):
    """What :func:`~driftloop.monitoring.monitor.commit_monitoring` returns."""

    monitored: list[RunNumbers]  # one per monitoring run logged (or found, on a retry)
    updated_with_labels: list[RunNumbers]  # earlier runs that got live metrics from late labels
    skipped: list[SkippedBatch]


class RetrainingTrigger(TypedDict):
    """A result of the champion that calls for retraining: the drift sensor's XCom and the retraining run's
    conf (:func:`~driftloop.monitoring.sensor.find_drift_trigger`)."""

    reason: str  # performance | estimated_performance | drift
    monitoring_run_id: str
    trigger_run_id: str  # the Airflow run id the retraining run gets: one result, one run
    drift_share: float | None  # share of the features that drifted
    live_drop: float | None  # relative: 0.1 is 10 % worse than on the holdout
    estimated_drop: float | None  # relative, like live_drop
    estimated_drop_best_case: float | None
    champion_version: str
    detail: str  # the sentence operators read (run note, alert)


class DriftDecision(TypedDict):
    """The sensor's decision (:func:`~driftloop.monitoring.sensor.drift_decision`): fire, or why not."""

    trigger: RetrainingTrigger | None
    waiting_for_labels: str | None  # a crossing held back until labels of the drifted period land


class FiredTrigger(TypedDict):
    """A firing recorded on its monitoring run (:func:`~driftloop.monitoring.sensor.mark_trigger_fired`);
    the drift alerts read it."""

    monitoring_run_id: str
    trigger_run_id: str
    fired_at: int  # epoch seconds of the first firing
    covered_run_ids: list[str]  # other crossing results of the version, suppressed by this firing
    reason: str
    drift_share: float | None
    live_drop: float | None
    estimated_drop: float | None
    estimated_drop_best_case: float | None
    champion_version: str | None
    detail: str
