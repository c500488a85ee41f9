"""Alerts and notes on the Airflow side: stage results and failures to alerts, the failure notifier, run
notes.

Stage results become alerts in :func:`send_stage_alerts` (called by ``run_stage`` after the stage
function returned, with the alert builder the task declared); a task that failed after its retries alerts
through :class:`DriftloopFailureNotifier`, every task's ``on_failure_callback``. Both send through
:func:`driftloop.core.alerts.dispatch_alerts`: one alert per event (dedupe key), and a channel that fails
is a WARNING, never a failed task. Channels are Airflow connections used through their hooks
(:func:`driftloop_airflow.alert_channels.configured_channels`); with none set, nothing is sent.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from airflow.sdk.bases.notifier import BaseNotifier

from driftloop.core import alerts, bus
from driftloop.core.settings import Settings
from driftloop_airflow.alert_channels import configured_channels

log = logging.getLogger(__name__)
NOTE_MAX_CHARS = 1000  # Airflow's dag_run_note.content


def send_alerts(found: list[alerts.Alert], settings: Settings) -> list[alerts.AlertOutcome]:
    """Dispatch ``found`` to the configured channels; never raises (a failure is a WARNING)."""
    if not found:
        return []
    try:
        return alerts.dispatch_alerts(found, configured_channels(settings), settings)
    except Exception as exc:  # alerting must never fail the pipeline
        log.warning("alerts not sent (%s): %s", exc, [a.dedupe_key for a in found])
        return []


def send_stage_alerts(
    build: alerts.AlertBuilder, dataset: str, model_name: str, result: Any, settings: Settings
) -> None:
    """Turn a stage's result into alerts with the builder its task declared, and send them."""
    try:
        found = build(dataset, model_name, result, settings)
    except Exception as exc:
        log.warning("alerts of %s not built: %s", getattr(build, "__name__", build), exc)
        return
    send_alerts(found, settings)


def send_verdict_alerts(
    stage: str, dataset: str, exc: Exception, args: tuple[Any, ...], settings: Settings
) -> None:
    """Alert on a verdict that fails the task and is an event of its own (a rejected first version)."""
    from driftloop.core.errors import GateRejected

    if isinstance(exc, GateRejected) and args:
        title = f"challenger v{args[0]} rejected and no champion exists: {exc}"[:300]
        send_alerts([alerts.make_alert(alerts.GATE_REJECTED, dataset, title, key=[args[0]])], settings)


