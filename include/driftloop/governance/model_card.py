"""Model cards: what each version is, how it was made, how it did against the champion and the gate, its
limits.

Sections follow the Hugging Face model card template: details, intended use, training data (snapshot, size,
lineage), evaluation against the champion, the gate verdict with every check, fairness, top features and
surrogate rules, limitations, and the promotion history from the audit log. The card is logged as Markdown and
JSON artifacts of the training run and written into the version's description, which the MLflow UI renders on
the version page. The registry stores at most 5,000 characters of description, so long sections are shortened
there (the artifact keeps everything). The registered model's description says what the model is for and which
version serves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from driftloop.core import bus
from driftloop.core.calibration_map import describe_calibration
from driftloop.core.config import DatasetConfig
from driftloop.governance.card_markdown import render_markdown
from driftloop.governance.governance_results import Evidence

log = logging.getLogger(__name__)

DESCRIPTION_LIMIT = 4900  # the registry's column holds 5,000 characters
CARD_DIR = "model_card"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def _count(value: Any) -> str:
    return "?" if value is None else f"{int(value):,}"


CHECK_COLUMNS = ("name", "passed", "value", "limit")
CHECK_HIDDEN = {"detail"}  # long sentences: the gate reason carries them


def _check_rows(report: dict[str, Any] | None, missing: str = "") -> list[str]:
    """Every check of the gate report as a table row; fields beyond name/result/value/limit get their own
    column."""
    if not report:
        return [f"_not judged yet_{f' ({missing})' if missing else ''}"]
    extras = list(
        dict.fromkeys(
            k for c in report["checks"] for k in c if k not in CHECK_COLUMNS and k not in CHECK_HIDDEN
        )
    )
    header = ["check", "result", "value", "limit", *extras]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for check in report["checks"]:
        verdict = {True: "pass", False: "**FAIL**", None: "report"}.get(check.get("passed"), "report")
        cells = [check.get("name", "?"), verdict, _fmt(check.get("value")), _fmt(check.get("limit"))]
        cells += [_fmt(check.get(k)) for k in extras]
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return rows


def _fairness_rows(
    cfg: DatasetConfig, fairness: dict[str, Any] | None, source: str, missing: str
) -> list[str]:
    """Per attribute, a row per group with whatever metrics the task measured (counts as integers), then a row
    per gap with its interval, limit, smallest group and verdict."""
    from driftloop.governance.fairness import COUNTS, GAPS

    if not cfg.sensitive_features:
        return ["_no sensitive attribute declared_"]
    if not fairness:
        return [
            f"_not available for {', '.join(cfg.sensitive_features)}: "
            f"{missing or 'no fairness report logged'}_"
        ]
    rows = [f"Measured on {source}."]
    for attribute, entry in fairness.items():
        groups = entry.get("groups", {})
        metrics = list(dict.fromkeys(k for m in groups.values() for k in m))
        rows += [
            "",
            f"**{attribute}** ({_count(entry.get('rows'))} rows)",
            "",
            "| group | " + " | ".join(m.replace("_", " ") for m in metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for group, values in groups.items():
            cells = [_count(values.get(m)) if m in COUNTS else _fmt(values.get(m)) for m in metrics]
            rows.append(f"| {group} | " + " | ".join(cells) + " |")
        if entry.get("judged"):
            rows += [
                "",
                "| gap | value | interval | limit | smallest group | verdict |",
                "|---|---|---|---|---|---|",
            ]
            rows += [_gap_row(gap, judged) for gap, judged in entry["judged"].items()]
        elif any(gap in entry for gap in GAPS):  # a report logged before gaps were judged
            rows += [
                "",
                "Gaps: " + ", ".join(f"{g.replace('_', ' ')} {_fmt(entry[g])}" for g in GAPS if g in entry),
            ]
    return rows


def _gap_row(gap: str, judged: dict[str, Any]) -> str:
    """One gap of the fairness table: value, interval, limit, smallest group and the verdict in words."""
    limit = judged.get("limit")
    shown = "none" if limit is None else f"{limit:.4g}"
    if limit is not None and judged.get("relative_limit") is not None:
        shown += f" ({judged['relative_limit']:g} x MAE {judged['overall_mae']:.4g})"
    outcome, enforced = str(judged.get("outcome")), judged.get("enforced")
    verdict = {
        "pass": "within the limit",
        "fail": "**FAIL**: credibly above the limit"
        if enforced
        else "credibly above the limit (report mode)",
        "undecided": "**undecided**: above the limit but its interval is too wide to decide (not enforced)",
    }.get(outcome, "reported (no limit)")
    level = "?" if judged.get("level") is None else f"{judged['level']:.0%}"
    cells = [
        gap.replace("_", " "),
        _fmt(judged.get("value")),
        f"{_fmt(judged.get('ci_low'))} to {_fmt(judged.get('ci_high'))} ({level})",
        shown,
        f"{judged.get('smallest_group', '?')} ({_count(judged.get('smallest_group_rows'))} rows)",
        verdict,
    ]
    return "| " + " | ".join(cells) + " |"


def _approval_lines(approval: dict[str, str]) -> list[str]:
    """A person's decision in Airflow on this version (approve, reject, or an approval that came too late)."""
    if not approval.get("decision"):
        return []
    comment = f": {approval['comment']}" if approval.get("comment") else ""
    return [
        "",
        f"Approval in Airflow: **{approval['decision']}** by {approval['by']} at {approval['at']}{comment}",
    ]


