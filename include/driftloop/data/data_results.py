"""What the data stage's tasks return: JSON-ready dicts, as they travel between ``data_pipeline``'s tasks
through XCom and are printed by ``driftloop ingest``.

Each type names the keys the next task (and an alert builder) reads.
"""

from __future__ import annotations

from typing import TypedDict


class QuarantinedFile(TypedDict):
    """A landed file quarantined whole, as the ingestion result names it."""

    batch_id: str
    reason_code: str
    message: str


class IngestResult(TypedDict):
    """What :func:`~driftloop.data.ingest.ingest_labels` returns: accepted and quarantined files, rows."""

    accepted: list[str]  # batch ids (label batch ids for labels)
    quarantined: list[QuarantinedFile]
    rows_received: int
    rows_accepted: int
    rows_quarantined: int


class BatchIngestResult(IngestResult):
    """What :func:`ingest_batches` returns: accepted batches split by whether they carry the target."""

    scoring_batch_ids: list[str]  # accepted without the target: to be scored
    labelled_batch_ids: list[str]  # accepted with the target: training rows


class SnapshotResult(TypedDict):
    """What :func:`~driftloop.data.snapshots.build_snapshot` returns (read by the retraining decision)."""

    snapshot_hash: str
    snapshot_uri: str
    rows: int
    created: bool  # False: the same content was snapshotted before (replay or no new data)
    batch_ids: list[str]
    label_batch_ids: list[str]
    unlabelled_rows_excluded: int  # accepted rows left out because their label is null


class DataRunResult(TypedDict):
    """What :func:`~driftloop.data.snapshots.record_snapshot` returns: the data run recording a snapshot."""

    snapshot_hash: str
    snapshot_uri: str
    rows: int
    data_run_id: str
    reused: bool  # True: the snapshot was recorded by an earlier call
    profile_sampled: bool  # True: the HTML profile was drawn on a sample of the rows
