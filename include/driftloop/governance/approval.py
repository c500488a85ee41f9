"""Approval by a person: the request a waiting version shows, and the decision applied through the audit log.

Under ``gates.policy: manual`` a version that passes the gate is only marked ready
(:func:`driftloop.governance.promotion.promote_model`), and so is one passing under ``auto`` with checks the
gate could not decide when ``gates.approve_undecided`` is on; ``training_pipeline`` then asks a person in
Airflow.
:func:`plan_approval` says whether to ask and builds the request (:class:`ApprovalRequest`): a subject and a
Markdown body with every check's verdict, numbers and interval, the version's MLflow page and card, the
production-window comparison and the fairness table, so the person decides on the same evidence the gate saw.
Checks the gate measured but could not decide (an underpowered production comparison, a fairness gap whose
interval straddles its limit) are listed first.

:func:`apply_decision` applies the answer. Approve moves ``champion`` through
:func:`~driftloop.governance.promotion.set_champion` (the approver is the policy): one audit entry whose actor
is ``airflow:<username>`` and whose reason is ``approved in Airflow`` with the request and the comment; the
card's history shows it. Reject moves nothing: the champion audit log records moves only (an entry without a
move would break the chain rollback walks), so a rejection is recorded on the version (tags, and a JSON
record on its training run, ``bus.approval_record_artifact``) and it loses its ready mark. An approval that
arrives after ``champion`` moved away from the version the request compared against is not applied
(``stale``): the evidence the person saw no longer holds. A retried apply finds its own audit entry (by
request id) and moves nothing again.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from driftloop.core import bus, registry
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.tracking import get_client
from driftloop.governance import audit
from driftloop.governance.gates import undecided_checks
from driftloop.governance.governance_results import (
    ApprovalPlan,
    ApprovalResult,
    AuditEntry,
    GateReport,
    PromotionResult,
    RolloutEntry,
    TrainedPromotion,
)

log = logging.getLogger(__name__)

APPROVE = "Approve"  # the options the HITL task offers (ApprovalOperator's words)
REJECT = "Reject"
ACTOR_PREFIX = "airflow:"
APPROVED_REASON = "approved in Airflow"
BODY_MAX_CHARS = 60_000


@dataclass(frozen=True)
class ApprovalRequest:
    """What a person is asked to decide.

    Attributes:
        needed: False when nothing waits for a person (the rest is then empty).
        why: Why a person is asked (the policy, the checks the gate could not decide), or why not.
        dataset: Dataset config name.
        model_name: Registered model.
        version: The version waiting; None when nothing waits.
        champion_version: The champion the gate compared it with (None: it would be the first).
        request_id: Names the request (``<dag_id>/<run_id>``); a decision is applied once per request.
        subject: One line for the approval list.
        body: Markdown: verdicts with numbers and intervals, links, production comparison, fairness.
        undecided: Names of the checks the gate measured but could not decide.
    """

    needed: bool
    why: str
    dataset: str
    model_name: str
    version: str | None = None
    champion_version: str | None = None
    request_id: str = ""
    subject: str = ""
    body: str = ""
    undecided: tuple[str, ...] = ()

    def to_dict(self) -> ApprovalPlan:
        """The request as JSON-ready data (an XCom)."""
        return {
            "needed": self.needed,
            "why": self.why,
            "dataset": self.dataset,
            "model_name": self.model_name,
            "version": self.version,
            "champion_version": self.champion_version,
            "request_id": self.request_id,
            "subject": self.subject,
            "body": self.body,
            "undecided": list(self.undecided),
        }


def needs_approval(promoted: TrainedPromotion) -> tuple[bool, str]:
    """Whether a promotion result waits for a person, and why.

    A passing version marked ready waits (``decision`` ``ready``): under the manual policy, and under ``auto``
    with ``gates.approve_undecided`` when the gate could not decide a check. Otherwise a passing gate under
    ``auto`` has already moved ``champion``, and a rejected version is not offered: an override is
    :func:`~driftloop.governance.promotion.set_champion`'s.
    """
    if promoted["decision"] == "ready":
        policy = promoted.get("policy", "manual")
        return True, f"the gate passed v{promoted.get('candidate_version')} under the {policy} policy"
    return False, f"promotion decision {promoted['decision']!r}: nothing waits for a person"


def plan_approval(
    cfg: DatasetConfig, promoted: TrainedPromotion, settings: Settings | None = None, request_id: str = ""
) -> ApprovalPlan:
    """The approval request for a promotion result (:meth:`ApprovalRequest.to_dict`); ``needed`` False when
    nothing waits.

    Args:
        cfg: Dataset config.
        promoted: :func:`driftloop.governance.promotion.promote_trained`'s result.
        settings: Process settings (the MLflow UI address for links).
        request_id: Names the request (the Airflow ``<dag_id>/<run_id>``).
    """
    return build_request(cfg, promoted, settings, request_id).to_dict()


def build_request(
    cfg: DatasetConfig, promoted: TrainedPromotion, settings: Settings | None = None, request_id: str = ""
) -> ApprovalRequest:
    """:func:`plan_approval` as a dataclass: the version's gate report rendered for a person."""
    from driftloop.governance.verdict_evidence import read_decision

    needed, why = needs_approval(promoted)
    name = cfg.registered_model_name
    if not needed or promoted["decision"] == "skipped":  # (skipped is never needed: said for the type)
        return ApprovalRequest(False, why, cfg.name, name)
    client = get_client(settings)
    version = str(promoted["candidate_version"])
    run_id = client.get_model_version(name, version).run_id
    key = promoted.get("evidence_key")
    report: GateReport | None = read_decision(client, run_id, key) if key else None
    if report is None:
        report = _read_report(client, run_id)
    undecided = undecided_checks(report)
    if undecided:
        why += f"; the gate could not decide {', '.join(undecided)}"
    champion = promoted.get("previous_champion_version")
    ui_url = (settings or Settings.from_env()).mlflow_ui_url
    subject = (
        f"{name}: make v{version} champion"
        + (f" (replacing v{champion})" if champion else " (the first)")
        + (f"? {len(undecided)} check(s) undecided" if undecided else "?")
    )
    body = render_body(cfg, version, champion, promoted, report, ui_url, run_id)
    return ApprovalRequest(
        True, why, cfg.name, name, version, champion, request_id, subject, body, tuple(undecided)
    )


