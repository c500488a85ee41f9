"""Samples of a scored batch drawn part by part, so monitoring a large batch fans out like its scoring.

A predictions file is cut into row ranges of ``monitoring.part_rows`` rows (:class:`MonitoringPart`); each
part is read on its own (an Airflow mapped task, on whichever worker is free) and keeps two small samples,
chosen by the 64-bit hash of the entity id so that the choice does not depend on how the file is cut:

* **drift rows**: every row whose id hash is at most :func:`sample_cutoff` (features and model outputs). The
  cutoff is set so that, with overwhelming probability (six standard deviations), at least ``max_rows`` rows
  of the whole batch fall under it; the combine keeps the ``max_rows`` smallest hashes. The union over parts
  of "hash under the cutoff" is the same set however the file is cut, so the sample is too.
* **labelled rows**: the ``max_live_rows`` smallest hashes among the part's rows that have an accepted label
  (scored columns, the label, the sensitive columns). The global smallest are among the parts' smallest.

Counts are exact: ``rows`` and ``labelled_rows`` add up over parts (the contract quarantines duplicate ids,
so an id lives in one part). :func:`merge_samples` combines the parts' samples;
:mod:`driftloop.monitoring.monitor` plans the parts and logs the run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import MonitoringError
from driftloop.core.row_ranges import iter_row_range, parquet_rows, split_rows
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths, uri_to_path
from driftloop.core.storage import (
    StoragePath,
    atomic_path,
    iter_parquet_batches,
    open_input,
    read_json,
    read_parquet_schema,
    store_errors,
    write_json,
)
from driftloop.monitoring.monitoring_results import (
    MonitoringPartValues,
    PartResult,
    SampleCommit,
    SampleError,
)

log = logging.getLogger(__name__)

HASH_COLUMN = "_id_hash"
_MAX_HASH = 2**64 - 1


def sample_cutoff(rows: int, max_rows: int) -> int:
    """The id-hash bound under which a part keeps its drift rows (every row when the batch fits).

    Hashes are uniform on ``[0, 2**64)``; the bound's expected count is ``max_rows`` plus six standard
    deviations, so the combine almost surely finds ``max_rows`` rows under it (and a batch where it does not
    still gets the same sample whichever way it was cut).
    """
    if rows <= max_rows:
        return _MAX_HASH
    expected = max_rows + 6 * math.sqrt(max_rows) + 16
    return _MAX_HASH if expected >= rows else int(expected / rows * _MAX_HASH)


@dataclass(frozen=True)
class MonitoringPart:
    """One part of one scored batch to sample: what a mapped task receives (as a dict, through XCom).

    Attributes:
        inference_run_id: The inference run whose batch this is (the monitoring run's key).
        batch_id: The scored batch.
        batch_uri: Its accepted batch file (features).
        predictions_uri: Its predictions file.
        part: Index of this part, from 0.
        parts: How many parts the batch has.
        row_start: First row of the part in the predictions file (inclusive).
        row_stop: Last row (exclusive).
        rows: Rows of the predictions file.
        scored_columns: Prediction columns read (prediction, score, class probabilities).
        output_columns: The outputs drift is tested on.
        max_rows: Drift rows of the whole batch at most.
        max_live_rows: Labelled rows of the whole batch measured at most.
        label_uris: The accepted label files, in order (a later file's correction wins), fixed at planning so
            every part joins the same labels.
    """

    inference_run_id: str
    batch_id: str
    batch_uri: str
    predictions_uri: str
    part: int
    parts: int
    row_start: int
    row_stop: int
    rows: int
    scored_columns: tuple[str, ...]
    output_columns: tuple[str, ...]
    max_rows: int
    max_live_rows: int
    label_uris: tuple[str, ...] = field(default=())

    def to_dict(self) -> MonitoringPartValues:
        """Plain values for XCom."""
        return cast(MonitoringPartValues, asdict(self))

    @classmethod
    def from_dict(cls, values: MonitoringPartValues) -> MonitoringPart:
        """The part a mapped task was given (XCom turns tuples into lists)."""
        fixed: dict[str, Any] = dict(values)
        for key in ("scored_columns", "output_columns", "label_uris"):
            if key in fixed:
                fixed[key] = tuple(fixed[key])
        return cls(**fixed)

    @property
    def label(self) -> str:
        """``<batch> part i/n``: the mapped task's name in the Airflow UI."""
        return f"{self.batch_id} part {self.part + 1}/{self.parts}"


@dataclass
class PartSample:
    """What one part keeps of its rows.

    Attributes:
        rows: Rows of the part.
        labelled_rows: Its rows (one per id) with an accepted label.
        current: Drift rows: id, id hash, features, outputs.
        labelled: Labelled rows: id, id hash, scored columns, label, sensitive columns.
    """

    rows: int
    labelled_rows: int
    current: Any
    labelled: Any


@dataclass
class BatchSample:
    """The parts' samples combined: what one monitoring run measures.

    Attributes:
        rows: Rows of the batch.
        labelled_rows: Rows with an accepted label (exact).
        current: The drift sample (at most ``max_rows`` rows, smallest id hashes).
        labelled: The labelled sample (at most ``max_live_rows`` rows, smallest id hashes).
        note: How both were drawn, for the run's ``current_sample`` tag.
        live_note: How the labelled sample was drawn ("" when every labelled row is in it).
    """

    rows: int
    labelled_rows: int
    current: Any
    labelled: Any
    note: str
    live_note: str


def cut_parts(
    cfg: DatasetConfig,
    *,
    inference_run_id: str,
    batch_id: str,
    batch_uri: str,
    predictions_uri: str,
    output_columns: tuple[str, ...],
    scored_columns: tuple[str, ...],
    max_rows: int,
    max_live_rows: int,
    label_uris: tuple[str, ...],
) -> list[MonitoringPart]:
    """The parts of a predictions file, from its footer (nothing else read); the arguments are
    :class:`MonitoringPart`'s, and only the scored columns present in the file are kept.

    Raises:
        MonitoringError: The predictions file does not exist or lacks the id or an output column.
    """
    from driftloop.monitoring.partitions import check_columns

    path = check_columns(predictions_uri, [cfg.id_column, *output_columns])
    present = set(read_parquet_schema(path).names)
    rows, _ = parquet_rows(path)
    ranges = split_rows(rows, cfg.monitoring.part_rows)
    return [
        MonitoringPart(
            inference_run_id=inference_run_id,
            batch_id=batch_id,
            batch_uri=batch_uri,
            predictions_uri=predictions_uri,
            part=index,
            parts=len(ranges),
            row_start=start,
            row_stop=stop,
            rows=rows,
            scored_columns=tuple(c for c in scored_columns if c in present),
            output_columns=output_columns,
            max_rows=max_rows,
            max_live_rows=max_live_rows,
            label_uris=label_uris,
        )
        for index, (start, stop) in enumerate(ranges)
    ]


def join_notes(sample_note: str, live_note: str) -> str:
    """The ``current_sample`` tag: how the drift rows and, when sampled, the labelled rows were drawn."""
    return f"{sample_note}; {live_note}" if live_note else sample_note


def part_files(paths: StatePaths, part: MonitoringPart) -> tuple[StoragePath, StoragePath, StoragePath]:
    """The part's drift rows, labelled rows and commit (written last)."""
    folder = paths.monitoring_parts_dir / part.inference_run_id
    name = f"{part.part:05d}"
    return folder / f"{name}.parquet", folder / f"{name}-labelled.parquet", folder / f"{name}.json"


def sample_part(
    cfg: DatasetConfig, part_values: MonitoringPartValues, settings: Settings | None = None
) -> PartResult:
    """Draw one part's samples into the object store; a part already committed is left as it is.

    Returns:
        The part's commit: ``{"inference_run_id", "part", "rows", "labelled_rows", "drift_rows",
        "seconds", "reused"}``, or with ``"error"`` when the files cannot be monitored (a verdict: the
        monitoring step skips the batch with that reason).
    """
    settings = settings or Settings.from_env()
    part = MonitoringPart.from_dict(part_values)
    paths = StatePaths.for_dataset(cfg, settings)
    current_path, labelled_path, commit_path = part_files(paths, part)
    with store_errors(str(commit_path)):
        if commit_path.is_file():
            committed = read_json(commit_path)
            if "error" in committed:
                return {**cast(SampleError, committed), "reused": True}
            return {**cast(SampleCommit, committed), "reused": True}
    start = time.perf_counter()
    try:
        sample = draw_part_sample(cfg, part, with_drift=True)
    except MonitoringError as exc:
        failed: SampleError = {
            "inference_run_id": part.inference_run_id,
            "part": part.part,
            "error": str(exc),
        }
        write_json(commit_path, failed)
        return {**failed, "reused": False}
    for frame, path in ((sample.current, current_path), (sample.labelled, labelled_path)):
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
    outcome: SampleCommit = {
        "inference_run_id": part.inference_run_id,
        "part": part.part,
        "rows": sample.rows,
        "labelled_rows": sample.labelled_rows,
        "drift_rows": len(sample.current),
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json(commit_path, outcome)  # the part's commit
    log.info(
        "%s: rows %d..%d, %d drift row(s) and %d of %d labelled row(s) kept in %.2f s",
        part.label, part.row_start, part.row_stop, len(sample.current), len(sample.labelled),
        sample.labelled_rows, outcome["seconds"],
    )  # fmt: skip
    return {**outcome, "reused": False}


def read_part_sample(paths: StatePaths, part: MonitoringPart) -> PartSample:
    """A committed part's samples.

    Raises:
        MonitoringError: The part recorded that its files cannot be monitored.
        RuntimeError: The part is not committed yet (a fault: its mapped task is retried).
    """
    import pandas as pd

    current_path, labelled_path, commit_path = part_files(paths, part)
    with store_errors(str(commit_path)):
        committed = commit_path.is_file()
    if not committed:
        raise RuntimeError(f"{part.label} of inference run {part.inference_run_id} is not sampled yet")
    outcome = read_json(commit_path)
    if "error" in outcome:
        raise MonitoringError(outcome["error"])
    frames = []
    for path in (current_path, labelled_path):
        with open_input(path) as handle:
            frames.append(pd.read_parquet(handle))
    return PartSample(outcome["rows"], outcome["labelled_rows"], frames[0], frames[1])


def merge_samples(samples: list[PartSample], max_rows: int, max_live_rows: int) -> BatchSample:
    """The batch's samples from its parts' (in part order): the smallest id hashes, one row per id."""
    import pandas as pd

    def smallest(frames: list[Any], limit: int) -> Any:
        # An empty part may lack columns (nothing joined to it): concatenated, it would turn ints to floats.
        frames = [frame for frame in frames if len(frame)] or frames[:1]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[HASH_COLUMN])
        frame = frame.drop_duplicates(HASH_COLUMN, keep="last").sort_values(HASH_COLUMN, kind="stable")
        return frame.head(limit).drop(columns=HASH_COLUMN).reset_index(drop=True)

    rows = sum(s.rows for s in samples)
    labelled_rows = sum(s.labelled_rows for s in samples)
    current = smallest([s.current for s in samples], max_rows)
    labelled = smallest([s.labelled for s in samples], max_live_rows)
    note = (
        f"all {len(current)} rows"
        if rows <= max_rows
        else f"{len(current)} of {rows} rows with the smallest id hashes"
    )
    live_note = (
        f"live metrics on the {len(labelled)} of {labelled_rows} labelled rows with the smallest id hashes"
        if labelled_rows > max_live_rows
        else ""
    )
    return BatchSample(rows, labelled_rows, current, labelled, note, live_note)


def draw_part_sample(cfg: DatasetConfig, part: MonitoringPart, with_drift: bool) -> PartSample:
    """Read one part and keep its drift rows (when ``with_drift``) and its labelled rows.

    Raises:
        MonitoringError: A file is missing, lacks a column, or its rows do not match the batch's.
    """
    import numpy as np
    import pyarrow as pa

    from driftloop.data.contract.ids import text_hashes

    predictions = _read_range(cfg, part, part.predictions_uri, [cfg.id_column, *part.scored_columns])
    ids = predictions.column(cfg.id_column)
    hashes = text_hashes(ids)
    # One row per id, its last (as when rows are deduplicated keeping the last).
    _, first_from_end = np.unique(hashes[::-1], return_index=True)
    kept = np.sort(len(hashes) - 1 - first_from_end)
    label_hits, label_values = _join_labels(cfg, part, ids.take(pa.array(kept)), hashes[kept])
    labelled_at = kept[label_hits]
    labelled_at = labelled_at[np.argsort(hashes[labelled_at], kind="stable")[: part.max_live_rows]]
    drift_at = (
        kept[hashes[kept] <= np.uint64(sample_cutoff(part.rows, part.max_rows))] if with_drift else kept[:0]
    )

    labelled = predictions.take(pa.array(labelled_at)).to_pandas()
    labelled[cfg.target] = label_values[np.searchsorted(kept, labelled_at)]
    labelled[HASH_COLUMN] = hashes[labelled_at]
    # The predicted label rides along: performance is estimated on the drift sample (CBPE needs it).
    label = [bus.PREDICTION_COLUMN] if bus.PREDICTION_COLUMN in part.scored_columns else []
    outputs = list(dict.fromkeys([*part.output_columns, *label]))
    current = predictions.select([cfg.id_column, *outputs]).take(pa.array(drift_at)).to_pandas()
    current[HASH_COLUMN] = hashes[drift_at]
    sensitive = list(cfg.sensitive_features) if len(labelled) else []
    features = list(cfg.features) if len(current) else []
    if sensitive or features:
        wanted = ids.take(pa.array(np.concatenate([drift_at, labelled_at])))
        rows = _batch_rows(cfg, part, list(dict.fromkeys([*features, *sensitive])), wanted)
        current = current.merge(rows[[cfg.id_column, *features]], on=cfg.id_column, how="inner")
        labelled = labelled.merge(rows[[cfg.id_column, *sensitive]], on=cfg.id_column, how="left")
    return PartSample(len(hashes), int(label_hits.sum()), current, labelled)


def _read_range(cfg: DatasetConfig, part: MonitoringPart, uri: str, columns: list[str]) -> Any:
    """Rows ``[row_start, row_stop)`` of a parquet file as one Arrow table (a part is bounded in size)."""
    import pyarrow as pa

    from driftloop.monitoring.partitions import check_columns

    path = check_columns(uri, columns)
    batches = list(iter_row_range(path, part.row_start, part.row_stop, cfg.monitoring.chunk_rows, columns))
    if not batches:
        return pa.table({c: pa.array([], type=pa.string()) for c in columns})
    return pa.Table.from_batches(batches)


def _batch_rows(cfg: DatasetConfig, part: MonitoringPart, columns: list[str], wanted: Any) -> Any:
    """The batch's ``columns`` for the ``wanted`` ids (an Arrow array): from the same row range (scoring keeps
    row order), or from the whole batch for ids not found there. Rows are chosen in Arrow; only they become
    pandas, with the dtypes the whole range would have had."""
    import pandas as pd
    import pyarrow.compute as pc

    from driftloop.monitoring.partitions import iter_parquet
    from driftloop.monitoring.sample_rows import as_whole_converts

    read = [cfg.id_column, *columns]
    table = _read_range(cfg, part, part.batch_uri, read)
    id_type = table.schema.field(cfg.id_column).type
    chosen = pc.is_in(table.column(cfg.id_column), value_set=pc.unique(wanted).cast(id_type))
    found = as_whole_converts(table.filter(chosen), table)
    missing = set(wanted.to_pylist()) - set(found[cfg.id_column])
    if missing:  # predictions not in the batch's row order: look the rest up in the whole batch
        chunks = [c[c[cfg.id_column].isin(missing)] for c in iter_parquet(part.batch_uri, read, cfg)]
        found = pd.concat([found, *chunks], ignore_index=True)
    return found.drop_duplicates(cfg.id_column, keep="last")


def _join_labels(cfg: DatasetConfig, part: MonitoringPart, ids: Any, hashes: Any) -> tuple[Any, Any]:
    """Which of ``ids`` (one per id, hashes given) have an accepted label, and the label (later file wins).

    Label ids are hashed as the predictions' were and looked up in a hash table of ``hashes`` (unique: one
    row per id); only the candidates' ids are compared, in Arrow, and only the matched labels are read out.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from driftloop.data.contract.ids import text_hashes
    from driftloop.monitoring.sample_rows import same_ids

    found = np.zeros(len(hashes), dtype=bool)
    values = np.empty(len(hashes), dtype=object)
    if not part.label_uris or not len(hashes):
        return found, values
    table = pd.Index(hashes)
    for uri in part.label_uris:
        path = uri_to_path(uri)
        for batch in iter_parquet_batches(path, cfg.monitoring.chunk_rows, [cfg.id_column, cfg.target]):
            valid = batch.column(1).is_valid()
            label_ids, labels = batch.column(0).filter(valid), batch.column(1).filter(valid)
            slots = table.get_indexer(text_hashes(label_ids))
            at = np.flatnonzero(slots >= 0)
            rows = slots[at]
            # A hash collision is no label: the candidates' ids are compared.
            hit = same_ids(ids.take(pa.array(rows)), label_ids.take(pa.array(at)))
            found[rows[hit]] = True
            values[rows[hit]] = labels.take(pa.array(at[hit])).to_numpy(zero_copy_only=False)
    return found, values
