"""Data capacity: the closed loop's stages on a 200,000-row training snapshot and 1,000,000-row scoring
batches.

Runs the package functions the DAG tasks call, on the default dataset (telco_churn) with its shipped config,
against a private SQLite MLflow store and ``DRIFTLOOP_HOME`` in a temp folder (deleted at the end):

1. a labelled training file of ``--train-rows`` rows lands → ingest → ``build_snapshot`` → ``record_snapshot``
   (profile) → ``train_model`` (lr, lightgbm, rf; 5 folds; tune 10; selection sampled to
   ``training.selection_max_rows``, tuning to ``training.tune_max_rows``) → ``promote_model``;
2. for each size in ``--batch-rows`` (default 250,000 then 1,000,000): a scoring batch and its labels land →
   ingest → ingest labels → ``score_pending_batches`` → ``monitor_predictions``;
3. ``find_drift_trigger``, then (``--resnapshot``) the snapshot rebuilt from every labelled row, as the data
   pipeline does once the labels of the scoring batches have landed.

Rows are the telco rows resampled with fresh unique ids and mild numeric jitter (integer columns stay
integer), written as CSV into the landing zone like the simulator does, so the contract accepts every row
(checked: 0 quarantined). ``--data-uri s3://bucket/prefix`` (or ``BENCH_CAPACITY_DATA_URI``) puts the data
zones on object storage, under a prefix of the run's own that is deleted at the end.

Each stage runs in its own interpreter, so its peak RSS (``VmHWM``, and ``ru_maxrss`` of its children) is its
own. Per stage it prints seconds, peak MB and seconds / the 600 s per-stage target; per chunked stage, how
peak memory and time per row grow from the small to the big batch (memory bounded by chunking: ~1.0; linear
time: ~1.0 per row, quadratic: ~4.0). One figure per line.

    .venv/bin/python bench/bench_capacity.py [--train-rows 200000] [--batch-rows 250000,1000000] [--keep]
        [--data-uri s3://bucket/prefix]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
DATASET = "telco_churn"
STAGE_TARGET_S = 600.0
GENERATE_CHUNK_ROWS = 100_000
# `make bench` scale: the scoring stages' growth figures without the shipped config's minutes of model
# selection.
QUICK_TRAINING = {"training": {"models": ["lr"], "folds": 2, "tune_iter": 0}}
# Heavy libraries each stage imports lazily; loaded before the baseline so "above baseline" is the data's
# share.
STAGE_LIBRARIES = {
    "ingest": ["pandas", "pyarrow.parquet", "pandera.pandas"],
    "labels": ["pandas", "pyarrow.parquet", "pandera.pandas"],
    "snapshot": ["pandas", "pyarrow.parquet"],
    "record": ["pandas", "pyarrow.parquet", "mlflow", "ydata_profiling"],
    "training": ["pandas", "pyarrow.parquet", "mlflow", "pycaret.classification", "shap"],
    "promotion": ["pandas", "pyarrow.parquet", "mlflow", "sklearn", "shap"],
    "inference": ["pandas", "pyarrow.parquet", "mlflow", "sklearn", "shap"],
    "monitoring": ["pandas", "pyarrow.parquet", "mlflow", "evidently", "shap"],
    "sensor": ["mlflow"],
    "override": ["mlflow"],
}


def label_rows(rows: int) -> str:
    """``200k``, ``1m``, ``1.45m``: a row count as it appears in figure names."""
    if rows >= 1_000_000:
        return f"{rows / 1_000_000:g}m".replace(".", "_")
    return f"{rows / 1000:g}k".replace(".", "_")


# --- data
# -----------------------------------------------------------------------------------------------------


def jitter_rows(cfg: Any, base: Any, rows: int, rng: Any, id_prefix: str, first_id: int) -> Any:
    """``rows`` rows resampled from ``base`` with fresh ids and mild numeric jitter, integer columns kept
    integer."""
    frame = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
    frame[cfg.id_column] = [f"{id_prefix}{first_id + i:09d}" for i in range(rows)]
    for column in cfg.numeric_features:
        values = frame[column]
        if values.dtype.kind in "iu":
            frame[column] = (values + rng.integers(-1, 2, rows)).clip(lower=0).astype(values.dtype)
        else:
            frame[column] = (values * rng.normal(1.0, 0.01, rows)).clip(lower=0).round(2)
    return frame


def write_landing_csv(
    cfg: Any,
    path: Any,
    rows: int,
    seed: int,
    id_prefix: str,
    columns: list[str],
    labels_path: Any = None,
) -> None:
    """Write ``rows`` synthetic rows to ``path`` (and id + target to ``labels_path``) in chunks, then put them
    in place (a rename, or one upload when the landing zone is in a bucket).

    Files appear under their final name only when complete, as the simulator's do, so ingestion never reads
    half.
    """
    from contextlib import ExitStack

    import numpy as np

    from driftloop.core.storage import atomic_path
    from driftloop.data.sources import load_source_frame

    base = load_source_frame(cfg)
    rng = np.random.default_rng(seed)
    targets = [(path, columns)] + ([(labels_path, [cfg.id_column, cfg.target])] if labels_path else [])
    with ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(target)) for target, _ in targets]
        for first in range(0, rows, GENERATE_CHUNK_ROWS):
            frame = jitter_rows(cfg, base, min(GENERATE_CHUNK_ROWS, rows - first), rng, id_prefix, first)
            for tmp, (_, cols) in zip(tmps, targets, strict=True):
                frame[cols].to_csv(tmp, index=False, header=first == 0, mode="w" if first == 0 else "a")


# --- one stage, in a fresh interpreter
# ------------------------------------------------------------------------


def peak_mb() -> float:
    """Peak RSS of this process or any child it waited for, in MB.

    The process's own peak is ``VmHWM``: ``ru_maxrss`` of a freshly executed process starts at its parent's
    RSS when it was forked, which would charge the orchestrator's memory to the stage.
    """
    status = Path("/proc/self/status").read_text()
    own_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own_kb, children_kb) / 1024


def measure_ingest(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every landed feature batch (``--stage ingest``) or label file (``--stage labels``) validated and
    stored."""
    from driftloop.data import ingest

    result = (ingest.ingest_labels if args.stage == "labels" else ingest.ingest_batches)(cfg)
    return {
        "rows": result["rows_received"],
        "accepted": result["rows_accepted"],
        "quarantined": result["rows_quarantined"],
        "files_quarantined": len(result["quarantined"]),
    }


