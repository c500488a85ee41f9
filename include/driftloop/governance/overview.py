"""The Driftloop view's data: per dataset, the loop's state, champion and challenger, drift and live metric,
retrains, quarantine, KPIs.

Read from what already exists: MLflow (one registry search and one run search per experiment, whatever the
number of versions), the data zones (ingest manifests, quarantine reasons; a folder or object storage) and
the champion audit log. No Airflow import: the Airflow plugin (``driftloop_airflow.view``) serves this as
JSON and, through :mod:`driftloop.governance.overview_page`, as HTML; ``bench/bench_view.py`` times it.

Why governance: the view is the oversight record of the loop, what it did to the champion and why, and its
verdict is :func:`driftloop.governance.loop_state.loop_state` (facts from
:mod:`driftloop.governance.loop_facts`). It reads the other stages only through what ``core`` names (the bus's
tags and metrics, data zones, manifests) and governance's own audit log, so it adds no cross-stage import.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from driftloop.core import bus
from driftloop.core.catalog import CatalogEntry, read_catalog
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths
from driftloop.core.storage import list_files, list_manifests, read_json
from driftloop.core.task_types import LIVE_PRIMARY, LOWER_IS_BETTER
from driftloop.governance.loop_facts import answers, firing_fields, loop_facts
from driftloop.governance.loop_state import loop_state
from driftloop.governance.overview_results import (
    DatasetOverview,
    Estimate,
    Kpis,
    MonitoringPoint,
    Overview,
    ServingKpis,
    VersionRow,
)

log = logging.getLogger(__name__)
MONITORING_RUNS = 20  # the last N monitoring runs charted per dataset
VERSIONS_SHOWN = 20  # newest versions listed per dataset (champion and challenger always)
QUARANTINE_SHOWN = 20
REASON_FILE = "reason.json"  # beside a file quarantined whole (driftloop.data.quarantine writes it)


def mlflow_version_url(ui_url: str, model_name: str, version: str | int) -> str:
    """The version's page in the MLflow UI; empty without a UI URL."""
    return f"{ui_url.rstrip('/')}/#/models/{quote(model_name, safe='')}/versions/{version}" if ui_url else ""


def mlflow_run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI; empty without a UI URL or a run."""
    if not (ui_url and run_id):
        return ""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def primary_holdout_key(cfg: DatasetConfig) -> str:
    """The holdout metric key of the config's gate metric (``AUC`` → ``holdout_auc``)."""
    metric = cfg.gates.primary_metric
    return bus.GATE_METRIC_KEYS.get(metric.lower(), f"holdout_{bus.metric_safe(metric).lower()}")


def _runs(client: Any, cfg: DatasetConfig, stage: str, max_results: int) -> tuple[str, list[Any]]:
    """Experiment id and the newest runs of one stage (one search)."""
    experiment = client.get_experiment_by_name(cfg.experiment_name(stage))
    if experiment is None:
        return "", []
    runs = client.search_runs(
        [experiment.experiment_id], max_results=max_results, order_by=["attributes.start_time DESC"]
    )
    return experiment.experiment_id, list(runs)


def _duration_s(run: Any) -> float | None:
    start, end = run.info.start_time, run.info.end_time
    return (end - start) / 1000.0 if start and end and end > start else None


