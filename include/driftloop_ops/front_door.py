"""What ``driftloop up`` / ``demo`` do when a stack may already run: the state file and the rules.

The running embedded stack records what it was started with in ``$DRIFTLOOP_HOME/run/stack.json``: the
datasets Airflow builds DAGs for, the demo's schedule settings (its *mode*), the ports and the process ids.
A command says what it needs (a :class:`StackSpec`) and :func:`decide` compares it with what runs:

* nothing runs: start it, unless a port is taken by another program (then one line says which and how to free
  it);
* it runs and already serves what is needed: keep it;
* it runs but lacks a dataset, or runs with other schedule settings: restart the Airflow side with the union
  of the datasets (its SQLite DB, MLflow and the state folders are kept), MLflow keeps running;
* it runs on other ports than the ones asked for: one line saying so, and ``make down``.

This module decides only; :mod:`driftloop_ops.embedded` acts. Nothing here starts a process or opens a socket
(the caller passes ``port_free``), so the rules are tested without servers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "stack.json"
# The settings that make a demo a demo (no schedule starts a run between the demo's own); a stack started
# with other values runs in another mode.
MODE_KEYS = (
    "DRIFTLOOP_DATA_SCHEDULE",
    "DRIFTLOOP_SENSOR_SCHEDULE",
    "DRIFTLOOP_SENSOR_POKE_S",
    "DRIFTLOOP_SENSOR_TIMEOUT_S",
)
SERVICES = ("mlflow", "airflow")


class StackInTheWay(RuntimeError):  # a situation the user fixes, not a bug
    """Something the user can fix stops the command; the message is one line naming the fix."""


@dataclass(frozen=True)
class StackSpec:
    """What the Airflow side serves: dataset configs (empty: every config) and the schedule settings."""

    datasets: tuple[str, ...] = ()
    mode: Mapping[str, str] = field(default_factory=dict)

    def covers(self, wanted: StackSpec) -> bool:
        """Whether a stack running ``self`` can do what ``wanted`` needs without a restart."""
        if dict(self.mode) != dict(wanted.mode):
            return False
        if not self.datasets:
            return True
        return bool(wanted.datasets) and set(wanted.datasets) <= set(self.datasets)

    def merged(self, wanted: StackSpec) -> StackSpec:
        """The spec a restart serves: the union of the datasets (every config if either has all) and
        ``wanted``'s mode."""
        if not self.datasets or not wanted.datasets:
            return StackSpec((), dict(wanted.mode))
        return StackSpec(tuple(dict.fromkeys([*self.datasets, *wanted.datasets])), dict(wanted.mode))

    def describe(self) -> str:
        """``hpc_jobs, ames_housing`` or ``every dataset``, plus ``(demo settings)`` for a demo's mode."""
        names = ", ".join(self.datasets) if self.datasets else "every dataset"
        return names + (" (demo settings: no schedules)" if self.mode else "")


@dataclass(frozen=True)
class StackState:
    """What ``stack.json`` records about the running stack."""

    home: str
    mlflow_port: int
    airflow_port: int
    spec: StackSpec
    pids: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """The state file's text."""
        return json.dumps(
            {
                "home": self.home,
                "mlflow_port": self.mlflow_port,
                "airflow_port": self.airflow_port,
                "datasets": list(self.spec.datasets),
                "mode": dict(self.spec.mode),
                "pids": dict(self.pids),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> StackState:
        """Parse the state file's text.

        Raises:
            ValueError: Not a state file this version wrote.
        """
        raw: dict[str, Any] = json.loads(text)
        return cls(
            home=str(raw["home"]),
            mlflow_port=int(raw["mlflow_port"]),
            airflow_port=int(raw["airflow_port"]),
            spec=StackSpec(tuple(raw.get("datasets", ())), dict(raw.get("mode", {}))),
            pids={k: int(v) for k, v in raw.get("pids", {}).items()},
        )


def read_state(run_dir: Path) -> StackState | None:
    """The recorded state, or ``None`` when there is none or it cannot be read (written by an older
    version)."""
    path = run_dir / STATE_FILE
    try:
        return StackState.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(run_dir: Path, state: StackState) -> None:
    """Record ``state`` (atomically: a reader never sees half a file)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(state.to_json() + "\n")
    tmp.replace(run_dir / STATE_FILE)


def pid_is_service(pid: int, service: str) -> bool:
    """Whether ``pid`` runs and is ``service``'s process (a pid reused by another program is not)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():  # no /proc (macOS): trust the live pid
        return True
    try:
        return service in cmdline.read_bytes().decode(errors="replace")
    except OSError:
        return False


@dataclass(frozen=True)
class Decision:
    """What to do: start MLflow or not; ``airflow`` is ``start``, ``keep`` or ``restart`` serving ``spec``;
    ``message`` is the one line to print."""

    start_mlflow: bool
    airflow: str
    spec: StackSpec
    message: str


def port_hint(service: str, port: int) -> str:
    """The one line for a port another program holds."""
    variable = f"DRIFTLOOP_{service.upper()}_PORT"
    return (
        f"port {port} ({service}) is taken by another program; stop it, or choose another port: "
        f"{variable}={port + 1} make up (or make demo)"
    )


def decide(
    state: StackState | None,
    alive: Mapping[str, bool],
    wanted: StackSpec,
    ports: Mapping[str, int],
    port_free: Callable[[int], bool],
    home: str,
) -> Decision:
    """Decide what a command that needs ``wanted`` on ``ports`` does with the stack as it is.

    Args:
        state: The recorded state (``None``: none, or from an older version).
        alive: ``{"mlflow": bool, "airflow": bool}``: whether each recorded service's process runs.
        wanted: What the command needs Airflow to serve.
        ports: ``{"mlflow": port, "airflow": port}`` the command was asked to use.
        port_free: Whether a port on 127.0.0.1 can be bound now.
        home: ``DRIFTLOOP_HOME``, named in messages.

    Returns:
        The decision.

    Raises:
        StackInTheWay: Something the user must fix first; the one-line message names the command that does.
    """
    running = {name for name in SERVICES if alive.get(name)}
    if running and state is not None:
        recorded = {"mlflow": state.mlflow_port, "airflow": state.airflow_port}
        moved = [name for name in sorted(running) if recorded[name] != ports[name]]
        if moved:
            was = ", ".join(f"{name} on {recorded[name]}" for name in moved)
            raise StackInTheWay(
                f"the stack under {home} already runs ({was}), not on the ports asked for; "
                f"run 'make down' first, or leave DRIFTLOOP_MLFLOW_PORT / DRIFTLOOP_AIRFLOW_PORT as they were"
            )
    for name in SERVICES:
        if name not in running and not port_free(ports[name]):
            raise StackInTheWay(port_hint(name, ports[name]))
    start_mlflow = "mlflow" not in running
    if "airflow" not in running:
        return Decision(start_mlflow, "start", wanted, f"starting Airflow for {wanted.describe()}")
    current = state.spec if state is not None else StackSpec()
    if state is not None and current.covers(wanted):
        return Decision(start_mlflow, "keep", current, f"Airflow already serves {current.describe()}")
    target = current.merged(wanted) if state is not None else wanted
    return Decision(
        start_mlflow,
        "restart",
        target,
        f"the running Airflow serves {current.describe() if state else 'an unrecorded set'}; restarting it "
        f"for {target.describe()} (state is kept; about a minute)",
    )