def _history_rows(history: Sequence[Mapping[str, Any]], version: str) -> list[str]:
    mine = [e for e in history if version in (e["from_version"], e["to_version"])]
    if not mine:
        return ["_never champion_"]
    return [
        f"- {e['recorded_at'][:19]}Z: v{e['from_version'] or '—'} → v{e['to_version'] or '—'} by {e['actor']}"
        f"{' (**override** of a rejected version)' if e['override'] else ''}: {e['reason'][:200]}"
        for e in mine
    ]


def build_card(cfg: DatasetConfig, facts: dict[str, Any]) -> dict[str, Any]:
    """The card as a dict of sections (Markdown bodies), from facts gathered by :func:`gather_facts`."""
    run, report, evidence = facts["run"], facts.get("gate"), facts.get("evidence") or {}
    missing = facts.get("missing", {})
    metrics = {k: run["metrics"][k] for k in bus.HOLDOUT_METRICS if k in run["metrics"]}
    snapshot = facts.get("snapshot") or {}
    importance = evidence.get("shap_importance", [])[:5]
    surrogate = evidence.get("surrogate", {})
    return {
        "title": f"{cfg.registered_model_name} v{facts['version']}",
        "details": (
            f"- Estimator: {run['tags'].get(bus.BEST_MODEL_TAG, '?')} (PyCaret pipeline, cloudpickle)\n"
            f"- Training run: `{run['run_id']}`; trigger: {run['tags'].get(bus.TRIGGER_REASON_TAG, '?')}; "
            f"Airflow run: `{run['tags'].get(bus.AIRFLOW_RUN_ID_TAG, '—')}`\n"
            f"- Code: git `{run['tags'].get(bus.GIT_COMMIT_TAG, '?')[:12]}`"
        ),
        "intended_use": (
            f"{(cfg.description or cfg.name).rstrip('.')}. {_decision_text(cfg, run['tags'])} "
            f"One entity per row ({cfg.id_column}). Batch scoring through `inference_pipeline` and "
            "online through `driftloop serve`; not for decisions about individuals without human "
            "review."
        ),
        "training_data": (
            f"Snapshot `{run['tags'].get(bus.SNAPSHOT_HASH_TAG, '?')[:12]}`: {snapshot.get('rows', '?')} "
            f"rows from batches {', '.join(snapshot.get('batch_ids', [])[:6]) or '?'}; "
            f"{_count(run['metrics'].get(bus.TRAIN_ROWS))} training and "
            f"{_count(run['metrics'].get(bus.HOLDOUT_ROWS))} "
            "holdout rows (holdout chosen per entity id by a seeded hash)"
            + (
                f"; {_count(run['metrics'][bus.UNLABELLED_ROWS_EXCLUDED])} accepted rows without a label "
                "left out."
                if run["metrics"].get(bus.UNLABELLED_ROWS_EXCLUDED)
                else "."
            )
        ),
        "evaluation": "\n".join(
            [
                "| metric | holdout |",
                "|---|---|",
                *[f"| {k.removeprefix('holdout_')} | {_fmt(v)} |" for k, v in metrics.items()],
            ]
            + [f"\n{text}" for text in [describe_calibration(run["tags"], run["metrics"])] if text]
            + (
                [f"\nAgainst champion v{report['champion_version']}: see `beats_champion`."]
                if report and report.get("champion_version")
                else []
            )
        ),
        "gate": "\n".join(
            [
                f"Verdict: **{facts.get('verdict', 'not judged')}**. {facts.get('reason', '')}",
                *_approval_lines(facts.get("approval") or {}),
                "",
                *_check_rows(report, missing.get("gate_report", "")),
                *(
                    ["", "Decisions, one per evidence state:", *facts["decisions"]]
                    if facts.get("decisions")
                    else []
                ),
            ]
        ),
        "fairness": "\n".join(
            _fairness_rows(
                cfg, facts.get("fairness"), facts.get("fairness_source", ""), missing.get("fairness", "")
            )
        ),
        "explanations": f"_not available: {missing['evidence']}_"
        if "evidence" in missing and not importance
        else "\n".join(
            [
                f"Top features by mean |SHAP| ({evidence.get('shap_method', '?')}): "
                + ", ".join(f"{r['feature']} {r['mean_abs_shap']:.3f}" for r in importance),
                f"Surrogate tree (depth {surrogate.get('depth', '?')}, fidelity "
                f"{_fmt(surrogate.get('fidelity'))}):",
                "```",
                surrogate.get("rules", "").strip(),
                "```",
            ]
        ),
        "limitations": (
            "Trained on historical data of this dataset only; performance drifts with the population "
            "(monitored: drift share and the live primary metric against the holdout). Sensitive attributes "
            f"({', '.join(cfg.sensitive_features) or 'none'}) are inputs; see the fairness table. "
            "The surrogate rules approximate the model; they are not the model."
        ),
        "history": "\n".join(_history_rows(facts.get("history", []), str(facts["version"]))),
    }


