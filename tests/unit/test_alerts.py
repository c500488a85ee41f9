"""Alerts through real channels: a JSON webhook (http.server) and email via Airflow's SMTP provider (a local
SMTP sink), one alert per event across retries, and a broken channel that only logs a WARNING."""

from __future__ import annotations

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


@pytest.fixture
def sinks(tmp_path, monkeypatch):
    smtp, hook = SmtpSink(), WebhookReceiver()
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DRIFTLOOP_ALERT_WEBHOOK_URL", hook.url)
    monkeypatch.setenv("DRIFTLOOP_ALERT_SMTP_CONN_ID", "alert_smtp")
    monkeypatch.setenv("AIRFLOW_CONN_ALERT_SMTP", smtp_conn_uri(smtp.port))
    monkeypatch.setenv("DRIFTLOOP_ALERT_EMAIL_TO", "ops@example.org, ml@example.org")
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_UI_URL", "http://mlflow.example.org")
    yield SimpleNamespace(smtp=smtp, hook=hook)
    smtp.stop()
    hook.stop()


def _settings():
    from driftloop.core.settings import Settings

    return Settings.from_env()


def test_rejected_gate_alerts_once_by_webhook_and_email(sinks):
    from driftloop.core import alerts
    from driftloop_airflow.notifiers import send_stage_alerts

    for _ in range(3):  # the task and two retries of it
        send_stage_alerts(alerts.promotion_alerts, "telco_churn", "telco-churn", REJECTED, _settings())

    assert sinks.hook.kinds() == ["gate_rejected"]
    body = sinks.hook.bodies[0]
    assert body["text"].startswith("[driftloop/telco_churn] gate_rejected: challenger v2 rejected")
    assert body["blocks"][0]["type"] == "section"
    assert "*candidate_metric*: 0.512" in body["blocks"][1]["text"]["text"]
    assert (
        "http://mlflow.example.org/#/models/telco-churn/versions/2"
        in body["blocks"][2]["elements"][0]["text"]
    )
    assert body["driftloop"]["dedupe_key"] == "gate_rejected:telco_churn:2"

    assert len(sinks.smtp.messages) == 1
    assert sinks.smtp.recipients[0] == ["ops@example.org", "ml@example.org"]
    assert sinks.smtp.subjects()[0].startswith(
        "[driftloop/telco_churn] gate_rejected: challenger v2 rejected"
    )
    assert sinks.smtp.messages[0]["X-Driftloop-Dedupe-Key"] == "gate_rejected:telco_churn:2"


def test_a_gate_move_names_the_champion_it_replaced(sinks):
    from driftloop.core import alerts
    from driftloop_airflow.notifiers import send_stage_alerts

    actor = "telco_churn__training_pipeline/asset_triggered__1"
    move_1 = {"id": 1, "from_version": None, "to_version": "1", "actor": actor, "source": "driftloop"}
    move_2 = {**move_1, "id": 2, "from_version": "1", "to_version": "2", "reason": "beats champion"}
    first = {**REJECTED, "decision": "promoted", "candidate_version": "1", "champion_version": "1"}
    first.update(moved=True, previous_champion_version=None, failed=[], recorded_moves=[move_1])
    second = {**first, "candidate_version": "2", "champion_version": "2", "recorded_moves": [move_2]}
    for result in (first, second, second):  # the second promotion's task retried
        send_stage_alerts(alerts.promotion_alerts, "telco_churn", "telco-churn", result, _settings())

    sent = [b["driftloop"] for b in sinks.hook.bodies]
    assert [a["dedupe_key"] for a in sent] == ["champion_moved:telco_churn:1", "champion_moved:telco_churn:2"]
    assert sent[0]["title"].startswith(f"champion moved to v1 by {actor} (gate)")
    assert sent[1]["title"] == f"champion moved v1 -> v2 by {actor} (gate): beats champion"
    assert (sent[1]["fields"]["from_version"], sent[1]["fields"]["override"]) == ("1", False)


