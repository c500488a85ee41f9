"""Batch scoring fanned out: a large batch is cut into parts of ``inference.chunk_rows`` rows, each part is
scored on its own (an Airflow mapped task, on whichever worker is free), and the parts are combined into the
batch's one predictions file.

Three steps, each idempotent:

1. :func:`plan_scoring` resolves ``champion`` once to a version, records batches committed before a crash,
   and returns one :class:`ScoringPart` per part of every batch still to score (row ranges from the parquet
   footer, nothing read). Every part names the same pinned version, so a batch is scored by one model even
   if ``champion`` moves while its parts run.
2. :func:`score_part` scores rows ``[row_start, row_stop)`` into ``scoring/parts/<batch>/v<version>/<part>``
   (data first, then a small JSON result: the part's commit). A retry rewrites the same two objects; a part
   already committed is not scored again.
3. :func:`commit_scored_batches` combines a batch whose parts are all committed into
   ``predictions/<batch>.parquet`` in row order (rows counted once: the parts' rows must add up to the
   batch's), writes its manifest, records its inference run, and removes the parts.

:func:`score_pending_batches` runs the three in one process (the CLI, the demo, tests); the DAG maps step 2.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, cast

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.registry import load_model
from driftloop.core.row_ranges import iter_row_range, parquet_rows, split_rows
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths, path_to_uri, uri_to_path
from driftloop.core.storage import (
    StoragePath,
    atomic_path,
    list_files,
    open_input,
    read_json,
    remove_tree,
    store_errors,
    utc_now,
    write_json,
)
from driftloop.core.tracking import find_finished_run, get_client
from driftloop.serving import batch_scoring
from driftloop.serving.scoring_results import (
    CommittedPredictions,
    PartCommit,
    PartResult,
    PartValues,
    RecordedScoring,
    ScoringPlan,
    ScoringResult,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringPart:
    """One part of one batch to score: what a mapped task receives (as a dict, through XCom).

    Attributes:
        batch_id: The accepted batch.
        batch_uri: Its parquet file.
        part: Index of this part, from 0.
        parts: How many parts the batch has.
        row_start: First row of the part (inclusive).
        row_stop: Last row of the part (exclusive).
        batch_rows: Rows of the whole batch.
        model_name: Registered model.
        model_version: The version every part of the run scores with.
        model_run_id: Its training run.
        model_uri: ``models:/<name>/<version>``.
        scored_at: One timestamp for the whole batch (stored on every row).
    """

    batch_id: str
    batch_uri: str
    part: int
    parts: int
    row_start: int
    row_stop: int
    batch_rows: int
    model_name: str
    model_version: str
    model_run_id: str
    model_uri: str
    scored_at: str

    def to_dict(self) -> PartValues:
        """Plain values for XCom."""
        return cast(PartValues, asdict(self))

    @classmethod
    def from_dict(cls, values: PartValues) -> ScoringPart:
        """The part a mapped task was given."""
        return cls(**values)

    @property
    def model_info(self) -> dict[str, str]:
        """The lineage stored on every predicted row."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_run_id": self.model_run_id,
            "model_uri": self.model_uri,
        }


def parts_folder(paths: StatePaths, batch_id: str, model_version: str) -> StoragePath:
    """Where the parts of ``batch_id`` scored by ``model_version`` are kept until they are combined."""
    return paths.scoring_parts_dir / batch_id / f"v{model_version}"


def _part_files(paths: StatePaths, part: ScoringPart) -> tuple[StoragePath, StoragePath]:
    folder = parts_folder(paths, part.batch_id, part.model_version)
    return folder / f"{part.part:05d}.parquet", folder / f"{part.part:05d}.json"


def plan_scoring(
    cfg: DatasetConfig, alias: str = bus.CHAMPION, settings: Settings | None = None
) -> ScoringPlan:
    """The parts to score now, with the version behind ``alias`` pinned for all of them.

    Batches committed before a crash but not recorded get their inference run here, without being scored.

    Returns:
        The parts (:class:`ScoringPart` as values), the batches recorded without scoring, the champion moves
        audited now, and the pinned version.

    Raises:
        NoChampionError: Batches are waiting but no model carries ``alias``.
    """
    from driftloop.governance.audit import reconcile_champion

    settings = settings or Settings.from_env()
    moved = reconcile_champion(cfg, settings)  # a champion moved in the MLflow UI is on record first
    recorded: list[RecordedScoring] = []
    todo = []
    for manifest in batch_scoring.pending_batches(cfg, settings):
        committed = batch_scoring.committed_predictions(cfg, manifest["batch_id"], settings)
        if committed is None:
            todo.append(manifest)
        else:
            recorded.append(batch_scoring.record_scoring(cfg, committed, settings))
    result: ScoringPlan = {
        "parts": [],
        "recorded": recorded,
        "recorded_moves": [moved] if moved else [],
        "model_version": recorded[-1]["model_version"] if recorded else None,
    }
    if not todo:
        return result
    model_info = batch_scoring.resolve_model(cfg, alias, settings)
    scored_at = datetime.now(UTC).isoformat(timespec="seconds")
    for manifest in todo:
        rows, _ = parquet_rows(uri_to_path(manifest["batch_uri"]))
        ranges = split_rows(rows, cfg.inference.chunk_rows)
        result["parts"] += [
            ScoringPart(
                batch_id=manifest["batch_id"],
                batch_uri=manifest["batch_uri"],
                part=index,
                parts=len(ranges),
                row_start=start,
                row_stop=stop,
                batch_rows=rows,
                scored_at=scored_at,
                **model_info,
            ).to_dict()
            for index, (start, stop) in enumerate(ranges)
        ]
        log.info(
            "batch %s: %d rows in %d part(s) of at most %d rows, for %s v%s",
            manifest["batch_id"], rows, len(ranges), cfg.inference.chunk_rows,
            model_info["model_name"], model_info["model_version"],
        )  # fmt: skip
    result["model_version"] = model_info["model_version"]
    return result


