"""What the batcher queues and answers: a request (:class:`Job`), its rows for one model, its result."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from driftloop.core import bus


@dataclass(eq=False)
class Job:
    """One request; ``future`` receives a :class:`JobResult` or a :class:`RequestError`."""

    request_id: str
    columns: dict[str, list]
    n_rows: int
    entity_ids: list[str]
    future: asyncio.Future
    arms: list[str] = field(default_factory=list)
    experiment: str = ""
    outputs: list[Any] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    parts_left: int = 0


@dataclass
class JobResult:
    """What answered one request, row by row.

    Attributes:
        predictions: The prediction in the dataset's labels, or the value (regression).
        codes: The same as the model outputs it (class index, or the value), as ``mlflow models serve``
            returns.
        scores: Positive-class probability (binary), top probability (multiclass), the value (regression).
        probabilities: Per row ``{label: probability}`` (multiclass), else None.
    """

    predictions: list[Any]
    codes: list[Any]
    scores: list[float]
    probabilities: list[dict[str, float]] | None
    arms: list[str]
    versions: list[str]
    experiment: str
    entity_ids: list[str]


def row_outputs(decision: Any, values: dict[str, Any], start: int, stop: int) -> list[tuple]:
    """``(prediction, code, score, probabilities)`` of rows ``start:stop`` of one call's outputs."""
    from driftloop.core.task_types import MULTICLASS, REGRESSION

    predictions = values[bus.PREDICTION_COLUMN][start:stop].tolist()
    scores = values[bus.SCORE_COLUMN][start:stop].tolist()
    if decision.task == REGRESSION:
        return [(p, p, s, None) for p, s in zip(predictions, scores, strict=True)]
    index = {label: i for i, label in enumerate(decision.classes)}
    if decision.task != MULTICLASS:
        return [(p, index[p], s, None) for p, s in zip(predictions, scores, strict=True)]
    columns = {label: values[bus.proba_column(label)][start:stop].tolist() for label in decision.classes}
    return [
        (p, index[p], s, {label: columns[label][k] for label in decision.classes})
        for k, (p, s) in enumerate(zip(predictions, scores, strict=True))
    ]


@dataclass(eq=False)
class Part:
    """Rows of one job for one model."""

    job: Job
    rows: list[int]
    queued_s: float = field(default_factory=time.perf_counter)


def concat_parts(parts: list[Part], names: list[str]) -> dict[str, list]:
    """The ``names`` columns of every part's rows, in order: the body of one predict call."""
    merged: dict[str, list] = {name: [] for name in names}
    for part in parts:
        columns, rows = part.job.columns, part.rows
        whole = len(rows) == part.job.n_rows
        for name in names:
            merged[name].extend(columns[name] if whole else [columns[name][i] for i in rows])
    return merged
