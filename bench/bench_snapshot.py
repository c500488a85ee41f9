"""Snapshot build at scale (issue 30): peak RSS and seconds of ``build_snapshot`` on histories of 1M to 10M
accepted rows, streamed, against the in-memory build it replaced at a size that one fits.

The history is written straight into the data zones as ingestion leaves them (accepted parquet files and
their manifests, the contract's Arrow schema), so only the snapshot build is timed: files of ``--file-rows``
telco rows resampled with fresh ids and mild jitter (``bench_capacity.jitter_rows``), alternately a
labelled batch and a scoring batch followed by a label file for 90 % of its ids; every file re-lands 5 % of
the previous file's ids (the later row must win). The in-memory build is the committed one (``git show`` of
``IN_MEMORY_COMMIT``), run on the same files: both builds must give the same snapshot hash.

Each build runs in its own interpreter; its peak RSS is ``VmHWM`` (pandas and pyarrow imported before, so
the figure includes them, as a worker's would). One figure per line:

    snapshot_seconds.<rows>, snapshot_peak_rss_mb.<rows>, snapshot_rows.<rows> (kept), snapshot_batches.<rows>
    snapshot_in_memory_seconds.<rows>, snapshot_in_memory_peak_rss_mb.<rows>, snapshot_same_hash.<rows>
    snapshot_seconds_per_row_growth.<small>_to_<big> (1.0: linear time)

    nice -n 10 .venv/bin/python bench/bench_snapshot.py [--rows 1000000,3000000] [--in-memory-rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR / "include"), str(Path(__file__).resolve().parent)]

from bench_capacity import jitter_rows, label_rows, peak_mb  # noqa: E402

DATASET = "telco_churn"
IN_MEMORY_COMMIT = "e6fa4e2"  # the last commit whose build_snapshot held the whole history in memory
WRITE_CHUNK_ROWS = 100_000
RELANDED_SHARE = 0.05
LABELLED_SHARE = 0.9


def figure(name: str, value: Any) -> None:
    print(f"snapshot_{name} {value}", flush=True)


# --- the history -------------------------------------------------------------------------------------------


def write_accepted(cfg: Any, path: Path, frames: Any, columns: list[str]) -> int:
    """Write ``frames`` (chunks) as ingestion writes an accepted file; returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from driftloop.data.contract import arrow_schema, load_contract

    schema = arrow_schema(load_contract(cfg), columns)
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for frame in frames:
            writer.write_table(pa.Table.from_pandas(frame[columns], schema=schema, preserve_index=False))
            rows += len(frame)
    return rows


def write_history(cfg: Any, rows: int, file_rows: int, seed: int) -> None:
    """Accepted batch and label files with their manifests, ``rows`` batch rows in all."""
    import numpy as np

    from driftloop.core.state import StatePaths, path_to_uri
    from driftloop.data.sources import load_source_frame

    paths = StatePaths.for_dataset(cfg)
    paths.batches_dir.mkdir(parents=True, exist_ok=True)
    paths.labels_dir.mkdir(parents=True, exist_ok=True)
    base = load_source_frame(cfg)
    rng = np.random.default_rng(seed)
    features = [cfg.id_column, *cfg.features]
    relanded = int(file_rows * RELANDED_SHARE)
    clock = 0

    def manifest(folder: Path, name: str, extra: dict[str, Any]) -> None:
        nonlocal clock
        clock += 1
        stamp = f"2026-01-01T{clock // 3600:02d}:{clock // 60 % 60:02d}:{clock % 60:02d}+00:00"
        body = {"ingested_at": stamp, "rows_quarantined": 0, **extra}
        (folder / f"{name}.json").write_text(json.dumps(body))

    for index, first in enumerate(range(0, rows, file_rows)):
        count = min(file_rows, rows - first)
        first_id = max(0, first - index * relanded)  # the first ids re-land the previous file's last ones
        chunks = [
            jitter_rows(cfg, base, min(WRITE_CHUNK_ROWS, count - s), rng, "H", first_id + s)
            for s in range(0, count, WRITE_CHUNK_ROWS)
        ]
        name = f"b{index:04d}"
        labelled = index % 2 == 0
        path = paths.batches_dir / f"{name}.parquet"
        written = write_accepted(cfg, path, chunks, [*features, cfg.target] if labelled else features)
        manifest(
            paths.batches_dir,
            name,
            {
                "batch_id": name,
                "batch_uri": path_to_uri(path),
                "has_target": labelled,
                "rows_received": written,
                "rows_accepted": written,
            },
        )
        if not labelled:
            labels = [c.head(int(len(c) * LABELLED_SHARE)) for c in chunks]
            label_path = paths.labels_dir / f"l{index:04d}.parquet"
            label_rows_written = write_accepted(cfg, label_path, labels, [cfg.id_column, cfg.target])
            manifest(
                paths.labels_dir,
                f"l{index:04d}",
                {
                    "label_batch_id": f"l{index:04d}",
                    "labels_uri": path_to_uri(label_path),
                    "rows_received": label_rows_written,
                    "rows_accepted": label_rows_written,
                },
            )


