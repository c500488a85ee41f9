"""The one Airflow 3 REST API client (``/api/v2`` with a JWT from ``/auth/token``) used by the demo, the
benchmarks and every test that drives a real scheduler (embedded, native topology, containers).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
DONE_STATES = ("success", "failed")


class AirflowApiError(RuntimeError):
    """The API answered with an unexpected status, or a wait ran out of time."""


def wait_until(
    check: Callable[[], T | None],
    timeout_s: float,
    what: str,
    interval_s: float = 1.0,
    on_poll: Callable[[], None] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy and return that.

    Args:
        check: Returns the awaited value, or something falsy to keep waiting.
        timeout_s: How long to wait.
        what: Named in the timeout message.
        interval_s: Pause between two checks.
        on_poll: Called before every check; an exception it raises ends the wait (e.g. a component died).

    Raises:
        AirflowApiError: Nothing truthy within ``timeout_s``; the message names ``what`` and the last error.
    """
    deadline = time.monotonic() + timeout_s
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if on_poll is not None:
            on_poll()
        try:
            result = check()
            if result:
                return result
        except AirflowApiError:
            raise
        except Exception as exc:  # retried until the deadline
            last_exc = exc
        time.sleep(interval_s)
    raise AirflowApiError(
        f"timed out after {timeout_s:.0f} s waiting for {what}" + (f": {last_exc}" if last_exc else "")
    )


def read_generated_password(password_file: Path, username: str = "admin", timeout_s: float = 60) -> str:
    """The password ``airflow standalone``'s simple auth manager generated for ``username``."""
    wait_until(password_file.exists, timeout_s, f"{password_file}", 0.5)
    password: str = json.loads(password_file.read_text())[username]
    return password


