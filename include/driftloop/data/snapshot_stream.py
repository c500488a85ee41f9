"""The training snapshot built streamed, in bounded memory: the history range-partitioned by id, one bucket
in memory at a time.

Every accepted batch and label file is read in Arrow record batches and its rows appended to local Arrow IPC
bucket files by id range; each bucket is then joined, deduplicated and canonicalised on its own, so memory
holds one bucket (``BUCKET_ROWS`` batch rows), never the history.

Why this gives the in-memory build's rows and hash: every row of one id lands in the same bucket (buckets are
id ranges), so the latest-label join and the latest-row-wins dedupe of a bucket are those of the whole history
restricted to its ids; buckets are consecutive id ranges, so writing them in order writes the rows sorted by
id; and :func:`~driftloop.data.snapshots.canonical_hash` hashes each value on its own, so its column-by-column
digest can be fed from per-column spools of the buckets' value hashes.

Only the file I/O and the partitioning are Arrow (``pyarrow.parquet`` batches, ``pyarrow.compute``, Arrow IPC
bucket files); a bucket is processed with the same pandas operations as the in-memory build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths, uri_to_path
from driftloop.core.storage import iter_parquet_batches, list_manifests
from driftloop.data.contract import arrow_schema, join_hashed_ids, load_contract

log = logging.getLogger(__name__)

BUCKET_ROWS = 200_000  # batch rows per id range: a bucket's pandas frames stay a few hundred MB
READ_BATCH_ROWS = 65_536
SAMPLES_PER_BUCKET = 64  # ids sampled per bucket to place the range boundaries
SCHEME_CHECK_IDS = 1_000  # ids whose hashing scheme join_hashed_ids compares (as the in-memory join did)
SPOOL_CHUNK_BYTES = 8 << 20
SEQ, SOURCE = "_seq", "_source"


def _dtypes_header(frame: Any) -> bytes:
    return json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode()


def _value_hashes(column: Any) -> bytes:
    """Each value's 8-byte hash (``pandas.util.hash_pandas_object``, fixed key): one value's hash never
    depends on the others, so a column's hashes can be computed a slice at a time."""
    import pandas as pd

    return bytes(pd.util.hash_pandas_object(column, index=False).to_numpy().tobytes())


def canonical_hash(frame: Any) -> str:
    """sha256 over a canonical frame: column names and dtypes, the row count, then each column's values.

    Values are hashed with ``pandas.util.hash_pandas_object`` (fixed key, so stable across processes).
    """
    digest = hashlib.sha256()
    digest.update(_dtypes_header(frame))
    digest.update(str(len(frame)).encode())
    for name in frame.columns:
        digest.update(_value_hashes(frame[name]))
    return digest.hexdigest()


def canonicalise(cfg: DatasetConfig, rows: Any, contract: Any = None) -> Any:
    """Id + features + target, one row per id (the last wins), sorted by id, in the contract's dtypes."""
    contract = contract or load_contract(cfg)
    columns = [cfg.id_column, *cfg.features, cfg.target]
    frame = rows[columns].drop_duplicates(cfg.id_column, keep="last")
    frame = frame.sort_values(cfg.id_column, kind="stable").reset_index(drop=True)
    schema = arrow_schema(contract, columns)
    for name in columns:
        arrow_type = str(schema.field(name).type)
        frame[name] = frame[name].astype(
            "int64" if arrow_type == "int64" else "float64" if arrow_type == "double" else object
        )
        if arrow_type == "string":
            frame[name] = frame[name].where(frame[name].isna(), frame[name].astype(str))
    return frame