# --- one build, in a fresh interpreter ---------------------------------------------------------------------


def in_memory_module() -> Any:
    """The committed in-memory ``driftloop.data.snapshots`` (``IN_MEMORY_COMMIT``), loaded under another
    name."""
    import importlib.util

    source = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), "show", f"{IN_MEMORY_COMMIT}:include/driftloop/data/snapshots.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="driftloop-bench-snapshot-")) / "snapshots_in_memory.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("snapshots_in_memory", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_build_here(path: str) -> int:
    """Child side: import the libraries, take the baseline, build, print one JSON line."""
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from driftloop.core.config import load_dataset_config
    from driftloop.data import snapshots

    cfg = load_dataset_config(DATASET)
    module = in_memory_module() if path == "in_memory" else snapshots
    baseline = peak_mb()
    started = time.perf_counter()
    result = module.build_snapshot(cfg)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb(), "baseline_mb": baseline, **result}))
    return 0


def spawn_build(path: str, log: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--build", path], capture_output=True, text=True, env=os.environ.copy()
    )
    with log.open("a") as handle:
        handle.write(f"=== {path}\n{out.stderr}\n{out.stdout}\n")
    if out.returncode != 0:
        raise SystemExit(f"{path} build failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --- the orchestrating parent ------------------------------------------------------------------------------


def remove_snapshots(cfg: Any) -> None:
    """Forget the built snapshot, so the next build writes it again (same hash, same keys)."""
    from driftloop.core.state import StatePaths

    shutil.rmtree(StatePaths.for_dataset(cfg).snapshots_dir, ignore_errors=True)


def orchestrate(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-snapshot-"))
    os.environ.update({"DRIFTLOOP_HOME": str(work / "home"), "DRIFTLOOP_DATASETS": DATASET})
    os.environ.pop("DRIFTLOOP_CONFIG_OVERRIDES", None)
    log = work / "builds.log"
    sizes = [int(n) for n in args.rows.split(",")]
    in_memory = {int(n) for n in args.in_memory_rows.split(",") if n}
    per_row: dict[int, float] = {}
    try:
        from driftloop.core.config import load_dataset_config

        for rows in sorted(set(sizes) | in_memory):
            os.environ["DRIFTLOOP_DATA_URI"] = str(work / f"data-{rows}")
            cfg = load_dataset_config(DATASET)
            started = time.perf_counter()
            write_history(cfg, rows, args.file_rows, seed=rows)
            tag = label_rows(rows)
            figure(f"history_write_seconds.{tag}", f"{time.perf_counter() - started:.1f}")
            streamed = None
            if rows in sizes:
                streamed = spawn_build("streamed", log)
                per_row[rows] = streamed["seconds"] / rows
                figure(f"seconds.{tag}", f"{streamed['seconds']:.1f}")
                figure(f"peak_rss_mb.{tag}", f"{streamed['peak_mb']:.0f}")
                figure(f"import_baseline_mb.{tag}", f"{streamed['baseline_mb']:.0f}")
                figure(f"rows.{tag}", streamed["rows"])
                figure(f"batches.{tag}", len(streamed["batch_ids"]))
            if rows in in_memory:
                remove_snapshots(cfg)
                old = spawn_build("in_memory", log)
                figure(f"in_memory_seconds.{tag}", f"{old['seconds']:.1f}")
                figure(f"in_memory_peak_rss_mb.{tag}", f"{old['peak_mb']:.0f}")
                if streamed is not None:
                    same = (
                        old["snapshot_hash"] == streamed["snapshot_hash"] and old["rows"] == streamed["rows"]
                    )
                    figure(f"same_hash.{tag}", str(same).lower())
            shutil.rmtree(work / f"data-{rows}", ignore_errors=True)
        if len(per_row) > 1:
            small, big = min(per_row), max(per_row)
            ratio = per_row[big] / per_row[small]
            figure(f"seconds_per_row_growth.{label_rows(small)}_to_{label_rows(big)}", f"{ratio:.2f}")
    finally:
        if args.keep:
            print(f"# kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", default="1000000,3000000", help="history sizes to build streamed")
    parser.add_argument("--in-memory-rows", default="1000000", help="sizes to build in memory too ('' none)")
    parser.add_argument("--file-rows", type=int, default=500_000, help="rows per accepted batch file")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    parser.add_argument("--build", choices=["streamed", "in_memory"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        return run_build_here(args.build)
    return orchestrate(args)


if __name__ == "__main__":
    raise SystemExit(main())
