"""Batch inference: score accepted batches with the model behind ``models:/<name>@champion``.

The alias is resolved once per run to a concrete version, so every row of a run is scored by the same model
and the predictions say which one. Batches are read and written in chunks, so memory stays bounded by
``inference.chunk_rows`` whatever the batch size: from a folder or streamed from object storage, into a local
temporary file that is renamed into place or uploaded in one PUT. Models are loaded only from our own
registry: they are cloudpickle files, and that registry is the trust boundary.

A scored batch is ``predictions/<batch id>.parquet`` (the data, written first) and
``predictions/<batch id>.json`` (its manifest, written last: the commit, with everything the inference run
records), then a FINISHED run in the inference experiment. A rerun scores a batch again only when its
manifest is missing; a committed batch whose run is missing (a crash in between) gets its run from the
manifest, so a prediction is never written twice. How a run is planned, cut into parts (scored by separate
tasks) and committed is :mod:`driftloop.serving.scoring_parts`; this module holds the pieces it uses.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import NoChampionError
from driftloop.core.registry import resolve_alias
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths, path_to_uri
from driftloop.core.storage import (
    StoragePath,
    atomic_path,
    is_file,
    iter_parquet_batches,
    list_manifests,
    read_json,
    store_errors,
)
from driftloop.core.task_types import BINARY, REGRESSION, Decision, read_decision
from driftloop.core.tracking import find_finished_run, get_client, keyed_run
from driftloop.serving.chunk_scoring import ChunkScorer
from driftloop.serving.scoring_results import CommittedPredictions, RecordedScoring, ScoredFile, ScoreStats

log = logging.getLogger(__name__)


def resolve_model(
    cfg: DatasetConfig, alias: str = bus.CHAMPION, settings: Settings | None = None
) -> dict[str, str]:
    """Resolve ``models:/<name>@<alias>`` to a concrete version for one inference run.

    Returns:
        ``{"model_name", "model_version", "model_run_id", "model_uri"}`` with a version-pinned URI.

    Raises:
        NoChampionError: The alias is not set.
    """
    resolved = resolve_alias(cfg, alias, settings)
    if resolved is None:
        raise NoChampionError(
            f"no model version of {cfg.registered_model_name!r} has alias {alias!r}: train and promote a "
            "model "
            "first (training_pipeline), or set the alias in the MLflow UI"
        )
    return {
        "model_name": resolved["model_name"],
        "model_version": resolved["model_version"],
        "model_run_id": resolved["run_id"],
        "model_uri": resolved["model_uri"],
    }


def predictions_files(paths: StatePaths, batch_id: str) -> tuple[StoragePath, StoragePath]:
    """(predictions parquet, its manifest) of one batch."""
    return paths.predictions_dir / f"{batch_id}.parquet", paths.predictions_dir / f"{batch_id}.json"


def _names(folder: StoragePath) -> set[str]:
    """Names in ``folder`` (one listing, also on object storage); empty when it does not exist."""
    with store_errors(str(folder)):
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def pending_batches(cfg: DatasetConfig, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Manifests of accepted scoring batches (no target column) still to score, oldest first.

    A batch is pending when it has no predictions, or has some but no finished inference run (a crash before
    the run was recorded): a batch without a predictions manifest is scored again into the same objects, a
    committed one only gets its run (see :func:`driftloop.serving.scoring_parts.plan_scoring`).
    """
    settings = settings or Settings.from_env()
    paths = StatePaths.for_dataset(cfg, settings)
    client = None
    written = _names(paths.predictions_dir)
    pending = []
    for manifest in list_manifests(paths.batches_dir):
        if manifest.get("has_target") or not manifest.get("batch_uri"):
            continue
        batch_id = manifest["batch_id"]
        if {f"{batch_id}.parquet", f"{batch_id}.json"} & written:
            client = client or get_client(settings)
            key = {bus.BATCH_ID_TAG: batch_id}
            if find_finished_run(client, cfg.experiment_name("inference"), key) is not None:
                continue
        pending.append(manifest)
    return pending


def committed_predictions(
    cfg: DatasetConfig, batch_id: str, settings: Settings | None
) -> CommittedPredictions | None:
    """The predictions manifest of ``batch_id`` when its predictions are committed (manifest and data), else
    None."""
    data, manifest = predictions_files(StatePaths.for_dataset(cfg, settings), batch_id)
    if not (is_file(manifest) and is_file(data)):
        return None
    return cast(CommittedPredictions, read_json(manifest))  # as scoring_parts committed it


