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
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig

DESCRIPTION_LIMIT = 4900  # the registry's column holds 5,000 characters
CARD_DIR = "model_card"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def _count(value: Any) -> str:
    return "?" if value is None else f"{int(value):,}"


def _check_rows(report: dict[str, Any] | None) -> list[str]:
    if not report:
        return ["_not judged yet_"]
    rows = ["| check | result | value | limit |", "|---|---|---|---|"]
    for check in report["checks"]:
        verdict = {True: "pass", False: "**FAIL**", None: "report"}[check["passed"]]
        rows.append(f"| {check['name']} | {verdict} | {_fmt(check['value'])} | {_fmt(check['limit'])} |")
    return rows


def _rate(metrics: dict[str, Any], key: str) -> str:
    value = metrics.get(key)
    return "—" if value is None else f"{value:.3f}"


def _fairness_rows(fairness: dict[str, Any]) -> list[str]:
    if not fairness:
        return ["_no sensitive attribute declared_"]
    rows = [
        "| attribute | group | rows | selection rate | TPR | FPR | precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for attribute, entry in fairness.items():
        for group, m in entry["groups"].items():
            if "selection_rate" not in m:  # multiclass (accuracy) and regression (MAE) groups
                other = ", ".join(f"{k} {v:.3f}" for k, v in m.items() if k != "count")
                rows.append(f"| {attribute} | {group} | {int(m['count'])} | {other} | | | |")
                continue
            rates = [_rate(m, k) for k in ("selection_rate", "true_positive_rate", "false_positive_rate")]
            rows.append(
                f"| {attribute} | {group} | {int(m['count'])} | {' | '.join(rates)} | {_rate(m, 'precision')} |"
            )
        gaps = [f"{k} {v:.3f}" for k, v in entry.items() if k.endswith("_difference") and v is not None]
        rows.append(f"| {attribute} | {', '.join(gaps)} | | | | | |")
    return rows


def _history_rows(history: list[dict[str, Any]], version: str) -> list[str]:
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
    run, report, evidence = facts["run"], facts.get("gate"), facts.get("evidence", {})
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
            f"{_count(run['metrics'].get(bus.TRAIN_ROWS))} training and {_count(run['metrics'].get(bus.HOLDOUT_ROWS))} "
            "holdout rows (holdout chosen per entity id by a seeded hash)"
            + (
                f"; {_count(run['metrics'][bus.UNLABELLED_ROWS_EXCLUDED])} accepted rows without a label left out."
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
            + (
                [f"\nAgainst champion v{report['champion_version']}: see `beats_champion`."]
                if report and report.get("champion_version")
                else []
            )
        ),
        "gate": "\n".join(
            [
                f"Verdict: **{facts.get('verdict', 'not judged')}**. {facts.get('reason', '')}",
                "",
                *_check_rows(report),
            ]
        ),
        "fairness": "\n".join(_fairness_rows((report or {}).get("fairness", {}))),
        "explanations": "\n".join(
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
    from driftloop.core.task_types import BINARY, REGRESSION, read_decision

    decision = read_decision(cfg, tags)
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


SECTION_TITLES = {
    "details": "Model details",
    "intended_use": "Intended use",
    "training_data": "Training data",
    "evaluation": "Evaluation",
    "gate": "Gate verdict",
    "fairness": "Fairness",
    "explanations": "Explanations",
    "limitations": "Limitations",
    "history": "Promotion history",
}


def render_markdown(card: dict[str, Any], limit: int | None = None, full_card_uri: str = "") -> str:
    """Markdown of the card; with ``limit``, the longest sections are cut until it fits, pointing at the full
    card."""
    sections = {k: card[k] for k in SECTION_TITLES}

    def render() -> str:
        body = "\n\n".join(f"## {SECTION_TITLES[k]}\n\n{v}" for k, v in sections.items())
        return f"# {card['title']}\n\n{body}\n"

    text = render()
    while limit is not None and len(text) > limit:
        longest = max(sections, key=lambda k: len(sections[k]))
        keep = max(0, len(sections[longest]) - (len(text) - limit) - 120)
        sections[longest] = (
            sections[longest][:keep].rstrip() + f"\n\n_(shortened; full card: {full_card_uri})_"
        )
        text = render()
    return text


def gather_facts(
    cfg: DatasetConfig,
    client: Any,
    version: str,
    gate: dict[str, Any] | None,
    history: list[dict[str, Any]],
    settings: Any = None,
) -> dict[str, Any]:
    """Everything the card needs from the registry, the training run, its evidence artifacts and the audit."""
    from driftloop.data.snapshots import resolve_snapshot

    mv = client.get_model_version(cfg.registered_model_name, version)
    run = client.get_run(mv.run_id)
    snapshot = None
    try:
        snapshot = resolve_snapshot(cfg, run.data.tags.get(bus.SNAPSHOT_HASH_TAG, ""), settings)
    except Exception:  # the snapshot folder may not be on this machine; the card says '?'
        snapshot = None
    return {
        "version": str(version),
        "verdict": mv.tags.get(bus.GATE_TAG, "not judged"),
        "reason": mv.tags.get(bus.GATE_REASON_TAG, ""),
        "gate": gate,
        "snapshot": snapshot,
        "history": history,
        "run": {"run_id": mv.run_id, "tags": dict(run.data.tags), "metrics": dict(run.data.metrics)},
        "evidence": read_evidence(client, mv.run_id),
    }


def read_evidence(client: Any, run_id: str) -> dict[str, Any]:
    """The training run's evidence summary (``bus.EVIDENCE_ARTIFACT``), or {} when it has none."""
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            return json.loads(open(client.download_artifacts(run_id, bus.EVIDENCE_ARTIFACT, tmp)).read())
    except Exception:  # versions registered outside training_pipeline carry no evidence
        return {}


def publish_model_card(
    cfg: DatasetConfig,
    client: Any,
    version: str,
    gate: dict[str, Any] | None,
    history: list[dict[str, Any]],
    settings: Any = None,
) -> dict[str, Any]:
    """Log the card (Markdown + JSON) on the training run and write it into the version's description.

    Returns:
        ``{"version", "description_chars", "card_uri"}``.
    """
    import tempfile
    from pathlib import Path

    facts = gather_facts(cfg, client, version, gate, history, settings)
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
    return {"version": str(version), "description_chars": len(description), "card_uri": card_uri}


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
