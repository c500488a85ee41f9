"""The validation gate: every check a candidate must pass before it may serve, each with its numbers.

Checks (limits per dataset in ``gates`` and ``fairness``):

* ``floor.<metric>``: absolute floors on the candidate's holdout metrics (ceilings for RMSE, MAE, MAPE);
* ``beats_champion``: the candidate's primary metric on its own holdout is at least the champion's on the same
rows
  plus ``min_improvement`` (at most minus it, for error metrics), each side deciding with its own recorded
  threshold; ``beats_champion.production``: the same on the latest labelled production window (the
  holdout rows labelled by the newest label file), when it holds enough rows;
* ``fairness.<attribute>.<gap>``: demographic-parity and equalized-odds differences on the holdout within
limits;
* ``latency``: predict time per row on a 1,000-row holdout batch; ``size``: the logged model's megabytes;
* ``behaviour.<case>``: the dataset's behavioural tests (:mod:`driftloop.governance.behaviour`).

A check without a configured limit is still measured and reported (``passed: None``); only failing checks
block.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from driftloop.core import bus, holdout, task_types
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths
from driftloop.core.task_types import Decision, read_decision

LATENCY_ROWS = 1000


def _check(name: str, passed: bool | None, value: Any, limit: Any, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": passed, "value": value, "limit": limit, "detail": detail}


def floor_checks(cfg: DatasetConfig, metrics: dict[str, float]) -> list[dict[str, Any]]:
    """One check per limit in ``cfg.gates.floors``: a floor, or a ceiling for error metrics (RMSE, MAE,
    MAPE)."""
    checks = []
    for metric, limit in cfg.gates.floors.items():
        key = task_types.gate_metric_key(metric)
        value = metrics.get(key)
        ok = value is not None and not math.isnan(value) and task_types.at_least_as_good(key, value, limit)
        shown = "missing" if value is None else f"{value:.4f}"
        if task_types.is_lower_better(key):
            detail = f"{metric} {shown} {'<=' if ok else '>'} ceiling {limit}"
        else:
            detail = f"{metric} {shown} {'>=' if ok else '<'} floor {limit}"
        checks.append(_check(f"floor.{metric}", ok, value, limit, detail))
    return checks


def _comparison(
    cfg: DatasetConfig,
    name: str,
    where: str,
    rows: int,
    candidate: float,
    champion: float,
    champion_version: str,
) -> dict[str, Any]:
    margin = cfg.gates.min_improvement
    primary = cfg.gates.primary_metric
    if task_types.is_lower_better(task_types.gate_metric_key(primary)):  # an error: smaller wins
        target, sign, better = champion - margin, "-", "<="
    else:
        target, sign, better = champion + margin, "+", ">="
    ok = task_types.at_least_as_good(task_types.gate_metric_key(primary), candidate, target)
    worse = {"<=": ">", ">=": "<"}[better]
    detail = (
        f"{primary} on {where} ({rows} rows): candidate {candidate:.4f} {better if ok else worse} champion "
        f"v{champion_version} {champion:.4f} {sign} min_improvement {margin}"
    )
    return _check(name, ok, candidate, target, detail)


def production_window(cfg: DatasetConfig, holdout_df: Any, settings: Settings | None) -> Any:
    """Holdout rows labelled by the newest accepted label file (the latest labelled production window)."""
    from driftloop.core.storage import list_manifests

    manifests = [
        m for m in list_manifests(StatePaths.for_dataset(cfg, settings).labels_dir) if m.get("labels_uri")
    ]
    if not manifests:
        return holdout_df.iloc[0:0]
    import pandas as pd

    from driftloop.core.state import uri_to_path

    ids = pd.read_parquet(uri_to_path(manifests[-1]["labels_uri"]), columns=[cfg.id_column])[cfg.id_column]
    return holdout_df[holdout_df[cfg.id_column].isin(set(ids))]


def champion_checks(
    cfg: DatasetConfig,
    candidate: tuple[Any, Decision],
    champion: tuple[Any, Decision],
    champion_version: str,
    holdout_df: Any,
    settings: Settings | None,
) -> list[dict[str, Any]]:
    """Head-to-head on the candidate's holdout and, with enough rows, on the latest production window.

    ``candidate`` and ``champion`` are ``(model, decision)``: each side decides with its own threshold and
    classes.
    """
    key = task_types.gate_metric_key(cfg.gates.primary_metric)

    def score(side: tuple[Any, Decision], rows: Any) -> float:
        return holdout.score_on_holdout(cfg, side[0], rows, side[1])[key]

    checks = [
        _comparison(
            cfg,
            "beats_champion",
            "the candidate's holdout",
            len(holdout_df),
            score(candidate, holdout_df),
            score(champion, holdout_df),
            champion_version,
        )
    ]
    window = production_window(cfg, holdout_df, settings)
    if len(window) >= cfg.gates.production_window_min_rows:
        checks.append(
            _comparison(
                cfg,
                "beats_champion.production",
                "the latest labelled production window",
                len(window),
                score(candidate, window),
                score(champion, window),
                champion_version,
            )
        )
    else:
        checks.append(
            _check(
                "beats_champion.production",
                None,
                len(window),
                cfg.gates.production_window_min_rows,
                f"{len(window)} labelled production rows in the holdout; "
                f"{cfg.gates.production_window_min_rows} needed to compare there",
            )
        )
    return checks


def fairness_checks(cfg: DatasetConfig, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each attribute's parity gaps against ``fairness.max_*`` (reported only when no limit is set)."""
    from driftloop.governance.fairness import GAPS

    limits = {
        "demographic_parity_difference": cfg.fairness.max_demographic_parity_difference,
        "equalized_odds_difference": cfg.fairness.max_equalized_odds_difference,
    }
    checks = []
    for attribute, entry in report.items():
        for gap in (g for g in GAPS if g in entry):
            value, limit = entry[gap], limits.get(gap)
            ok = None if limit is None else value <= limit
            bound = "no limit" if limit is None else f"limit {limit}"
            checks.append(
                _check(
                    f"fairness.{attribute}.{gap}",
                    ok,
                    value,
                    limit,
                    f"{gap.replace('_', ' ')} for {attribute} {value:.4f} ({bound})",
                )
            )
    return checks


