"""Alert channels of Airflow tasks: Airflow connections used through their providers' hooks.

``DRIFTLOOP_ALERT_HTTP_CONN_ID`` names an HTTP connection whose host is the receiver's full URL; each alert
is POSTed to it with ``HttpHook`` as the Slack-compatible JSON body of
:func:`driftloop.core.alerts.slack_payload` (so a Slack incoming webhook works as well as any JSON receiver).
``DRIFTLOOP_ALERT_SLACK_CONN_ID`` names a Slack incoming-webhook connection (``slackwebhook``), posted with
``SlackWebhookHook``. ``DRIFTLOOP_ALERT_SMTP_CONN_ID`` with ``DRIFTLOOP_ALERT_EMAIL_TO`` sends an HTML email
through ``SmtpHook``. Messages come from the templates of :mod:`driftloop.core.alert_messages`
(``DRIFTLOOP_ALERT_TEMPLATE_DIR``).

``DRIFTLOOP_ALERT_WEBHOOK_URL``, the setting of processes without Airflow, still works here when no HTTP
connection is set (an INFO line once says the connection is preferred). A connection that does not exist
makes its channel fail with a message naming the setting and the ``airflow connections add`` command, which
``dispatch_alerts`` logs as a WARNING: alerting never fails a task.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from driftloop.core import alerts
from driftloop.core.errors import ConfigError
from driftloop.core.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT_S = 10
_ADD_EXAMPLES = {
    "http": "--conn-type http --conn-host https://receiver.example.org/hook",
    "slackwebhook": "--conn-type slackwebhook --conn-password https://hooks.slack.com/services/T0/B0/XXXX",
    "smtp": "--conn-type smtp --conn-host mail.example.org --conn-port 587 --conn-login USER "
    "--conn-password PASSWORD",
}
_logged_once: set[str] = set()


def get_alert_connection(conn_id: str, setting: str, conn_type: str) -> Any:
    """The Airflow connection ``conn_id`` a channel sends through.

    Raises:
        ConfigError: It is not defined; the message names ``setting`` and how to add it.
    """
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        raise ConfigError(
            f"{setting}={conn_id} names an Airflow connection that is not defined: add it with "
            f"`airflow connections add {conn_id} {_ADD_EXAMPLES[conn_type]}` (or set "
            f"AIRFLOW_CONN_{conn_id.upper()}), or unset {setting}"
        ) from None


class HttpConnectionChannel:
    """POSTs :func:`~driftloop.core.alerts.slack_payload` as JSON through an Airflow HTTP connection
    (``HttpHook``); the connection's host holds the full URL, its extra may add headers."""

    name = "http"

    def __init__(self, conn_id: str, template_dir: str = "") -> None:
        self.conn_id = conn_id
        self.template_dir = template_dir

    def send(self, alert: alerts.Alert) -> None:
        """POST one alert; raise when the connection is missing or the receiver answers an error."""
        from airflow.providers.http.hooks.http import HttpHook

        conn = get_alert_connection(self.conn_id, "DRIFTLOOP_ALERT_HTTP_CONN_ID", "http")
        host, schema = conn.host or "", conn.schema or ""
        if not host:
            raise ConfigError(
                f"HTTP connection {self.conn_id} has no host: set the receiver's whole URL as its host "
                f"(`airflow connections add {self.conn_id} {_ADD_EXAMPLES['http']}`)"
            )
        if "://" not in host and schema not in ("", "http", "https"):
            raise ConfigError(
                f"HTTP connection {self.conn_id} has schema {schema!r}: a connection URI's path lands in "
                "the schema, not the URL. Put the whole URL in the host: "
                f"`airflow connections add {self.conn_id} {_ADD_EXAMPLES['http']}`"
            )
        response = HttpHook(method="POST", http_conn_id=self.conn_id).run(
            endpoint=None,
            data=json.dumps(alerts.slack_payload(alert, self.template_dir), default=str),
            headers={"Content-Type": "application/json", "X-Driftloop-Dedupe-Key": alert.dedupe_key},
            extra_options={"timeout": TIMEOUT_S, "check_response": False},  # one WARNING, not ERROR lines
        )
        if not 200 <= response.status_code < 300:
            raise RuntimeError(f"{response.url} answered HTTP {response.status_code}: {response.text[:200]}")


