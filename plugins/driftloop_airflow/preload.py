"""Import the heavy stack once in the process that task processes are forked from, so a task starts warm.

On Linux every Airflow 3 task process is a bare ``os.fork()`` of a long-lived process: the LocalExecutor's
workers, themselves forked from the scheduler when the executor starts, or a Celery worker's pool children,
forked from the worker's main process. Whatever that process imported before the fork costs a task nothing,
while a cold task spent seconds importing pandas, scikit-learn, MLflow, PyCaret, SHAP and Evidently.

Two hooks, both running only where tasks are forked from, never in the dag-processor, the API server, the
triggerer or a DAG parse (this module itself imports nothing heavy):

- ``AIRFLOW__CORE__EXECUTOR=driftloop_airflow.preload.LocalExecutor``: Airflow's LocalExecutor whose
  ``start()`` (called by the scheduler only) imports the stack before the workers are forked. The class keeps
  the name ``LocalExecutor`` because Airflow decides from the class name that a deployment is local
  (SimpleAuthManager).
- ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=driftloop_airflow.preload.CELERY_CONFIG``: the provider's default
  Celery config, plus a ``worker_init`` handler (Celery sends that signal in a worker's main process only,
  before the pool children are forked).

Only third-party modules are preloaded: ``driftloop`` itself is imported by each task, so a code change needs
no scheduler or worker restart.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from typing import Any

from airflow.executors.local_executor import LocalExecutor as AirflowLocalExecutor

log = logging.getLogger(__name__)

# What most tasks import (module level and inside functions): pandas, MLflow, PyCaret (to unpickle a model),
# scikit-learn. Submodules are listed when the top-level import does not load them. Evidently (70 MB, 2.0 s to
# import), SHAP (93 MB, 0.6 s: numba and llvmlite) and matplotlib (10 MB) are left to the few tasks that use
# them (monitoring's drift report, training's evidence, batch scoring's reasons): held by the idle stack they
# cost a laptop 170 MB (README, "Performance": the embedded stack's footprint).
PRELOAD_MODULES: tuple[str, ...] = (
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "pyarrow.compute",
    "pyarrow.csv",
    "scipy.stats",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.pipeline",
    "sklearn.tree",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.models",
    "pandera.pandas",
    "pycaret.classification",
    "pycaret.regression",
    "orjson",
)


def preload_stack(modules: tuple[str, ...] = PRELOAD_MODULES) -> dict[str, Any]:
    """Import ``modules`` into this process; a module that fails to import is skipped with a warning.

    Args:
        modules: Dotted module names.

    Returns:
        ``{"loaded": [...], "failed": {name: error}, "seconds": float}``.
    """
    # As driftloop.training.pycaret_env does: importing PyCaret would open logs.log in the cwd and capture
    # every warning of this (long-lived) process into it.
    os.environ.setdefault("PYCARET_CUSTOM_LOGGING_PATH", os.devnull)
    started = time.perf_counter()
    loaded: list[str] = []
    failed: dict[str, str] = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing optional library must not stop the scheduler
            failed[name] = f"{type(exc).__name__}: {exc}"
            log.warning("preload: could not import %s (%s); tasks will import it themselves", name, exc)
        else:
            loaded.append(name)
    if any(name.startswith("pycaret") for name in loaded):
        from pycaret.internal.logging import captureWarnings

        captureWarnings(False)
    import gc

    # Forked workers share these pages until something writes to them; a garbage collection pass writes to
    # every object it visits, so without the freeze each worker slowly copies the whole preloaded stack.
    gc.collect()
    gc.freeze()
    seconds = time.perf_counter() - started
    log.info(
        "preloaded %d modules in %.1f s for the task processes forked from here (%d failed)",
        len(loaded),
        seconds,
        len(failed),
    )
    return {"loaded": loaded, "failed": failed, "seconds": seconds}


class LocalExecutor(AirflowLocalExecutor):
    """Airflow's LocalExecutor, whose workers are forked after the heavy stack is imported."""

    def start(self) -> None:
        """Preload the stack (fork start method only: spawned workers would not inherit it), then start."""
        import multiprocessing

        if multiprocessing.get_start_method() == "fork":
            preload_stack()
        super().start()


def _preload_on_worker_init(**_: Any) -> None:
    """Celery ``worker_init`` handler: runs in the worker's main process before its pool is forked."""
    preload_stack()


def _celery_config() -> dict[str, Any]:
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
    from celery import signals

    signals.worker_init.connect(_preload_on_worker_init, weak=False)
    return dict(DEFAULT_CELERY_CONFIG)


def __getattr__(name: str) -> Any:
    """``CELERY_CONFIG`` is built on first access, so the LocalExecutor path never imports Celery."""
    if name == "CELERY_CONFIG":
        config = _celery_config()
        globals()["CELERY_CONFIG"] = config
        return config
    raise AttributeError(name)
