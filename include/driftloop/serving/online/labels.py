"""Delayed labels: ``POST /labels`` into the labels landing zone, and the join of labels to served
predictions.

Ground truth reaches Driftloop two ways, both through the data contract: a file dropped into
``landing/labels/`` (as before), or ``POST /labels`` on the service, which checks the body and writes it as
one CSV file into the same landing zone atomically (a hidden temporary file renamed into place, or one PUT on
object storage), so ``data_pipeline`` validates, archives or quarantines it like any other label file. A label
names the entity by the dataset's id column; a prediction served without an id is labelled through its
``request_id`` (its entity id).

:func:`read_accepted_labels` and :func:`join_labels` give the A/B evaluation the labelled served rows.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths, uri_to_path
from driftloop.core.storage import StoragePath, is_file, list_manifests, read_parquet, write_bytes_atomic
from driftloop.serving.online.validation import (
    RequestError,
    coerce_column,
    coerce_ids,
    column_spec,
    extract_table,
)

LABEL_FORMATS = ("labels", "dataframe_records", "dataframe_split")
REQUEST_ID_KEY = "request_id"
FILE_PREFIX = "served-labels-"


def parse_labels(body: bytes, cfg: DatasetConfig, contract: Any, max_rows: int) -> list[tuple[str, Any]]:
    """``(entity id, label)`` pairs of a ``POST /labels`` body; a later pair for the same id wins.

    The body is ``{"labels": [{"<id column>": ..., "<target>": ...}, ...]}`` (``request_id`` may stand for the
    id column), or the same rows as ``dataframe_records`` / ``dataframe_split``.

    Raises:
        RequestError: 400 malformed body, 413 too many rows, 422 a missing column, id or label outside the
            contract.
    """
    names, columns, n_rows = extract_table(body, LABEL_FORMATS)
    if n_rows == 0:
        raise RequestError(422, "INVALID_PARAMETER_VALUE", "the request has no labels")
    if n_rows > max_rows:
        raise RequestError(
            413, "REQUEST_LIMIT_EXCEEDED", f"{n_rows} labels in one request; the limit is {max_rows}"
        )
    id_keys = [key for key in (cfg.id_column, REQUEST_ID_KEY) if key in columns]
    unexpected = [n for n in names if n not in (cfg.id_column, REQUEST_ID_KEY, cfg.target)]
    if len(id_keys) != 1 or cfg.target not in columns or unexpected:
        raise RequestError(
            422,
            "INVALID_PARAMETER_VALUE",
            f"each label needs exactly the columns {cfg.id_column!r} (or {REQUEST_ID_KEY!r}) and "
            f"{cfg.target!r}",
        )
    id_rule = contract.columns.get(cfg.id_column)
    max_length = id_rule.max_length if id_rule is not None and id_rule.max_length else 64
    ids = coerce_ids(columns[id_keys[0]], id_keys[0], max_length)
    values = coerce_column(column_spec(contract.columns[cfg.target]), columns[cfg.target]).tolist()
    return list(dict(zip(ids, values, strict=True)).items())


def label_file_bytes(pairs: list[tuple[str, Any]], cfg: DatasetConfig) -> bytes:
    """The CSV the landing zone receives: a header (id column, target), then one row per label."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([cfg.id_column, cfg.target])
    writer.writerows(pairs)
    return buffer.getvalue().encode("utf-8")


def write_label_file(content: bytes, landing_dir: StoragePath) -> StoragePath:
    """Write ``content`` into ``landing_dir`` atomically under a new unique name; returns the final path.

    Locally the temporary file is hidden and ends in ``.tmp``; on object storage the file is one PUT of a
    local temporary file. Either way ingestion never picks up a half-written file.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = landing_dir / f"{FILE_PREFIX}{stamp}-{uuid.uuid4().hex[:8]}.csv"
    write_bytes_atomic(final, content, fsync=True)
    return final


def read_accepted_labels(cfg: DatasetConfig, settings: Settings | None = None) -> Any:
    """Accepted labels (after the contract) as a Series indexed by entity id: the dataset's labels as text, or
    floats (regression).

    Files are read in ingestion order and a later label of the same id wins (a correction).
    """
    import pandas as pd

    from driftloop.core.task_types import is_classification

    paths = StatePaths.for_dataset(cfg, settings)
    frames = []
    for manifest in list_manifests(paths.labels_dir):
        if not manifest.get("labels_uri"):
            continue
        path = uri_to_path(manifest["labels_uri"])
        if is_file(path):
            frames.append(read_parquet(path, columns=[cfg.id_column, cfg.target]))
    if not frames:
        return pd.Series(dtype=object)
    labels = pd.concat(frames, ignore_index=True).dropna(subset=[cfg.target])
    labels = labels.drop_duplicates(cfg.id_column, keep="last")
    values = labels[cfg.target].astype(str) if is_classification(cfg) else labels[cfg.target].astype(float)
    return values.set_axis(labels[cfg.id_column].astype(str))


def join_labels(log_df: Any, labels: Any) -> Any:
    """The log rows whose entity has a label, with the label in a ``label`` column."""
    matched = log_df[log_df["entity_id"].isin(labels.index)].copy()
    matched["label"] = labels.reindex(matched["entity_id"]).to_numpy()
    return matched
