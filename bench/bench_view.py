"""The Driftloop view's data for 10 datasets × 100 model versions (target: <= 1 s).

A local MLflow SQLite store is seeded with fake runs: per dataset 100 training runs with holdout metrics, 100
registered versions with gate tags (champion and challenger aliases), 20 monitoring runs, plus ingest
manifests and champion audit entries. The figure is the median time of
:func:`driftloop.governance.overview.build_overview` and its JSON encoding (what ``/driftloop/api/overview``
does after the login check). The baseline reads the same versions the naive way, one ``get_model_version`` and
one ``get_run`` per version.

Prints ``view_api_s <seconds>`` and ``baseline_per_version_calls_s <seconds>``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
DATASETS = int(os.environ.get("BENCH_VIEW_DATASETS", "10"))
VERSIONS = int(os.environ.get("BENCH_VIEW_VERSIONS", "100"))
MONITORING_RUNS = 20
TARGET_S = 1.0


def write_configs(config_dir: Path) -> list[str]:
    """``DATASETS`` copies of the telco config, each with its own name and model."""
    import shutil

    import yaml

    shipped = PROJECT_DIR / "include" / "configs"
    config_dir.mkdir(parents=True)
    for companion in shipped.glob("telco_churn.*.yaml"):
        shutil.copy(companion, config_dir / companion.name)
    raw = yaml.safe_load((shipped / "telco_churn.yaml").read_text())
    names = [f"ds{i:02d}" for i in range(DATASETS)]
    for name in names:
        (config_dir / f"{name}.yaml").write_text(
            yaml.safe_dump({**raw, "name": name, "model_name": f"bench-{name}"})
        )
    return names


def seed(names: list[str]) -> None:
    """Runs, versions, aliases, manifests and audit entries for every dataset."""
    from mlflow.entities import Metric, RunTag

    from driftloop.core import bus
    from driftloop.core.config import load_dataset_config
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import write_json
    from driftloop.core.tracking import ensure_experiment, get_client
    from driftloop.governance.audit import open_store

    client, store, now = get_client(), open_store(), int(time.time() * 1000)
    for name in names:
        cfg = load_dataset_config(name)
        model = cfg.registered_model_name
        client.create_registered_model(model)
        training = ensure_experiment(client, cfg.experiment_name("training"))
        for v in range(1, VERSIONS + 1):
            run_id = client.create_run(training, start_time=now + v).info.run_id
            metrics = {"holdout_auc": 0.8 + v / 10_000, "holdout_f1": 0.6, bus.TRAIN_SECONDS: 30.0}
            client.log_batch(run_id, metrics=[Metric(k, val, now, 0) for k, val in metrics.items()])
            client.set_terminated(run_id)
            gate = bus.GATE_PASSED if v % 3 else bus.GATE_REJECTED
            tags = {
                bus.GATE_TAG: gate,
                bus.GATE_REASON_TAG: f"AUC {0.8 + v / 10_000:.4f}",
                bus.TRIGGER_REASON_TAG: "drift",
            }
            client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id, tags=tags)
        client.set_registered_model_alias(model, bus.CHAMPION, str(VERSIONS - 1))
        client.set_registered_model_alias(model, bus.CHALLENGER, str(VERSIONS))
        monitoring = ensure_experiment(client, cfg.experiment_name("monitoring"))
        for i in range(MONITORING_RUNS):
            run_id = client.create_run(monitoring, start_time=now + i).info.run_id
            client.log_batch(
                run_id,
                metrics=[
                    Metric(bus.DRIFT_SHARE, i / MONITORING_RUNS, now, 0),
                    Metric("live_f1", 0.58, now, 0),
                ],
                tags=[
                    RunTag(bus.LIVE_DROP_METRIC_TAG, "live_f1"),
                    RunTag(bus.BATCH_ID_TAG, f"b{i}"),
                    RunTag(bus.CHAMPION_VERSION_TAG, str(VERSIONS - 1)),
                ],
            )
            client.set_terminated(run_id)
        batches = StatePaths.for_dataset(cfg).batches_dir
        for i in range(50):
            manifest = {
                "batch_id": f"b{i}",
                "rows_received": 1000,
                "rows_quarantined": i % 4,
                "ingested_at": f"{i:04d}",
            }
            write_json(batches / f"b{i}.json", manifest)
        for v in range(1, 21):
            store.append(
                {
                    "dataset": name,
                    "model_name": model,
                    "from_version": str(v),
                    "to_version": str(v + 1),
                    "actor": "promote_model",
                    "source": "driftloop",
                    "reason": "gate passed",
                }
            )


def baseline_s(names: list[str]) -> float:
    """Every version read one call at a time (what a view without batched searches would do)."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.tracking import get_client

    client, started = get_client(), time.perf_counter()
    for name in names:
        model = load_dataset_config(name).registered_model_name
        for v in range(1, VERSIONS + 1):
            version = client.get_model_version(model, str(v))
            client.get_run(version.run_id)
    return time.perf_counter() - started


def main() -> None:
    sys.path.insert(0, str(PROJECT_DIR / "include"))
    work = Path(tempfile.mkdtemp(prefix="bench-view-"))
    os.environ.update(
        {
            "DRIFTLOOP_HOME": str(work / "home"),
            "DRIFTLOOP_CONFIG_DIR": str(work / "configs"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "DRIFTLOOP_MLFLOW_UI_URL": "http://127.0.0.1:5000",
            "DRIFTLOOP_DATASETS": "",
        }
    )
    os.environ.pop("DRIFTLOOP_CONFIG_OVERRIDES", None)
    os.environ.pop("DRIFTLOOP_DATA_URI", None)  # manifests in the private home, never the caller's zones
    names = write_configs(work / "configs")
    started = time.perf_counter()
    seed(names)
    print(f"# seeded {len(names)} datasets x {VERSIONS} versions in {time.perf_counter() - started:.0f} s")
    from driftloop.governance.overview import build_overview

    timings = []
    for _ in range(4):  # the first warms imports and SQLite pages; the median of all four is reported
        started = time.perf_counter()
        overview = build_overview()
        json.dumps(overview, default=str)
        timings.append(time.perf_counter() - started)
    assert len(overview["datasets"]) == len(names)
    assert all(d["version_count"] == VERSIONS for d in overview["datasets"])
    print(f"# runs: {', '.join(f'{t:.3f}' for t in timings)} (target <= {TARGET_S} s)")
    print(f"view_api_s {statistics.median(timings):.3f}")
    print(f"view_baseline_per_version_calls_s {baseline_s(names):.3f}")


if __name__ == "__main__":
    main()
