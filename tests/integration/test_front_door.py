"""README's commands one after another, as a person types them, on the real embedded stack.

The commands are read from README's quickstart, so the two cannot drift apart. Everything runs in a temporary
``DRIFTLOOP_HOME`` on free ports (never the developer's ``.driftloop`` or a stack of theirs on 5000/8080),
with fast training overrides; the stack is stopped at the end whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from driftloop_ops.services import free_port
from tests.constants import FAST_OVERRIDES

PROJECT_DIR = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.integration]
REFUSAL_S = 15  # "says within a few seconds": make, the interpreter and the CLI's imports included


def quickstart_commands() -> list[str]:
    """Every ``make ...`` command (with an optional ``VAR=value`` prefix) README's quickstart shows."""
    readme = (PROJECT_DIR / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"(?:^|`)((?:[A-Z_]+=\w+ )?make [a-z]+)", section, flags=re.M)


def readme_command(wanted: str) -> str:
    commands = quickstart_commands()
    assert wanted in commands, f"README's quickstart no longer shows `{wanted}`: {commands}"
    return wanted


class Shell:
    """Runs commands as a user's shell would, in the project folder, with the test's home and ports."""

    def __init__(self, home: Path):
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "DRIFTLOOP_", "MLFLOW_", "PYTEST_"))
        }
        self.env.update(
            DRIFTLOOP_HOME=str(home),
            DRIFTLOOP_MLFLOW_PORT=str(free_port()),
            DRIFTLOOP_AIRFLOW_PORT=str(free_port()),
            DRIFTLOOP_CONFIG_OVERRIDES=json.dumps(FAST_OVERRIDES),
        )
        self.timings: list[tuple[str, float, int]] = []

    def run(self, command: str, timeout_s: float = 600, **extra: str) -> tuple[int, str, float]:
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=PROJECT_DIR,
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        seconds = time.monotonic() - started
        self.timings.append((command, seconds, done.returncode))
        print(f"$ {command}  -> exit {done.returncode} in {seconds:.1f} s")
        return done.returncode, done.stdout + done.stderr, seconds


@pytest.fixture
def shell(tmp_path: Path):
    sh = Shell(tmp_path / "home")
    try:
        yield sh
    finally:
        sh.run(".venv/bin/driftloop down", timeout_s=120)
        for command, seconds, code in sh.timings:
            print(f"{seconds:7.1f} s  exit {code}  {command}")


def assert_demo_done(code: int, output: str, dataset: str) -> None:
    assert code == 0, output[-4000:]
    assert f"Driftloop demo on {dataset}: done" in output, output[-4000:]
    assert "Traceback" not in output, output[-4000:]


def assert_one_line_refusal(code: int, output: str, seconds: float, *phrases: str) -> None:
    assert code != 0, output
    assert seconds < REFUSAL_S, f"took {seconds:.1f} s to say:\n{output}"
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("driftloop ")]
    assert len(lines) == 1 and all(p in lines[0] for p in phrases), output


def stack_pids(home: Path) -> dict[str, int]:
    return json.loads((home / "run" / "stack.json").read_text())["pids"]


def serve_without_noise(shell: Shell, dataset: str) -> None:
    """``driftloop serve`` on the running stack answers ``/ready`` and prints no progress bar."""
    import signal
    import urllib.request

    port = free_port()
    env = {
        **shell.env,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{shell.env['DRIFTLOOP_MLFLOW_PORT']}",
        "DRIFTLOOP_SERVE_WORKERS": "1",
    }
    process = subprocess.Popen(
        [str(PROJECT_DIR / ".venv/bin/driftloop"), "--dataset", dataset, "serve", "--port", str(port)],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, ready = time.monotonic() + 120, False
        while time.monotonic() < deadline and not ready and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                    ready = response.status == 200
            except OSError:
                time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert ready, output[-3000:]
    noise = [line for line in output.splitlines() if "Downloading artifacts" in line or "%|" in line]
    assert noise == [], "\n".join(noise)


def test_readme_commands_in_the_order_a_person_types_them(shell: Shell, tmp_path: Path):
    home = Path(shell.env["DRIFTLOOP_HOME"])
    demo_a = readme_command("DRIFTLOOP_DATASET=hpc_jobs make demo")
    demo_b = demo_a.replace("hpc_jobs", "mlc_churn")  # a classifier: the fast overrides train lr only
    assert "`mlc_churn`" in (PROJECT_DIR / "README.md").read_text(), "README no longer offers mlc_churn"

    assert_demo_done(*shell.run(demo_a)[:2], "hpc_jobs")
    mlflow_pid = stack_pids(home)["mlflow"]

    code, output, _ = shell.run(demo_b)
    assert_demo_done(code, output, "mlc_churn")
    assert "restarting it for hpc_jobs, mlc_churn" in output, output[-3000:]
    assert stack_pids(home)["mlflow"] == mlflow_pid, "MLflow must keep running through the restart"

    code, output, _ = shell.run(readme_command("make up"))
    assert code == 0 and "Airflow UI" in output, output[-3000:]
    assert json.loads((home / "run" / "stack.json").read_text())["datasets"] == [], "up serves every dataset"

    other_port = str(free_port())
    code, output, seconds = shell.run("make up", DRIFTLOOP_AIRFLOW_PORT=other_port)
    assert_one_line_refusal(code, output, seconds, "already runs", "make down")

    pids = stack_pids(home)
    serve_without_noise(shell, "hpc_jobs")
    # `make test` while the stack runs: every lane collects (running them all here would take the CI's hour).
    code, output, _ = shell.run(f'{readme_command("make test")} PYTEST_ARGS="--collect-only -q"')
    assert code == 0, output[-3000:]
    assert stack_pids(home) == pids, "make test must leave the running stack alone"

    code, output, _ = shell.run(readme_command("make down"))
    assert code == 0 and "stopped airflow" in output and "stopped mlflow" in output, output
    assert not (home / "run" / "stack.json").exists()

    # The same demo again in the same home: its files would be replays; it says so before starting anything.
    code, output, seconds = shell.run(demo_a)
    assert_one_line_refusal(code, output, seconds, "already ran", "make clean")
    assert not (home / "run" / "stack.json").exists(), "a refused demo must not start the stack"

    airflow_port = int(shell.env["DRIFTLOOP_AIRFLOW_PORT"])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the stopped server's TIME_WAIT
        squatter.bind(("127.0.0.1", airflow_port))
        squatter.listen()
        code, output, seconds = shell.run("make up")
    assert_one_line_refusal(code, output, seconds, f"port {airflow_port}", "DRIFTLOOP_AIRFLOW_PORT=")

    code, output, _ = shell.run(readme_command("make clean"))
    assert code == 0 and "Traceback" not in output and not home.exists(), output