def _read_report(client: Any, run_id: str) -> GateReport:
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="driftloop-approval-") as tmp:
        with open(client.download_artifacts(run_id, bus.GATE_REPORT_ARTIFACT, tmp)) as handle:
            return cast(GateReport, json.load(handle))  # as promotion logged it


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _interval(check: dict[str, Any]) -> str:
    low, high = check.get("ci_low"), check.get("ci_high")
    return f"[{_num(low)}, {_num(high)}]" if low is not None and high is not None else "—"


def _verdict(check: dict[str, Any]) -> str:
    if check.get("underpowered") or check.get("outcome") == "undecided":
        return "**undecided**"
    return {True: "pass", False: "**FAIL**", None: "measured"}[check.get("passed")]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_body(
    cfg: DatasetConfig,
    version: str,
    champion: str | None,
    promoted: PromotionResult,
    report: GateReport,
    ui_url: str,
    run_id: str,
) -> str:
    """The request's Markdown: decision asked, links, undecided checks, every check, production comparison,
    fairness."""
    from driftloop.governance.overview import mlflow_version_url

    name = cfg.registered_model_name
    checks = report.get("checks", [])
    url = mlflow_version_url(ui_url, name, version)
    card = f"runs:/{run_id}/{bus.MODEL_CARD_MD_ARTIFACT}"
    lines = [
        f"Approve to move `{bus.CHAMPION}` of **{name}** to **v{version}**"
        + (f" (now v{champion})." if champion else " (it has no champion yet).")
        + " Reject to keep the champion; either way the decision is recorded with your user name.",
        "",
        f"- Version: {f'[v{version} in MLflow]({url})' if url else f'v{version}'}; card: `{card}`",
        f"- Gate: **{'passed' if report.get('passed') else 'rejected'}** under policy `{cfg.gates.policy}`"
        f" (rule `{report.get('rule') or '—'}`; {promoted.get('evidence', '')})",
        f"- Verdict: {_cell(promoted.get('reason', ''))}",
    ]
    undecided = [c for c in checks if c["name"] in undecided_checks(report)]
    if undecided:
        lines += ["", "### Undecided: the gate could not decide these", ""]
        lines += [f"- `{c['name']}`: {_cell(c.get('detail', ''))}" for c in undecided]
    lines += [
        "",
        "### Checks",
        "",
        "| check | verdict | value | limit | interval | detail |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| `{c['name']}` | {_verdict(c)} | {_num(c.get('value'))} | {_num(c.get('limit'))} | "
        f"{_interval(c)} | {_cell(c.get('detail', ''))} |"
        for c in checks
    ]
    lines += ["", "### Against the champion", ""] + _comparison_table(checks)
    lines += ["", "### Fairness", ""] + _fairness_table(checks)
    return "\n".join(lines)[:BODY_MAX_CHARS]