@dataclass
class StreamedSnapshot:
    """A snapshot's rows written to a local parquet file, with its hash and what the build kept and dropped.

    ``rows_read == rows + unlabelled_rows_excluded + duplicate_rows_dropped + rows_without_label``.
    """

    data_path: Path
    snapshot_hash: str
    columns: list[str]
    rows: int = 0
    rows_read: int = 0  # accepted batch rows read
    rows_without_label: int = 0  # scoring rows whose id has no accepted label
    duplicate_rows_dropped: int = 0  # rows of an id a later row replaced
    unlabelled_rows_excluded: int = 0  # rows whose label is null
    batch_ids: list[str] = field(default_factory=list)
    label_batch_ids: list[str] = field(default_factory=list)
    label_files: int = 0


@dataclass
class _Sources:
    batches: list[dict[str, Any]]  # manifests with a batch file, oldest first
    labels: list[dict[str, Any]]  # manifests with a labels file, oldest first


def _sources(cfg: DatasetConfig, settings: Settings | None) -> _Sources:
    paths = StatePaths.for_dataset(cfg, settings)
    return _Sources(
        [m for m in list_manifests(paths.batches_dir) if m.get("batch_uri")],
        [m for m in list_manifests(paths.labels_dir) if m.get("labels_uri")],
    )


def _boundaries(cfg: DatasetConfig, sources: _Sources, id_type: Any) -> Any:
    """Sorted, distinct ids that split the batch rows into ranges of about ``BUCKET_ROWS`` rows (an array of
    ``buckets - 1`` ids; bucket ``i`` holds ids in ``[b[i-1], b[i])``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = sum(int(m.get("rows_accepted") or 0) for m in sources.batches)
    buckets = max(1, math.ceil(total / BUCKET_ROWS))
    if buckets == 1:
        return pa.array([], id_type)
    stride = max(1, total // (buckets * SAMPLES_PER_BUCKET))
    samples = []
    for manifest in sources.batches:
        path = uri_to_path(manifest["batch_uri"])
        for batch in iter_parquet_batches(path, READ_BATCH_ROWS, columns=[cfg.id_column]):
            ids = batch.column(0).cast(id_type)
            samples.append(ids.take(pa.array(range(0, len(ids), stride))).drop_null())
    sample = pa.chunked_array(samples, id_type).combine_chunks()
    sample = sample.take(pc.sort_indices(sample))
    cuts = [sample[len(sample) * i // buckets] for i in range(1, buckets)] if len(sample) else []
    return pc.unique(pa.array([c.as_py() for c in cuts], id_type))


def _bucket_of(ids: Any, bounds: Any) -> Any:
    """Each id's bucket: how many boundaries are <= it (null ids go to the last bucket, as sorting puts them
    last)."""
    import numpy as np
    import pyarrow.compute as pc

    bucket = np.zeros(len(ids), dtype=np.int32)
    for bound in bounds:
        bucket += pc.fill_null(pc.greater_equal(ids, bound), True).to_numpy(zero_copy_only=False)
    return bucket


class _BucketFiles:
    """One Arrow IPC file per bucket, opened when a bucket first gets rows."""

    def __init__(self, folder: Path, prefix: str, schema: Any) -> None:
        self.folder, self.prefix, self.schema = folder, prefix, schema
        self.writers: dict[int, Any] = {}

    def path(self, bucket: int) -> Path:
        return self.folder / f"{self.prefix}-{bucket:05d}.arrow"

    def append(self, table: Any, buckets: Any) -> None:
        """Write ``table``'s rows to their ``buckets`` (an int array, one per row), keeping their order."""
        import numpy as np
        import pyarrow as pa

        order = np.argsort(buckets, kind="stable")
        ends = np.cumsum(np.bincount(buckets))
        ordered = table.take(pa.array(order))
        start = 0
        for bucket, end in enumerate(ends):
            if end > start:
                if bucket not in self.writers:
                    options = pa.ipc.IpcWriteOptions(compression="lz4")
                    self.writers[bucket] = pa.ipc.new_stream(
                        str(self.path(bucket)), self.schema, options=options
                    )
                self.writers[bucket].write_table(ordered.slice(start, end - start))
            start = int(end)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()

    def read(self, bucket: int) -> Any:
        """The bucket's rows as a DataFrame (None when it got none)."""
        import pyarrow as pa

        if bucket not in self.writers:
            return None
        with pa.ipc.open_stream(str(self.path(bucket))) as reader:
            return reader.read_all().to_pandas()


