"""Alerts: what happened (drift fired, a gate rejected, champion moved, ...) as one message per event, once.

An :class:`Alert` carries its kind, dataset, headline, numbers and links, and a dedupe key naming the event
(the monitoring run that fired, the version the gate rejected, the failed task's run). :func:`dispatch_alerts`
claims each key (:mod:`driftloop.core.alert_claims`, in the data location every worker shares) before it
sends, so a retried task or a second caller never alerts twice. A channel that fails is logged as a WARNING
and never fails the caller. Messages are Jinja templates an operator may replace
(:mod:`driftloop.core.alert_messages`). Airflow tasks send through Airflow connections and their hooks (HTTP,
Slack incoming webhook, SMTP: ``driftloop_airflow.alert_channels``); the only channel here,
:class:`WebhookChannel`, needs no Airflow and serves processes without it (the CLI): it posts the same
Slack-compatible JSON body (``text`` plus ``blocks``, and the alert itself under ``driftloop``) to
``DRIFTLOOP_ALERT_WEBHOOK_URL``.

Which alerts a stage's result calls for is declared where the stage is called: a DAG task passes the builder
(:func:`promotion_alerts`, :func:`move_alerts`, :func:`drift_alerts`, ...) to ``run_stage`` as ``alerts=``,
and the CLI sends :func:`move_alerts` of what it moved. A move of ``champion`` is alerted from its audit entry
(:func:`champion_moved_alert`, keyed by the entry id), so every move gets one alert naming its mover, and a
call that recorded no move alerts none.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NotRequired, Protocol, TypedDict

from driftloop.core.alert_claims import claim_alert
from driftloop.core.alert_messages import (
    EMAIL_BODY,
    EMAIL_SUBJECT,
    WEBHOOK_TEXT,
    format_value,
    render_message,
)
from driftloop.core.errors import StorageError
from driftloop.core.settings import Settings

log = logging.getLogger(__name__)

DRIFT_FIRED = "drift_fired"
PERFORMANCE_DROP = "performance_drop"
ESTIMATED_PERFORMANCE_DROP = "estimated_performance_drop"  # the sensor fired on the estimate before labels
GATE_REJECTED = "gate_rejected"
CHAMPION_MOVED = "champion_moved"
BATCH_QUARANTINED = "batch_quarantined"
TASK_FAILED = "task_failed"
AB_DECISION = "ab_decision"
APPROVAL_OVERDUE = "approval_overdue"
ROLLOUT_STAGE_CHANGED = "rollout_stage_changed"
KINDS = (
    DRIFT_FIRED,
    PERFORMANCE_DROP,
    ESTIMATED_PERFORMANCE_DROP,
    GATE_REJECTED,
    CHAMPION_MOVED,
    BATCH_QUARANTINED,
    TASK_FAILED,
    AB_DECISION,
    APPROVAL_OVERDUE,
    ROLLOUT_STAGE_CHANGED,
)


@dataclass(frozen=True)
class Alert:
    """One event worth telling a person about.

    Attributes:
        kind: One of :data:`KINDS`.
        dataset: Dataset config name.
        title: One-line headline with the decisive numbers.
        fields: The numbers and ids behind it (JSON-serialisable).
        links: Label to URL (MLflow run or model version, Airflow run).
        dedupe_key: Names the event; an alert with a key already sent is not sent again.
    """

    kind: str
    dataset: str
    title: str
    fields: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    dedupe_key: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The alert as plain JSON-ready data."""
        return asdict(self)


class AlertOutcome(TypedDict):
    """What :func:`dispatch_alerts` did with one alert."""

    kind: str
    dedupe_key: str
    status: str  # sent | duplicate | no_channel
    channels: NotRequired[dict[str, str]]  # when sent: channel name -> "ok" or its error


class AlertChannel(Protocol):
    """Somewhere alerts go (a webhook, an email address)."""

    name: str

    def send(self, alert: Alert) -> None:
        """Deliver one alert; raise on failure."""