def score_part(
    cfg: DatasetConfig, part_values: PartValues, settings: Settings | None = None, model: Any = None
) -> PartResult:
    """Score one part into its own objects; a part already committed (or a batch already combined) is left.

    Args:
        cfg: Dataset config.
        part_values: A :class:`ScoringPart` as :func:`plan_scoring` gave it.
        settings: Process settings.
        model: The pinned version's pipeline, when the caller has it loaded already.

    Returns:
        The part's result (its commit, and ``reused``).
    """
    settings = settings or Settings.from_env()
    part = ScoringPart.from_dict(part_values)
    paths = StatePaths.for_dataset(cfg, settings)
    data_path, result_path = _part_files(paths, part)
    with store_errors(str(result_path)):
        if result_path.is_file() and data_path.is_file():
            return {**cast(PartCommit, read_json(result_path)), "reused": True}
    if batch_scoring.committed_predictions(cfg, part.batch_id, settings) is not None:
        return {"batch_id": part.batch_id, "part": part.part, "rows": 0, "reused": True, "combined": True}
    model = model if model is not None else load_model(part.model_uri, settings)
    decision = batch_scoring.read_version_decision(cfg, part.model_info, settings)
    reference_df = batch_scoring.reference_features(cfg, part.model_run_id, settings)
    frames = iter_row_range(
        uri_to_path(part.batch_uri),
        part.row_start,
        part.row_stop,
        cfg.inference.chunk_rows,
        [cfg.id_column, *cfg.features],
    )
    with atomic_path(data_path) as tmp:
        stats = batch_scoring.score_frames(
            model, part.model_info, cfg, frames, tmp, decision, reference_df, part.scored_at
        )
    expected = part.row_stop - part.row_start
    if stats["rows"] != expected:
        raise RuntimeError(
            f"part {part.part} of batch {part.batch_id} scored {stats['rows']} rows, expected {expected} "
            f"(rows {part.row_start}..{part.row_stop} of {part.batch_uri})"
        )
    outcome: PartCommit = {
        "batch_id": part.batch_id,
        "part": part.part,
        "rows": stats["rows"],
        "chunks": stats["chunks"],
        "seconds": stats["seconds"],
        "explain_method": stats["explain_method"],
        "output_sums": {k: v * stats["rows"] for k, v in stats["output_metrics"].items()},
        "model_version": part.model_version,
    }
    write_json(result_path, outcome)  # the part's commit
    log.info(
        "batch %s part %d/%d: rows %d..%d scored with v%s in %.2f s",
        part.batch_id, part.part + 1, part.parts, part.row_start, part.row_stop, part.model_version,
        stats["seconds"],
    )  # fmt: skip
    return {**outcome, "reused": False}