def _tagged(table: Any, schema: Any, source: int, seq: int | None = None) -> Any:
    """``table`` with its source's position (and each row's place in the history), cast to ``schema``."""
    import pyarrow as pa

    table = table.append_column(SOURCE, pa.array([source] * len(table), pa.int32()))
    if seq is not None:
        table = table.append_column(SEQ, pa.array(range(seq, seq + len(table)), pa.int64()))
    return table.cast(schema)


def _partition_labels(cfg: DatasetConfig, sources: _Sources, bounds: Any, files: _BucketFiles) -> list[Any]:
    """Every label row into its bucket, tagged with its file's position; returns the first label ids (for
    the hashing-scheme check)."""
    import pyarrow as pa

    first_ids: list[Any] = []
    for source, manifest in enumerate(sources.labels):
        path = uri_to_path(manifest["labels_uri"])
        for batch in iter_parquet_batches(path, READ_BATCH_ROWS, columns=[cfg.id_column, cfg.target]):
            table = _tagged(pa.Table.from_batches([batch]), files.schema, source)
            ids = table.column(cfg.id_column)
            if len(first_ids) < SCHEME_CHECK_IDS:
                first_ids.extend(ids.drop_null().slice(0, SCHEME_CHECK_IDS).to_pylist())
            files.append(table, _bucket_of(ids, bounds))
    return first_ids[:SCHEME_CHECK_IDS]


def _partition_batches(
    cfg: DatasetConfig, sources: _Sources, bounds: Any, files: _BucketFiles, label_ids: list[Any]
) -> int:
    """Every accepted batch row into its bucket, tagged with its batch and its place in the history; a scoring
    batch's ids must be hashed like the labels' (checked as the in-memory join did). Returns the rows read."""
    import pandas as pd
    import pyarrow as pa

    id_col, target = cfg.id_column, cfg.target
    target_type = files.schema.field(target).type
    label_head = pd.DataFrame({id_col: label_ids})
    seq = 0
    for source, manifest in enumerate(sources.batches):
        has_target = bool(manifest["has_target"])
        columns = [id_col, *cfg.features, *([target] if has_target else [])]
        checked = has_target
        for batch in iter_parquet_batches(
            uri_to_path(manifest["batch_uri"]), READ_BATCH_ROWS, columns=columns
        ):
            table = pa.Table.from_batches([batch]).select(columns)
            if not checked:
                head = table.column(id_col).drop_null().slice(0, SCHEME_CHECK_IDS).to_pylist()
                join_hashed_ids(pd.DataFrame({id_col: head}), label_head, id_col)
                checked = True
            if not has_target:
                table = table.append_column(target, pa.nulls(len(table), target_type))
            table = _tagged(table, files.schema, source, seq)
            files.append(table, _bucket_of(table.column(id_col), bounds))
            seq += len(table)
    return seq


def _bucket_rows(
    cfg: DatasetConfig, sources: _Sources, batch_rows: Any, label_rows: Any, built: StreamedSnapshot
) -> Any:
    """One bucket's snapshot rows: labels deduplicated (latest file wins), scoring rows joined to them, the
    latest row per id kept, null labels left out; the counts go to ``built``."""
    import numpy as np
    import pandas as pd

    id_col, target = cfg.id_column, cfg.target
    built.rows_read += len(batch_rows)
    has_target = np.array([bool(m["has_target"]) for m in sources.batches])
    labelled = batch_rows[has_target[batch_rows[SOURCE].to_numpy()]]
    scoring = batch_rows.drop(index=labelled.index).drop(columns=target)
    labelled = labelled.assign(_label_batch=None)
    if label_rows is not None and len(scoring):
        labels = label_rows.drop_duplicates(id_col, keep="last")  # rows are in label-file order already
        names = np.array([m["label_batch_id"] for m in sources.labels], dtype=object)
        labels = labels.assign(_label_batch=names[labels.pop(SOURCE).to_numpy()])
        joined = scoring.merge(labels, on=id_col, how="inner")
    else:
        joined = scoring.iloc[:0].assign(**{target: None, "_label_batch": None})
    built.rows_without_label += len(scoring) - len(joined)
    parts = [part for part in (labelled, joined) if len(part)] or [labelled]
    rows = pd.concat(parts, ignore_index=True).sort_values(SEQ, kind="stable")
    kept = rows.drop_duplicates(id_col, keep="last")
    built.duplicate_rows_dropped += len(rows) - len(kept)
    unlabelled = kept[target].isna()
    built.unlabelled_rows_excluded += int(unlabelled.sum())
    return kept[~unlabelled]