def _decision_text(cfg: DatasetConfig, tags: dict[str, str]) -> str:
    from driftloop.core.errors import ConfigError
    from driftloop.core.task_types import BINARY, REGRESSION, read_decision

    try:
        decision = read_decision(cfg, tags)
    except ConfigError as exc:  # a version registered by hand may not record how it decides
        log.info("model card: the decision is not recorded: %s", exc)
        return f"Predicts {cfg.target} ({cfg.task}; how it decides is not recorded on its training run)."
    if decision.task == BINARY:
        objective = tags.get(bus.THRESHOLD_OBJECTIVE_TAG, "fixed")
        how = (
            "the configured threshold"
            if objective == "fixed"
            else f"chosen by {objective} on cross-validation folds of the training rows"
        )
        return (
            f"Scores {cfg.target} = {decision.classes[1]!r}; "
            f"decides at threshold {decision.threshold:.3f} ({how})."
        )
    if decision.task == REGRESSION:
        return f"Predicts {cfg.target} (regression)."
    return f"Predicts {cfg.target} among {len(decision.classes)} classes ({', '.join(decision.classes[:8])})."


def gather_facts(
    cfg: DatasetConfig, client: Any, version: str, history: Sequence[Mapping[str, Any]], settings: Any = None
) -> dict[str, Any]:
    """Everything the card needs, read from what the version's runs logged: never from what a caller passes.

    The registry (verdict tags), the training run (tags, metrics, ``bus.EVIDENCE_ARTIFACT``), the gate report
    (``bus.GATE_REPORT_ARTIFACT``) and the audit ``history``. A section whose source is missing is named in
    ``missing`` with the reason (and logged); the card is built with what there is.
    """
    from driftloop.data.snapshots import resolve_snapshot
    from driftloop.governance.verdict_evidence import describe_decisions, read_decisions

    name = cfg.registered_model_name
    mv = client.get_model_version(name, version)
    run = client.get_run(mv.run_id)
    missing: dict[str, str] = {}
    snapshot = None
    snapshot_hash = run.data.tags.get(bus.SNAPSHOT_HASH_TAG, "")
    try:
        if not snapshot_hash:
            raise LookupError("the training run records no snapshot")
        snapshot = resolve_snapshot(cfg, snapshot_hash, settings)
    except Exception as exc:  # the snapshot folder may not be on this machine; the card says '?'
        missing["snapshot"] = (
            f"snapshot {snapshot_hash[:12] or '?'} not readable here ({type(exc).__name__}: {exc})"
        )
    evidence, reason = _read_json(client, mv.run_id, bus.EVIDENCE_ARTIFACT)
    if evidence is None:
        missing["evidence"] = reason
    gate, reason = _read_json(client, mv.run_id, bus.GATE_REPORT_ARTIFACT)
    if gate is not None and (gate.get("model_name", name), str(gate.get("candidate_version"))) != (
        name,
        str(version),
    ):
        reason, gate = (
            f"the run's gate report is of {gate.get('model_name')} v{gate.get('candidate_version')}",
            None,
        )
    if gate is None:
        missing["gate_report"] = reason
    fairness, source = None, ""
    if gate and gate.get("fairness"):
        fairness, source = gate["fairness"], "the holdout, by the gate"
    elif evidence and evidence.get("fairness"):
        fairness, source = evidence["fairness"], "the holdout, at training"
    elif cfg.sensitive_features:
        errors = (evidence or {}).get("errors", {})
        missing["fairness"] = (
            f"fairness evidence failed at training: {errors['fairness']}"
            if "fairness" in errors
            else "neither the gate report nor the training evidence holds a fairness report"
        )
    for section, why in missing.items():
        log.info("model card %s v%s: %s missing: %s", name, version, section, why)
    decisions = describe_decisions(read_decisions(client, mv.run_id, name, str(version)), dict(mv.tags))
    return {
        "version": str(version),
        "verdict": mv.tags.get(bus.GATE_TAG, "not judged"),
        "reason": mv.tags.get(bus.GATE_REASON_TAG, ""),
        "approval": {
            k: mv.tags.get(tag, "")
            for k, tag in (
                ("decision", bus.APPROVAL_DECISION_TAG),
                ("by", bus.APPROVAL_BY_TAG),
                ("at", bus.APPROVAL_AT_TAG),
                ("comment", bus.APPROVAL_COMMENT_TAG),
            )
        },  # fmt: skip
        "gate": gate,
        "fairness": fairness,
        "fairness_source": source,
        "snapshot": snapshot,
        "history": history,
        "run": {"run_id": mv.run_id, "tags": dict(run.data.tags), "metrics": dict(run.data.metrics)},
        "evidence": evidence or {},
        "missing": missing,
        "decisions": decisions,
    }


