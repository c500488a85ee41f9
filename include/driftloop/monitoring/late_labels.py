"""Late labels: live metrics logged into a batch's monitoring run once more of its rows are labelled.

Labels arrive after features, often hours later. The hourly monitoring run joins the accepted label files to
every monitoring run whose label set changed, reading the batch's predictions part by part in this process
with the same labelled sample a first monitoring run draws (:mod:`driftloop.monitoring.samples`).
"""

from __future__ import annotations

import time
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import MonitoringError
from driftloop.core.state import path_to_uri
from driftloop.core.storage import StoragePath
from driftloop.monitoring import live
from driftloop.monitoring.live import VersionFacts
from driftloop.monitoring.samples import BatchSample, cut_parts, draw_part_sample, join_notes, merge_samples


def update_with_labels(
    cfg: DatasetConfig,
    client: Any,
    run: Any,
    facts: VersionFacts,
    label_files: list[StoragePath],
    fingerprint: str,
    max_live_rows: int,
) -> dict[str, str | float] | None:
    """Log live metrics into an existing monitoring run when more of its rows are labelled than before.

    Args:
        cfg: Dataset config.
        client: MLflow client.
        run: The monitoring run.
        facts: Facts of the version that scored its batch.
        label_files: The accepted label files, in order.
        fingerprint: Their identity, recorded on the run once joined.
        max_live_rows: Labelled rows measured at most.

    Returns:
        ``{"monitoring_run_id", "batch_id", <live metrics>}``, or None when nothing more is labelled (or the
        predictions cannot be read: the run keeps what it has).
    """
    tags, run_id = run.data.tags, run.info.run_id
    predictions_uri = tags.get(bus.PREDICTIONS_URI_TAG)
    if not predictions_uri and tags.get(bus.INFERENCE_RUN_ID_TAG):
        predictions_uri = client.get_run(tags[bus.INFERENCE_RUN_ID_TAG]).data.tags.get(
            bus.PREDICTIONS_URI_TAG
        )
    try:
        sample = labelled_sample(cfg, facts, tags, predictions_uri or "", label_files, max_live_rows)
    except MonitoringError:
        return None
    performance = live.live_performance(cfg, facts, sample)
    # Remember this label set was joined, so the next call does not reread the predictions for nothing.
    client.set_tag(run_id, bus.LABELS_FINGERPRINT_TAG, fingerprint)
    if not performance or performance[bus.LABELLED_ROWS] <= run.data.metrics.get(bus.LABELLED_ROWS, 0.0):
        return None
    client.set_tag(run_id, bus.LIVE_DROP_METRIC_TAG, live.live_drop_metric(facts))
    drift_note = tags.get(bus.CURRENT_SAMPLE_TAG, "").split("; live metrics")[0]
    client.set_tag(run_id, bus.CURRENT_SAMPLE_TAG, join_notes(drift_note, sample.live_note))
    timestamp_ms = int(time.time() * 1000)
    for key, value in performance.items():
        client.log_metric(run_id, key, value, timestamp=timestamp_ms)
    return {"monitoring_run_id": run_id, "batch_id": tags.get(bus.BATCH_ID_TAG, ""), **performance}


def labelled_sample(
    cfg: DatasetConfig,
    facts: VersionFacts,
    tags: dict[str, str],
    predictions_uri: str,
    label_files: list[StoragePath],
    max_live_rows: int,
) -> BatchSample:
    """A monitored batch's labelled sample (no drift rows), its parts read one after the other.

    Raises:
        MonitoringError: The predictions file is gone or lacks a column.
    """
    parts = cut_parts(
        cfg,
        inference_run_id=tags.get(bus.INFERENCE_RUN_ID_TAG, ""),
        batch_id=tags.get(bus.BATCH_ID_TAG, ""),
        batch_uri=tags.get(bus.BATCH_URI_TAG, ""),
        predictions_uri=predictions_uri,
        output_columns=facts.output_columns,
        scored_columns=facts.scored_columns,
        max_rows=0,
        max_live_rows=max_live_rows,
        label_uris=tuple(path_to_uri(path) for path in label_files),
    )
    samples = [draw_part_sample(cfg, part, with_drift=False) for part in parts]
    return merge_samples(samples, 0, max_live_rows)
