"""Data stage: landing zone → validated batches and labels → immutable, content-addressed training snapshots.

Every file in the landing zone ends in exactly one place: its accepted rows in ``batches/`` (or ``labels/``), its
rejected rows in ``quarantine/<batch_id>/rows.parquet`` with a per-row ``_reason``, and the original file in
``archive/<batch_id>/`` (accepted) or ``quarantine/<batch_id>/`` (rejected whole, with ``reason.json``).
A manifest is written last, so it marks a batch as done; reruns find it and never write a batch twice.
See docs/architecture.md for the layout and manifest fields.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftloop.config import DatasetConfig, Settings, StatePaths
from driftloop.contract import Contract, load_contract, sha256_file, validate_file

SNAPSHOT_TAG = "driftloop.snapshot_hash"
LANDING_SUFFIXES = (".csv", ".parquet")
# Files still being written by an uploader (hidden files too): left in the landing zone for the next run.
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", ".uploading")
# Label files live beside batch files in archive/ and quarantine/, under this reserved sub-folder.
LABELS_NAMESPACE = "labels"


class BatchQuarantined(Exception):
    """One or more landed files were quarantined; raised after the good files were processed."""


class NoLabelledData(RuntimeError):
    """There are no accepted labelled rows to build a training snapshot from."""


# --------------------------------------------------------------------------------------------------------------
# Small file helpers


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON atomically (temp file + rename), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    """Parse a JSON file."""
    return json.loads(Path(path).read_text())


def sanitize_batch_id(stem: str) -> str:
    """A file stem made safe as a folder and file name: ``[A-Za-z0-9._-]``, at most 120 characters."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "batch"
    cleaned = cleaned[:120]
    return f"{cleaned}_" if cleaned == LABELS_NAMESPACE else cleaned


def _move(src: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    shutil.move(str(src), str(dest))
    return dest


def _landed_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and not p.name.lower().endswith(IN_PROGRESS_SUFFIXES))


def _arrow_schema(contract: Contract, columns: list[str]) -> Any:
    import pyarrow as pa

    fields = []
    for name in columns:
        rule = contract.columns[name]
        if rule.dtype == "string" or rule.pii == "hash":
            fields.append(pa.field(name, pa.string()))
        elif rule.dtype == "int64" and not rule.nullable:
            fields.append(pa.field(name, pa.int64()))
        else:
            fields.append(pa.field(name, pa.float64()))
    return pa.schema(fields)


class _ParquetSink:
    """Streams DataFrame chunks into one parquet file under a temporary name; ``commit`` renames it into place."""

    def __init__(self, path: Path, schema_for: Any) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.schema_for = schema_for
        self.writer: Any = None
        self.rows = 0

    def __call__(self, frame: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, self.schema_for(frame))
        self.writer.write_table(pa.Table.from_pandas(frame, schema=self.writer.schema, preserve_index=False))
        self.rows += len(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def commit(self) -> bool:
        self.close()
        if self.rows:
            os.replace(self.tmp, self.path)
        return bool(self.rows)

    def discard(self) -> None:
        self.close()
        self.tmp.unlink(missing_ok=True)


def _rejected_schema(frame: Any) -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(c, pa.int64() if c == "_row" else pa.string()) for c in frame.columns])


# --------------------------------------------------------------------------------------------------------------
# Ingestion


def list_manifests(folder: Path) -> list[dict[str, Any]]:
    """Manifests (``*.json``) in ``folder``, oldest ingestion first."""
    if not folder.is_dir():
        return []
    manifests = [read_json(p) for p in folder.glob("*.json") if not p.name.startswith(".")]
    return sorted(manifests, key=lambda m: (m.get("ingested_at") or m.get("created_at") or "", m.get("batch_id", "")))


def list_batches(cfg: DatasetConfig, settings: Settings | None = None, has_target: bool | None = None) -> list[dict]:
    """Manifests of accepted feature batches, oldest first; ``has_target`` filters scoring/labelled batches."""
    manifests = list_manifests(StatePaths.for_dataset(cfg, settings).batches_dir)
    return [m for m in manifests if has_target is None or bool(m["has_target"]) == has_target]


