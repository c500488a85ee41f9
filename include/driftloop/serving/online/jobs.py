"""What the batcher queues and answers: a request (:class:`Job`), its rows for one model, its result."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from driftloop.core import bus


@dataclass(eq=False)
class Job:
    """One request; ``future`` receives a :class:`JobResult` or a :class:`RequestError`.

    ``columns`` hold the coerced inputs as numpy arrays; the outputs are filled column by column as each arm's
    call returns (:meth:`fill`), so no step walks the rows one at a time in Python.
    """

    request_id: str
    columns: dict[str, Any]
    n_rows: int
    entity_ids: list[str]
    future: asyncio.Future[JobResult]
    arms: list[str] = field(default_factory=list)
    experiment: str = ""
    parts_left: int = 0
    predictions: Any = None
    codes: Any = None
    scores: Any = None
    probabilities: dict[str, Any] | None = None
    versions: Any = None

    def fill(self, decision: Any, version: str, rows: Any, values: dict[str, Any], start: int) -> None:
        """Take the outputs of ``rows`` from one call's ``values``, which hold them at ``start`` onwards."""
        import numpy as np

        outputs = call_outputs(decision, values, start, start + len(rows))
        if self.predictions is None:
            self.predictions = np.empty(self.n_rows, dtype=object)
            self.codes = np.empty(self.n_rows, dtype=object)
            self.scores = np.zeros(self.n_rows, dtype=np.float64)
            self.versions = np.empty(self.n_rows, dtype=object)
            if outputs.probabilities is not None:
                self.probabilities = {label: np.zeros(self.n_rows) for label in outputs.probabilities}
        self.predictions[rows] = outputs.predictions
        self.codes[rows] = outputs.codes
        self.scores[rows] = outputs.scores
        self.versions[rows] = version
        if self.probabilities is not None and outputs.probabilities is not None:
            for label, column in outputs.probabilities.items():
                self.probabilities[label][rows] = column

    def result(self) -> JobResult:
        """The answer, once every part was filled."""
        return JobResult(
            self.predictions.tolist(),
            self.codes.tolist(),
            self.scores.tolist(),
            probability_rows(self.probabilities),
            self.arms,
            self.versions.tolist(),
            self.experiment,
            self.entity_ids,
        )


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


@dataclass
class CallOutputs:
    """Rows ``start:stop`` of one predict call, column by column (numpy arrays)."""

    predictions: Any
    codes: Any
    scores: Any
    probabilities: dict[str, Any] | None

    def rows(self) -> tuple[list[Any], list[float], list[dict[str, float]] | None]:
        """``(predictions, scores, probabilities)`` as lists, ``probabilities`` one ``{label: p}`` per row."""
        return self.predictions.tolist(), self.scores.tolist(), probability_rows(self.probabilities)


def probability_rows(probabilities: dict[str, Any] | None) -> list[dict[str, float]] | None:
    """Per-class probability arrays as one ``{label: probability}`` per row (None stays None)."""
    if probabilities is None:
        return None
    labels = list(probabilities)
    columns = [probabilities[label].tolist() for label in labels]
    return [dict(zip(labels, row, strict=True)) for row in zip(*columns, strict=True)]


def call_outputs(decision: Any, values: dict[str, Any], start: int, stop: int) -> CallOutputs:
    """Outputs of rows ``start:stop`` of one call: the prediction, the code ``mlflow models serve`` would
    return (class index or value), the score and, for a multiclass model, the per-class probabilities.

    Args:
        decision: The version's :class:`~driftloop.core.task_types.Decision`.
        values: What its ``predict`` returned for the call, as numpy arrays.
        start: First row of the call's outputs to take.
        stop: One past the last.
    """
    import numpy as np

    from driftloop.core.task_types import MULTICLASS, REGRESSION

    predictions = values[bus.PREDICTION_COLUMN][start:stop]
    scores = values[bus.SCORE_COLUMN][start:stop]
    if decision.task == REGRESSION:
        return CallOutputs(predictions, predictions, scores, None)
    codes = np.zeros(len(predictions), dtype=np.int64)
    for i, label in enumerate(decision.classes[1:], start=1):  # one C-level comparison per class, not per row
        codes[predictions == label] = i
    probabilities = None
    if decision.task == MULTICLASS:
        probabilities = {label: values[bus.proba_column(label)][start:stop] for label in decision.classes}
    return CallOutputs(predictions, codes, scores, probabilities)


@dataclass(eq=False)
class Part:
    """Rows of one job for one model (``rows``: an int64 array of row positions)."""

    job: Job
    rows: Any
    queued_s: float = field(default_factory=time.perf_counter)


def concat_parts(parts: list[Part], names: list[str]) -> dict[str, Any]:
    """The ``names`` columns of every part's rows, in order: the body of one predict call (numpy arrays)."""
    import numpy as np

    pieces: dict[str, list[Any]] = {name: [] for name in names}
    for part in parts:
        columns = part.job.columns
        whole = len(part.rows) == part.job.n_rows
        for name in names:
            pieces[name].append(columns[name] if whole else columns[name][part.rows])
    return {
        name: chunks[0] if len(chunks) == 1 else np.concatenate(chunks) for name, chunks in pieces.items()
    }
