"""Alerts through Airflow connections and their hooks, with templated messages.

Real receivers on 127.0.0.1 (tests/alert_sinks.py) and real Airflow connections defined the way a deployment
defines them (``AIRFLOW_CONN_<ID>``, JSON or URI form), so ``HttpHook``, ``SlackWebhookHook`` and ``SmtpHook``
really send. Each test checks what the receiver got, once per event.
"""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from tests.alert_sinks import SmtpSink, WebhookReceiver, smtp_conn_uri

REJECTED = {
    "decision": "rejected",
    "reason": "beats_champion failed: f1 0.512 < 0.601 + 0.005",
    "candidate_version": "2",
    "champion_version": "1",
    "candidate_metric": 0.512,
    "champion_metric": 0.601,
    "failed": ["beats_champion"],
    "moved": False,
}
ALERT_ENV = (
    "DRIFTLOOP_ALERT_WEBHOOK_URL",
    "DRIFTLOOP_ALERT_HTTP_CONN_ID",
    "DRIFTLOOP_ALERT_SLACK_CONN_ID",
    "DRIFTLOOP_ALERT_SMTP_CONN_ID",
    "DRIFTLOOP_ALERT_EMAIL_TO",
    "DRIFTLOOP_ALERT_TEMPLATE_DIR",
)


@pytest.fixture
def hook(tmp_path, monkeypatch):
    """A JSON receiver and a clean alert environment (no channel set yet)."""
    for name in ALERT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_UI_URL", "http://mlflow.example.org")
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


def _settings():
    from driftloop.core.settings import Settings

    return Settings.from_env()


def _send_rejection(times: int = 1, version: str = "2") -> None:
    from driftloop.core import alerts
    from driftloop_airflow.notifiers import send_stage_alerts

    result = {**REJECTED, "candidate_version": version}
    for _ in range(times):
        send_stage_alerts(alerts.promotion_alerts, "telco_churn", "telco-churn", result, _settings())


def _http_connection(monkeypatch, url: str, conn_id: str = "driftloop_alerts") -> None:
    monkeypatch.setenv("DRIFTLOOP_ALERT_HTTP_CONN_ID", conn_id)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "http", "host": url}))


def test_an_http_connection_receives_each_alert_once_through_the_http_hook(hook, monkeypatch):
    _http_connection(monkeypatch, hook.url)
    _send_rejection(times=3)  # the task and two retries

    assert hook.kinds() == ["gate_rejected"]
    assert hook.paths == ["/hook"]  # the connection's host is the whole URL, path included
    body = hook.bodies[0]
    assert body["text"] == (
        "[driftloop/telco_churn] gate_rejected: challenger v2 rejected: beats_champion failed: "
        "f1 0.512 < 0.601 + 0.005"
    )
    assert body["blocks"][0]["text"]["text"] == body["text"]
    assert "*candidate_metric*: 0.512" in body["blocks"][1]["text"]["text"]
    assert body["driftloop"]["dedupe_key"] == "gate_rejected:telco_churn:2"
    assert hook.headers[0]["X-Driftloop-Dedupe-Key"] == "gate_rejected:telco_churn:2"
    assert hook.headers[0]["Content-Type"] == "application/json"


def test_an_http_connection_in_uri_form_posts_to_its_host(hook, monkeypatch):
    base_url = hook.url.removesuffix("/hook")  # a URI's path would land in the schema: no path here
    monkeypatch.setenv("DRIFTLOOP_ALERT_HTTP_CONN_ID", "alerts_uri")
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_URI", base_url)
    _send_rejection()
    assert hook.kinds() == ["gate_rejected"] and hook.paths == ["/"]


def test_a_uri_whose_path_became_the_schema_is_a_warning_that_says_so(hook, monkeypatch, caplog):
    monkeypatch.setenv("DRIFTLOOP_ALERT_HTTP_CONN_ID", "alerts_uri")
    monkeypatch.setenv("AIRFLOW_CONN_ALERTS_URI", hook.url)  # http://127.0.0.1:PORT/hook
    with caplog.at_level(logging.WARNING):
        _send_rejection()  # does not raise
    assert hook.bodies == []
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "via http failed" in warning and "schema 'hook'" in warning
    assert "Put the whole URL in the host" in warning


