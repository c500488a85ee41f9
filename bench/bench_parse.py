"""Parse time of each DAG file: what it adds on top of what the DAG processor already has loaded.

For each file, in a fresh interpreter: import ``airflow.sdk`` and the standard provider's operator and sensor
modules (the baseline), freeze the garbage collector's view of them as Airflow's DAG processor does before it
forks a parsing process (``gc.freeze()``; without it a full collection over Airflow's objects, ~0.15 s, lands
in whichever file happens to trigger it), then time ``runpy.run_path`` of the DAG file. Median of several
runs. Target: <= 0.3 s. Every DAG file builds its DAG once per dataset config (the DAG factory), so each file
is measured twice: with the shipped configs, and with ten configs (the shipped ones copied under new dataset
and model names into a temporary config folder). Prints one figure per line: ``parse_added_s.<file>``,
``parse_added_s_10_configs.<file>``, then ``parse_s_per_dag_file_10_configs`` (the slowest file with ten
configs) and its ratio to the target.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
TARGET_S = 0.3
CONFIG_COUNT = 10

PROBE = """
import runpy, sys, time
import airflow.sdk
from airflow.sdk import dag, task, Asset, BaseSensorOperator
import airflow.providers.standard.operators.trigger_dagrun
import airflow.providers.standard.operators.python
import airflow.providers.standard.sensors.python
import airflow.providers.standard.decorators.python
import gc
gc.freeze()  # as the DAG processor does before it forks a parsing process (dag_processing/manager.py)
t0 = time.perf_counter()
runpy.run_path(sys.argv[1])
print(time.perf_counter() - t0)
"""


def write_configs(config_dir: Path, count: int) -> list[str]:
    """``count`` dataset configs in ``config_dir``: the shipped ones, copied under distinct names and model
    names.

    Companion files (contracts, behavioural tests) are copied as they are; the copies still name them.
    """
    import shutil

    import yaml

    from driftloop.core.catalog import list_config_paths
    from driftloop.core.settings import Settings

    shipped_dir = Settings.from_env({}).config_dir
    shipped = list_config_paths(shipped_dir)
    for companion in shipped_dir.glob("*.*.yaml"):
        shutil.copy(companion, config_dir / companion.name)
    names = []
    for index in range(count):
        source = shipped[index % len(shipped)]
        raw = yaml.safe_load(source.read_text())
        name = f"{source.stem}_{index:02d}"
        raw.update(name=name, model_name=f"{name.replace('_', '-')}")
        (config_dir / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        names.append(name)
    return names


def measure(dag_file: Path, extra_env: dict[str, str] | None = None) -> float:
    """Median seconds the file adds over the baseline, over ``REPEATS`` fresh interpreters after a warm-up
    one.

    The warm-up run writes any stale bytecode, as a long-running dag-processor would have done already.
    """
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_DIR / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **(extra_env or {}),
    }
    samples = []
    for _ in range(REPEATS + 1):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(dag_file)], capture_output=True, text=True, env=env
        )
        if out.returncode != 0:
            raise SystemExit(f"{dag_file.name} failed to parse:\n{out.stderr[-2000:]}")
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples[1:])


def main() -> int:
    from driftloop.core.catalog import read_catalog
    from driftloop.core.settings import Settings

    dag_files = sorted((PROJECT_DIR / "dags").glob("*.py"))
    worst = 0.0
    for dag_file in dag_files:
        seconds = measure(dag_file)
        worst = max(worst, seconds)
        print(f"parse_added_s.{dag_file.stem} {seconds:.3f}")
    print(f"parse_added_s.worst_vs_target_ratio {worst / TARGET_S:.2f}")
    with tempfile.TemporaryDirectory(prefix="driftloop-configs-") as tmp:
        names = write_configs(Path(tmp), CONFIG_COUNT)
        env = {"DRIFTLOOP_CONFIG_DIR": tmp, "DRIFTLOOP_DATASETS": ""}
        catalog = read_catalog(Settings.from_env({**os.environ, **env}))
        if catalog.datasets != sorted(names):  # a refused copy would make the figure look better than it is
            raise SystemExit(f"the copied configs are not all usable:\n{catalog.describe_problems()}")
        worst_many = 0.0
        for dag_file in dag_files:
            seconds = measure(dag_file, env)
            worst_many = max(worst_many, seconds)
            print(f"parse_added_s_{CONFIG_COUNT}_configs.{dag_file.stem} {seconds:.3f}")
    print(f"parse_s_per_dag_file_{CONFIG_COUNT}_configs {worst_many:.3f}")
    print(f"parse_s_per_dag_file_{CONFIG_COUNT}_configs_vs_target_ratio {worst_many / TARGET_S:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