def read_version_decision(
    cfg: DatasetConfig, model_info: dict[str, str], settings: Settings | None
) -> Decision:
    """The decision (task, classes, threshold) recorded on the model version about to score."""
    version = get_client(settings).get_model_version(model_info["model_name"], model_info["model_version"])
    return read_decision(cfg, version.tags)


def summarize_outputs(decision: Decision, predicted: Any) -> dict[str, float]:
    """Per-run output metrics: ``positive_rate`` (binary), ``class_share.<label>`` (classification), or
    ``prediction_mean`` (regression)."""
    import numpy as np
    import pandas as pd

    if decision.task == REGRESSION:
        return {bus.PREDICTION_MEAN: float(np.mean(predicted))}
    shares = pd.Series(predicted).astype(str).value_counts(normalize=True)
    metrics = {bus.class_share_metric(label): float(shares.get(label, 0.0)) for label in decision.classes}
    if decision.task == BINARY:
        metrics[bus.POSITIVE_RATE] = float(shares.get(decision.classes[1], 0.0))
    return metrics


def score_frames(
    model: Any,
    model_info: dict[str, str],
    cfg: DatasetConfig,
    frames: Any,
    output: Path,
    decision: Decision,
    reference_df: Any = None,
    scored_at: str | None = None,
    use_replay: bool = True,
) -> ScoreStats:
    """Score Arrow record batches (id + features), one predict call each, into the local parquet ``output``.

    Args:
        model: The fitted pipeline.
        model_info: ``model_name``, ``model_version``, ``model_run_id`` (stored on every row).
        cfg: Dataset config (``inference.reasons``).
        frames: Record batches with the id column and the features.
        output: A local file (the caller puts it in place); not written when no row comes.
        decision: The version's decision: predictions are labels in the dataset's vocabulary (with the score,
            and per-class probabilities for multiclass) or values (regression).
        reference_df: Reference rows for the explainer's background; None stores no reasons.
        scored_at: The timestamp stored on every row; defaults to now.
        use_replay: Score with the numpy replay of the preprocessing once it is verified on the first chunk
            (:class:`~driftloop.serving.chunk_scoring.ChunkScorer`); False: the pipeline only.

    Returns:
        Rows, predict calls (``chunks``), seconds, the explain method and ``output_metrics``
        (:func:`summarize_outputs` over all rows).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    scored_at = scored_at or datetime.now(UTC).isoformat(timespec="seconds")
    rows = chunks = 0
    # Output metrics are shares and means: summed per chunk weighted by its rows, so no output is kept.
    writer, method = None, "none"
    weighted: dict[str, float] = {}
    scorer = ChunkScorer(model, decision, cfg, reference_df, use_replay)
    try:
        for record_batch in frames:
            chunk = record_batch.to_pandas()
            outputs, reasons, method = scorer.score(chunk)
            n = len(chunk)
            table = pa.table(
                {
                    cfg.id_column: chunk[cfg.id_column].to_numpy(),
                    **{col: _output_array(values) for col, values in outputs.items()},
                    **{
                        col: pa.array([model_info[col]] * n, pa.string())
                        for col in bus.PREDICTION_LINEAGE_COLUMNS
                    },
                    bus.SCORED_AT_COLUMN: pa.array([scored_at] * n, pa.string()),
                }
            )
            for name, values in reasons.items():
                table = table.append_column(name, pa.array(values))
            if writer is None:
                writer = pq.ParquetWriter(output, table.schema)
            writer.write_table(table)
            rows += n
            chunks += 1
            for key, value in summarize_outputs(decision, outputs[bus.PREDICTION_COLUMN]).items():
                weighted[key] = weighted.get(key, 0.0) + value * n
    finally:
        if writer is not None:
            writer.close()
    return {
        "rows": rows,
        "chunks": chunks,
        "seconds": time.perf_counter() - start,
        "explain_method": method,
        "output_metrics": {key: value / rows for key, value in weighted.items()} if rows else {},
    }


def score_file(
    model: Any,
    model_info: dict[str, str],
    cfg: DatasetConfig,
    batch_path: StoragePath,
    output_path: StoragePath,
    decision: Decision,
    reference_df: Any = None,
    use_replay: bool = True,
) -> ScoredFile:
    """Score one parquet file in chunks of ``inference.chunk_rows`` rows into ``output_path`` (written whole
    or not at all), with the top-k reasons.

    The input is streamed (a local file, or an object read in ranges); the output is written to a local
    temporary file and put in place by a rename or one upload, so a reader never sees half of it.

    Args:
        model: The fitted pipeline.
        model_info: ``model_name``, ``model_version``, ``model_run_id`` (stored on every row).
        cfg: Dataset config (``inference.chunk_rows``, ``inference.reasons``).
        batch_path: Accepted batch parquet (a folder or object storage).
        output_path: Predictions partition to write.
        decision: The version's decision (see :func:`score_frames`).
        reference_df: Reference rows for the explainer's background; None stores no reasons.
        use_replay: See :func:`score_frames`.

    Returns:
        :func:`score_frames`'s result plus ``sha256``, the written file's digest.

    Raises:
        ValueError: The batch has no rows (nothing is written).
    """
    frames = iter_parquet_batches(batch_path, cfg.inference.chunk_rows, [cfg.id_column, *cfg.features])
    with atomic_path(output_path) as tmp_path:
        stats = score_frames(
            model, model_info, cfg, frames, tmp_path, decision, reference_df, use_replay=use_replay
        )
        if not stats["rows"]:
            raise ValueError(f"{path_to_uri(batch_path)} has no rows to score")
        result: ScoredFile = {**stats, "sha256": sha256_of(tmp_path)}
    return result


def sha256_of(path: Any) -> str:
    """Hex digest of a local file, read in blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _output_array(values: Any) -> Any:
    """A prediction column as Arrow: labels as strings, probabilities and values as float64."""
    import numpy as np
    import pyarrow as pa

    values = np.asarray(values)
    if values.dtype.kind in "fiu":
        return pa.array(values.astype("float64"))
    return pa.array(values.astype(str), pa.string())