def _combine(paths: StatePaths, batch: list[ScoringPart], output: StoragePath) -> tuple[str, float]:
    """Write the parts' rows, in part order, into ``output`` (one file, whole or not at all); returns its
    sha256 and the seconds spent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    files = [_part_files(paths, part)[0] for part in batch]
    schemas = []
    for path in files:
        with open_input(path) as handle:
            schemas.append(pq.read_schema(handle))
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    with atomic_path(output) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for path in files:
                with open_input(path) as handle:
                    for record_batch in pq.ParquetFile(handle).iter_batches():
                        table = pa.Table.from_batches([record_batch]).cast(schema)
                        writer.write_table(table)
        digest = batch_scoring.sha256_of(tmp)
    return digest, time.perf_counter() - start


def commit_scored_batches(
    cfg: DatasetConfig, planned: ScoringPlan, settings: Settings | None = None
) -> ScoringResult:
    """Combine every batch of ``planned`` whose parts are all committed; record it; remove its parts.

    Args:
        cfg: Dataset config.
        planned: What :func:`plan_scoring` returned.
        settings: Process settings.

    Returns:
        The pinned version, the batches scored (and recorded) and the plan's audited champion moves.

    Raises:
        RuntimeError: A part is missing, or the parts' rows do not add up to the batch's (a fault: the
            mapped task that should have written it is retried).
    """
    settings = settings or Settings.from_env()
    paths = StatePaths.for_dataset(cfg, settings)
    by_batch: dict[str, list[ScoringPart]] = {}
    for values in planned["parts"]:
        part = ScoringPart.from_dict(values)
        by_batch.setdefault(part.batch_id, []).append(part)
    scored = list(planned["recorded"])
    client = get_client(settings)
    for batch_id, batch in by_batch.items():
        batch.sort(key=lambda p: p.part)
        committed = batch_scoring.committed_predictions(cfg, batch_id, settings)
        if committed is None:
            committed = _commit_batch(cfg, paths, batch, settings)
        key = {bus.BATCH_ID_TAG: batch_id}
        finished = find_finished_run(client, cfg.experiment_name("inference"), key)
        if finished is None:
            scored.append(batch_scoring.record_scoring(cfg, committed, settings))
        else:  # a retried commit: the batch is combined and recorded already
            scored.append(_recorded(committed, finished.info.run_id))
        remove_tree(paths.scoring_parts_dir / batch_id)
    if not scored:
        log.info("no batch waiting to be scored")
    return {
        "model_version": planned["model_version"],
        "scored": scored,
        "recorded_moves": planned["recorded_moves"],
    }


def _recorded(committed: CommittedPredictions, run_id: str) -> RecordedScoring:
    """What :func:`batch_scoring.record_scoring` returns, for a batch whose run exists already."""
    return {
        "batch_id": committed["batch_id"],
        "predictions_uri": committed["predictions_uri"],
        "rows": committed["rows"],
        "chunks": committed["chunks"],
        "model_version": committed["model_version"],
        "inference_run_id": run_id,
    }


def _commit_batch(
    cfg: DatasetConfig, paths: StatePaths, batch: list[ScoringPart], settings: Settings
) -> CommittedPredictions:
    first = batch[0]
    folder = parts_folder(paths, first.batch_id, first.model_version)
    done = {p.name for p in list_files(folder, "*.json")}
    missing = [p.part for p in batch if f"{p.part:05d}.json" not in done]
    if missing or len(batch) != first.parts:
        raise RuntimeError(
            f"batch {first.batch_id}: part(s) {missing or 'of the plan'} not scored yet "
            f"({len(done)} of {first.parts} committed in {path_to_uri(folder)})"
        )
    results = [cast(PartCommit, read_json(_part_files(paths, part)[1])) for part in batch]
    rows = sum(r["rows"] for r in results)
    if rows != first.batch_rows:
        raise RuntimeError(
            f"batch {first.batch_id}: the parts hold {rows} rows, the batch {first.batch_rows}; not combined"
        )
    output, manifest_path = batch_scoring.predictions_files(paths, first.batch_id)
    digest, combine_s = _combine(paths, batch, output)
    sums: dict[str, float] = {}
    for result in results:
        for key, value in result["output_sums"].items():
            sums[key] = sums.get(key, 0.0) + value
    methods = sorted({r["explain_method"] for r in results})
    committed: CommittedPredictions = {
        "batch_id": first.batch_id,
        "batch_uri": first.batch_uri,
        "predictions_uri": path_to_uri(output),
        "model_name": first.model_name,
        "model_version": first.model_version,
        "model_run_id": first.model_run_id,
        "rows": rows,
        "chunks": sum(r["chunks"] for r in results),
        "parts": len(batch),
        # Wall time of the scoring itself (parts may have run at once on several workers) plus the combine.
        "seconds": sum(r["seconds"] for r in results) + combine_s,
        "explain_method": methods[0] if len(methods) == 1 else "+".join(methods),
        "output_metrics": {key: value / rows for key, value in sums.items()},
        "sha256": digest,
        "created_at": utc_now(),
    }
    write_json(manifest_path, committed)  # the batch's commit
    log.info(
        "batch %s: %d part(s), %d rows combined into %s in %.2f s",
        first.batch_id, len(batch), rows, committed["predictions_uri"], combine_s,
    )  # fmt: skip
    return committed


def score_pending_batches(
    cfg: DatasetConfig, alias: str = bus.CHAMPION, settings: Settings | None = None
) -> ScoringResult:
    """Score every accepted scoring batch that has no predictions yet with the model behind ``alias``, in
    this process: plan, score each part (the model loaded once), combine.

    Returns:
        What :func:`commit_scored_batches` returns.

    Raises:
        NoChampionError: Batches are waiting but no model carries ``alias``.
    """
    settings = settings or Settings.from_env()
    planned = plan_scoring(cfg, alias, settings)
    model = None
    for values in planned["parts"]:
        if model is None:
            model = load_model(values["model_uri"], settings)
        score_part(cfg, values, settings, model=model)
    return commit_scored_batches(cfg, planned, settings)