def describe_versions(
    client: Any, cfg: DatasetConfig, ui_url: str, newest: int = VERSIONS_SHOWN
) -> tuple[list[VersionRow], dict[str, str]]:
    """The newest versions (and every aliased one) with gate verdict, reason, trigger, holdout metric and
    links.

    One registered-model read (aliases), one registry search (newest first), one read per aliased version
    older than those, and one training-run search for exactly these versions' runs: never one call per
    version.

    Returns:
        The versions, newest first, and ``{alias: version}``.
    """
    from mlflow.exceptions import MlflowException

    name = cfg.registered_model_name
    try:
        aliases = dict(client.get_registered_model(name).aliases or {})
    except MlflowException:
        return [], {}
    found = list(
        client.search_model_versions(f"name = '{name}'", max_results=newest, order_by=["version_number DESC"])
    )
    listed = {str(v.version) for v in found}
    found += [client.get_model_version(name, str(v)) for v in set(map(str, aliases.values())) - listed]
    training_exp, training = "", []
    run_ids = sorted({v.run_id for v in found if v.run_id})
    experiment = client.get_experiment_by_name(cfg.experiment_name("training")) if run_ids else None
    if experiment is not None:
        training_exp = experiment.experiment_id
        in_list = ", ".join(f"'{r}'" for r in run_ids)
        training = client.search_runs(
            [training_exp], filter_string=f"attributes.run_id IN ({in_list})", max_results=len(run_ids)
        )
    runs = {r.info.run_id: r for r in training}
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    holdout_key = primary_holdout_key(cfg)
    rows: list[VersionRow] = []
    for v in sorted(found, key=lambda v: int(v.version), reverse=True):
        run = runs.get(v.run_id)
        metrics = run.data.metrics if run else {}
        tags = v.tags or {}
        rows.append(
            {
                "version": str(v.version),
                "aliases": sorted(by_version.get(str(v.version), [])),
                "created_ms": v.creation_timestamp,
                "trigger": tags.get(bus.TRIGGER_REASON_TAG, ""),
                "gate": tags.get(bus.GATE_TAG, ""),
                "gate_reason": tags.get(bus.GATE_REASON_TAG, ""),
                "answers": answers(tags),
                "rollout_stage": tags.get(bus.ROLLOUT_STAGE_TAG, ""),
                "run_id": v.run_id,
                "primary_metric": metrics.get(holdout_key),
                "train_seconds": metrics.get(bus.TRAIN_SECONDS),
                "holdout": {key: value for key, value in metrics.items() if key.startswith("holdout_")},
                "mlflow_url": mlflow_version_url(ui_url, name, v.version),
                "run_url": mlflow_run_url(ui_url, training_exp, v.run_id) if run else "",
            }
        )
    return rows, {alias: str(version) for alias, version in aliases.items()}


def describe_monitoring(client: Any, cfg: DatasetConfig, ui_url: str, runs_n: int) -> list[MonitoringPoint]:
    """The last ``runs_n`` monitoring runs, oldest first: drift share, live metric against the holdout, the
    primary metric estimated before labels (:func:`describe_estimate`), decision."""
    experiment_id, runs = _runs(client, cfg, "monitoring", runs_n)
    points: list[MonitoringPoint] = []
    for run in reversed(runs):
        metrics, tags = run.data.metrics, run.data.tags
        live_key = tags.get(bus.LIVE_DROP_METRIC_TAG, "")
        holdout_key = "holdout_" + live_key.removeprefix("live_") if live_key else ""
        drift = metrics.get(bus.DRIFT_SHARE)
        if tags.get(bus.SENSOR_FIRED_AT_TAG):
            decision = "fired: " + tags.get(bus.SENSOR_TRIGGER_RUN_ID_TAG, "")
        elif tags.get(bus.SENSOR_SUPPRESSED_TAG):
            decision = "suppressed: " + tags[bus.SENSOR_SUPPRESSED_TAG]
        elif drift is not None and drift >= cfg.monitoring.drift_share_threshold:
            decision = "over threshold"
        else:
            decision = "below threshold"
        firing = firing_fields(tags)
        points.append(
            {
                "run_id": run.info.run_id,
                "start_ms": run.info.start_time,
                "batch_id": tags.get(bus.BATCH_ID_TAG, ""),
                "champion_version": tags.get(bus.CHAMPION_VERSION_TAG, ""),
                "drift_share": drift,
                "live_metric": live_key,
                "live_value": metrics.get(live_key) if live_key else None,
                "holdout_metric": holdout_key,
                "lower_is_better": holdout_key in LOWER_IS_BETTER,
                "live_drop": metrics.get(bus.LIVE_DROP),
                "estimate": describe_estimate(metrics, tags, cfg.task),
                "decision": decision,
                "fired_at": firing["fired_at"],
                "trigger_run_id": firing["trigger_run_id"],
                "waiting": firing["waiting"],
                "run_url": mlflow_run_url(ui_url, experiment_id, run.info.run_id),
            }
        )
    return points


def describe_estimate(metrics: dict[str, float], tags: dict[str, str], task: str) -> Estimate | None:
    """The task's primary metric as a monitoring run estimated it before labels (``metric``, ``value``,
    ``lower``, ``upper``, ``method``, ``drop``, ``drop_best_case``), or None when the run has no estimate."""
    metric = LIVE_PRIMARY[task]
    value = metrics.get(bus.estimated_metric(metric))
    if value is None:
        return None
    return {
        "metric": metric,
        "value": value,
        "lower": metrics.get(bus.estimated_metric(metric, "lower")),
        "upper": metrics.get(bus.estimated_metric(metric, "upper")),
        "method": tags.get(bus.ESTIMATION_METHOD_TAG, ""),
        "drop": metrics.get(bus.ESTIMATED_DROP),
        "drop_best_case": metrics.get(bus.ESTIMATED_DROP_BEST_CASE),
    }


