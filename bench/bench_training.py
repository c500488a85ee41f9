"""One telco training run (train_model + promote_model, the shipped config) timed stage by stage, with a
profile.

What ``training_pipeline`` does after its snapshot exists: :func:`driftloop.training.train.train_model`
(setup, compare, tune, finalize, threshold on folds, holdout score, artifacts, evidence, model logging) then
:func:`driftloop.governance.promotion.promote_model` (gates, behavioural tests, card). MLflow is a SQLite
store in a temp folder; the config is ``telco_churn.yaml`` unchanged. Prints one figure per line and, with
``--profile``, the 40 functions with the most cumulative time (cProfile) of each phase. Target: train +
promote <= 30 s on an idle 2-core machine; the holdout AUC is printed so a faster run can be checked for the
same quality. The stack is imported first (``training_preload_s``), as the executor's worker process does
before it forks a task (plugins/driftloop_airflow/preload.py), so import time is not counted as training.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]


def _profiled(enabled: bool, fn, *args, **kwargs):
    if not enabled:
        return fn(*args, **kwargs)
    profiler = cProfile.Profile()
    result = profiler.runcall(fn, *args, **kwargs)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
    print(out.getvalue())
    return result


def main() -> None:
    """Snapshot, train, promote; figures one per line."""
    profile = "--profile" in sys.argv
    sys.path[:0] = [str(PROJECT_DIR / "include"), str(PROJECT_DIR / "plugins")]
    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-training-"))
    os.environ.update(
        {
            "DRIFTLOOP_HOME": str(work / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "MPLBACKEND": "Agg",
        }
    )
    for name in ("DRIFTLOOP_CONFIG_OVERRIDES", "DRIFTLOOP_DATASET", "DRIFTLOOP_CONFIG_DIR"):
        os.environ.pop(name, None)
    from driftloop.core.config import load_dataset_config
    from driftloop.data.snapshots import write_snapshot
    from driftloop.data.sources import load_source_frame
    from driftloop.governance.promotion import promote_model
    from driftloop.training.train import train_model

    # As the task runs on a worker: the executor's worker process imported the stack before forking it.
    from driftloop_airflow.preload import preload_stack

    preloaded = preload_stack()
    print(f"training_preload_s {preloaded['seconds']:.1f}")
    print(f"load average before: {os.getloadavg()}", flush=True)
    cfg = load_dataset_config("telco_churn")
    snapshot = write_snapshot(cfg, load_source_frame(cfg), created_at="2026-01-01T00:00:00+00:00")
    started = time.perf_counter()
    trained = _profiled(profile, train_model, cfg, snapshot_uri=snapshot["snapshot_uri"])
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    promoted = _profiled(profile, promote_model, cfg, trained["model_version"])
    promote_s = time.perf_counter() - started
    print(f"load average after: {os.getloadavg()}")
    for stage, seconds in trained["timings"].items():
        print(f"training_stage_{stage} {seconds:.2f}")
    print(f"training_best_model {trained['best_model']}")
    print(f"training_holdout_auc {trained['metrics'].get('holdout_auc', float('nan')):.4f}")
    print(f"training_promotion {promoted['decision']}")
    print(f"training_train_s {train_s:.1f}")
    print(f"training_promote_s {promote_s:.1f}")
    print(f"training_total_s {train_s + promote_s:.1f}")


if __name__ == "__main__":
    main()
