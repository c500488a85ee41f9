"""Memory of the embedded stack (``make up`` / ``make demo``): idle, and at its peak during the demo's loop.

Starts the stack in a temporary ``DRIFTLOOP_HOME`` on free ports, waits for it to settle, then sums the
proportional set size (``Pss`` of ``/proc/<pid>/smaps_rollup``: shared pages divided among their sharers) over
every process of the stack: all processes in the sessions of the pids ``stack.json`` records (MLflow's and
Airflow's, task processes included). Then it drives the demo's loop (telco_churn, demo settings) sampling that
sum every half second. Target: idle <= 1,200 MB. Prints one figure per line. Linux only (``/proc``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
TARGET_IDLE_MB = 1200
SETTLE_S = 30


def stack_processes(session_ids: set[int]) -> list[int]:
    """Pids of every process whose session is one of ``session_ids``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) in session_ids:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def pss_kb(pid: int) -> int:
    """The process's proportional set size in kB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def footprint(session_ids: set[int]) -> tuple[float, int]:
    """``(PSS in MB, process count)`` of the stack now."""
    pids = stack_processes(session_ids)
    return sum(pss_kb(pid) for pid in pids) / 1024, len(pids)


def main() -> int:
    sys.path.insert(0, str(PROJECT_DIR / "plugins"))
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.core.tracking import get_client
    from driftloop_ops.airflow_api import AirflowClient, read_generated_password
    from driftloop_ops.demo import DEMO_ENV
    from driftloop_ops.embedded import temporary_stack
    from driftloop_ops.front_door import read_state
    from driftloop_ops.loop import SchedulerRunner, drive_closed_loop, loop_dag_ids

    env = {"DRIFTLOOP_DATASET": "telco_churn", "DRIFTLOOP_DATASETS": "telco_churn", **DEMO_ENV}
    root = Path(tempfile.mkdtemp(prefix="driftloop-bench-footprint-"))
    with temporary_stack(root, env, log=lambda line: print(f"# {line}")) as layout:
        state = read_state(layout.pid_dir)
        assert state is not None, "the stack recorded no state"
        sessions = set(state.pids.values())
        time.sleep(SETTLE_S)
        idle_mb, idle_processes = footprint(sessions)
        print(f"footprint_idle_pss_mb {idle_mb:.0f}")
        print(f"footprint_idle_processes {idle_processes}")
        print(f"footprint_idle_vs_target_ratio {idle_mb / TARGET_IDLE_MB:.2f}")
        peak = [idle_mb, idle_processes]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                mb, count = footprint(sessions)
                peak[0], peak[1] = max(peak[0], mb), max(peak[1], count)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        api = AirflowClient(layout.airflow_url, "admin", read_generated_password(layout.password_file))
        settings = Settings.from_env()
        cfg = load_dataset_config("telco_churn", settings)
        api.wait_for_dags(loop_dag_ids(cfg.name))
        started = time.monotonic()
        drive_closed_loop(
            SchedulerRunner(api),
            cfg,
            get_client(settings),
            settings,
            batch_rows=1000,
            sensor_again=False,
            log=lambda line: print(f"#{line}"),
        )
        loop_s = time.monotonic() - started
        done.set()
        sampler.join()
        print(f"footprint_loop_peak_pss_mb {peak[0]:.0f}")
        print(f"footprint_loop_peak_processes {peak[1]}")
        print(f"footprint_loop_s {loop_s:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
