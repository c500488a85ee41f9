"""``driftloop demo``: bring the embedded stack up and drive the closed loop once through the real scheduler.

It drops reference data, then a clean batch, then a drifted batch with late labels (see
:func:`driftloop_ops.loop.drive_closed_loop`), and prints what happened: batches ingested, versions trained,
the champion, the drift share that fired, the retrain it caused and the URLs of both UIs.

The demo builds DAGs for its own dataset only (``DRIFTLOOP_DATASETS=<dataset>``, default ``telco_churn``), so
the dag-processor parses what the demo runs and nothing more; an explicit ``DRIFTLOOP_DATASETS`` is kept, with
the demo's dataset added. On a stack that already runs without that dataset (or with its schedules on), the
Airflow side restarts serving the union (:mod:`driftloop_ops.front_door`); the state is kept. A dataset whose
demo already ran in this home is refused at once (its files would be replays).
"""

from __future__ import annotations

import os
from typing import Any

from driftloop.core import bus
from driftloop.core.config import load_dataset_config
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths
from driftloop.core.storage import is_local, list_files, to_uri
from driftloop_ops.airflow_api import AirflowClient, read_generated_password
from driftloop_ops.embedded import StackLayout, start_stack
from driftloop_ops.front_door import StackInTheWay
from driftloop_ops.loop import (
    SENSOR,
    LoopRecord,
    LoopStepFailed,
    SchedulerRunner,
    drive_closed_loop,
    loop_dag_ids,
)

# The demo starts every run itself, so no schedule may start one in between; the sensor looks once (the demo
# triggers it right after monitoring has finished) and gives up after a second.
DEMO_ENV = {
    "DRIFTLOOP_DATA_SCHEDULE": "none",
    "DRIFTLOOP_SENSOR_SCHEDULE": "none",
    "DRIFTLOOP_SENSOR_POKE_S": "1",
    "DRIFTLOOP_SENSOR_TIMEOUT_S": "1",
}


def run_demo(layout: StackLayout, dataset: str | None = None, log: Any = print) -> dict[str, Any]:
    """Bring the stack up and drive the closed loop once through the scheduler. Returns the summary.

    A step that fails stops the demo at once (``{"dataset", "failed", "airflow_ui"}`` is returned and the
    reason printed: the failed task's log tail, its log URL and any file quarantined meanwhile).
    """
    from driftloop.core.tracking import get_client

    settings = Settings.from_env()
    cfg = load_dataset_config(dataset, settings)
    refuse_a_second_run(cfg, settings)
    datasets = ",".join(dict.fromkeys([*settings.datasets, cfg.name]))
    demo_env = {"DRIFTLOOP_DATASET": cfg.name, "DRIFTLOOP_DATASETS": datasets, **DEMO_ENV}
    os.environ.update({"MLFLOW_TRACKING_URI": layout.mlflow_url, **demo_env})
    settings = Settings.from_env()
    served = start_stack(layout, demo_env, log)
    os.environ["DRIFTLOOP_DATASETS"] = ",".join(served.datasets)
    api = AirflowClient(layout.airflow_url, "admin", read_generated_password(layout.password_file))
    api.wait_for_dags(loop_dag_ids(cfg.name))
    client = get_client(settings)
    log("closed loop: reference → v1; clean batch (no fire); drifted batch + labels → the sensor fires → v2")
    try:
        record = drive_closed_loop(
            SchedulerRunner(api), cfg, client, settings, batch_rows=1000, sensor_again=False, log=log
        )
    except LoopStepFailed as exc:
        log(f"\nDriftloop demo on {cfg.name} FAILED: {exc}")
        log(f"  Airflow UI: {layout.airflow_url}  MLflow UI: {layout.mlflow_url}")
        return {"dataset": cfg.name, "failed": str(exc), "airflow_ui": layout.airflow_url}
    summary = summarize(cfg, client, layout, record, settings)
    log(format_summary(summary))
    return summary