class DriftloopFailureNotifier(BaseNotifier):
    """``on_failure_callback`` of every Driftloop task: a ``task_failed`` alert once its retries are spent."""

    def notify(self, context: Any) -> None:
        """Send the task_failed alert; a failing channel is logged, never raised."""
        ti = context.get("ti") or context.get("task_instance")
        dag_id = context["dag"].dag_id
        run_id = context.get("run_id", "")
        task_id = getattr(ti, "task_id", "?")
        try_number = getattr(ti, "try_number", 0)
        dataset = bus.split_dag_id(dag_id)[0] if "__" in dag_id else dag_id
        error = context.get("exception")
        alert = alerts.make_alert(
            alerts.TASK_FAILED,
            dataset,
            f"{dag_id}.{task_id} failed (try {try_number}): {type(error).__name__ if error else ''}: {error}"[
                :300
            ],
            key=[dag_id, run_id, task_id, try_number],
            fields={"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "try_number": try_number},
        )
        send_alerts([alert], Settings.from_env())


async def approval_deadline_missed(dataset: str, context: dict[str, Any] | None = None, **_: Any) -> None:
    """The approval deadline's callback (``DeadlineAlert``, run in the triggerer): an ``approval_overdue``
    alert for the training run still unfinished. It alerts and decides nothing: the approval keeps waiting."""
    import asyncio

    await asyncio.to_thread(send_approval_overdue, dataset, context or {})


def send_approval_overdue(dataset: str, context: dict[str, Any]) -> list[alerts.AlertOutcome]:
    """Send the ``approval_overdue`` alert of the deadline context's run (``dag_run``: ``dag_id``,
    ``dag_run_id``, ``queued_at``); never raises."""
    from datetime import UTC, datetime

    run = context.get("dag_run") or {}
    queued = run.get("queued_at")
    try:
        waited_s = (
            (datetime.now(UTC) - datetime.fromisoformat(str(queued))).total_seconds() if queued else 0.0
        )
        alert = alerts.approval_overdue_alert(
            dataset, str(run.get("dag_id")), str(run.get("dag_run_id")), waited_s
        )
    except Exception as exc:  # a deadline callback must never crash the triggerer's callback runner
        log.warning("approval_overdue alert of %s not built: %s", run, exc)
        return []
    return send_alerts([alert], Settings.from_env())


def stage_note(stage: str, result: Any) -> str | None:
    """The DAG run note a stage's result deserves (the grid shows it), or None."""
    if not isinstance(result, dict):
        return None
    if stage in ("promote_model", "promote_trained"):
        return _promotion_note(result)
    if stage == "mark_trigger_fired" and result.get("detail"):
        return f"fired: {result['detail']} Retraining run {result.get('trigger_run_id')}."
    return None


def _promotion_note(result: dict[str, Any]) -> str:
    version, reason, decision = (
        result.get("candidate_version"),
        result.get("reason", ""),
        result.get("decision"),
    )
    if decision == "skipped":
        return f"nothing registered, nothing to promote: {reason}"
    if decision == "rejected":
        return f"challenger v{version} rejected (champion stays v{result.get('champion_version')}): {reason}"
    if decision == "ready":
        return f"challenger v{version} passed the gate; ready for champion (manual policy): {reason}"
    return f"v{version} is champion: {reason}"


def verdict_note(stage: str, exc: Exception, args: tuple[Any, ...]) -> str:
    """The DAG run note of a verdict that failed ``stage``."""
    from driftloop.core.errors import GateRejected

    if isinstance(exc, GateRejected) and args:
        return f"challenger v{args[0]} rejected and no champion exists, so nothing serves: {exc}"
    return f"{stage} failed: {type(exc).__name__}: {exc}"


def set_run_note(text: str, settings: Settings | None = None) -> bool:
    """Write ``text`` as the running DAG run's note; False (and an INFO line) when this process cannot.

    Airflow 3's execution API lets a task read its run's note, not write it, and task processes under a
    scheduler have no metadata DB access. A process with DB access (``dag.test()``) writes it directly;
    otherwise the note goes through the REST API as the user of the ``DRIFTLOOP_AIRFLOW_API_CONN_ID``
    connection. Without either the note is only logged. A note is a convenience: nothing here raises.
    """
    from airflow.sdk import get_current_context

    text = text[:NOTE_MAX_CHARS]
    try:
        context = get_current_context()
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
    except Exception:  # called outside a task (a test, the CLI): nothing to annotate
        log.info("run note (no running task): %s", text)
        return False
    written = _write_note_in_db(dag_id, run_id, text)
    if written is not True:
        written = _write_note_through_api(dag_id, run_id, text, settings)
    if written is not True:
        log.info("run note (not written to the run: %s): %s", written, text)
        return False
    log.info("run note: %s", text)
    return True


def _write_note_in_db(dag_id: str, run_id: str, text: str) -> bool | str:
    """True, or why not (no DB access in a task process under a scheduler)."""
    try:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            dag_run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one()
            dag_run.note = text
    except Exception as exc:  # any failure means "use the API"
        return f"no metadata DB access ({type(exc).__name__})"
    return True


def api_base_url(host: str, port: int | None, schema: str | None) -> str:
    """The api-server's base URL from an HTTP connection's host (with or without scheme), port and schema."""
    base = host if "://" in host else f"{schema or 'http'}://{host}"
    return f"{base.rstrip('/')}:{port}" if port and base.count(":") < 2 else base.rstrip("/")


def _write_note_through_api(dag_id: str, run_id: str, text: str, settings: Settings | None) -> bool | str:
    """True, or why not: a token from ``/auth/token`` for the connection's user, then
    ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}`` with the note only.

    The plugin's one REST call, made here so the plugin imports only ``driftloop`` and Airflow; the REST
    client of the tools that drive a stack is ``driftloop_ops.airflow_api``.
    """
    try:
        settings = settings or Settings.from_env()
        if not settings.airflow_api_conn_id:
            return "DRIFTLOOP_AIRFLOW_API_CONN_ID is not set"
        import requests
        from airflow.sdk import Connection

        conn = Connection.get(settings.airflow_api_conn_id)
        base_url = api_base_url(conn.host or "", conn.port, conn.schema)
        with requests.Session() as session:
            login = {"username": conn.login or "", "password": conn.password or ""}
            token = session.post(f"{base_url}/auth/token", json=login, timeout=30)
            token.raise_for_status()
            session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            session.patch(
                f"{base_url}/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
                params={"update_mask": "note"},
                json={"note": text},
                timeout=30,
            ).raise_for_status()
    except Exception as exc:  # a failing API leaves the note in the log only
        return f"the REST API refused it: {type(exc).__name__}: {str(exc)[:200]}"
    return True
