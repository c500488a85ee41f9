"""What batch scoring's steps return: JSON-ready dicts, as they travel between ``inference_pipeline``'s tasks
through XCom and are committed as small JSON objects beside the data they describe.

Each type names the keys the next step (and an alert builder) reads; the steps are
:mod:`driftloop.serving.scoring_parts` (plan, score a part, commit) and :mod:`driftloop.serving.batch_scoring`
(score rows, record a batch).
"""

from __future__ import annotations

from typing import TypedDict

from driftloop.governance.governance_results import AuditEntry


class ScoreStats(TypedDict):
    """What scoring a stream of rows into one parquet file did
    (:func:`~driftloop.serving.batch_scoring.score_frames`)."""

    rows: int
    chunks: int  # predict calls made
    seconds: float  # wall time of the scoring
    explain_method: str  # how the reasons were computed (``none`` without reasons)
    output_metrics: dict[str, float]  # summarize_outputs over all rows: shares and means


class ScoredFile(ScoreStats):
    """:class:`ScoreStats` of a whole file (:func:`~driftloop.serving.batch_scoring.score_file`)."""

    sha256: str  # of the written predictions file


class PartValues(TypedDict):
    """A :class:`~driftloop.serving.scoring_parts.ScoringPart` as plain values: what a mapped task gets."""

    batch_id: str
    batch_uri: str
    part: int  # from 0
    parts: int
    row_start: int  # inclusive
    row_stop: int  # exclusive
    batch_rows: int
    model_name: str
    model_version: str
    model_run_id: str
    model_uri: str
    scored_at: str  # ISO 8601, UTC: one timestamp for the whole batch


class PartCommit(TypedDict):
    """``scoring/parts/<batch>/v<version>/<part>.json``: one part scored (written after its rows)."""

    batch_id: str
    part: int
    rows: int
    chunks: int
    seconds: float
    explain_method: str
    output_sums: dict[str, float]  # output metrics times rows, summed over the parts when combined
    model_version: str


class ScoredPart(PartCommit):
    """A part's commit, as :func:`~driftloop.serving.scoring_parts.score_part` returns it."""

    reused: bool  # True: committed by an earlier attempt, not scored again


class CombinedPart(TypedDict):
    """A part left unscored because its batch's predictions were committed before it ran."""

    batch_id: str
    part: int
    rows: int  # 0
    reused: bool  # True
    combined: bool  # True


PartResult = ScoredPart | CombinedPart


class CommittedPredictions(TypedDict):
    """``predictions/<batch_id>.json``: a batch's combined predictions (written after the parquet file)."""

    batch_id: str
    batch_uri: str
    predictions_uri: str
    model_name: str
    model_version: str
    model_run_id: str
    rows: int
    chunks: int
    parts: int
    seconds: float  # scoring time summed over the parts, plus the combine
    explain_method: str  # one method, or the parts' methods joined with "+"
    output_metrics: dict[str, float]
    sha256: str
    created_at: str


class RecordedScoring(TypedDict):
    """A batch scored and recorded as its inference run
    (:func:`~driftloop.serving.batch_scoring.record_scoring`)."""

    batch_id: str
    predictions_uri: str
    rows: int
    chunks: int
    model_version: str
    inference_run_id: str


class ScoringPlan(TypedDict):
    """What :func:`~driftloop.serving.scoring_parts.plan_scoring` returns: the parts to score now."""

    parts: list[PartValues]  # every part of every batch to score, all with the same pinned version
    recorded: list[RecordedScoring]  # batches committed before a crash, recorded without scoring
    recorded_moves: list[AuditEntry]  # champion moves made outside Driftloop, now audited
    model_version: str | None  # the pinned version; None when nothing is scored or recorded


class ScoringResult(TypedDict):
    """What :func:`~driftloop.serving.scoring_parts.commit_scored_batches` returns: the batches scored."""

    model_version: str | None
    scored: list[RecordedScoring]
    recorded_moves: list[AuditEntry]  # read by the champion-move alerts