def _comparison_table(checks: list[dict[str, Any]]) -> list[str]:
    rows = [c for c in checks if c["name"] in ("beats_champion", "beats_champion.production")]
    if not rows:
        return ["No champion to compare with."]
    out = [
        "| where | rows | candidate | champion | difference | interval | rule | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        where = "production window" if c["name"].endswith("production") else "holdout"
        if "difference" not in c:  # too few labelled production rows: not compared
            out.append(f"| {where} | {_num(c.get('value'))} | — | — | — | — | — | {_cell(c.get('detail'))} |")
            continue
        out.append(
            f"| {where} | {_num(c.get('rows'))} | {_num(c.get('candidate'))} | {_num(c.get('champion'))} | "
            f"{_num(c.get('difference'))} | {_interval(c)} | {c.get('rule', '—')} | {_verdict(c)} |"
        )
    return out


def _fairness_table(checks: list[dict[str, Any]]) -> list[str]:
    rows = [c for c in checks if c["name"].startswith("fairness.")]
    if not rows:
        return ["No sensitive attribute declared."]
    out = [
        "| attribute | gap | value | interval | limit | outcome | smallest group rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        _, attribute, gap = c["name"].split(".", 2)
        out.append(
            f"| {attribute} | {gap} | {_num(c.get('value'))} | {_interval(c)} | {_num(c.get('limit'))} | "
            f"{c.get('outcome', '—')} | {_num(c.get('smallest_group_rows'))} |"
        )
    return out


def responder(response: dict[str, Any]) -> str:
    """The audit actor of a HITL response: ``airflow:<username>`` (the responding user's name, else id)."""
    user = response.get("responded_by_user") or {}
    who = str(user.get("name") or user.get("id") or "").strip()
    if not who:
        raise ValueError(f"the approval response names no user: {response!r}")
    return ACTOR_PREFIX + who


def apply_decision(
    cfg: DatasetConfig, request: ApprovalPlan, response: dict[str, Any], settings: Settings | None = None
) -> ApprovalResult:
    """Apply a person's answer to an approval request; idempotent per request.

    Args:
        cfg: Dataset config.
        request: :func:`plan_approval`'s result.
        response: The HITL task's result: ``chosen_options`` (``Approve`` or ``Reject``), ``params_input``
            (``comment``), ``responded_by_user`` (``{"id", "name"}``), ``responded_at``.
        settings: Process settings.

    Returns:
        ``{"decision": "approved"|"rejected"|"stale", "version", "actor", "champion_version", "moved",
        "recorded_moves", "request_id"}``.
    """
    from driftloop.governance.promotion import set_champion

    chosen = list(response.get("chosen_options") or [])
    if chosen not in ([APPROVE], [REJECT]):
        raise ValueError(f"an approval answers {APPROVE!r} or {REJECT!r}, got {chosen!r}")
    actor, version, request_id = responder(response), str(request["version"]), str(request["request_id"])
    comment = str((response.get("params_input") or {}).get("comment") or "").strip()
    name = cfg.registered_model_name
    client = get_client(settings)
    current = _champion(cfg, settings)
    moved: list[AuditEntry] = []
    rollout_entries: list[RolloutEntry] = []
    decision = bus.REJECTED
    if chosen == [APPROVE]:
        earlier = _applied_entry(cfg, version, request_id, settings)
        if earlier is not None or current == version:  # a retry, or it serves already: nothing to move
            decision = bus.APPROVED
            if earlier is None:  # a try that died after the move, before its entry: recorded from its intent
                from driftloop.governance.promotion import reconcile_and_refresh

                found = reconcile_and_refresh(cfg, settings)
                moved = [found] if found is not None else []
        elif current != request.get("champion_version"):
            decision = bus.APPROVAL_STALE
            was = request.get("champion_version")
            log.warning("%s: v%s approved by %s, not applied: champion moved v%s -> v%s since the request",
                        name, version, actor, was, current)  # fmt: skip
        else:
            reason = f"{APPROVED_REASON} by {actor} (request {request_id})" + (
                f": {comment}" if comment else ""
            )
            if cfg.rollout.stages and current is not None:  # into a staged rollout, which moves champion
                from driftloop.governance.rollout_state import begin_rollout

                started = begin_rollout(cfg, version, actor=actor, reason=reason, settings=settings)
                decision, rollout_entries = bus.APPROVED, [started] if started else []
            else:
                entry = set_champion(cfg, version, actor=actor, reason=reason, settings=settings)
                moved, decision = entry["recorded_moves"], bus.APPROVED
    record = {
        "decision": decision,
        "version": version,
        "model_name": name,
        "actor": actor,
        "comment": comment,
        "request_id": request_id,
        "responded_at": str(response.get("responded_at") or datetime.now(UTC).isoformat()),
        "champion_at_request": request.get("champion_version"),
        "champion_at_decision": current,
    }
    _record_on_version(client, name, version, record)
    from driftloop.governance.model_card import publish_model_card

    # The card shows the decision (a rejection moves nothing, so no move refreshed it).
    publish_model_card(cfg, client, version, audit.open_store(settings).entries(name), settings)
    log.info("%s v%s: %s by %s (request %s)", name, version, decision, actor, request_id)
    return {
        "decision": decision,
        "version": version,
        "actor": actor,
        "champion_version": _champion(cfg, settings),
        "moved": bool(moved),
        "recorded_moves": moved,
        "rollout_entries": rollout_entries,
        "request_id": request_id,
    }


def _champion(cfg: DatasetConfig, settings: Settings | None) -> str | None:
    alias = registry.resolve_alias(cfg, bus.CHAMPION, settings)
    return alias["model_version"] if alias else None


def _applied_entry(
    cfg: DatasetConfig, version: str, request_id: str, settings: Settings | None
) -> AuditEntry | None:
    """The audit entry an earlier try of this request appended, if any."""
    marker = f"(request {request_id})"
    return next(
        (
            e
            for e in audit.open_store(settings).entries(cfg.registered_model_name)
            if e["to_version"] == version and marker in str(e.get("reason", ""))
        ),
        None,
    )


def _record_on_version(client: Any, name: str, version: str, record: dict[str, Any]) -> None:
    """The decision as tags on the version and a JSON record on its training run; a rejected version is no
    longer ready."""
    run_id = client.get_model_version(name, version).run_id
    client.log_dict(run_id, record, bus.approval_record_artifact(record["request_id"]))
    tags = {
        bus.APPROVAL_DECISION_TAG: record["decision"],
        bus.APPROVAL_BY_TAG: record["actor"],
        bus.APPROVAL_AT_TAG: record["responded_at"],
        bus.APPROVAL_COMMENT_TAG: record["comment"][:5000],
        bus.APPROVAL_REQUEST_TAG: record["request_id"],
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if (
        record["decision"] == bus.REJECTED
        and bus.READY_FOR_CHAMPION_TAG in client.get_model_version(name, version).tags
    ):
        client.delete_model_version_tag(name, version, bus.READY_FOR_CHAMPION_TAG)