def test_a_missing_connection_is_a_warning_naming_the_setting_and_the_command(hook, monkeypatch, caplog):
    monkeypatch.setenv("DRIFTLOOP_ALERT_HTTP_CONN_ID", "no_such_alerts")
    monkeypatch.setenv("DRIFTLOOP_ALERT_SMTP_CONN_ID", "no_such_smtp")
    monkeypatch.setenv("DRIFTLOOP_ALERT_EMAIL_TO", "ops@example.org")
    with caplog.at_level(logging.WARNING):
        _send_rejection()  # does not raise: alerting never fails a task
    warnings = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert len(warnings) == 2, warnings
    email, http = warnings
    assert "via email failed" in email and "DRIFTLOOP_ALERT_SMTP_CONN_ID=no_such_smtp" in email
    assert "`airflow connections add no_such_smtp --conn-type smtp" in email
    assert "via http failed" in http and "DRIFTLOOP_ALERT_HTTP_CONN_ID=no_such_alerts" in http
    assert "`airflow connections add no_such_alerts --conn-type http --conn-host https://" in http
    assert "AIRFLOW_CONN_NO_SUCH_ALERTS" in http


def test_a_failing_receiver_behind_a_connection_is_one_warning(hook, monkeypatch, caplog):
    _http_connection(monkeypatch, hook.url)
    hook.fail = True
    with caplog.at_level(logging.INFO):
        _send_rejection()
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) == 1 and "via http failed" in problems[0] and "HTTP 500" in problems[0]


def test_a_slack_webhook_connection_gets_text_and_blocks_through_the_slack_hook(hook, monkeypatch):
    monkeypatch.setenv("DRIFTLOOP_ALERT_SLACK_CONN_ID", "driftloop_slack")
    monkeypatch.setenv(
        "AIRFLOW_CONN_DRIFTLOOP_SLACK", json.dumps({"conn_type": "slackwebhook", "password": hook.url})
    )
    _send_rejection(times=2)

    [body] = hook.bodies
    assert body["text"].startswith("[driftloop/telco_churn] gate_rejected: challenger v2 rejected")
    assert [b["type"] for b in body["blocks"]] == ["section", "section", "context"]
    assert "driftloop" not in body  # Slack gets what its API knows


def test_the_legacy_url_still_works_in_airflow_and_says_once_what_to_prefer(hook, monkeypatch, caplog):
    from driftloop_airflow import alert_channels

    monkeypatch.setattr(alert_channels, "_logged_once", set())
    monkeypatch.setenv("DRIFTLOOP_ALERT_WEBHOOK_URL", hook.url)
    with caplog.at_level(logging.INFO):
        _send_rejection(version="2")
        _send_rejection(version="3")
    assert hook.kinds() == ["gate_rejected", "gate_rejected"]
    hints = [r.getMessage() for r in caplog.records if "DRIFTLOOP_ALERT_HTTP_CONN_ID" in r.getMessage()]
    assert len(hints) == 1 and "airflow connections add driftloop_alerts --conn-type http" in hints[0]
    assert all(r.levelno < logging.WARNING for r in caplog.records)


def test_with_a_connection_and_the_url_airflow_tasks_send_once_through_the_connection(hook, monkeypatch):
    other = WebhookReceiver()
    try:
        _http_connection(monkeypatch, hook.url)
        monkeypatch.setenv("DRIFTLOOP_ALERT_WEBHOOK_URL", other.url)  # the CLI's setting
        _send_rejection()
    finally:
        other.stop()
    assert hook.kinds() == ["gate_rejected"]
    assert other.bodies == []


def test_templates_in_the_template_dir_replace_the_messages(hook, monkeypatch, tmp_path):
    smtp = SmtpSink()
    try:
        templates = tmp_path / "templates"
        templates.mkdir()
        (templates / "webhook_text.txt").write_text(
            "{{ alert.kind | upper }} on {{ alert.dataset }}: f1 {{ alert.fields.candidate_metric | fmt }}\n"
        )
        (templates / "email_subject.txt").write_text("ALERT {{ alert.dedupe_key }}\n{{ alert.title }}")
        (templates / "email_body.html").write_text(
            "<h1>{{ alert.fields.failed | fmt }}</h1>{{ alert.title }}"
        )
        monkeypatch.setenv("DRIFTLOOP_ALERT_TEMPLATE_DIR", str(templates))
        _http_connection(monkeypatch, hook.url)
        monkeypatch.setenv("DRIFTLOOP_ALERT_SMTP_CONN_ID", "alert_smtp")
        monkeypatch.setenv("AIRFLOW_CONN_ALERT_SMTP", smtp_conn_uri(smtp.port))
        monkeypatch.setenv("DRIFTLOOP_ALERT_EMAIL_TO", "ops@example.org")
        _send_rejection(times=2)
    finally:
        smtp.stop()

    [body] = hook.bodies
    assert body["text"] == "GATE_REJECTED on telco_churn: f1 0.512"
    assert body["blocks"][0]["text"]["text"] == "GATE_REJECTED on telco_churn: f1 0.512"
    [message] = smtp.messages
    assert smtp.subjects() == [
        "ALERT gate_rejected:telco_churn:2 challenger v2 rejected: beats_champion failed: "
        "f1 0.512 < 0.601 + 0.005"
    ]
    html = next(p for p in message.walk() if p.get_content_type() == "text/html").get_payload(decode=True)
    assert html.decode() == (
        "<h1>beats_champion</h1>challenger v2 rejected: beats_champion failed: f1 0.512 &lt; 0.601 + 0.005"
    )