def make_alert(
    kind: str,
    dataset: str,
    title: str,
    key: Iterable[Any],
    fields: dict[str, Any] | None = None,
    links: dict[str, str] | None = None,
) -> Alert:
    """Build an alert whose dedupe key is ``<kind>:<dataset>:<key parts>``.

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}; expected one of {', '.join(KINDS)}")
    dedupe_key = ":".join([kind, dataset, *(str(part) for part in key)])
    return Alert(
        kind, dataset, title, dict(fields or {}), {k: v for k, v in (links or {}).items() if v}, dedupe_key
    )


def slack_payload(alert: Alert, template_dir: str = "") -> dict[str, Any]:
    """A Slack-compatible webhook body: ``text`` (the ``webhook_text.txt`` template, also the first block),
    ``blocks`` (the fields, the links) and the alert under ``driftloop``."""
    text = render_message(WEBHOOK_TEXT, alert, template_dir)
    facts = [f"*{name}*: {format_value(value)}" for name, value in alert.fields.items()]
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if facts:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(facts)[:2900]}})
    if alert.links:
        links = " | ".join(f"<{url}|{label}>" for label, url in alert.links.items())
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": links}]})
    return {"text": text, "blocks": blocks, "driftloop": alert.to_dict()}


def email_content(alert: Alert, template_dir: str = "") -> tuple[str, str]:
    """``(subject, html body)`` of an alert email: the ``email_subject.txt`` template on one line of at most
    250 characters, and the ``email_body.html`` template."""
    subject = render_message(EMAIL_SUBJECT, alert, template_dir).replace("\r", " ").replace("\n", " ")
    return subject[:250], render_message(EMAIL_BODY, alert, template_dir)


class WebhookChannel:
    """POSTs :func:`slack_payload` as JSON to a URL (a Slack incoming webhook or any JSON receiver)."""

    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 10.0, template_dir: str = "") -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.template_dir = template_dir

    def send(self, alert: Alert) -> None:
        """POST the alert; raise on a non-2xx answer or a network error."""
        import urllib.request

        body = json.dumps(slack_payload(alert, self.template_dir), default=str).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # configured URL
            if not 200 <= response.status < 300:
                raise RuntimeError(f"webhook answered HTTP {response.status}")


def alerting_configured(settings: Settings) -> bool:
    """Whether any alert channel is configured (an HTTP or Slack connection, a webhook URL, or an SMTP
    connection with recipients)."""
    webhooks = settings.alert_http_conn_id or settings.alert_slack_conn_id or settings.alert_webhook_url
    return bool(webhooks or (settings.alert_smtp_conn_id and settings.alert_email_to))


def package_channels(settings: Settings) -> list[AlertChannel]:
    """The channels a process without Airflow can use: the webhook URL. Airflow connections need Airflow's
    hooks and are used by ``driftloop_airflow.alert_channels.configured_channels``."""
    if not settings.alert_webhook_url:
        return []
    return [WebhookChannel(settings.alert_webhook_url, template_dir=settings.alert_template_dir)]


def send_package_alerts(
    cfg: Any, result: Any, settings: Settings, build: Callable[..., list[Alert]] | None = None
) -> list[AlertOutcome]:
    """Send, through :func:`package_channels`, the alerts ``build`` (default :func:`move_alerts`) finds in a
    result: how the CLI alerts what it did. Never raises; without a channel nothing is claimed, so the
    ``registry_watch`` DAG still announces the moves later."""
    try:
        found = (build or move_alerts)(cfg.name, cfg.registered_model_name, result, settings)
        return dispatch_alerts(found, package_channels(settings), settings)
    except Exception as exc:  # alerting never fails the command
        log.warning("alerts not sent: %s", exc)
        return []


AlertBuilder = Callable[[str, str, Any, Settings], list["Alert"]]
"""Turns a stage's result into its alerts: ``(dataset, model name, result, settings) -> alerts``."""


def dispatch_alerts(
    alerts: Iterable[Alert], channels: list[AlertChannel], settings: Settings
) -> list[AlertOutcome]:
    """Send each alert once to every channel; failures are logged as WARNING and never raised.

    Args:
        alerts: Alerts to send.
        channels: Configured channels; with none, nothing is claimed or sent.
        settings: Process settings (the state folder holding the dedupe keys).

    Returns:
        One :class:`AlertOutcome` per alert.
    """
    outcomes: list[AlertOutcome] = []
    for alert in alerts:
        if not channels:
            outcomes.append({"kind": alert.kind, "dedupe_key": alert.dedupe_key, "status": "no_channel"})
            continue
        try:
            fresh = claim_alert(alert.dedupe_key, alert.to_dict(), settings)
        except (OSError, StorageError) as exc:
            log.warning("alert %s: cannot record its dedupe key (%s); sending anyway", alert.dedupe_key, exc)
            fresh = True
        if not fresh:
            log.info("alert %s already sent (dedupe key %s): not sent again", alert.kind, alert.dedupe_key)
            outcomes.append({"kind": alert.kind, "dedupe_key": alert.dedupe_key, "status": "duplicate"})
            continue
        results: dict[str, str] = {}
        for channel in channels:
            try:
                channel.send(alert)
                results[channel.name] = "ok"
            except Exception as exc:  # a broken channel must never fail the pipeline
                results[channel.name] = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "alert %s via %s failed: %s", alert.dedupe_key, channel.name, results[channel.name]
                )
        log.info("alert %s sent (%s): %s -> %s", alert.kind, alert.dedupe_key, alert.title, results)
        outcomes.append(
            {"kind": alert.kind, "dedupe_key": alert.dedupe_key, "status": "sent", "channels": results}
        )
    return outcomes