def describe_quarantine(paths: StatePaths, limit: int = QUARANTINE_SHOWN) -> list[dict[str, Any]]:
    """Batches and label files with quarantined rows, and files rejected whole, newest first."""
    items = []
    for folder, kind in ((paths.batches_dir, "batch"), (paths.labels_dir, "labels")):
        for m in list_manifests(folder):
            if m.get("rows_quarantined"):
                items.append(
                    {
                        "batch_id": m.get("batch_id", ""),
                        "kind": m.get("kind", kind),
                        "file": m.get("source_file", ""),
                        "rows_received": m.get("rows_received"),
                        "rows_quarantined": m.get("rows_quarantined"),
                        "reasons": m.get("reason_counts", {}),
                        "at": m.get("ingested_at", ""),
                        "whole_file": False,
                    }
                )
    for reason_path in list_files(paths.quarantine_dir, f"**/{REASON_FILE}"):
        r = read_json(reason_path)
        items.append(
            {
                "batch_id": r.get("batch_id", ""),
                "kind": "file",
                "file": r.get("source_file", ""),
                "rows_received": r.get("rows_received"),
                "rows_quarantined": r.get("rows_quarantined"),
                "reasons": {r.get("reason_code", "?"): r.get("message", "")},
                "at": r.get("quarantined_at", ""),
                "whole_file": True,
            }
        )
    return sorted(items, key=lambda i: i["at"], reverse=True)[:limit]


def read_quarantine(cfg: DatasetConfig, settings: Settings) -> list[dict[str, Any]]:
    """:func:`describe_quarantine` of ``cfg``'s data zones; empty, with a warning, when the data store cannot
    be read (the view still shows MLflow's side)."""
    from driftloop.core.errors import StorageError

    try:
        return describe_quarantine(StatePaths.for_dataset(cfg, settings))
    except StorageError as exc:
        log.warning("%s: quarantine not shown: %s", cfg.name, exc)
        return []


def describe_audit(store: Any, cfg: DatasetConfig, limit: int = 20) -> list[dict[str, Any]]:
    """The newest champion moves (who, from, to, why, gate passed, override, undo: a rollback without
    ``--to``); empty without an audit store."""
    if store is None:
        return []
    from driftloop.governance.audit import COLUMNS
    from driftloop.governance.rollback import is_undo

    entries = store.entries(cfg.registered_model_name)[-limit:]
    keys = [c for c in COLUMNS if c not in ("id", "dataset", "model_name", "evidence")]
    return [{**{k: e.get(k) for k in keys}, "undo": is_undo(e)} for e in reversed(entries)]


def read_serving_kpis(serving_url: str, timeout_s: float = 2.0) -> ServingKpis:
    """p99 latency (ms) and the 5xx share from the serving ``/metrics``; empty when none is configured or
    reachable."""
    if not serving_url:
        return {}
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"{serving_url.rstrip('/')}/metrics", timeout=timeout_s) as response:
            text = response.read().decode()
    except OSError as exc:
        return {"serving_error": str(exc)}
    buckets: dict[float, float] = {}
    total = errors = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("request_latency_seconds_bucket"):
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif s.name.endswith("requests_total"):
                total += s.value
                errors += s.value if str(s.labels.get("status", "")).startswith("5") else 0.0
    count = buckets.get(float("inf"), 0.0)
    p99 = next((le for le, c in sorted(buckets.items()) if count and c >= 0.99 * count), None)
    return {
        "serving_p99_ms": None if p99 in (None, float("inf")) else p99 * 1000,
        "serving_5xx_share": errors / total if total else None,
        "serving_requests": total,
    }


def describe_kpis(client: Any, cfg: DatasetConfig, versions: list[VersionRow], champion: str | None) -> Kpis:
    """Primary metric and training time of the champion, snapshot rows, ingest and inference rows per
    second."""
    champ = next((v for v in versions if v["version"] == champion), None)
    _, data_runs = _runs(client, cfg, "data", 1)
    _, inference_runs = _runs(client, cfg, "inference", 1)
    kpis: Kpis = {
        "primary_metric": cfg.gates.primary_metric,
        "primary_value": champ["primary_metric"] if champ else None,
        "train_seconds": champ["train_seconds"] if champ else None,
        "snapshot_rows": None,
        "ingest_rows_per_s": None,
        "inference_rows_per_s": None,
    }
    if data_runs:
        rows, seconds = data_runs[0].data.metrics.get(bus.ROWS), _duration_s(data_runs[0])
        kpis["snapshot_rows"] = rows
        kpis["ingest_rows_per_s"] = data_runs[0].data.metrics.get(bus.ROWS_PER_S) or (
            rows / seconds if rows and seconds else None
        )
    if inference_runs:
        kpis["inference_rows_per_s"] = inference_runs[0].data.metrics.get(bus.ROWS_PER_S)
    return kpis


