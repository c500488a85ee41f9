"""Stack preload: only where task processes are forked from (executor workers, Celery workers), never at
parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dags.test_dag_integrity import HEAVY_MODULES

PROJECT_DIR = Path(__file__).resolve().parents[2]
EXECUTOR_PATH = "driftloop_airflow.preload.LocalExecutor"
CELERY_CONFIG_PATH = "driftloop_airflow.preload.CELERY_CONFIG"


def _run_python(code: str, tmp_path: Path, **extra_env: str) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_DIR / "plugins"), os.environ.get("PYTHONPATH", "")]),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_DIR / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTOR": EXECUTOR_PATH,
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": CELERY_CONFIG_PATH,
        **extra_env,
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_parsing_dags_and_loading_the_executor_and_celery_config_import_nothing_heavy(tmp_path):
    """What the dag-processor and the API server do with the configured executor and Celery config."""
    code = f"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.executors.executor_loader import ExecutorLoader
bag = DagBag(dag_folder={str(PROJECT_DIR / "dags")!r})
cls, _ = ExecutorLoader.import_default_executor_cls()
from airflow.providers.celery.executors.celery_executor_utils import get_celery_configuration
config = get_celery_configuration()
print(json.dumps({{"dags": len(bag.dags), "errors": list(bag.import_errors),
                   "cls": cls.__module__ + "." + cls.__name__,
                   "broker_key": "broker_url" in config,
                   "heavy": [m for m in {HEAVY_MODULES!r} if m in sys.modules]}}))
"""
    result = _run_python(code, tmp_path)
    assert result["cls"] == EXECUTOR_PATH
    assert result["dags"] > 0 and result["errors"] == []
    assert result["broker_key"], "the Celery config must be the provider's default config"
    assert result["heavy"] == [], (
        f"loading DAGs, the executor class or the Celery config imported {result['heavy']}"
    )


@pytest.mark.slow
def test_executor_start_preloads_the_stack_into_its_forked_workers(tmp_path):
    """The scheduler's ``executor.start()`` imports the stack, and the forked worker has pandas mapped."""
    code = """
import json, sys
from driftloop_airflow import preload
before = [m for m in ("pandas", "mlflow", "pycaret", "evidently", "shap") if m in sys.modules]
executor = preload.LocalExecutor(parallelism=1)
executor.start()
pids = list(executor.workers)
maps = open(f"/proc/{pids[0]}/maps").read()
executor.end()
print(json.dumps({"before": before, "after": [m for m in preload.PRELOAD_MODULES if m not in sys.modules],
                  "worker_has_pandas": "pandas/_libs" in maps, "workers": len(pids)}))
"""
    result = _run_python(code, tmp_path)
    assert result["before"] == []
    assert result["after"] == [], f"modules not preloaded: {result['after']}"
    assert result["workers"] == 1 and result["worker_has_pandas"]


@pytest.mark.slow
def test_celery_worker_init_preloads_the_stack_and_only_then(tmp_path):
    """Accessing the config connects the handler; Celery's ``worker_init`` (worker main process) runs it."""
    code = """
import json, sys
from driftloop_airflow import preload
preload.CELERY_CONFIG
from celery import signals
before = [m for m in ("pandas", "mlflow", "pycaret", "evidently") if m in sys.modules]
signals.worker_init.send(sender=None)
print(json.dumps({"before": before, "missing": [m for m in preload.PRELOAD_MODULES if m not in sys.modules]}))
"""
    result = _run_python(code, tmp_path)
    assert result["before"] == []
    assert result["missing"] == []