class AirflowClient:
    """A small client of the Airflow 3 REST API.

    Args:
        base_url: e.g. ``http://127.0.0.1:8080``.
        username: User to get a token for.
        password: Its password.
        timeout_s: Timeout of each HTTP call.
        poll_s: Interval of the ``wait_*`` methods.
        on_poll: Called before every poll of a ``wait_*`` method (see :func:`wait_until`).
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout_s: float = 60,
        poll_s: float = 0.5,
        on_poll: Callable[[], None] | None = None,
    ):
        import requests

        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self.timeout_s, self.poll_s, self.on_poll = timeout_s, poll_s, on_poll
        self.session = requests.Session()
        self._token_at = -1e9

    def _token(self) -> None:
        if time.monotonic() - self._token_at < 600:
            return
        response = self.session.post(
            f"{self.base_url}/auth/token",
            timeout=self.timeout_s,
            json={"username": self.username, "password": self.password},
        )
        if response.status_code not in (200, 201):
            raise AirflowApiError(f"POST /auth/token -> {response.status_code}: {response.text[:500]}")
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        self._token_at = time.monotonic()

    def call(self, method: str, path: str, expect: Iterable[int] = (200,), **kwargs: Any) -> Any:
        """Call ``/api/v2<path>`` and return the decoded JSON.

        Raises:
            AirflowApiError: The status is not in ``expect``.
        """
        self._token()
        response = self.session.request(
            method, f"{self.base_url}/api/v2{path}", timeout=self.timeout_s, **kwargs
        )
        if response.status_code not in tuple(expect):
            raise AirflowApiError(f"{method} {path} -> {response.status_code}: {response.text[:1000]}")
        return response.json() if response.content else None

    def health(self) -> dict[str, Any]:
        """``/api/v2/monitor/health`` (needs no token)."""
        response = self.session.get(f"{self.base_url}/api/v2/monitor/health", timeout=self.timeout_s)
        health: dict[str, Any] = response.json()
        return health

    def wait_for_dags(self, dag_ids: Iterable[str], timeout_s: float = 180, unpause: bool = True) -> None:
        """Wait until the dag-processor has parsed every DAG (then unpause them, as an operator does in the
        UI).

        Raises:
            AirflowApiError: A DAG is missing after ``timeout_s``; the message carries the import errors.
        """
        wanted = set(dag_ids)

        def parsed() -> bool:
            dags = self.call("GET", "/dags", params={"limit": 1000})["dags"]
            return wanted <= {d["dag_id"] for d in dags}

        try:
            wait_until(parsed, timeout_s, f"DAGs {sorted(wanted)} parsed", 1, self.on_poll)
        except AirflowApiError as exc:
            errors = self.call("GET", "/importErrors")
            raise AirflowApiError(f"{exc}; import errors: {json.dumps(errors)[:3000]}") from exc
        if unpause:
            for dag_id in sorted(wanted):
                self.unpause(dag_id)

    def unpause(self, dag_id: str, paused: bool = False) -> None:
        """Unpause (or pause) a DAG."""
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a manual run now; returns its run id."""
        run_id: str = self.call(
            "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}}
        )["dag_run_id"]
        return run_id

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One DAG run."""
        run: dict[str, Any] = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        return run

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Runs of ``dag_id``, newest first (at most 100)."""
        runs: list[dict[str, Any]] = self.call(
            "GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "-run_after"}
        )["dag_runs"]
        return runs

    def run_ids(self, dag_id: str) -> set[str]:
        """Ids of the runs of ``dag_id`` that exist now."""
        return {run["dag_run_id"] for run in self.runs(dag_id)}

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run."""
        tis: list[dict[str, Any]] = self.call(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100}
        )["task_instances"]
        return tis

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """One task instance (its latest try)."""
        ti: dict[str, Any] = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        return ti

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``task_id -> state`` of a run."""
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def task_tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of a task instance."""
        tries: list[dict[str, Any]] = self.call(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
        )["task_instances"]
        return tries

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The text of one try's log (or why it is unavailable)."""
        try:
            content = self.call(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                params={"full_content": "true"},
                headers={"Accept": "application/json"},
            )
        except AirflowApiError as exc:
            return f"(log unavailable: {exc})"
        events = content.get("content", []) if isinstance(content, dict) else content
        return "\n".join(
            f"{e.get('level', '')} {e.get('event', '')} {e.get('error_detail', '') or ''}"
            if isinstance(e, dict)
            else str(e)
            for e in events or []
        )

    def describe_run(self, dag_id: str, run_id: str) -> str:
        """Task states and the log tail of failed tasks (for error messages)."""
        lines = []
        for ti in self.task_instances(dag_id, run_id):
            lines.append(f"  {ti['task_id']}: {ti['state']} try={ti['try_number']} host={ti.get('hostname')}")
            if ti["state"] in ("failed", "upstream_failed", "up_for_retry"):
                lines.append(self.task_log(dag_id, run_id, ti["task_id"], ti["try_number"])[-3000:])
        return "\n".join(lines)

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout_s: float = 900, ok: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Wait for a run to finish and return it.

        Raises:
            AirflowApiError: It did not finish in time, or ``ok`` is given and its final state is not in it
                (the message describes every task and quotes failed tasks' logs).
        """

        def finished() -> dict[str, Any] | None:
            run = self.dag_run(dag_id, run_id)
            return run if run["state"] in DONE_STATES else None

        run = wait_until(finished, timeout_s, f"{dag_id} run {run_id}", self.poll_s, self.on_poll)
        if ok is not None and run["state"] not in tuple(ok):
            raise AirflowApiError(
                f"{dag_id} {run_id} ended {run['state']}:\n{self.describe_run(dag_id, run_id)}"
            )
        return run

    def wait_new_run(
        self, dag_id: str, known: Iterable[str], run_type: str | None = None, timeout_s: float = 300
    ) -> dict[str, Any]:
        """The first run of ``dag_id`` not in ``known`` (created by an asset event, an operator or a
        schedule)."""
        known = set(known)

        def appeared() -> dict[str, Any] | None:
            for run in self.runs(dag_id):
                if run["dag_run_id"] not in known and (run_type is None or run["run_type"] == run_type):
                    return run
            return None

        return wait_until(
            appeared, timeout_s, f"a new {run_type or ''} run of {dag_id}", self.poll_s, self.on_poll
        )

    def wait_task_state(
        self, dag_id: str, run_id: str, task_id: str, states: Iterable[str], timeout_s: float = 300
    ) -> dict[str, Any]:
        """The task instance once its state is one of ``states``."""
        wanted = tuple(states)

        def reached() -> dict[str, Any] | None:
            ti = self.task_instance(dag_id, run_id, task_id)
            return ti if ti["state"] in wanted else None

        return wait_until(
            reached,
            timeout_s,
            f"{dag_id}.{task_id} in {wanted}",
            self.poll_s,
            self.on_poll,
        )