def describe_dataset(
    client: Any,
    cfg: DatasetConfig,
    settings: Settings,
    store: Any = None,
    runs_n: int = MONITORING_RUNS,
) -> DatasetOverview:
    """Everything the view shows about one dataset."""
    ui_url = settings.mlflow_ui_url
    versions, aliases = describe_versions(client, cfg, ui_url)
    champion, challenger = aliases.get(bus.CHAMPION), aliases.get(bus.CHALLENGER)
    monitoring = describe_monitoring(client, cfg, ui_url, runs_n)
    by_version = {v["version"]: v for v in versions}
    drop = cfg.monitoring.performance_drop_threshold
    for point in monitoring:
        scored_by = by_version.get(point["champion_version"]) or by_version.get(champion or "")
        holdout = scored_by["holdout"].get(point["holdout_metric"]) if scored_by else None
        point["holdout_value"] = holdout
        point["live_bound"] = (
            None if holdout is None else holdout * (1 + drop if point["lower_is_better"] else 1 - drop)
        )
    audit = describe_audit(store, cfg)
    facts = loop_facts(client, cfg, champion, versions, monitoring, audit)
    return {
        "dataset": cfg.name,
        "model_name": cfg.registered_model_name,
        "task": cfg.task,
        "loop_state": loop_state(facts).as_dict(),
        "champion": next((v for v in versions if v["version"] == champion), None),
        "challenger": next((v for v in versions if v["version"] == challenger), None),
        "versions": versions,
        "version_count": max((int(v["version"]) for v in versions), default=0),  # the latest number
        "drift_threshold": cfg.monitoring.drift_share_threshold,
        "drop_threshold": cfg.monitoring.performance_drop_threshold,
        "monitoring": monitoring,
        "last_decision": monitoring[-1] if monitoring else None,
        "retrains": [v for v in versions if v["trigger"]][:VERSIONS_SHOWN],
        "audit": audit,
        "quarantine": read_quarantine(cfg, settings),
        "kpis": describe_kpis(client, cfg, versions, champion),
    }


def _task_config(entry: CatalogEntry, settings: Settings) -> DatasetConfig:
    """The config as tasks load it (``DRIFTLOOP_CONFIG_OVERRIDES`` applied); the catalog's when that fails."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.errors import ConfigError

    config = entry.config
    if config is None:  # a refused config: build_overview passes usable entries only
        raise ConfigError(entry.error or f"{entry.name}: the catalog refused this config")
    if not settings.overrides_json:
        return config  # validated by the catalog already; a second YAML parse costs 30 ms a dataset
    try:
        return load_dataset_config(entry.name, settings)
    except ConfigError as exc:
        log.warning("%s: overrides not applied: %s", entry.name, exc)
        return config


def build_overview(
    settings: Settings | None = None,
    client: Any = None,
    datasets: list[str] | None = None,
    runs_n: int = MONITORING_RUNS,
    serving_url: str | None = None,
    workers: int = 4,
) -> Overview:
    """The view's data for every usable dataset of the deployment (or ``datasets``).

    Args:
        settings: Process settings; default :meth:`Settings.from_env`.
        client: An ``MlflowClient``; default one for ``settings``.
        datasets: Only these datasets (e.g. the DAG-level view); default all usable ones.
        runs_n: Monitoring runs per dataset.
        serving_url: Online serving base URL for p99 and 5xx; default ``settings.serving_url``; skipped when
            empty.
        workers: Datasets read in parallel (the MLflow calls are I/O).

    Returns:
        ``{"datasets": [...], "refused": [...], "serving": {...}, "mlflow_ui_url": ...}``.
    """
    from driftloop.core.tracking import get_client
    from driftloop.governance.audit import open_store

    settings = settings or Settings.from_env()
    client = client or get_client(settings)
    catalog = read_catalog(settings)
    entries = [e for e in catalog.entries if e.usable and (datasets is None or e.name in datasets)]
    try:
        store = open_store(settings)
    except Exception as exc:  # the view still shows MLflow's side without the audit log
        log.warning("champion audit log unavailable: %s", exc)
        store = None
    configs = [_task_config(e, settings) for e in entries]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(configs) or 1))) as pool:
        described = list(
            pool.map(lambda cfg: describe_dataset(client, cfg, settings, store, runs_n), configs)
        )
    url = settings.serving_url if serving_url is None else serving_url
    return {
        "datasets": described,
        "refused": [{"dataset": e.name, "error": e.error} for e in catalog.refused],
        "serving": read_serving_kpis(url),
        "mlflow_ui_url": settings.mlflow_ui_url,
    }