def measure_snapshot(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The snapshot built from every accepted labelled row."""
    from driftloop.data import snapshots

    result = snapshots.build_snapshot(cfg)
    return {
        "rows": result["rows"],
        "snapshot_hash": result["snapshot_hash"],
        "snapshot_uri": result["snapshot_uri"],
    }


def measure_record(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The snapshot's data run: profile, quality summary, lineage."""
    from driftloop.data import snapshots

    result = snapshots.record_snapshot(cfg, args.snapshot_hash)
    return {"rows": result["rows"], "profile_sampled": result["profile_sampled"]}


def measure_training(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One training run on the snapshot, registered as challenger."""
    from driftloop.training import train

    result = train.train_model(cfg, args.snapshot_uri, trigger={"reason": "new_data"})
    return {
        "model_version": result["model_version"],
        "best_model": result["best_model"],
        "timings": result.get("timings", {}),
        "run_id": result["run_id"],
        "metrics": result["metrics"],
    }


def measure_promotion(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The gate on the new version."""
    from driftloop.core.errors import GateRejected
    from driftloop.governance.promotion import promote_model

    try:
        result = promote_model(cfg, args.model_version)
    except GateRejected as exc:  # nothing serves yet: the bench overrides it in a separate, untimed stage
        return {"decision": "rejected", "failed": str(exc)}
    return {"decision": result["decision"], "failed": result["failed"]}


def measure_override(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Champion set by hand (audited) after a rejected gate, so the scoring stages have a model to measure."""
    from driftloop.governance.promotion import set_champion

    set_champion(
        cfg,
        args.model_version,
        actor="bench_capacity",
        reason="capacity benchmark: the gate rejected the model trained on resampled rows",
    )
    return {}


def measure_inference(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every pending scoring batch scored by the champion."""
    from driftloop.serving import scoring_parts

    result = scoring_parts.score_pending_batches(cfg)
    return {
        "rows": sum(s["rows"] for s in result["scored"]),
        "batches": len(result["scored"]),
        "chunks": sum(s["chunks"] for s in result["scored"]),
    }


def measure_monitoring(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Drift and live metrics of every newly scored batch."""
    from driftloop.monitoring import monitor

    result = monitor.monitor_predictions(cfg)
    return {"monitored": result["monitored"], "skipped": result["skipped"]}


def measure_sensor(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The drift sensor's decision."""
    from driftloop.monitoring import sensor

    trigger = sensor.find_drift_trigger(cfg)
    return {"fired": trigger is not None, "reason": (trigger or {}).get("reason")}


STAGES = {
    "ingest": measure_ingest,
    "labels": measure_ingest,
    "snapshot": measure_snapshot,
    "record": measure_record,
    "training": measure_training,
    "promotion": measure_promotion,
    "override": measure_override,
    "inference": measure_inference,
    "monitoring": measure_monitoring,
    "sensor": measure_sensor,
}


def run_stage_here(args: argparse.Namespace) -> int:
    """Child side: import the stage's libraries, take the baseline, run the stage, print one JSON line."""
    import importlib

    from driftloop.core.config import load_dataset_config

    cfg = load_dataset_config(DATASET)
    for module in STAGE_LIBRARIES[args.stage]:
        importlib.import_module(module)
    baseline = peak_mb()
    started = time.perf_counter()
    facts = STAGES[args.stage](cfg, args)
    seconds = time.perf_counter() - started
    print(
        json.dumps({"seconds": seconds, "peak_mb": peak_mb(), "baseline_mb": baseline, **facts}, default=str)
    )
    return 0


# --- the orchestrating parent
# ---------------------------------------------------------------------------------


def spawn_stage(stage: str, log: Path, **options: str) -> dict[str, Any]:
    """Run ``stage`` in a fresh interpreter (environment already points at the private stores)."""
    command = [sys.executable, __file__, "--stage", stage]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    with log.open("a") as handle:
        handle.write(f"=== {stage} {options}\n{out.stderr}\n{out.stdout}\n")
    if out.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    return result


def emit(name: str, value: Any) -> None:
    """Print one figure line now (a long run shows progress)."""
    print(f"capacity_{name} {value}", flush=True)


def report_stage(name: str, result: dict[str, Any]) -> None:
    """Seconds, peak MB (total and above the stage's import baseline) and the ratio to the per-stage
    target."""
    emit(f"{name}_s", f"{result['seconds']:.1f}")
    emit(f"{name}_peak_mb", f"{result['peak_mb']:.0f}")
    emit(f"{name}_above_baseline_mb", f"{result['peak_mb'] - result['baseline_mb']:.0f}")
    emit(f"{name}_vs_target", f"{result['seconds'] / STAGE_TARGET_S:.3f}")


def report_growth(stage: str, small: tuple[int, dict], big: tuple[int, dict]) -> None:
    """Peak memory and time per row of the big batch relative to the small one."""
    (n_small, r_small), (n_big, r_big) = small, big
    tag = f"{label_rows(n_big)}_vs_{label_rows(n_small)}"
    emit(f"{stage}_peak_growth_{tag}", f"{r_big['peak_mb'] / r_small['peak_mb']:.2f}")
    above_small = max(r_small["peak_mb"] - r_small["baseline_mb"], 1.0)
    emit(
        f"{stage}_above_baseline_growth_{tag}",
        f"{(r_big['peak_mb'] - r_big['baseline_mb']) / above_small:.2f}",
    )
    per_row = (r_big["seconds"] / n_big) / (r_small["seconds"] / n_small)
    emit(f"{stage}_time_per_row_growth_{tag}", f"{per_row:.2f}")


def check_accepted(stage: str, result: dict[str, Any], rows: int) -> None:
    """Every synthetic row must pass the contract."""
    if result["rows"] != rows or result["quarantined"] or result["files_quarantined"]:
        raise SystemExit(f"{stage}: expected {rows} accepted rows, got {result}")


def run_training_half(cfg: Any, paths: Any, args: argparse.Namespace, log: Path) -> dict[str, dict]:
    """Training file → ingest → snapshot → data run → training → gate; returns every stage's result."""
    from driftloop.core.tracking import get_client

    results: dict[str, dict] = {}
    rows, tag = args.train_rows, label_rows(args.train_rows)
    started = time.perf_counter()
    write_landing_csv(
        cfg,
        paths.landing_dir / "reference.csv",
        rows,
        seed=1,
        id_prefix="T",
        columns=[cfg.id_column, *cfg.features, cfg.target],
    )
    emit(f"generate_train_{tag}_s", f"{time.perf_counter() - started:.1f}")

    results["ingest"] = spawn_stage("ingest", log)
    check_accepted("ingest", results["ingest"], rows)
    report_stage(f"ingest_train_{tag}", results["ingest"])
    results["snapshot"] = spawn_stage("snapshot", log)
    report_stage(f"snapshot_{tag}", results["snapshot"])
    snapshot = results["snapshot"]
    results["record"] = spawn_stage("record", log, snapshot_hash=snapshot["snapshot_hash"])
    report_stage(f"record_snapshot_{tag}", results["record"])
    emit(f"record_snapshot_{tag}_profile_sampled", str(results["record"]["profile_sampled"]).lower())

    results["training"] = spawn_stage("training", log, snapshot_uri=snapshot["snapshot_uri"])
    trained = results["training"]
    report_stage(f"training_{tag}", trained)
    for key, value in sorted(trained["timings"].items()):
        emit(f"training_{tag}_{key.removesuffix('_seconds')}_s", f"{value:.1f}")
    emit(f"training_{tag}_best_model", trained["best_model"])
    emit(f"training_{tag}_holdout_auc", f"{trained['metrics'].get('holdout_auc', float('nan')):.4f}")
    run = get_client().get_run(trained["run_id"])
    from driftloop.core import bus

    emit(f"training_{tag}_train_rows", int(run.data.metrics[bus.TRAIN_ROWS]))
    emit(f"training_{tag}_selection_rows", int(run.data.metrics[bus.SELECTION_ROWS]))
    emit(f"training_{tag}_tune_rows", int(run.data.metrics.get(bus.TUNE_ROWS, 0)))
    emit(f"training_{tag}_selection_tag", json.dumps(run.data.tags.get(bus.SELECTION_TAG, "")))

    results["promotion"] = spawn_stage("promotion", log, model_version=trained["model_version"])
    report_stage(f"promotion_{tag}", results["promotion"])
    emit(f"promotion_{tag}_decision", results["promotion"]["decision"])
    if results["promotion"]["decision"] != "promoted":
        print(f"gate: {results['promotion']['failed']}", file=sys.stderr)
        spawn_stage("override", log, model_version=trained["model_version"])
        emit(f"promotion_{tag}_champion_set_by_hand", "true")
    return results


def run_scoring_batch(cfg: Any, paths: Any, index: int, rows: int, log: Path) -> dict[str, dict]:
    """One scoring batch and its labels land; ingest, ingest labels, inference, monitoring."""
    tag = label_rows(rows)
    name = f"batch_{index:03d}"
    started = time.perf_counter()
    write_landing_csv(
        cfg,
        paths.landing_dir / f"{name}.csv",
        rows,
        seed=100 + index,
        id_prefix=f"S{index}-",
        columns=[cfg.id_column, *cfg.features],
        labels_path=paths.labels_landing_dir / f"labels_{name}.csv",
    )
    emit(f"generate_batch_{tag}_s", f"{time.perf_counter() - started:.1f}")
    results = {"ingest": spawn_stage("ingest", log), "labels": spawn_stage("labels", log)}
    check_accepted("ingest", results["ingest"], rows)
    check_accepted("labels", results["labels"], rows)
    results["inference"] = spawn_stage("inference", log)
    if results["inference"]["rows"] != rows:
        raise SystemExit(f"inference scored {results['inference']} of {rows} rows")
    results["monitoring"] = spawn_stage("monitoring", log)
    [monitored] = results["monitoring"]["monitored"]
    results["monitoring"]["rows"] = rows
    for stage in ("ingest", "labels", "inference", "monitoring"):
        report_stage(f"{stage}_{tag}", results[stage])
    emit(f"inference_{tag}_rows_per_s", f"{rows / results['inference']['seconds']:.0f}")
    emit(f"monitoring_{tag}_drift_share", f"{monitored['drift_share']:.3f}")
    emit(f"monitoring_{tag}_labelled_rows", int(monitored.get("labelled_rows", 0)))
    return results


def orchestrate(args: argparse.Namespace) -> int:
    """Parent side: private stores, data, stages in order, figures."""
    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-capacity-"))
    os.environ.update(
        {
            "DRIFTLOOP_HOME": str(work / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "DRIFTLOOP_DATASETS": DATASET,
        }
    )
    os.environ.pop("DRIFTLOOP_CONFIG_OVERRIDES", None)  # the shipped config, as is
    # The data zones: inside the temp folder, or a prefix of their own under --data-uri (never the caller's).
    data_uri = f"{args.data_uri.rstrip('/')}/{work.name}" if args.data_uri else ""
    if data_uri:
        os.environ["DRIFTLOOP_DATA_URI"] = data_uri
        emit("data_uri", data_uri)
    else:
        os.environ.pop("DRIFTLOOP_DATA_URI", None)
    if args.quick_training:
        os.environ["DRIFTLOOP_CONFIG_OVERRIDES"] = json.dumps(QUICK_TRAINING)
        emit("training_config", "quick (lr, 2 folds, no tuning)")
    log = Path(args.log) if args.log else work / "stages.log"
    started = time.perf_counter()
    emit("load_average_start", f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    try:
        from driftloop.core.config import load_dataset_config
        from driftloop.core.state import StatePaths
        from driftloop.core.tracking import get_client

        cfg = load_dataset_config(DATASET)
        paths = StatePaths.for_dataset(cfg)
        get_client().search_experiments()  # the store's one-off schema migration, outside every stage
        run_training_half(cfg, paths, args, log)
        sizes = [int(n) for n in args.batch_rows.split(",")]
        scored = [
            (rows, run_scoring_batch(cfg, paths, index, rows, log)) for index, rows in enumerate(sizes, 1)
        ]
        for stage in ("ingest", "labels", "inference", "monitoring"):
            report_growth(stage, (scored[0][0], scored[0][1][stage]), (scored[-1][0], scored[-1][1][stage]))
        report_stage("sensor", spawn_stage("sensor", log))
        if args.resnapshot:
            total = args.train_rows + sum(sizes)
            result = spawn_stage("snapshot", log)
            report_stage(f"snapshot_{label_rows(total)}", result)
            emit(f"snapshot_{label_rows(total)}_rows", result["rows"])
    finally:
        emit("load_average_end", f"{os.getloadavg()[0]:.2f}")
        emit("total_s", f"{time.perf_counter() - started:.0f}")
        if args.keep:
            print(f"kept {work}" + (f" and {data_uri}" if data_uri else ""), file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
            if data_uri:
                from driftloop.core.storage import location, remove_tree

                remove_tree(location(data_uri))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--train-rows", type=int, default=int(os.environ.get("BENCH_CAPACITY_TRAIN_ROWS", 200_000))
    )
    parser.add_argument(
        "--batch-rows",
        default=os.environ.get("BENCH_CAPACITY_BATCH_ROWS", "250000,1000000"),
        help="scoring batch sizes, smallest first (growth is last vs first)",
    )
    parser.add_argument(
        "--no-resnapshot",
        dest="resnapshot",
        action="store_false",
        help="skip rebuilding the snapshot from every labelled row at the end",
    )
    parser.add_argument(
        "--quick-training",
        action="store_true",
        help="train lr only (2 folds, no tuning) instead of the shipped training config",
    )
    parser.add_argument(
        "--data-uri",
        default=os.environ.get("BENCH_CAPACITY_DATA_URI", ""),
        help="put the data zones under a prefix of their own here (a folder or s3://bucket/prefix; "
        "credentials: the AWS variables); default: inside the temp folder",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (its path goes to stderr)")
    parser.add_argument("--log", help="where each stage's stderr goes (default: inside the temp folder)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--snapshot-hash", help=argparse.SUPPRESS)
    parser.add_argument("--snapshot-uri", help=argparse.SUPPRESS)
    parser.add_argument("--model-version", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return run_stage_here(args) if args.stage else orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