def _links(settings: Settings, run_id: str | None = None) -> dict[str, str]:
    base = settings.mlflow_ui_url.rstrip("/")
    return {"MLflow run": f"{base}/#/runs/{run_id}"} if base and run_id else {}


def _model_link(settings: Settings, model_name: str, version: Any) -> dict[str, str]:
    base = settings.mlflow_ui_url.rstrip("/")
    return {f"{model_name} v{version}": f"{base}/#/models/{model_name}/versions/{version}"} if base else {}


def moved_by(entry: Mapping[str, Any]) -> str:
    """Where a move came from, read off its audit entry: ``gate``, ``cli``, ``rollback``, ``ab_test``,
    ``approval`` (a person in Airflow), ``external`` or ``driftloop``."""
    actor, reason = str(entry.get("actor") or ""), str(entry.get("reason") or "")
    if entry.get("source") == "external":
        return "external"
    if actor.startswith("cli:"):
        return "cli rollback" if reason.startswith("rollback") else "cli"
    if reason.startswith("rollback"):
        return "rollback"
    if actor.startswith(("ab_evaluation", "airflow:")):
        return "ab_test" if actor.startswith("ab_evaluation") else "approval"
    if "training_pipeline" in actor or actor == "gate":
        return "gate"
    return "driftloop"


def champion_moved_alert(
    dataset: str, model_name: str, entry: Mapping[str, Any], settings: Settings
) -> Alert:
    """The one ``champion_moved`` alert of an audit entry: keyed by the entry's id, naming its mover.

    Args:
        dataset: Dataset config name.
        model_name: Registered model.
        entry: The audit entry of the move (``id``, ``from_version``, ``to_version``, ``actor``, ``source``,
            ``reason``, ``override``).
        settings: Process settings (link bases).
    """
    override, previous = bool(entry.get("override")), entry.get("from_version")
    via = moved_by(entry)
    target = f"v{entry.get('to_version')}" if entry.get("to_version") else "nothing (alias deleted)"
    title = (
        f"champion moved {f'v{previous} -> ' if previous else 'to '}{target} by {entry.get('actor')} ({via})"
        + (" (OVERRIDE: the new champion did not pass the gate)" if override else "")
        + (f": {entry.get('reason')}" if entry.get("reason") else "")
    )
    fields = {k: entry.get(k) for k in ("from_version", "to_version", "actor", "reason")}
    return make_alert(
        CHAMPION_MOVED,
        dataset,
        title[:300],
        key=[entry["id"]],
        fields={
            **fields,
            "override": override,
            "via": via,
            "audit_entry": entry["id"],
            "recorded_at": entry.get("recorded_at"),
        },
        links=_model_link(settings, model_name, entry.get("to_version")) if entry.get("to_version") else {},
    )


def move_alerts(dataset: str, model_name: str, result: Any, settings: Settings) -> list[Alert]:
    """One ``champion_moved`` alert per audit entry the call recorded (``result["recorded_moves"]``); none
    when it recorded none, whatever else the result holds."""
    if not isinstance(result, dict):
        return []
    return [
        champion_moved_alert(dataset, model_name, e, settings) for e in result.get("recorded_moves") or []
    ]


def promotion_alerts(dataset: str, model_name: str, result: Any, settings: Settings) -> list[Alert]:
    """A ``gate_rejected`` alert for a rejected challenger, then the moves the promotion recorded."""
    if not isinstance(result, dict):
        return []
    out = []
    version = result.get("candidate_version")
    if result.get("decision") == "rejected" and not result.get("reused_verdict"):
        numbers = {
            k: result.get(k) for k in ("candidate_metric", "champion_metric", "failed", "champion_version")
        }
        out.append(
            make_alert(
                GATE_REJECTED,
                dataset,
                f"challenger v{version} rejected: {result.get('reason', '')}"[:300],
                key=[version, *([result["evidence_key"]] if result.get("evidence_key") else [])],
                fields=numbers,
                links=_model_link(settings, model_name, version),
            )
        )
    return (
        out + stage_alerts(dataset, model_name, result) + move_alerts(dataset, model_name, result, settings)
    )


