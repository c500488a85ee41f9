"""Task start-up: fork of a task process to its stage ready to run, from a cold worker and from a preloaded
one.

On Linux an Airflow 3 task process is a bare ``os.fork()`` of a long-lived worker (LocalExecutor worker or
Celery pool child). This bench reproduces that path without the scheduler: a worker-like process that has
imported Airflow's executor forks one child per task launch; the child imports a stage's module and the
libraries the stage imports inside its functions (what a real task does before its first useful line), then
reports the time since the fork. Three stage profiles (training, drift monitoring, explanation) take turns.

Same run, same machine: first ``LAUNCHES`` launches from the cold worker (today's LocalExecutor), then the
worker calls :func:`driftloop_airflow.preload.preload_stack` (what
``driftloop_airflow.preload.LocalExecutor.start`` and the Celery ``worker_init`` hook do) and the same
launches run again. Figures: the median of each, and their ratio. The scheduler's own latency (queueing, the
supervisor's API calls) is not in these figures: bench_loop.py's scheduler/in-process ratio covers the whole
path.
"""

from __future__ import annotations

import importlib
import os
import statistics
import struct
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
LAUNCHES = 21
# Stage module, then what its functions import when they run.
STAGE_PROFILES: dict[str, tuple[str, ...]] = {
    "train": ("driftloop.training.train", "pycaret.classification", "mlflow.sklearn", "sklearn.metrics"),
    "monitor": (
        "driftloop.monitoring.drift",
        "evidently",
        "evidently.presets",
        "evidently.metrics",
        "mlflow",
    ),
    "explain": ("driftloop.governance.explain", "shap", "sklearn.tree", "mlflow", "matplotlib"),
}


def launch_task(modules: tuple[str, ...]) -> float:
    """Fork a task process that imports ``modules``; seconds from the fork to the child's first stage line."""
    read_fd, write_fd = os.pipe()
    forked_at = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the task process
        os.close(read_fd)
        code = 0
        try:
            for name in modules:
                importlib.import_module(name)
            os.write(write_fd, struct.pack("d", time.monotonic() - forked_at))
        except BaseException:  # report through the exit code, never return into the parent
            code = 1
        os._exit(code)
    os.close(write_fd)
    payload = os.read(read_fd, 8)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if status != 0 or len(payload) != 8:
        raise RuntimeError(f"task process for {modules} failed (status {status})")
    return struct.unpack("d", payload)[0]


def measure(label: str) -> list[float]:
    """``LAUNCHES`` task launches cycling through the stage profiles; prints each one."""
    names = list(STAGE_PROFILES)
    seconds = []
    for i in range(LAUNCHES):
        profile = names[i % len(names)]
        elapsed = launch_task(STAGE_PROFILES[profile])
        seconds.append(elapsed)
        print(f"  {label} launch {i + 1:2d} ({profile:7s}): {elapsed:6.2f} s", flush=True)
    return seconds


def main() -> None:
    """Cold launches, preload, warm launches; figures one per line."""
    sys.path[:0] = [str(PROJECT_DIR / "include"), str(PROJECT_DIR / "plugins")]
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("PYCARET_CUSTOM_LOGGING_PATH", os.devnull)  # else PyCaret writes logs.log here
    import airflow.executors.local_executor  # noqa: F401 - what every LocalExecutor worker has imported

    from driftloop_airflow.preload import preload_stack

    print(f"load average before: {os.getloadavg()}", flush=True)
    cold = measure("cold")
    result = preload_stack()
    print(f"preload in the worker: {result['seconds']:.1f} s, failed: {result['failed']}", flush=True)
    warm = measure("warm")
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    print(f"load average after: {os.getloadavg()}")
    print(f"startup_cold_median_s {cold_s:.2f}")
    print(f"startup_preloaded_median_s {warm_s:.3f}")
    print(f"startup_preloaded_over_cold {warm_s / cold_s:.3f}")
    print(f"startup_worker_preload_s {result['seconds']:.1f}")


if __name__ == "__main__":
    main()
