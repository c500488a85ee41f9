"""Parse time of each DAG file: what it adds on top of what the DAG processor already has loaded.

For each file, in a fresh interpreter: import ``airflow.sdk`` and the standard provider's operator and sensor
modules (the baseline), then time ``runpy.run_path`` of the DAG file. Median of several runs. Target: <= 0.3 s.
Prints one figure per line: ``parse_added_s.<file> <seconds>``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
TARGET_S = 0.3

PROBE = """
import runpy, sys, time
import airflow.sdk
from airflow.sdk import dag, task, Asset, BaseSensorOperator
import airflow.providers.standard.operators.trigger_dagrun
import airflow.providers.standard.operators.python
import airflow.providers.standard.sensors.python
import airflow.providers.standard.decorators.python
t0 = time.perf_counter()
runpy.run_path(sys.argv[1])
print(time.perf_counter() - t0)
"""


def measure(dag_file: Path) -> float:
    """Median seconds the file adds over the baseline, over ``REPEATS`` fresh interpreters."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    samples = []
    for _ in range(REPEATS):
        out = subprocess.run([sys.executable, "-c", PROBE, str(dag_file)], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise SystemExit(f"{dag_file.name} failed to parse:\n{out.stderr[-2000:]}")
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> int:
    worst = 0.0
    for dag_file in sorted((PROJECT_DIR / "dags").glob("*.py")):
        seconds = measure(dag_file)
        worst = max(worst, seconds)
        print(f"parse_added_s.{dag_file.stem} {seconds:.3f}")
    print(f"parse_added_s.worst_vs_target_ratio {worst / TARGET_S:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