def test_a_broken_template_warns_and_the_default_message_goes_out(hook, monkeypatch, tmp_path, caplog):
    (tmp_path / "webhook_text.txt").write_text("{{ alert.no_such_field }} {% if %}")
    monkeypatch.setenv("DRIFTLOOP_ALERT_TEMPLATE_DIR", str(tmp_path))
    _http_connection(monkeypatch, hook.url)
    with caplog.at_level(logging.WARNING):
        _send_rejection()
    assert hook.bodies[0]["text"].startswith("[driftloop/telco_churn] gate_rejected: challenger v2")
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "webhook_text.txt failed (TemplateSyntaxError" in warning


def test_the_default_templates_write_the_messages_alerts_always_had():
    """The bytes receivers got before the templates (f-strings and html.escape), for an alert whose text
    needs escaping."""
    from driftloop.core import alerts

    alert = alerts.make_alert(
        alerts.GATE_REJECTED,
        "d",
        "v2 <rejected> & 'kept' \"out\"",
        key=["2"],
        fields={"f1": 0.51234, "failed": ["a", "b<"], "note": None},
        links={"v2 & more": "http://x/?a=1&b='2'"},
    )
    subject, body = alerts.email_content(alert)
    assert subject == "[driftloop/d] gate_rejected: v2 <rejected> & 'kept' \"out\""
    assert body == (
        "<p><b>v2 &lt;rejected&gt; &amp; &#x27;kept&#x27; &quot;out&quot;</b></p><table>"
        "<tr><th align='left'>f1</th><td>0.5123</td></tr>"
        "<tr><th align='left'>failed</th><td>a, b&lt;</td></tr>"
        "<tr><th align='left'>note</th><td>None</td></tr></table>"
        "<ul><li><a href='http://x/?a=1&amp;b=&#x27;2&#x27;'>v2 &amp; more</a></li></ul>"
        "<p><small>dedupe key gate_rejected:d:2</small></p>"
    )
    payload = alerts.slack_payload(alert)
    assert payload["text"] == "[driftloop/d] gate_rejected: v2 <rejected> & 'kept' \"out\""
    assert payload["blocks"][1]["text"]["text"] == "*f1*: 0.5123\n*failed*: a, b<\n*note*: None"
    bare = alerts.make_alert(alerts.TASK_FAILED, "d", "t", key=["k"])
    assert (
        alerts.email_content(bare)[1]
        == "<p><b>t</b></p><table></table><p><small>dedupe key task_failed:d:k</small></p>"
    )


def test_the_cli_path_still_sends_to_the_url_with_the_templates(hook, monkeypatch, tmp_path):
    from driftloop.core import alerts

    (tmp_path / "webhook_text.txt").write_text("moved: {{ alert.fields.to_version }}")
    monkeypatch.setenv("DRIFTLOOP_ALERT_WEBHOOK_URL", hook.url)
    monkeypatch.setenv("DRIFTLOOP_ALERT_TEMPLATE_DIR", str(tmp_path))
    cfg = SimpleNamespace(name="telco_churn", registered_model_name="telco-churn")
    move = {"id": 5, "from_version": "2", "to_version": "1", "actor": "cli:root", "reason": "rollback"}
    for _ in range(2):
        alerts.send_package_alerts(cfg, {"recorded_moves": [move]}, _settings())
    assert hook.kinds() == ["champion_moved"]
    assert hook.bodies[0]["text"] == "moved: 1"


def test_the_cli_path_leaves_a_connection_only_setup_to_the_registry_watch(hook, monkeypatch):
    """A process without Airflow cannot use a connection: it claims nothing, so ``registry_watch`` (an
    Airflow task, which can) still announces the move."""
    from driftloop.core import alert_claims, alerts

    _http_connection(monkeypatch, hook.url)
    settings = _settings()
    cfg = SimpleNamespace(name="telco_churn", registered_model_name="telco-churn")
    move = {"id": 6, "from_version": "2", "to_version": "1", "actor": "cli:root"}
    [outcome] = alerts.send_package_alerts(cfg, {"recorded_moves": [move]}, settings)
    assert outcome["status"] == "no_channel"
    assert alerts.alerting_configured(settings)
    assert not alert_claims.sent_dir(settings).exists()