def record_scoring(
    cfg: DatasetConfig, committed: CommittedPredictions, settings: Settings | None = None
) -> RecordedScoring:
    """Record committed predictions (their manifest, see :mod:`driftloop.serving.scoring_parts`) as the
    batch's inference run.

    Returns:
        The batch, its predictions, rows, the version that scored them and the inference run's id.
    """
    import mlflow

    client = get_client(settings)
    batch_id = committed["batch_id"]
    rows, seconds = committed["rows"], committed["seconds"]
    key = {bus.BATCH_ID_TAG: batch_id}
    with keyed_run(
        client, cfg.experiment_name("inference"), key, bus.inference_run_name(batch_id), settings
    ) as run:
        mlflow.set_tags(
            {
                bus.BATCH_URI_TAG: committed["batch_uri"],
                bus.PREDICTIONS_URI_TAG: committed["predictions_uri"],
                bus.MODEL_NAME_TAG: committed["model_name"],
                bus.MODEL_VERSION_TAG: committed["model_version"],
                bus.MODEL_RUN_ID_TAG: committed["model_run_id"],
                bus.EXPLAIN_METHOD_TAG: committed["explain_method"],
            }
        )
        mlflow.log_metrics(
            {bus.ROWS: rows, **committed["output_metrics"], bus.ROWS_PER_S: rows / max(seconds, 1e-9)}
        )
        run_id = run.info.run_id
    log.info(
        "scored batch %s with %s v%s: %d rows in %.2f s (%.0f rows/s, %d chunk(s)); reasons: %s; run %s",
        batch_id, committed["model_name"], committed["model_version"], rows, seconds,
        rows / max(seconds, 1e-9), committed["chunks"], committed["explain_method"], run_id,
    )  # fmt: skip
    return {
        "batch_id": batch_id,
        "predictions_uri": committed["predictions_uri"],
        "rows": rows,
        "chunks": committed["chunks"],
        "model_version": committed["model_version"],
        "inference_run_id": run_id,
    }


def reference_features(cfg: DatasetConfig, run_id: str, settings: Settings | None) -> Any:
    """The training run's reference rows (explainer background), or None when reasons are off or it is
    missing.

    A version registered by hand may lack them: its predictions carry no reasons (logged). A failure to read
    an artifact that exists (MLflow unreachable) is a fault and propagates.
    """
    import posixpath

    from driftloop.core.tracking import read_run_frame

    if cfg.inference.reasons <= 0:
        return None
    client = get_client(settings)
    folder = posixpath.dirname(bus.REFERENCE_ARTIFACT)
    if bus.REFERENCE_ARTIFACT not in {a.path for a in client.list_artifacts(run_id, folder)}:
        log.warning(
            "run %s logged no %s: predictions are scored without reasons", run_id, bus.REFERENCE_ARTIFACT
        )
        return None
    frame = read_run_frame(client, run_id, bus.REFERENCE_ARTIFACT)
    missing = [c for c in cfg.features if c not in frame.columns]
    if missing:
        log.warning(
            "%s of run %s lacks %s: predictions without reasons", bus.REFERENCE_ARTIFACT, run_id, missing
        )
        return None
    return frame[cfg.features]