class SlackWebhookChannel:
    """Posts the alert's text and blocks to a Slack incoming webhook through an Airflow ``slackwebhook``
    connection (``SlackWebhookHook``, as the provider's ``SlackWebhookNotifier`` does)."""

    name = "slack"

    def __init__(self, conn_id: str, template_dir: str = "") -> None:
        self.conn_id = conn_id
        self.template_dir = template_dir

    def send(self, alert: alerts.Alert) -> None:
        """Post one alert; raise when the connection is missing or Slack answers an error."""
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        get_alert_connection(self.conn_id, "DRIFTLOOP_ALERT_SLACK_CONN_ID", "slackwebhook")
        payload = alerts.slack_payload(alert, self.template_dir)
        hook = SlackWebhookHook(slack_webhook_conn_id=self.conn_id, timeout=TIMEOUT_S)
        hook.send(text=payload["text"], blocks=payload["blocks"])


class EmailChannel:
    """Sends an alert as an HTML email through an Airflow SMTP connection (``SmtpHook``)."""

    name = "email"

    def __init__(self, smtp_conn_id: str, to: tuple[str, ...], template_dir: str = "") -> None:
        self.smtp_conn_id = smtp_conn_id
        self.to = list(to)
        self.template_dir = template_dir

    def send(self, alert: alerts.Alert) -> None:
        """Send one email; raise when the connection or the server fails."""
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        get_alert_connection(self.smtp_conn_id, "DRIFTLOOP_ALERT_SMTP_CONN_ID", "smtp")
        subject, body = alerts.email_content(alert, self.template_dir)
        with SmtpHook(smtp_conn_id=self.smtp_conn_id) as hook:
            hook.send_email_smtp(
                to=self.to,
                subject=subject,
                html_content=body,
                from_email=hook.from_email or "driftloop@localhost",
                custom_headers={"X-Driftloop-Dedupe-Key": alert.dedupe_key},
            )


def configured_channels(settings: Settings) -> list[alerts.AlertChannel]:
    """The channels this deployment configured (empty: alerting is off)."""
    templates = settings.alert_template_dir
    channels: list[alerts.AlertChannel] = []
    if settings.alert_http_conn_id:
        channels.append(HttpConnectionChannel(settings.alert_http_conn_id, templates))
        if settings.alert_webhook_url:
            _log_once(
                "DRIFTLOOP_ALERT_WEBHOOK_URL is not used by Airflow tasks while DRIFTLOOP_ALERT_HTTP_CONN_ID "
                "is set (the connection %s receives their alerts; the URL serves the driftloop CLI)",
                settings.alert_http_conn_id,
            )
    elif settings.alert_webhook_url:
        _log_once(
            "alerts go to DRIFTLOOP_ALERT_WEBHOOK_URL; Airflow tasks prefer an Airflow connection: "
            "`airflow connections add %s` and DRIFTLOOP_ALERT_HTTP_CONN_ID=%s",
            f"driftloop_alerts {_ADD_EXAMPLES['http']}",
            "driftloop_alerts",
        )
        channels.append(alerts.WebhookChannel(settings.alert_webhook_url, template_dir=templates))
    if settings.alert_slack_conn_id:
        channels.append(SlackWebhookChannel(settings.alert_slack_conn_id, templates))
    if settings.alert_smtp_conn_id and settings.alert_email_to:
        channels.append(EmailChannel(settings.alert_smtp_conn_id, settings.alert_email_to, templates))
    return channels


def _log_once(message: str, *args: Any) -> None:
    if message not in _logged_once:
        _logged_once.add(message)
        log.info(message, *args)