def approval_overdue_alert(dataset: str, dag_id: str, run_id: str, waited_s: float) -> Alert:
    """The ``approval_overdue`` alert of a training run still unfinished at its approval deadline (once per
    run): the approval it waits on is in the Airflow UI's required actions."""
    return make_alert(
        APPROVAL_OVERDUE,
        dataset,
        f"{dag_id} run {run_id} still unfinished {waited_s / 3600:.2f} h after it was queued: an approval "
        "may be waiting in Airflow (Browse > Required Actions)",
        key=[dag_id, run_id],
        fields={"dag_id": dag_id, "run_id": run_id, "waited_s": round(waited_s)},
    )


# The sensor's reason (monitoring.sensor.crossing_reason) to the alert's kind; any other is drift.
TRIGGER_KINDS = {"performance": PERFORMANCE_DROP, "estimated_performance": ESTIMATED_PERFORMANCE_DROP}
TITLE_CHARS = 300


def drift_alerts(dataset: str, model_name: str, result: Any, settings: Settings) -> list[Alert]:
    """A ``drift_fired``, ``performance_drop`` or ``estimated_performance_drop`` alert (by the trigger's
    reason) for a sensor result that fired. Its title is the sensor's detail, which carries the estimate
    before labels when the run has one; a detail longer than a title goes whole into the fields."""
    if not isinstance(result, dict):
        return []
    if not result.get("reason"):
        return []
    kind = TRIGGER_KINDS.get(result["reason"], DRIFT_FIRED)
    numbers = {k: result.get(k) for k in ("drift_share", "live_drop", "champion_version", "trigger_run_id")}
    numbers["reason"] = result["reason"]
    numbers |= {
        k: result[k] for k in ("estimated_drop", "estimated_drop_best_case") if result.get(k) is not None
    }
    detail = str(result.get("detail") or f"{kind} on champion v{result.get('champion_version')}")
    title = detail if len(detail) <= TITLE_CHARS else detail[: TITLE_CHARS - 1] + "…"
    if title != detail:
        numbers["detail"] = detail
    run_id = result["monitoring_run_id"]
    return [make_alert(kind, dataset, title, [run_id], numbers, _links(settings, run_id))]


def quarantine_alerts(dataset: str, model_name: str, result: Any, settings: Settings) -> list[Alert]:
    """One ``batch_quarantined`` alert per file the ingest quarantined."""
    if not isinstance(result, dict):
        return []
    return [
        make_alert(
            BATCH_QUARANTINED,
            dataset,
            f"{q['batch_id']} quarantined: {q.get('reason_code')}: {q.get('message', '')}"[:300],
            key=[q["batch_id"]],
            fields={"reason_code": q.get("reason_code"), "quarantine_dir": q.get("quarantine_dir")},
        )
        for q in result.get("quarantined", [])
    ]


def ab_alerts(dataset: str, model_name: str, result: Any, settings: Settings) -> list[Alert]:
    """An ``ab_decision`` alert for a decided A/B test, then the moves it recorded."""
    if not isinstance(result, dict):
        return []
    return _ab_decision_alerts(dataset, model_name, result, settings) + move_alerts(
        dataset, model_name, result, settings
    )


def _ab_decision_alerts(
    dataset: str, model_name: str, result: dict[str, Any], settings: Settings
) -> list[Alert]:
    if result.get("decision") not in ("promote_challenger", "keep_champion"):
        return []
    title = (
        f"A/B: {result['decision']} (champion v{result.get('champion_version')}, challenger "
        f"v{result.get('challenger_version')}): {result.get('reason', '')}"
    )[:300]
    numbers = {k: result.get(k) for k in ("decided_by", "champion_version", "challenger_version")}
    key = [result.get("run_id") or result.get("challenger_version")]
    return [make_alert(AB_DECISION, dataset, title, key, numbers, _links(settings, result.get("run_id")))]


def rollout_alerts(dataset: str, model_name: str, result: Any, settings: Settings) -> list[Alert]:
    """A ``rollout_stage_changed`` alert per stage a rollout entered (begun by an approval, advanced or
    rolled back by ``ab_evaluation``), then the champion moves recorded (an approval's, a last stage's)."""
    return stage_alerts(dataset, model_name, result) + move_alerts(dataset, model_name, result, settings)


def stage_alerts(dataset: str, model_name: str, result: Any) -> list[Alert]:
    """A ``rollout_stage_changed`` alert per rollout audit entry of ``result["rollout_entries"]``."""
    entries = result.get("rollout_entries") or [] if isinstance(result, dict) else []
    return [
        make_alert(ROLLOUT_STAGE_CHANGED, dataset,
                   f"{model_name} v{e['version']}: rollout {e['from_stage']} -> {e['to_stage']}",
                   (model_name, e["version"], e["to_stage"]),
                   {k: e[k] for k in ("version", "from_stage", "to_stage", "reason", "actor")})
        for e in entries
    ]  # fmt: skip