def test_a_result_that_moved_nothing_alerts_nothing_even_when_it_names_an_older_move(sinks):
    from driftloop.core import alerts
    from driftloop_airflow.notifiers import send_stage_alerts

    older = {"id": 4, "from_version": "1", "to_version": "2", "actor": "cli:root", "source": "driftloop"}
    nothing = {**older, "moved": False, "recorded_moves": []}  # a rollback retried: its entry, not its move
    send_stage_alerts(alerts.move_alerts, "telco_churn", "m", nothing, _settings())
    send_stage_alerts(
        alerts.promotion_alerts, "telco_churn", "m", {**REJECTED, "recorded_moves": []}, _settings()
    )
    assert sinks.hook.kinds() == ["gate_rejected"]


def test_each_event_alerts_with_its_own_key(sinks):
    from driftloop.core import alerts
    from driftloop_airflow.notifiers import send_stage_alerts

    settings = _settings()
    fired = {
        "monitoring_run_id": "m1",
        "trigger_run_id": "drift__m1",
        "reason": "drift",
        "drift_share": 0.62,
        "live_drop": None,
        "champion_version": "1",
        "detail": "drift trigger for champion v1: batch batch_002 has drift share 0.62",
    }
    quarantined = {"quarantined": [{"batch_id": "broken", "reason_code": "unreadable", "message": "bad csv"}]}
    external = {"id": 7, "from_version": "1", "to_version": "2", "actor": "mlflow-ui", "source": "external"}
    moved = {"recorded_moves": [{**external, "override": True}]}
    send_stage_alerts(alerts.drift_alerts, "telco_churn", "m", fired, settings)
    send_stage_alerts(
        alerts.drift_alerts,
        "telco_churn",
        "m",
        {**fired, "reason": "performance", "monitoring_run_id": "m2"},
        settings,
    )
    send_stage_alerts(alerts.quarantine_alerts, "telco_churn", "m", quarantined, settings)
    send_stage_alerts(alerts.move_alerts, "telco_churn", "m", moved, settings)
    send_stage_alerts(alerts.move_alerts, "telco_churn", "m", None, settings)  # nothing moved
    send_stage_alerts(alerts.move_alerts, "telco_churn", "m", {"rows": 5}, settings)  # no event

    assert sinks.hook.kinds() == ["drift_fired", "performance_drop", "batch_quarantined", "champion_moved"]
    by_kind = {b["driftloop"]["kind"]: b["driftloop"] for b in sinks.hook.bodies}
    assert by_kind["drift_fired"]["fields"]["drift_share"] == 0.62
    assert by_kind["drift_fired"]["links"] == {"MLflow run": "http://mlflow.example.org/#/runs/m1"}
    assert "OVERRIDE" in by_kind["champion_moved"]["title"]
    assert by_kind["batch_quarantined"]["dedupe_key"] == "batch_quarantined:telco_churn:broken"
    assert len(sinks.smtp.messages) == 4