def _quarantine_whole(
    file: Path, qdir: Path, batch_id: str, reason_code: str, message: str, rows: int, **extra: Any
) -> dict[str, Any]:
    """Move ``file`` into ``qdir`` with a ``reason.json`` and return the quarantine entry."""
    qdir.mkdir(parents=True, exist_ok=True)
    dest = _move(file, qdir)
    reason = {
        "batch_id": batch_id, "source_file": file.name, "reason_code": reason_code, "message": message,
        "rows_received": rows, "rows_accepted": 0, "rows_quarantined": rows, "file_uri": str(dest),
        "quarantined_at": _now(), **extra,
    }
    write_json(qdir / "reason.json", reason)
    return {"batch_id": batch_id, "reason_code": reason_code, "message": message, "quarantine_dir": str(qdir)}


def _set_aside_other_quarantine(qdir: Path, sha: str) -> None:
    """Keep an earlier, different file's quarantine when a new file arrives under the same batch id.

    A partition left by an earlier attempt of this very file (same sha256) is simply overwritten later; one from
    another file is renamed to ``<batch_id>__superseded-<sha12>`` so its evidence is never deleted.
    """
    reason_path = qdir / "reason.json"
    if not reason_path.is_file():
        return
    earlier = read_json(reason_path).get("sha256") or ""
    if earlier and earlier != sha:
        target = qdir.with_name(f"{qdir.name}__superseded-{earlier[:12]}")
        if target.exists():
            shutil.rmtree(target)
        qdir.rename(target)