def latency_check(cfg: DatasetConfig, model: Any, holdout_df: Any, decision: Decision) -> dict[str, Any]:
    """Predict time per row on one batch of 1,000 holdout rows (resampled when fewer; best of three)."""
    rows = holdout_df[cfg.features]
    batch = rows.sample(LATENCY_ROWS, replace=len(rows) < LATENCY_ROWS, random_state=0).reset_index(drop=True)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        decision.predict(model, batch)
        timings.append(time.perf_counter() - started)
    per_row_ms = 1000 * min(timings) / max(len(batch), 1)
    limit = cfg.gates.max_latency_ms_per_row
    ok = None if limit is None else per_row_ms <= limit
    return _check(
        "latency",
        ok,
        per_row_ms,
        limit,
        f"{per_row_ms:.3f} ms per row on a {len(batch)}-row batch "
        f"({'no limit' if limit is None else f'limit {limit} ms'})",
    )


def model_size_mb(model_uri: str, settings: Settings | None) -> float:
    """Megabytes of a registered model's artifacts (downloaded to measure them)."""
    import tempfile

    import mlflow

    from driftloop.core.tracking import mlflow_scope

    with mlflow_scope(settings), tempfile.TemporaryDirectory(prefix="driftloop-size-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        return sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) / 1e6


def size_check(cfg: DatasetConfig, size_mb: float) -> dict[str, Any]:
    """The model's size against ``gates.max_model_size_mb``."""
    limit = cfg.gates.max_model_size_mb
    ok = None if limit is None else size_mb <= limit
    return _check(
        "size",
        ok,
        size_mb,
        limit,
        f"{size_mb:.2f} MB ({'no limit' if limit is None else f'limit {limit} MB'})",
    )


def behaviour_checks(
    cfg: DatasetConfig, model: Any, holdout_df: Any, decision: Decision
) -> list[dict[str, Any]]:
    """One check per behavioural test case."""
    from driftloop.governance.behaviour import run_behaviour_tests

    return [
        _check(
            f"behaviour.{r['name']}",
            r["passed"],
            r.get("pass_share", r.get("score")),
            r.get("min_pass_share"),
            f"{r['kind']}: {r['detail']}",
        )
        for r in run_behaviour_tests(cfg, model, holdout_df, decision)
    ]


def judge(
    cfg: DatasetConfig,
    candidate_version: str,
    champion: dict[str, str] | None,
    client: Any,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Run every check on a registered candidate (and its champion, when there is one).

    Args:
        cfg: Dataset config.
        candidate_version: Registered version to judge.
        champion: ``registry.resolve_alias`` of the current champion, or None.
        client: MLflow client.
        settings: Process settings.

    Returns:
        ``{"passed", "candidate_version", "champion_version", "metrics", "checks", "fairness", "failed"}``;
        ``failed`` lists the names of failing checks.
    """
    from driftloop.core.registry import load_model
    from driftloop.governance.fairness import assess_decisions

    name = cfg.registered_model_name
    version = client.get_model_version(name, candidate_version)
    model_uri = bus.model_version_uri(name, candidate_version)
    candidate = load_model(model_uri, settings)
    decision = read_decision(cfg, version.tags)
    holdout_df = holdout.load_holdout(client, version.run_id)
    metrics = holdout.score_on_holdout(cfg, candidate, holdout_df, decision)
    checks = floor_checks(cfg, metrics)
    if champion is not None:
        champion_side = (
            load_model(champion["model_uri"], settings),
            read_decision(cfg, client.get_model_version(name, champion["model_version"]).tags),
        )
        checks += champion_checks(
            cfg, (candidate, decision), champion_side, champion["model_version"], holdout_df, settings
        )
    fairness = assess_decisions(
        cfg, holdout_df, decision, decision.predict(candidate, holdout_df[cfg.features])
    )
    checks += fairness_checks(cfg, fairness)
    checks.append(latency_check(cfg, candidate, holdout_df, decision))
    checks.append(size_check(cfg, model_size_mb(model_uri, settings)))
    checks += behaviour_checks(cfg, candidate, holdout_df, decision)
    failed = [c["name"] for c in checks if c["passed"] is False]
    return {
        "passed": not failed,
        "candidate_version": str(candidate_version),
        "champion_version": champion["model_version"] if champion else None,
        "metrics": metrics,
        "checks": checks,
        "fairness": fairness,
        "failed": failed,
    }


def summarize(report: dict[str, Any]) -> str:
    """One line for the version's ``gate_reason`` tag: the verdict and the checks that decided it."""
    checks = {c["name"]: c for c in report["checks"]}
    candidate, champion = report["candidate_version"], report["champion_version"]
    failing = [checks[n]["detail"] for n in report["failed"]]
    if failing:
        head = f"version {candidate} fails {len(failing)} check(s): " + "; ".join(failing)
        tail = f"; champion v{champion} keeps serving" if champion else ""
        if "beats_champion" in report["failed"]:
            head = f"does not beat champion: {checks['beats_champion']['detail']}" + (
                "; also fails: "
                f"{'; '.join(checks[n]['detail'] for n in report['failed'] if n != 'beats_champion')}"
                if len(failing) > 1
                else ""
            )
        return head + tail
    if champion is None:
        floors = ", ".join(c["detail"] for c in report["checks"] if c["name"].startswith("floor."))
        return f"first champion: version {candidate} passes every check ({len(checks)}): {floors}"
    return (
        f"beats champion: {checks['beats_champion']['detail']}; every other check passes ({len(checks) - 1})"
    )
