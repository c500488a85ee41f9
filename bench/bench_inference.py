"""Batch inference: throughput against a bare ``pyfunc.predict``, scoring with reasons by the replay against
the pipeline, and peak memory against batch size.

1. Trains and registers a small champion (lr, 2 folds) on the telco data in a throw-away SQLite MLflow store.
2. Throughput: ``inference.score_file`` (parquet in → chunked predict_proba → parquet out, with ids and model
   metadata) against a bare ``mlflow.pyfunc`` ``predict`` of the same rows already in memory, same script.
   Target: overhead ratio <= 1.3.
3. Scoring with the top-3 reasons per row (the training run's reference rows as background), for each family
   of ``BENCH_INFERENCE_MODELS`` (default ``lr,rf``, each trained as in 1): ``score_file(use_replay=False)``
   (the logged pipeline for the predictions and again, through the explainer, for the reasons: the path
   before issue 30) against ``score_file()`` (the numpy replay, verified on the first chunk, one transform
   shared by predict and reasons), same rows, same run; both outputs are compared (predictions, reason
   features and values equal; scores and contributions within 1e-9). Target: 1M rows in <= 30 s.
4. Memory: peak RSS of scoring ``BENCH_MEMORY_ROWS`` (default 1,000,000; 0 skips it) rows against a tenth of
   them, each in a fresh process. Bounded means the ratio stays near 1 (chunked reads), not near 10.

Prints one figure per line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
ROWS = int(os.environ.get("BENCH_INFERENCE_ROWS", "200000"))
BIG_ROWS = int(os.environ.get("BENCH_MEMORY_ROWS", "1000000"))
SMALL_ROWS = BIG_ROWS // 10
FAST = {"training": {"models": ["lr"], "folds": 2, "tune_iter": 0, "reference_rows": 1000}}
REASON_MODELS = [m for m in os.environ.get("BENCH_INFERENCE_MODELS", "lr,rf").split(",") if m]

MEMORY_PROBE = """
import json, resource, sys
from pathlib import Path
from driftloop.core.config import load_dataset_config
from driftloop.serving.batch_scoring import read_version_decision, resolve_model, score_file
from driftloop.core.registry import load_model
cfg = load_dataset_config("telco_churn")
info = resolve_model(cfg)
model = load_model(info["model_uri"])
decision = read_version_decision(cfg, info, None)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = score_file(model, info, cfg, Path(sys.argv[1]), Path(sys.argv[2]), decision)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
summary = {"rows": result["rows"], "peak_mb": peak / 1024, "before_mb": base / 1024}
print(json.dumps({**summary, "seconds": result["seconds"]}))
"""


def write_rows(frame, cfg, rows: int, path: Path, chunk: int = 100_000) -> None:
    """Write ``rows`` resampled rows (fresh unique ids) to ``path`` in chunks, so generation memory is
    bounded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    written = 0
    while written < rows:
        n = min(chunk, rows - written)
        part = frame.sample(n=n, replace=True, random_state=written).reset_index(drop=True)
        part[cfg.id_column] = [f"B-{written + i:08d}" for i in range(n)]
        table = pa.Table.from_pandas(part[[cfg.id_column, *cfg.features]], preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        written += n
    writer.close()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-inference-"))
    os.environ.update(
        {
            "DRIFTLOOP_HOME": str(work / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "DRIFTLOOP_CONFIG_OVERRIDES": json.dumps(FAST),
        }
    )
    import mlflow.pyfunc
    import pandas as pd

    from driftloop.core.config import load_dataset_config
    from driftloop.core.registry import load_model
    from driftloop.data import ingest, simulate, snapshots
    from driftloop.data.sources import load_source_frame
    from driftloop.governance.promotion import promote_model
    from driftloop.serving.batch_scoring import read_version_decision, resolve_model, score_file
    from driftloop.training import train

    cfg = load_dataset_config("telco_churn")
    simulate.simulate_reference(cfg)
    ingest.ingest_batches(cfg)
    snapshot = snapshots.build_snapshot(cfg)
    trained = train.train_model(cfg, snapshot["snapshot_uri"], trigger={"reason": "manual"})
    promote_model(cfg, trained["model_version"])
    info = resolve_model(cfg)
    model = load_model(info["model_uri"])
    decision = read_version_decision(cfg, info, None)
    pyfunc = mlflow.pyfunc.load_model(info["model_uri"])

    frame = load_source_frame(cfg)
    batch_path = work / "batch.parquet"
    write_rows(frame, cfg, ROWS, batch_path)
    in_memory = pd.read_parquet(batch_path)[cfg.features]

    # First-call costs out of both timings.
    score_file(model, info, cfg, batch_path, work / "warmup.parquet", decision)
    t0 = time.perf_counter()
    pyfunc.predict(in_memory)
    bare_s = time.perf_counter() - t0
    result = score_file(model, info, cfg, batch_path, work / "predictions.parquet", decision)
    ours_s = result["seconds"]
    print(f"inference_rows {ROWS}")
    print(f"inference_bare_pyfunc_rows_per_s {ROWS / bare_s:.0f}")
    print(f"inference_driftloop_rows_per_s {ROWS / ours_s:.0f}")
    print(f"inference_overhead_ratio {ours_s / bare_s:.2f}")

    for family in REASON_MODELS:
        measure_reasons(family, snapshot["snapshot_uri"], batch_path, work)
    if not BIG_ROWS:
        return 0
    peaks = {}
    for rows in (SMALL_ROWS, BIG_ROWS):
        path = work / f"mem_{rows}.parquet"
        write_rows(frame, cfg, rows, path)
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(path), str(work / f"mem_{rows}_pred.parquet")],
            capture_output=True, text=True, env=os.environ.copy(),
        )  # fmt: skip
        if out.returncode != 0:
            raise SystemExit(out.stderr[-3000:])
        peaks[rows] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"inference_peak_rss_mb.rows_{rows} {peaks[rows]['peak_mb']:.0f}")
    print(
        f"inference_peak_rss_ratio_{BIG_ROWS}_vs_{SMALL_ROWS} "
        f"{peaks[BIG_ROWS]['peak_mb'] / peaks[SMALL_ROWS]['peak_mb']:.2f}"
    )
    print(f"inference_rows_per_s.rows_{BIG_ROWS} {BIG_ROWS / peaks[BIG_ROWS]['seconds']:.0f}")
    return 0