def _ingest_file(
    cfg: DatasetConfig, contract: Contract, paths: StatePaths, file: Path, kind: str,
    known: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Ingest one landed file; returns ``{"status": "accepted"|"quarantined", ...}``. Never raises for bad data."""
    labels = kind == "labels"
    out_dir = paths.labels_dir if labels else paths.batches_dir
    archive_root = paths.archive_dir / LABELS_NAMESPACE if labels else paths.archive_dir
    quarantine_root = paths.quarantine_dir / LABELS_NAMESPACE if labels else paths.quarantine_dir
    batch_id = sanitize_batch_id(file.stem)
    sha = sha256_file(file)
    if file.suffix.lower() not in LANDING_SUFFIXES:
        _set_aside_other_quarantine(quarantine_root / batch_id, sha)
        entry = _quarantine_whole(file, quarantine_root / batch_id, batch_id, "unsupported_file_type",
                                  f"{file.name}: extension {file.suffix!r} is not .csv or .parquet", 0, sha256=sha)
        return {"status": "quarantined", **entry}
    same_id = known.get(batch_id)
    if same_id is not None:
        archived = archive_root / batch_id / file.name
        if same_id["sha256"] == sha and not archived.exists() and same_id.get("original_archived", True):
            # A previous attempt wrote the manifest but crashed before archiving: finish it, write nothing new.
            _move(file, archive_root / batch_id)
            return {"status": "accepted", "batch_id": batch_id, "manifest": same_id, "recovered": True}
        code = "replayed_batch" if same_id["sha256"] == sha else "batch_id_conflict"
        qid = f"{batch_id}__{'replay' if code == 'replayed_batch' else 'conflict'}-{sha[:12]}"
        message = (f"{file.name} has the same bytes as batch {batch_id!r} ingested at {same_id['ingested_at']}"
                   if code == "replayed_batch" else
                   f"{file.name} differs from the already ingested batch {batch_id!r} (sha256 {sha[:12]} vs "
                   f"{same_id['sha256'][:12]}); rename it to ingest it as a new batch")
        entry = _quarantine_whole(file, quarantine_root / qid, qid, code, message, 0, sha256=sha,
                                  original_batch_id=batch_id)
        return {"status": "quarantined", **entry}
    for other in known.values():
        if other["sha256"] == sha:
            message = f"{file.name} has the same bytes as batch {other['batch_id']!r} ingested at {other['ingested_at']}"
            entry = _quarantine_whole(file, quarantine_root / batch_id, batch_id, "replayed_batch", message, 0,
                                      sha256=sha, original_batch_id=other["batch_id"])
            return {"status": "quarantined", **entry}

    qdir = quarantine_root / batch_id
    _set_aside_other_quarantine(qdir, sha)
    data_path = out_dir / f"{batch_id}.parquet"

    def schema_for(frame: Any) -> Any:
        return _arrow_schema(contract, list(frame.columns))

    accepted_sink: _ParquetSink = _ParquetSink(data_path, schema_for)
    rejected_sink = _ParquetSink(qdir / "rows.parquet", _rejected_schema)
    try:
        report = validate_file(cfg, file, kind=kind, contract=contract, chunk_rows=cfg.inference.chunk_rows,
                               on_accepted=accepted_sink, on_rejected=rejected_sink)
    except BaseException:
        accepted_sink.discard()
        rejected_sink.discard()
        raise
    if not report["ok"]:
        accepted_sink.discard()
        has_rows = rejected_sink.commit()
        entry = _quarantine_whole(
            file, qdir, batch_id, report["reason_code"], report["message"], report["rows_received"], sha256=sha,
            kind=kind, reason_counts=report["reason_counts"],
            rejected_rows_uri=str(qdir / "rows.parquet") if has_rows else None)
        return {"status": "quarantined", **entry}
    accepted_sink.commit()
    has_rejected = rejected_sink.commit()
    if has_rejected:
        write_json(qdir / "reason.json", {
            "batch_id": batch_id, "source_file": file.name, "reason_code": "rejected_rows",
            "message": f"{report['rows_quarantined']} of {report['rows_received']} rows fail the contract",
            "rows_received": report["rows_received"], "rows_accepted": report["rows_accepted"],
            "rows_quarantined": report["rows_quarantined"], "reason_counts": report["reason_counts"],
            "rejected_rows_uri": str(qdir / "rows.parquet"), "sha256": sha, "kind": kind, "quarantined_at": _now(),
        })
    elif qdir.exists():
        shutil.rmtree(qdir)  # stale partition from an earlier attempt of this very file
    manifest = {
        "batch_id": batch_id, "source_file": file.name, "sha256": sha, "kind": kind,
        "rows_received": report["rows_received"], "rows_accepted": report["rows_accepted"],
        "rows_quarantined": report["rows_quarantined"], "reason_counts": report["reason_counts"],
        "quarantine_uri": str(qdir / "rows.parquet") if has_rejected else None,
        "ingested_at": _now(), "contract": contract.path,
    }
    if labels:
        manifest.update(label_batch_id=batch_id, labels_uri=str(data_path))
    else:
        manifest.update(has_target=bool(report["has_label"]), batch_uri=str(data_path))
    if not report["rows_accepted"]:
        manifest["batch_uri" if not labels else "labels_uri"] = None
    pii = [c for c in report["columns"] if c in contract.columns and contract.columns[c].pii]
    manifest["original_archived"] = not pii
    if pii:
        manifest["original_removed_reason"] = f"the original holds PII columns {pii}; only treated rows are kept"
    write_json(out_dir / f"{batch_id}.json", manifest)
    if pii:
        file.unlink()
    else:
        _move(file, archive_root / batch_id)
    return {"status": "accepted", "batch_id": batch_id, "manifest": manifest}


def _ingest_folder(cfg: DatasetConfig, settings: Settings | None, kind: str) -> dict[str, Any]:
    paths = StatePaths.for_dataset(cfg, settings)
    contract = load_contract(cfg)
    landing = paths.labels_landing_dir if kind == "labels" else paths.landing_dir
    out_dir = paths.labels_dir if kind == "labels" else paths.batches_dir
    known = {m["batch_id"]: m for m in list_manifests(out_dir)}
    result: dict[str, Any] = {"accepted": [], "quarantined": [], "rows_received": 0, "rows_accepted": 0,
                              "rows_quarantined": 0}
    if kind == "batch":
        result.update(scoring_batch_ids=[], labelled_batch_ids=[])
    for file in _landed_files(landing):
        outcome = _ingest_file(cfg, contract, paths, file, kind, known)
        if outcome["status"] == "quarantined":
            result["quarantined"].append({k: outcome[k] for k in ("batch_id", "reason_code", "message")})
            reason = read_json(Path(outcome["quarantine_dir"]) / "reason.json")
            result["rows_received"] += reason["rows_received"]
            result["rows_quarantined"] += reason["rows_quarantined"]
            continue
        manifest = outcome["manifest"]
        known[manifest["batch_id"]] = manifest
        result["accepted"].append(manifest["batch_id"])
        for key in ("rows_received", "rows_accepted", "rows_quarantined"):
            result[key] += manifest[key] if not outcome.get("recovered") else 0
        if kind == "batch" and manifest["rows_accepted"]:
            bucket = "labelled_batch_ids" if manifest["has_target"] else "scoring_batch_ids"
            result[bucket].append(manifest["batch_id"])
    return result


def ingest_batches(cfg: DatasetConfig, settings: Settings | None = None) -> dict[str, Any]:
    """Validate every landed feature batch (name order), store good rows, quarantine the rest.

    Bad files never raise here, so one bad file cannot block the others; call :func:`raise_for_quarantine`
    afterwards to fail the run with the reasons.

    Args:
        cfg: Dataset config.
        settings: Process settings (default: from the environment).

    Returns:
        ``{"accepted": [batch_id], "quarantined": [{"batch_id", "reason_code", "message"}],
        "scoring_batch_ids": [...], "labelled_batch_ids": [...], "rows_received", "rows_accepted",
        "rows_quarantined"}``.

    Raises:
        ContractError: The dataset has no valid contract (or hashes PII without a salt).
    """
    return _ingest_folder(cfg, settings, "batch")


def ingest_labels(cfg: DatasetConfig, settings: Settings | None = None) -> dict[str, Any]:
    """Validate every landed label file (id + target) into ``labels/``, quarantining bad files and rows.

    Returns:
        ``{"accepted": [label_batch_id], "quarantined": [{"batch_id", "reason_code", "message"}],
        "rows_received", "rows_accepted", "rows_quarantined"}``.
    """
    return _ingest_folder(cfg, settings, "labels")


def raise_for_quarantine(*results: dict[str, Any]) -> None:
    """Raise :class:`BatchQuarantined` naming every quarantined file and its reason, if there is any.

    Args:
        *results: Results of :func:`ingest_batches` / :func:`ingest_labels`.

    Raises:
        BatchQuarantined: At least one file was quarantined whole.
    """
    entries = [q for result in results for q in (result or {}).get("quarantined", [])]
    if not entries:
        return
    accepted = sum(len((r or {}).get("accepted", [])) for r in results)
    lines = [f"{len(entries)} landed file(s) quarantined ({accepted} accepted and processed):"]
    lines += [f"  - {q['batch_id']}: {q['reason_code']}: {q['message']}" for q in entries]
    lines.append("Inspect quarantine/<batch_id>/reason.json under the dataset's state folder; fix the file and "
                 "drop it into the landing zone again under a new name.")
    raise BatchQuarantined("\n".join(lines))


# --------------------------------------------------------------------------------------------------------------
# Snapshots


def canonical_hash(frame: Any) -> str:
    """sha256 over a canonical frame: column names and dtypes, then each column's values.

    Values are hashed with ``pandas.util.hash_pandas_object`` (fixed key, so stable across processes).
    """
    import hashlib

    import pandas as pd

    digest = hashlib.sha256()
    digest.update(json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(str(len(frame)).encode())
    for name in frame.columns:
        digest.update(pd.util.hash_pandas_object(frame[name], index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _read_parquet(uri: str, columns: list[str] | None = None) -> Any:
    import pandas as pd

    return pd.read_parquet(uri, columns=columns)


def build_snapshot(cfg: DatasetConfig, settings: Settings | None = None) -> dict[str, Any]:
    """Build the training snapshot from every accepted labelled row; content-addressed and written once.

    Rows are those of labelled batches plus rows of scoring batches whose id has an accepted label (the latest
    label per id wins; the latest batch wins for an id seen in several batches). The frame is canonicalised (id +
    features + target, sorted by id, contract dtypes) and hashed, so the same data always gives the same snapshot.

    Returns:
        ``{"snapshot_hash", "snapshot_uri", "rows", "created", "batch_ids", "label_batch_ids"}``; ``created`` is
        False when a snapshot with this content already exists (replay or no new data).

    Raises:
        NoLabelledData: No accepted labelled rows exist yet.
    """
    import pandas as pd

    paths = StatePaths.for_dataset(cfg, settings)
    contract = load_contract(cfg)
    id_col, target = cfg.id_column, cfg.target
    feature_cols = [id_col, *cfg.features]
    parts = []
    label_frames = []
    for order, label_manifest in enumerate(list_manifests(paths.labels_dir)):
        if label_manifest.get("labels_uri"):
            frame = _read_parquet(label_manifest["labels_uri"])
            frame["_label_batch"] = label_manifest["label_batch_id"]
            frame["_label_order"] = order
            label_frames.append(frame)
    labels = (pd.concat(label_frames, ignore_index=True).sort_values("_label_order", kind="stable")
              .drop_duplicates(id_col, keep="last").drop(columns="_label_order")
              if label_frames else pd.DataFrame(columns=[id_col, target, "_label_batch"]))
    for manifest in list_batches(cfg, settings):
        if not manifest.get("batch_uri"):
            continue
        if manifest["has_target"]:
            frame = _read_parquet(manifest["batch_uri"], [*feature_cols, target])
            frame["_label_batch"] = None
        else:
            frame = _read_parquet(manifest["batch_uri"], feature_cols).merge(labels, on=id_col, how="inner")
        if len(frame):
            frame["_batch"] = manifest["batch_id"]
            parts.append(frame)
    if not parts:
        raise NoLabelledData(
            f"{cfg.name}: no accepted labelled rows ({len(list_batches(cfg, settings))} batch(es), "
            f"{len(label_frames)} label file(s) accepted); land a batch with the {target!r} column or labels first"
        )
    rows = pd.concat(parts, ignore_index=True).drop_duplicates(id_col, keep="last")
    rows = rows.sort_values(id_col, kind="stable").reset_index(drop=True)
    batch_ids = sorted(rows["_batch"].unique().tolist())
    label_batch_ids = sorted(rows["_label_batch"].dropna().unique().tolist())
    snapshot = rows[[*feature_cols, target]].copy()
    for name in snapshot.columns:
        schema_type = _arrow_schema(contract, [name]).field(name).type
        snapshot[name] = snapshot[name].astype("int64" if str(schema_type) == "int64" else
                                               "float64" if str(schema_type) == "double" else object)
    snapshot_hash = canonical_hash(snapshot)
    data_path = paths.snapshots_dir / f"{snapshot_hash}.parquet"
    manifest_path = paths.snapshots_dir / f"{snapshot_hash}.json"
    created = not manifest_path.exists()
    if created:
        paths.snapshots_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_path.with_name(f".{data_path.name}.{os.getpid()}.tmp")
        snapshot.to_parquet(tmp, index=False, schema=_arrow_schema(contract, list(snapshot.columns)))
        os.replace(tmp, data_path)
        write_json(manifest_path, {
            "snapshot_hash": snapshot_hash, "snapshot_uri": str(data_path), "rows": int(len(snapshot)),
            "batch_ids": batch_ids, "label_batch_ids": label_batch_ids, "created_at": _now(),
            "columns": list(snapshot.columns), "target": target, "id_column": id_col,
        })
    return {"snapshot_hash": snapshot_hash, "snapshot_uri": str(data_path), "rows": int(len(snapshot)),
            "created": created, "batch_ids": batch_ids, "label_batch_ids": label_batch_ids}


def read_snapshot_manifest(cfg: DatasetConfig, snapshot_hash: str, settings: Settings | None = None) -> dict:
    """The manifest of snapshot ``snapshot_hash``.

    Raises:
        FileNotFoundError: No such snapshot.
    """
    path = StatePaths.for_dataset(cfg, settings).snapshots_dir / f"{snapshot_hash}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{cfg.name}: no snapshot {snapshot_hash} ({path})")
    return read_json(path)


def latest_snapshot(cfg: DatasetConfig, settings: Settings | None = None) -> dict[str, Any] | None:
    """Manifest of the most recently created snapshot, or None when there is none."""
    manifests = list_manifests(StatePaths.for_dataset(cfg, settings).snapshots_dir)
    return manifests[-1] if manifests else None


def record_snapshot(cfg: DatasetConfig, snapshot_hash: str, settings: Settings | None = None) -> dict[str, Any]:
    """Log the snapshot to MLflow once: a data run keyed by ``driftloop.snapshot_hash`` with profile and input.

    A rerun finds the finished run and returns it; an unfinished one (crashed attempt) is completed.

    Returns:
        ``{"data_run_id", "snapshot_hash", "snapshot_uri", "rows", "reused", "profile_sampled"}``.
    """
    import mlflow

    from driftloop import profiling, tracking

    settings = settings or Settings.from_env()
    manifest = read_snapshot_manifest(cfg, snapshot_hash, settings)
    client = tracking.get_client(settings)
    experiment = cfg.experiment_name("data")
    key = {SNAPSHOT_TAG: snapshot_hash}
    existing = tracking.find_finished_run(client, experiment, key)
    if existing is not None:
        return {"data_run_id": existing.info.run_id, "snapshot_hash": snapshot_hash,
                "snapshot_uri": manifest["snapshot_uri"], "rows": manifest["rows"], "reused": True,
                "profile_sampled": existing.data.tags.get("driftloop.profile_sampled") == "true"}
    frame = _read_parquet(manifest["snapshot_uri"])
    profile = profiling.profile_snapshot(cfg, snapshot_hash, settings=settings, frame=frame)
    balance = frame[cfg.target].astype(str).value_counts(normalize=True).sort_index()
    with tracking.keyed_run(client, experiment, key, run_name=f"snapshot-{snapshot_hash[:12]}") as run:
        mlflow.set_tags({
            "driftloop.snapshot_uri": manifest["snapshot_uri"],
            "driftloop.dataset": cfg.name,
            "driftloop.batch_count": str(len(manifest["batch_ids"])),
            "driftloop.profile_sampled": str(profile["sampled"]).lower(),
            "driftloop.profile_html": ("timed_out" if profile["timed_out"] else
                                       "logged" if profile["profile_path"] else "off"),
        })
        mlflow.log_params({"rows": manifest["rows"], "batches": len(manifest["batch_ids"]),
                           "label_batches": len(manifest["label_batch_ids"]), "columns": frame.shape[1]})
        paths = StatePaths.for_dataset(cfg, settings)
        sources = [*(paths.batches_dir / f"{b}.json" for b in manifest["batch_ids"]),
                   *(paths.labels_dir / f"{b}.json" for b in manifest["label_batch_ids"])]
        source_manifests = [read_json(p) for p in sources if p.is_file()]
        metrics = {"rows": float(manifest["rows"]),
                   "source_rows_received": float(sum(m["rows_received"] for m in source_manifests)),
                   "source_rows_quarantined": float(sum(m["rows_quarantined"] for m in source_manifests))}
        metrics.update({f"class_share.{_metric_key(k)}": float(v) for k, v in balance.items()})
        metrics["positive_rate"] = float(balance.get(cfg.positive_label, 0.0))
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"batch_ids": manifest["batch_ids"], "label_batch_ids": manifest["label_batch_ids"]},
                        "lineage/batches.json")
        mlflow.log_dict(manifest, "lineage/snapshot_manifest.json")
        dataset = mlflow.data.from_pandas(frame, source=manifest["snapshot_uri"], targets=cfg.target,
                                          name=f"{cfg.name}-{snapshot_hash[:12]}")
        mlflow.log_input(dataset, context="training")
        if profile.get("profile_path"):
            mlflow.log_artifact(profile["profile_path"], "profile")
        mlflow.log_artifact(profile["summary_path"], "profile")
        run_id = run.info.run_id
    return {"data_run_id": run_id, "snapshot_hash": snapshot_hash, "snapshot_uri": manifest["snapshot_uri"],
            "rows": manifest["rows"], "reused": False, "profile_sampled": profile["sampled"]}


def _metric_key(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", str(value)) or "empty"


# --------------------------------------------------------------------------------------------------------------
# CLI


def _cmd_ingest(args: argparse.Namespace) -> int:
    from driftloop.cli import print_result
    from driftloop.config import load_dataset_config

    cfg = load_dataset_config(args.dataset)
    batches = ingest_batches(cfg)
    labels = ingest_labels(cfg)
    result: dict[str, Any] = {"batches": batches, "labels": labels}
    try:
        result["snapshot"] = build_snapshot(cfg)
        if args.record:
            result["data_run"] = record_snapshot(cfg, result["snapshot"]["snapshot_hash"])
    except NoLabelledData as exc:
        result["snapshot"] = {"error": str(exc)}
    print_result(result)
    try:
        raise_for_quarantine(batches, labels)
    except BatchQuarantined as exc:
        print(exc)
        return 1
    return 0


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop ingest``."""
    ingest = subparsers.add_parser("ingest", help="ingest landed batches and labels, build the training snapshot")
    ingest.add_argument("--dataset", default=argparse.SUPPRESS, help="dataset config name")
    ingest.add_argument("--record", action="store_true", help="also log the snapshot to MLflow (data run)")
    ingest.set_defaults(func=_cmd_ingest)