def test_a_firing_on_the_estimate_alerts_as_such_and_carries_the_estimate(sinks, cfg):
    """A monitoring run as monitoring logs it for a batch without labels (drift below the threshold, the
    estimate far below the holdout), fired by the real sensor, alerted through both channels."""
    import dataclasses

    from driftloop.core import alerts, bus
    from driftloop.core.tracking import ensure_experiment, get_client
    from driftloop.monitoring.sensor import find_drift_trigger, mark_trigger_fired
    from driftloop_airflow.notifiers import send_stage_alerts

    monitoring = dataclasses.replace(cfg.monitoring, retrain_on=("estimated_performance",))
    cfg = dataclasses.replace(cfg, monitoring=monitoring)
    client = get_client()
    run_id = client.create_run(ensure_experiment(client, cfg.experiment_name("monitoring"))).info.run_id
    estimate = {"estimated_f1": 0.31, "estimated_f1_lower": 0.27, "estimated_f1_upper": 0.35}
    for key, value in {
        bus.DRIFT_SHARE: 0.1,
        bus.DRIFTED_COLUMNS: 2,
        **estimate,
        bus.ESTIMATED_DROP: 0.48,
        bus.ESTIMATED_DROP_BEST_CASE: 0.4,
        bus.ESTIMATED_ROWS: 800,
    }.items():
        client.log_metric(run_id, key, value)
    for key, value in {
        bus.BATCH_ID_TAG: "b_low_risk",
        bus.CHAMPION_VERSION_TAG: "1",
        bus.ESTIMATION_METHOD_TAG: "cbpe",
        bus.LIVE_DROP_METRIC_TAG: "live_f1",
    }.items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id)
    client.create_registered_model(cfg.registered_model_name)
    source = client.create_run(ensure_experiment(client, cfg.experiment_name("training"))).info.run_id
    client.create_model_version(cfg.registered_model_name, f"runs:/{source}/model", run_id=source)
    client.set_registered_model_alias(cfg.registered_model_name, bus.CHAMPION, "1")
    trigger = find_drift_trigger(cfg)
    assert trigger is not None and trigger["monitoring_run_id"] == run_id

    fired = mark_trigger_fired(cfg, run_id, trigger["trigger_run_id"])
    for _ in range(2):  # the task and a retry of it
        send_stage_alerts(alerts.drift_alerts, cfg.name, cfg.registered_model_name, fired, _settings())

    assert sinks.hook.kinds() == ["estimated_performance_drop"]  # named for its reason, not "drift_fired"
    [body] = sinks.hook.bodies
    alert = body["driftloop"]
    assert alert["fields"]["reason"] == "estimated_performance"
    assert alert["dedupe_key"] == f"estimated_performance_drop:{cfg.name}:{run_id}"
    assert body["text"].startswith(
        f"[driftloop/{cfg.name}] estimated_performance_drop: estimated_performance trigger for champion v1: "
        "batch b_low_risk has drift share 0.10"
    )
    said = "the estimate before labels is 48.0% worse than on the holdout (at least 40.0% across its band"
    whole = alert["fields"].get("detail", alert["title"])
    assert said in whole and "cbpe on 800 rows" in whole
    webhook_text = body["text"] + "".join(b["text"]["text"] for b in body["blocks"][1:] if "text" in b)
    [email] = sinks.smtp.messages
    [html] = [
        p.get_payload(decode=True).decode() for p in email.walk() if p.get_content_type() == "text/html"
    ]
    assert said in webhook_text and said in html


def test_a_detail_longer_than_a_title_is_cut_in_the_title_and_whole_in_the_fields():
    from driftloop.core import alerts
    from driftloop.core.settings import Settings

    detail = "estimated_performance trigger for champion v3: batch b has drift share 0.05; " + "x" * 400
    result = {"reason": "estimated_performance", "monitoring_run_id": "m9", "detail": detail}
    [alert] = alerts.drift_alerts("d", "m", result, Settings.from_env({}))
    assert len(alert.title) == 300 and alert.title.endswith("x…")
    assert alert.fields["detail"] == detail
    short = {**result, "detail": detail[:80], "reason": "drift", "estimated_drop": 0.2}
    [drift] = alerts.drift_alerts("d", "m", short, Settings.from_env({}))
    assert (drift.kind, drift.title) == ("drift_fired", detail[:80])
    assert "detail" not in drift.fields and drift.fields["estimated_drop"] == 0.2


def test_failed_task_alerts_once_per_failure(sinks):
    from driftloop_airflow.notifiers import DriftloopFailureNotifier

    ti = SimpleNamespace(task_id="train_model", try_number=3)
    context = {
        "dag": SimpleNamespace(dag_id="telco_churn__training_pipeline"),
        "run_id": "manual__1",
        "ti": ti,
        "exception": RuntimeError("MLflow answered 503"),
    }
    DriftloopFailureNotifier().notify(context)
    DriftloopFailureNotifier().notify(context)  # the same failure reported again
    assert sinks.hook.kinds() == ["task_failed"]
    alert = sinks.hook.bodies[0]["driftloop"]
    assert alert["dataset"] == "telco_churn"
    assert "RuntimeError: MLflow answered 503" in alert["title"]


