"""PyCaret without its process-wide side effects, and with the std streams it needs on Celery workers.

* Importing PyCaret opens ``logs.log`` in the current directory (an Airflow worker's cwd, a repo checkout) and
  routes every warning of the process into it: :func:`import_experiment` sends its log nowhere
  and gives warnings back to their normal handler.
* In Airflow 3 task processes started by a Celery worker ``sys.__stdout__`` is closed (observed with Airflow
  3.3.2 and apache-airflow-providers-celery 3.26.0; LocalExecutor and ``dag.test()`` are not affected).
  PyCaret redirects the real stdout through ``wurlitzer``, so every ``create_model`` raises ``ValueError: I/O
  operation on closed file``, ``compare_models`` swallows it and training ends with "trained none of the
  models". :func:`usable_std_streams` gives PyCaret open streams for the duration of a call.
* PyCaret calls ``gc.collect()`` after every model it creates (10 times in a telco training run). With the
  stack imported, a full collection walks every object of pandas, scikit-learn, MLflow, SHAP and Evidently
  (0.5 s each, 5 s a run). :func:`frozen_heap` moves what existed before the block out of the collector's
  reach for its duration, so those collections only walk what selection itself allocated.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def import_experiment(task: str = "binary") -> type:
    """PyCaret's ``ClassificationExperiment`` (binary, multiclass) or ``RegressionExperiment``, imported
    quietly.

    The returned subclass skips ``_check_environment``, which imports ~30 optional packages (evidently,
    gradio, ...) only to log their versions: 8 s on an idle machine, minutes under load. The run's pip
    requirements record what matters.
    """
    os.environ.setdefault("PYCARET_CUSTOM_LOGGING_PATH", os.devnull)
    if task == "regression":
        from pycaret.regression import RegressionExperiment as Experiment
    else:
        from pycaret.classification import ClassificationExperiment as Experiment
    from pycaret.internal.logging import captureWarnings

    captureWarnings(False)

    # PyCaret ships no type information, so Experiment is Any to mypy.
    class QuietExperiment(Experiment):  # type: ignore[misc]
        def _check_environment(self) -> None:
            pass

    return QuietExperiment


def _unusable(stream: object) -> bool:
    if stream is None or getattr(stream, "closed", False):
        return True
    try:
        stream.fileno()  # type: ignore[attr-defined]
    except (OSError, ValueError, AttributeError):
        return True
    return False


@contextmanager
def usable_std_streams() -> Iterator[None]:
    """Within the block, ``sys.__stdout__`` / ``sys.__stderr__`` are open files on fd 1 / fd 2.

    A closed original stream is replaced for the duration by a new, non-closing text file on the same file
    descriptor (where the task's output goes anyway); open streams are left untouched. Restored on exit.
    """
    saved = {"__stdout__": sys.__stdout__, "__stderr__": sys.__stderr__}
    opened = []
    try:
        for name, fd in (("__stdout__", 1), ("__stderr__", 2)):
            if _unusable(saved[name]):
                try:
                    replacement = open(fd, "w", closefd=False, buffering=1)  # closed below
                except OSError:
                    replacement = getattr(sys, name.strip("_"))
                else:
                    opened.append(replacement)
                setattr(sys, name, replacement)
        yield
    finally:
        for name, stream in saved.items():
            setattr(sys, name, stream)
        for stream in opened:
            try:
                stream.flush()
                stream.close()
            except (OSError, ValueError):
                pass


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Within the block, objects that existed before it are not scanned by the garbage collector.

    ``gc.freeze()`` on entry, ``gc.unfreeze()`` on exit: the frozen objects are collectable again after the
    block, so nothing leaks; only the cost of the explicit collections inside the block changes.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