def refuse_a_second_run(cfg: Any, settings: Settings) -> None:
    """Stop at once when this dataset's demo already ran under ``DRIFTLOOP_HOME``: the simulator would drop
    the same files again and ingestion would refuse them as replays after a minute of start-up.

    Raises:
        StackInTheWay: Batches are ingested already; the one line names the command that clears them.
    """
    paths = StatePaths.for_dataset(cfg, settings)
    ingested = ingested_batches(paths)
    if not ingested:
        return
    if is_local(paths.root):
        where, clear = str(settings.home_dir), "run 'make clean' (stops the stack, deletes all local state)"
    else:  # make clean deletes local state only; the data zones are in the bucket
        where = to_uri(paths.root)
        clear = f"delete everything under {where} and run 'make clean' (stops the stack)"
    raise StackInTheWay(
        f"the {cfg.name} demo already ran under {where} (batches {', '.join(ingested)}), "
        f"so its files would be refused as replays; {clear}, then 'DRIFTLOOP_DATASET={cfg.name} make demo'"
    )


def ingested_batches(paths: StatePaths) -> list[str]:
    """Batch ids with a manifest in the batches zone (a folder or an object-store prefix), sorted."""
    return sorted(p.stem for p in list_files(paths.batches_dir, "*.json"))


def summarize(
    cfg: Any, client: Any, layout: StackLayout, record: LoopRecord, settings: Settings
) -> dict[str, Any]:
    """Collect what the loop did from the data zones, MLflow and the loop record."""
    from driftloop.core.tracking import search_runs

    batches = ingested_batches(StatePaths.for_dataset(cfg, settings))
    found = client.search_model_versions(f"name = '{cfg.registered_model_name}'")
    # Search results carry no aliases: read each version.
    versions = [client.get_model_version(cfg.registered_model_name, v.version) for v in found]
    model_versions = [
        {
            "version": v.version,
            "trigger": v.tags.get(bus.TRIGGER_REASON_TAG),
            "gate": v.tags.get(bus.GATE_TAG),
            "aliases": sorted(v.aliases or []),
        }
        for v in sorted(versions, key=lambda v: int(v.version))
    ]
    monitoring = search_runs(client, cfg.experiment_name("monitoring"))
    fired = [r for r in monitoring if r.data.tags.get(bus.SENSOR_FIRED_AT_TAG)]
    return {
        "dataset": cfg.name,
        "batches_ingested": batches,
        "model_versions": model_versions,
        "champion": client.get_model_version_by_alias(cfg.registered_model_name, bus.CHAMPION).version,
        "clean_batch_fired": record.tasks(f"clean_{SENSOR}").get("trigger_training") == "success",
        "drift_share_that_fired": fired[0].data.metrics.get(bus.DRIFT_SHARE) if fired else None,
        "drift_threshold": cfg.monitoring.drift_share_threshold,
        "retrain_run": fired[0].data.tags.get(bus.SENSOR_TRIGGER_RUN_ID_TAG) if fired else None,
        "seconds": {k: round(v, 1) for k, v in record.seconds.items()},
        "airflow_ui": layout.airflow_url,
        "mlflow_ui": layout.mlflow_url,
        "airflow_password_file": str(layout.password_file),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable closing summary of a demo run."""
    lines = [
        "",
        f"Driftloop demo on {summary['dataset']}: done in {summary['seconds'].get('total', 0):.0f} s",
        f"  batches ingested : {', '.join(summary['batches_ingested'])}",
    ]
    for v in summary["model_versions"]:
        lines.append(
            f"  model v{v['version']:<3}      : trigger={v['trigger']}, gate={v['gate']}, "
            f"aliases={v['aliases']}"
        )
    lines += [
        f"  champion         : v{summary['champion']}",
        f"  clean batch fired: {summary['clean_batch_fired']}",
        f"  drift that fired : share {summary['drift_share_that_fired']} (threshold "
        f"{summary['drift_threshold']})",
        f"  retrain it caused: {summary['retrain_run']}",
        f"  per DAG (s)      : {summary['seconds']}",
        f"  Airflow UI       : {summary['airflow_ui']}  (user admin, password in "
        f"{summary['airflow_password_file']})",
        f"  MLflow UI        : {summary['mlflow_ui']}",
        "  Stop with `make down`; state stays in the DRIFTLOOP_HOME folder.",
    ]
    return "\n".join(lines)