def test_a_broken_channel_logs_a_warning_and_the_other_still_delivers(sinks, monkeypatch, caplog):
    from driftloop.core import alerts
    from driftloop_airflow.notifiers import send_stage_alerts

    sinks.hook.fail = True
    with caplog.at_level(logging.INFO):
        send_stage_alerts(alerts.promotion_alerts, "telco_churn", "telco-churn", REJECTED, _settings())
    assert sinks.hook.bodies == []
    assert len(sinks.smtp.messages) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "via webhook failed" in warnings[0].getMessage()

    monkeypatch.setenv("AIRFLOW_CONN_ALERT_SMTP", smtp_conn_uri(1))  # nothing listens on port 1
    caplog.clear()
    send_stage_alerts(
        alerts.promotion_alerts,
        "telco_churn",
        "telco-churn",
        {**REJECTED, "candidate_version": "3"},
        _settings(),
    )  # does not raise
    assert {r.getMessage().split(" failed")[0] for r in caplog.records if r.levelno == logging.WARNING} == {
        "alert gate_rejected:telco_churn:3 via webhook",
        "alert gate_rejected:telco_churn:3 via email",
    }


def test_without_channels_nothing_is_claimed(tmp_path, monkeypatch):
    from driftloop.core import alert_claims, alerts
    from driftloop.core.settings import Settings

    settings = Settings.from_env({"DRIFTLOOP_HOME": str(tmp_path)})
    alert = alerts.make_alert(alerts.GATE_REJECTED, "d", "t", key=["1"])
    assert alerts.dispatch_alerts([alert], [], settings)[0]["status"] == "no_channel"
    assert not alert_claims.sent_dir(settings).exists()
    with pytest.raises(ValueError, match="unknown alert kind"):
        alerts.make_alert("drift", "d", "t", key=[])


def test_a_task_under_a_scheduler_writes_its_run_note_through_the_rest_api(monkeypatch):
    """No metadata DB access (the run is not in this process's DB): the note goes through a local HTTP server
    standing in for the api-server, with a token from /auth/token, and only the note is patched."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    import airflow.sdk

    from driftloop.core.settings import Settings
    from driftloop_airflow import notifiers

    seen: list[tuple[str, str, dict, str]] = []

    class Api(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict:
            return json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")

        def do_POST(self):  # http.server's naming
            body = self._body()
            ok = self.path == "/auth/token" and body == {"username": "tasks", "password": "s3cret"}
            self._reply(201 if ok else 401, {"access_token": "tok"} if ok else {})

        def do_PATCH(self):
            seen.append((self.path, self.headers.get("Authorization", ""), self._body(), self.command))
            self._reply(200, {"note": "ok"})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conn = {"conn_type": "http", "host": f"http://127.0.0.1:{server.server_port}", "login": "tasks"}
        monkeypatch.setenv("AIRFLOW_CONN_DRIFTLOOP_AIRFLOW_API", json.dumps({**conn, "password": "s3cret"}))
        context = {
            "dag": SimpleNamespace(dag_id="telco_churn__training_pipeline"),
            "run_id": "manual__2026/x",
        }
        monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: context)
        settings = Settings.from_env({"DRIFTLOOP_AIRFLOW_API_CONN_ID": "driftloop_airflow_api"})
        assert notifiers.set_run_note("v2 is champion: " + "x" * 2000, settings) is True
        [(path, auth, body, _)] = seen
        assert path == "/api/v2/dags/telco_churn__training_pipeline/dagRuns/manual__2026%2Fx?update_mask=note"
        assert auth == "Bearer tok" and body == {"note": ("v2 is champion: " + "x" * 2000)[:1000]}

        # No connection configured, or a refusing API: the note stays in the log, the task goes on.
        assert notifiers.set_run_note("note", Settings.from_env({})) is False
        monkeypatch.setenv("AIRFLOW_CONN_DRIFTLOOP_AIRFLOW_API", json.dumps({**conn, "password": "wrong"}))
        assert notifiers.set_run_note("note", settings) is False and len(seen) == 1
    finally:
        server.shutdown()


def test_api_base_url_takes_hosts_with_or_without_a_scheme():
    from driftloop_airflow.notifiers import api_base_url

    assert api_base_url("http://airflow-api-server:8080", None, None) == "http://airflow-api-server:8080"
    assert api_base_url("airflow-api-server", 8080, None) == "http://airflow-api-server:8080"
    assert api_base_url("https://airflow.example.com/", None, "http") == "https://airflow.example.com"
    assert api_base_url("http://127.0.0.1", 8081, None) == "http://127.0.0.1:8081"
