"""The validation gate: every check a candidate must pass before it may serve, each with its numbers.

Checks (limits per dataset in ``gates`` and ``fairness``):

* ``floor.<metric>``: absolute floors on the candidate's holdout metrics (ceilings for RMSE, MAE, MAPE);
* ``decision.degenerate``: the candidate's decisions on its holdout are not degenerate: it predicts every
  class it had enough rows to predict (:mod:`.decision_checks`); ``decision.positive_rate`` (binary,
  reported): holdout and out-of-fold predicted-positive rates side by side;
* ``beats_champion``: a paired comparison of the primary metric with the champion's on the same holdout rows
  (:mod:`driftloop.governance.comparison`), each side deciding with its own recorded threshold, passed by the
  rule (:meth:`~driftloop.governance.verdict_evidence.EvidenceState.rule`: by the state the gate judges in,
  not by the trigger): superiority or non-inferiority on the interval, not on point estimates;
  ``beats_champion.production``: the same on the latest labelled production window (the holdout rows labelled
  by the newest label file), when it holds enough rows; a window with fewer rows than its rule needs only
  blocks a candidate credibly worse there;
* ``fairness.<attribute>.<gap>``: every gap of the task (demographic parity and equalized odds for binary) on
  the holdout, each with its interval; fails when credibly above its limit (undecided when the interval is
  too wide: reported);
* ``latency``: predict time per row on a 1,000-row holdout batch; ``size``: the logged model's megabytes;
* ``behaviour.<case>``: the dataset's behavioural tests (:mod:`driftloop.governance.behaviour`).

A check without a configured limit is still measured and reported (``passed: None``); only failing checks
block.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from driftloop.core import bus, holdout, task_types
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths
from driftloop.core.task_types import Decision, read_decision
from driftloop.governance.decision_checks import check_entry, decision_checks
from driftloop.governance.governance_results import FairnessReport, GateReport
from driftloop.governance.verdict_evidence import EvidenceState, read_evidence_state

log = logging.getLogger(__name__)
LATENCY_ROWS = 1000


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
        checks.append(check_entry(f"floor.{metric}", ok, value, limit, detail))
    return checks


def _comparison(
    cfg: DatasetConfig,
    name: str,
    where: str,
    truth: Any,
    outputs: tuple[dict[str, Any], dict[str, Any]],
    champion_version: str,
    rule: str,
) -> dict[str, Any]:
    """A head-to-head check: ``rule`` on the paired comparison of ``outputs`` (candidate, champion). ``value``
    is the candidate's metric, ``limit`` the champion's plus ``min_improvement`` (minus, for errors); the
    fields of :func:`~driftloop.governance.comparison.decide` are added (``difference``, ``ci_low``, ``rows``,
    ...)."""
    from driftloop.governance import comparison

    gates, primary = cfg.gates, cfg.gates.primary_metric
    key = task_types.gate_metric_key(primary)
    options: dict[str, Any] = {
        "level": gates.confidence,
        "resamples": gates.bootstrap_resamples,
        "seed": cfg.training.seed,
    }
    result = comparison.compare_outputs(
        key, cfg.task, truth, outputs[1], outputs[0], positive_label=cfg.positive_label, **options
    )
    verdict = comparison.decide(result, key, rule, min_improvement=gates.min_improvement, margin=gates.margin)
    ok, champion = verdict["passed"], verdict["champion"]
    sign = -1 if task_types.is_lower_better(key) else 1
    needed = verdict["needed_rows"]
    detail = (
        f"{primary} on {where} ({verdict['rows']} rows, {verdict['method']}): candidate "
        f"{verdict['challenger']:.4f} vs champion v{champion_version} {champion:.4f}, difference "
        f"{verdict['difference']:+.4f} ({gates.confidence:.0%} CI {verdict['ci_low']:+.4f} to "
        f"{verdict['ci_high']:+.4f}); {rule}: improvement lower bound {verdict['improvement_low']:+.4f} "
        f"{'>' if ok else 'not >'} {verdict['bound']:+.4f}"
        + (f"; about {needed} rows give this rule 80% power" if needed else "")
    )
    check = check_entry(name, ok, verdict["challenger"], champion + sign * gates.min_improvement, detail)
    public = {k: v for k, v in verdict.items() if k not in ("passed", "challenger")}
    return {**check, **public, "candidate": verdict["challenger"]}


def production_window(cfg: DatasetConfig, holdout_df: Any, settings: Settings | None) -> Any:
    """Holdout rows labelled by the newest accepted label file (the latest labelled production window)."""
    from driftloop.core.storage import list_manifests, location, read_parquet

    manifests = [
        m for m in list_manifests(StatePaths.for_dataset(cfg, settings).labels_dir) if m.get("labels_uri")
    ]
    if not manifests:
        return holdout_df.iloc[0:0]
    labels = read_parquet(location(manifests[-1]["labels_uri"]), columns=[cfg.id_column])
    return holdout_df[holdout_df[cfg.id_column].isin(set(labels[cfg.id_column]))]


def champion_checks(
    cfg: DatasetConfig,
    outputs: tuple[dict[str, Any], dict[str, Any]],
    champion_version: str,
    holdout_df: Any,
    settings: Settings | None,
    rule: str,
) -> list[dict[str, Any]]:
    """Head-to-head on the candidate's holdout and, with enough rows, on the latest production window.

    ``outputs`` are :meth:`Decision.predict` of (candidate, champion) on ``holdout_df``, each deciding with
    its own threshold and classes; ``rule`` is the evidence state's (:mod:`.verdict_evidence`).
    """
    import numpy as np

    truth = holdout_df[cfg.target].to_numpy()
    checks = [
        _comparison(cfg, "beats_champion", "the candidate's holdout", truth, outputs, champion_version, rule)
    ]
    window = production_window(cfg, holdout_df, settings)
    if len(window) >= cfg.gates.production_window_min_rows:
        mask = holdout_df.index.isin(window.index)
        candidate, champion = ({k: np.asarray(v)[mask] for k, v in side.items()} for side in outputs)
        sides = (candidate, champion)
        where = "the latest labelled production window"
        check = _comparison(
            cfg, "beats_champion.production", where, truth[mask], sides, champion_version, rule
        )
        checks.append(_unless_underpowered(check))
    else:
        checks.append(
            check_entry(
                "beats_champion.production",
                None,
                len(window),
                cfg.gates.production_window_min_rows,
                f"{len(window)} labelled production rows in the holdout; "
                f"{cfg.gates.production_window_min_rows} needed to compare there",
            )
        )
    return checks


def _unless_underpowered(check: dict[str, Any]) -> dict[str, Any]:
    """A failing production-window comparison on fewer rows than its rule needs is reported, not enforced.

    A window of a few hundred rows cannot show non-inferiority or superiority within a small margin, so
    letting it veto would let noise decide (the holdout comparison still does). It still blocks when the whole
    interval lies beyond the rule's bound: a candidate credibly worse there fails whatever the rows.
    """
    needed, rows = check.get("needed_rows"), check.get("rows", 0)
    if check["passed"] is not False or not needed or rows >= needed:
        return check
    improvement_high = check["improvement_low"] + (check["ci_high"] - check["ci_low"])
    if improvement_high <= check["bound"]:
        return check
    note = f"; reported, not enforced: {rows} rows, fewer than the {needed} the rule needs"
    return {**check, "passed": None, "underpowered": True, "detail": check["detail"] + note}


def fairness_checks(cfg: DatasetConfig, report: FairnessReport) -> list[dict[str, Any]]:
    """Each attribute's gaps against their limits, with the numbers: gap, interval, limit, smallest group.

    A gap blocks only when it is credibly above its limit (its interval's lower bound is above it); one above
    the limit whose interval reaches below it is undecided and reported (``passed`` None, ``outcome``
    ``undecided``), as is every gap without a limit and every gap under ``fairness.mode: report``
    (:func:`driftloop.governance.fairness.judge_gaps` decides).
    """
    from driftloop.governance import fairness

    checks = []
    for attribute, entry in report.items():
        for gap, judged in entry.get("judged", {}).items():
            outcome, limit, enforced = judged["outcome"], judged["limit"], judged["enforced"]
            passed = {fairness.PASS: True, fairness.FAIL: False}.get(outcome) if enforced else None
            checks.append(
                {
                    **check_entry(
                        f"fairness.{attribute}.{gap}",
                        passed,
                        judged["value"],
                        limit,
                        fairness.describe_gap(cfg, attribute, gap, judged),
                    ),
                    "ci_low": judged["ci_low"],
                    "ci_high": judged["ci_high"],
                    "smallest_group_rows": judged["smallest_group_rows"],
                    "outcome": outcome,
                }
            )
    return checks


def latencycheck_entry(cfg: DatasetConfig, model: Any, holdout_df: Any, decision: Decision) -> dict[str, Any]:
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
    return check_entry(
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


def sizecheck_entry(cfg: DatasetConfig, size_mb: float) -> dict[str, Any]:
    """The model's size against ``gates.max_model_size_mb``."""
    limit = cfg.gates.max_model_size_mb
    ok = None if limit is None else size_mb <= limit
    return check_entry(
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
        check_entry(
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
    state: EvidenceState | None = None,
) -> GateReport:
    """Run every check on a registered candidate (and its champion, when there is one).

    Args:
        cfg: Dataset config.
        candidate_version: Registered version to judge.
        champion: ``registry.resolve_alias`` of the current champion, or None.
        client: MLflow client.
        settings: Process settings.
        state: The evidence state judged in (it picks the head-to-head rule); read now when None.

    Returns:
        ``{"passed", "candidate_version", "champion_version", "metrics", "checks", "fairness", "failed",
        "rule", "evidence_state", "evidence_key"}``; ``failed`` lists the names of failing checks, ``rule``
        the head-to-head rule (None without a champion), ``evidence_state`` the state that chose it. The
        comparison and positive rates also go on the version as tags (:func:`evidence_tags`).
    """
    from driftloop.core.registry import load_model
    from driftloop.governance.fairness import assess_decisions

    name = cfg.registered_model_name
    version = client.get_model_version(name, candidate_version)
    run = client.get_run(version.run_id)
    model_uri = bus.model_version_uri(name, candidate_version)
    candidate = load_model(model_uri, settings)
    decision = read_decision(cfg, version.tags)
    holdout_df = holdout.load_holdout(client, version.run_id)
    outputs = decision.predict(candidate, holdout_df[cfg.features])
    metrics = task_types.holdout_metrics(
        decision, decision.encode(holdout_df[cfg.target]).to_numpy(), outputs
    )
    checks = floor_checks(cfg, metrics)
    checks += decision_checks(cfg, decision, outputs, holdout_df, run.data.metrics.get(bus.OOF_POSITIVE_RATE))
    if state is None:
        state = read_evidence_state(cfg, client, champion["model_version"] if champion else None, settings)
    rule = state.rule(cfg) or cfg.gates.rule_on_new_data
    if champion is not None:
        model = load_model(champion["model_uri"], settings)
        side = read_decision(cfg, client.get_model_version(name, champion["model_version"]).tags)
        champion_outputs = side.predict(model, holdout_df[cfg.features])
        checks += champion_checks(
            cfg, (outputs, champion_outputs), champion["model_version"], holdout_df, settings, rule
        )
    fairness = assess_decisions(cfg, holdout_df, decision, outputs)
    checks += fairness_checks(cfg, fairness)
    checks.append(latencycheck_entry(cfg, candidate, holdout_df, decision))
    checks.append(sizecheck_entry(cfg, model_size_mb(model_uri, settings)))
    checks += behaviour_checks(cfg, candidate, holdout_df, decision)
    failed = [c["name"] for c in checks if c["passed"] is False]
    for c in checks:  # one line per check, as the card shows them
        verdict = {True: "pass", False: "FAIL", None: "measured"}[c["passed"]]
        log.info("gate v%s check %s: %s: %s", candidate_version, c["name"], verdict, c.get("detail", ""))
    report: GateReport = {
        "passed": not failed,
        "candidate_version": str(candidate_version),
        "champion_version": champion["model_version"] if champion else None,
        "metrics": metrics,
        "checks": checks,
        "fairness": fairness,
        "failed": failed,
        "rule": rule if champion is not None else None,
        "evidence_state": {**state.to_dict(), "summary": state.describe()},
        "evidence_key": state.key(cfg, str(candidate_version)),
    }
    for key, value in evidence_tags(report).items():
        if value:
            client.set_model_version_tag(name, str(candidate_version), key, value)
    return report


def evidence_tags(report: GateReport) -> dict[str, str]:
    """The version tags of a gate report's comparison (holdout; production window as JSON) and positive
    rates."""
    import json

    checks = {c["name"]: c for c in report["checks"]}
    tags = {}
    fields = {
        "rule": bus.GATE_RULE_TAG,
        "method": bus.GATE_METHOD_TAG,
        "difference": bus.GATE_DIFFERENCE_TAG,
        "ci_low": bus.GATE_CI_LOW_TAG,
        "ci_high": bus.GATE_CI_HIGH_TAG,
        "rows": bus.GATE_ROWS_TAG,
        "needed_rows": bus.GATE_NEEDED_ROWS_TAG,
    }
    head = checks.get("beats_champion")
    if head is not None:
        tags.update({tag: _text(head.get(field)) for field, tag in fields.items()})
    window = checks.get("beats_champion.production")
    if window is not None and "rule" in window:
        tags[bus.GATE_PRODUCTION_COMPARISON_TAG] = json.dumps({f: _text(window.get(f)) for f in fields})
    rates = checks.get("decision.positive_rate")
    if rates is not None:
        tags[bus.HOLDOUT_POSITIVE_RATE_TAG] = _text(rates["holdout_positive_rate"])
        tags[bus.OOF_POSITIVE_RATE_TAG] = _text(rates["oof_positive_rate"])
    return tags


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def summarize(report: GateReport) -> str:
    """One line for the version's ``gate_reason`` tag: the verdict and the checks that decided it."""
    checks = {c["name"]: c for c in report["checks"]}
    candidate, champion = report["candidate_version"], report["champion_version"]
    failing = [checks[n]["detail"] for n in report["failed"]]
    if failing:
        head = f"version {candidate} fails {len(failing)} check(s): " + "; ".join(failing)
        tail = f"; champion v{champion} keeps serving" if champion else ""
        if "beats_champion" in report["failed"]:
            head = f"{_verdict(checks, False)}: {checks['beats_champion']['detail']}" + (
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
        f"{_verdict(checks, True)}: {checks['beats_champion']['detail']}; every other check passes "
        f"({len(checks) - 1})"
    )


def _verdict(checks: dict[str, dict[str, Any]], passed: bool) -> str:
    """The head-to-head verdict in the words of its rule."""
    if checks["beats_champion"].get("rule") == "non_inferiority":
        return "within margin of champion" if passed else "not shown within margin of champion"
    return "beats champion" if passed else "does not beat champion"


def undecided_checks(report: GateReport) -> list[str]:
    """Checks the gate measured but could not decide: an underpowered comparison, an undecided fairness
    gap."""
    return [
        c["name"]
        for c in report.get("checks", [])
        if c.get("passed") is None and (c.get("underpowered") or c.get("outcome") == "undecided")
    ]
