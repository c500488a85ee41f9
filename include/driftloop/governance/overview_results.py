"""What the Driftloop view shows: JSON-ready dicts, as :func:`driftloop.governance.overview.build_overview`
returns them, the Airflow plugin serves them (``/driftloop/api/overview``, the dashboard strip) and
:mod:`driftloop.governance.overview_page` renders them.

Each type names the keys the page and the plugin read; values come from MLflow (runs, versions), the data
zones and the champion audit log, so a metric a run did not log is None.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class VersionRow(TypedDict):
    """One registered version (:func:`~driftloop.governance.overview.describe_versions`)."""

    version: str
    aliases: list[str]
    created_ms: int  # the registry's creation time, epoch milliseconds
    trigger: str  # why it was trained (drift | new_data | manual); empty when unknown
    gate: str  # the gate verdict tag; empty when not judged
    gate_reason: str
    answers: list[str]  # requests that asked again for its training key (loop_facts.answers)
    rollout_stage: str
    run_id: str
    primary_metric: float | None  # the gate's metric on the holdout
    train_seconds: float | None
    holdout: dict[str, float]  # every holdout_* metric of its training run
    mlflow_url: str  # empty without an MLflow UI URL
    run_url: str


class FiringFields(TypedDict):
    """A monitoring run's firing (:func:`~driftloop.governance.loop_facts.firing_fields`)."""

    fired_at: float | None  # epoch seconds; None: not fired
    trigger_run_id: str
    waiting: str  # the retrain's "waits for labels" note


class FiredRun(FiringFields):
    """A monitoring run and its firing (:func:`~driftloop.governance.loop_facts.newest_firing`)."""

    run_id: str
    champion_version: str  # the version that scored the batch


class Estimate(TypedDict):
    """The primary metric a monitoring run estimated before labels
    (:func:`~driftloop.governance.overview.describe_estimate`)."""

    metric: str
    value: float
    lower: float | None
    upper: float | None
    method: str
    drop: float | None
    drop_best_case: float | None


class MonitoringPoint(FiredRun):
    """One monitoring run, as charted (:func:`~driftloop.governance.overview.describe_monitoring`)."""

    start_ms: int
    batch_id: str
    drift_share: float | None
    live_metric: str  # the live metric key; empty before labels
    live_value: float | None
    holdout_metric: str
    lower_is_better: bool
    live_drop: float | None
    estimate: Estimate | None
    decision: str  # fired: <run> | suppressed: <why> | over threshold | below threshold
    run_url: str
    holdout_value: NotRequired[float | None]  # the scoring version's holdout value (describe_dataset)
    live_bound: NotRequired[float | None]  # the live value that would call for a retrain


class Kpis(TypedDict):
    """A dataset's figures (:func:`~driftloop.governance.overview.describe_kpis`)."""

    primary_metric: str
    primary_value: float | None  # the champion's
    train_seconds: float | None
    snapshot_rows: float | None
    ingest_rows_per_s: float | None
    inference_rows_per_s: float | None


class ServingKpis(TypedDict, total=False):
    """Online serving's figures from its ``/metrics``
    (:func:`~driftloop.governance.overview.read_serving_kpis`): empty without a serving URL, only
    ``serving_error`` when it cannot be read."""

    serving_p99_ms: float | None
    serving_5xx_share: float | None
    serving_requests: float
    serving_error: str


class DatasetOverview(TypedDict):
    """Everything the view shows about one dataset
    (:func:`~driftloop.governance.overview.describe_dataset`)."""

    dataset: str
    model_name: str
    task: str
    loop_state: dict[str, str]  # {"state", "detail"}: driftloop.governance.loop_state.LoopState
    champion: VersionRow | None
    challenger: VersionRow | None
    versions: list[VersionRow]  # newest first
    version_count: int  # the latest version number
    drift_threshold: float
    drop_threshold: float
    monitoring: list[MonitoringPoint]  # oldest first
    last_decision: MonitoringPoint | None
    retrains: list[VersionRow]  # versions with a trigger
    audit: list[dict[str, Any]]  # the newest champion moves: audit columns and "undo"
    quarantine: list[dict[str, Any]]  # files with quarantined rows, newest first
    kpis: Kpis


class RefusedDataset(TypedDict):
    """A dataset config the catalog refused, and why."""

    dataset: str
    error: str | None


class Overview(TypedDict):
    """What :func:`~driftloop.governance.overview.build_overview` returns: the view's data."""

    datasets: list[DatasetOverview]
    refused: list[RefusedDataset]
    serving: ServingKpis
    mlflow_ui_url: str