def _read_json(client: Any, run_id: str, artifact_path: str) -> tuple[dict[str, Any] | None, str]:
    """A JSON artifact of a run, or (None, why not): not logged, or not readable (logged as a warning)."""
    import posixpath
    import tempfile

    folder = posixpath.dirname(artifact_path)
    try:
        logged = {a.path for a in client.list_artifacts(run_id, folder or None)}
        if artifact_path not in logged:
            return None, f"run {run_id} logged no {artifact_path}"
        with tempfile.TemporaryDirectory() as tmp:
            with open(client.download_artifacts(run_id, artifact_path, tmp)) as handle:
                return json.load(handle), ""
    except Exception as exc:  # an optional section: the card names it as missing instead of failing
        log.warning("reading %s of run %s failed: %r", artifact_path, run_id, exc)
        return None, f"{artifact_path} of run {run_id} not readable ({type(exc).__name__}: {exc})"


def read_evidence(client: Any, run_id: str) -> Evidence:
    """The training run's evidence summary (``bus.EVIDENCE_ARTIFACT``), or {} when it has none (logged)."""
    evidence, reason = _read_json(client, run_id, bus.EVIDENCE_ARTIFACT)
    if evidence is None:
        log.info("no evidence: %s", reason)  # versions registered outside training_pipeline carry none
    return cast(Evidence, evidence or {})  # as collect_evidence wrote it


def publish_model_card(
    cfg: DatasetConfig, client: Any, version: str, history: Sequence[Mapping[str, Any]], settings: Any = None
) -> dict[str, Any]:
    """Rebuild the card from what the version's runs logged; log it (Markdown + JSON) and make it the
    description.

    Returns:
        ``{"version", "description_chars", "card_uri", "missing"}``; ``missing`` names the sections built
        without their source, with the reason.
    """
    import tempfile
    from pathlib import Path

    facts = gather_facts(cfg, client, version, history, settings)
    card = build_card(cfg, facts)
    run_id = facts["run"]["run_id"]
    card_uri = f"runs:/{run_id}/{bus.MODEL_CARD_MD_ARTIFACT}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / CARD_DIR
        folder.mkdir()
        (folder / Path(bus.MODEL_CARD_MD_ARTIFACT).name).write_text(render_markdown(card))
        (folder / Path(bus.MODEL_CARD_JSON_ARTIFACT).name).write_text(
            json.dumps({**card, "facts": facts}, indent=2, default=str)
        )
        client.log_artifacts(run_id, str(folder), CARD_DIR)
    description = render_markdown(card, DESCRIPTION_LIMIT, card_uri)
    client.update_model_version(cfg.registered_model_name, str(version), description=description)
    log.info(
        "model card of %s v%s: %d characters in the description, %d section(s) missing%s",
        cfg.registered_model_name,
        version,
        len(description),
        len(facts["missing"]),
        f" ({', '.join(facts['missing'])})" if facts["missing"] else "",
    )
    return {
        "version": str(version),
        "description_chars": len(description),
        "card_uri": card_uri,
        "missing": facts["missing"],
    }


def describe_registered_model(cfg: DatasetConfig, client: Any, champion_version: str | None) -> str:
    """Set the registered model's description: purpose, the serving version and how promotion works."""
    name = cfg.registered_model_name
    champion = (
        f"[v{champion_version}](#/models/{name}/versions/{champion_version})"
        if champion_version
        else "none yet"
    )
    text = (
        f"# {name}\n\n{cfg.description or cfg.name}\n\n- Serving (`champion`): {champion}\n"
        f"- Promotion policy: `{cfg.gates.policy}` — a version serves only after the gate (see each "
        "version's "
        "card); every move of `champion` is in Driftloop's audit log (`driftloop audit`).\n"
        f"- Dataset config: `{cfg.name}`; {cfg.task} target `{cfg.target}`"
        + (f" = {cfg.positive_label!r}." if cfg.positive_label else ".")
    )
    client.update_registered_model(name, description=text[:DESCRIPTION_LIMIT])
    return text