def measure_reasons(family: str, snapshot_uri: str, batch_path: Path, work: Path) -> None:
    """Rows/s of scoring with top-k reasons by the pipeline and by the replay, and their outputs compared."""
    import numpy as np
    import pandas as pd

    from driftloop.core.config import load_dataset_config
    from driftloop.core.registry import load_model
    from driftloop.serving.batch_scoring import read_version_decision, reference_features, score_file
    from driftloop.training import train

    os.environ["DRIFTLOOP_CONFIG_OVERRIDES"] = json.dumps(
        {"training": {**FAST["training"], "models": [family]}}
    )
    cfg = load_dataset_config("telco_churn")
    trained: dict[str, Any] = dict(train.train_model(cfg, snapshot_uri, trigger={"reason": "manual"}))
    info = {k: str(trained[k]) for k in ("model_name", "model_version", "model_uri")}
    info["model_run_id"] = trained["run_id"]
    model = load_model(info["model_uri"])
    decision = read_version_decision(cfg, info, None)
    reference = reference_features(cfg, info["model_run_id"], None)
    outputs, seconds = {}, {}
    for path, use_replay in (("pipeline", False), ("replay", True)):
        out = work / f"reasons_{family}_{path}.parquet"
        result = score_file(model, info, cfg, batch_path, out, decision, reference, use_replay=use_replay)
        outputs[path], seconds[path] = pd.read_parquet(out), result["seconds"]
        print(f"inference_reasons_rows_per_s.{family}.{path} {ROWS / result['seconds']:.0f}")
        print(f"inference_reasons_method.{family}.{path} {result['explain_method']}")
    print(f"inference_reasons_speedup.{family} {seconds['pipeline'] / seconds['replay']:.2f}")
    before, after = outputs["pipeline"], outputs["replay"]
    differing = [
        c
        for c in before.columns
        if c != "scored_at"
        and not (
            np.allclose(after[c], before[c], rtol=1e-9, atol=1e-12, equal_nan=True)
            if before[c].dtype.kind == "f"
            else after[c].equals(before[c])
        )
    ]
    print(f"inference_reasons_same_outputs.{family} {not differing} {' '.join(differing)}".rstrip())


if __name__ == "__main__":
    sys.exit(main())