def build_streamed(cfg: DatasetConfig, settings: Settings | None, work: Path) -> StreamedSnapshot:
    """Build the snapshot's rows into ``work/snapshot.parquet`` in bounded memory (``work`` is a local scratch
    folder the caller removes), with their :func:`canonical_hash`; ``rows`` 0 means there is nothing to
    snapshot (see the counts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    contract = load_contract(cfg)
    sources = _sources(cfg, settings)
    columns = [cfg.id_column, *cfg.features, cfg.target]
    schema = arrow_schema(contract, columns)
    bounds = _boundaries(cfg, sources, schema.field(cfg.id_column).type)
    batch_files = _BucketFiles(
        work, "rows", schema.append(pa.field(SOURCE, pa.int32())).append(pa.field(SEQ, pa.int64()))
    )
    label_schema = [schema.field(cfg.id_column), schema.field(cfg.target), pa.field(SOURCE, pa.int32())]
    label_files = _BucketFiles(work, "labels", pa.schema(label_schema))
    try:
        label_ids = _partition_labels(cfg, sources, bounds, label_files)
        _partition_batches(cfg, sources, bounds, batch_files, label_ids)
    finally:
        label_files.close()
        batch_files.close()
    built = StreamedSnapshot(work / "snapshot.parquet", "", columns, label_files=len(sources.labels))
    header, writer = b"", None
    batch_sources: set[int] = set()
    label_batches: set[str] = set()
    spools = [open(work / f"hashes-{i}.u64", "wb") for i in range(len(columns))]
    try:
        for bucket in range(len(bounds) + 1):
            batch_rows = batch_files.read(bucket)
            if batch_rows is None:
                continue
            rows = _bucket_rows(cfg, sources, batch_rows, label_files.read(bucket), built)
            if rows.empty:
                continue
            batch_sources.update(int(s) for s in rows[SOURCE].unique())
            label_batches.update(rows["_label_batch"].dropna().unique().tolist())
            frame = canonicalise(cfg, rows, contract)
            header = header or _dtypes_header(frame)
            for spool, name in zip(spools, columns, strict=True):
                spool.write(_value_hashes(frame[name]))
            table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
            writer = writer or pq.ParquetWriter(built.data_path, table.schema)
            writer.write_table(table)
            built.rows += len(frame)
            del batch_rows, rows, frame, table
    finally:
        for spool in spools:
            spool.close()
        if writer is not None:
            writer.close()
    built.batch_ids = sorted(sources.batches[s]["batch_id"] for s in batch_sources)
    built.label_batch_ids = sorted(label_batches)
    if built.rows:
        built.snapshot_hash = _spooled_hash(header, built.rows, [spool.name for spool in spools])
    return built


def _spooled_hash(header: bytes, rows: int, spool_paths: list[str]) -> str:
    """:func:`canonical_hash` from the dtypes header, the row count and each column's spooled value hashes."""
    digest = hashlib.sha256()
    digest.update(header)
    digest.update(str(rows).encode())
    for spool_path in spool_paths:
        with open(spool_path, "rb") as spool:
            while chunk := spool.read(SPOOL_CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()
