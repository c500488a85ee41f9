"""MLflow access shared by every stage: clients, experiments and idempotent runs keyed by tags.

MLflow is the bus between DAGs: stages find each other's results by searching runs on tags (names in
:mod:`driftloop.core.bus`), never by XCom. Clients are built with explicit URIs and leave MLflow's
process-wide tracking and registry URIs alone; the few MLflow calls that only exist in the fluent API (an
active run, ``log_model``, loading ``models:/`` URIs) run inside :func:`mlflow_scope`, which restores the
previous URIs.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from driftloop.core import bus
from driftloop.core.settings import PROJECT_DIR, Settings

# MLflow mirrors its URIs into these variables; mlflow_scope puts back exactly what was there.
_MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
# The URIs are process-wide: two threads in overlapping scopes would each restore what the other set (a
# promotion racing another left the tracking URI of a finished test behind). Scopes run one thread at a time;
# they nest.
_SCOPE_LOCK = threading.RLock()


def get_client(settings: Settings | None = None) -> Any:
    """An ``MlflowClient`` for the configured tracking server and registry (no global state is changed)."""
    from mlflow import MlflowClient

    settings = settings or Settings.from_env()
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


@contextmanager
def mlflow_scope(settings: Settings | None = None) -> Iterator[None]:
    """Within the block, MLflow's fluent API talks to ``settings.tracking_uri``; afterwards all is as before.

    ``mlflow.set_tracking_uri`` also rewrites ``MLFLOW_TRACKING_URI`` in the environment, and MLflow's own
    temporary switch unsets it on exit; this restores the module state and both variables as they were.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    settings = settings or Settings.from_env()
    with _SCOPE_LOCK:
        saved_uris = (tracking_utils._tracking_uri, registry_utils._registry_uri)
        saved_env = {name: os.environ.get(name) for name in _MLFLOW_URI_VARIABLES}
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.tracking_uri)
        try:
            yield
        finally:
            tracking_utils._tracking_uri, registry_utils._registry_uri = saved_uris
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def artifact_location(name: str, settings: Settings | None = None) -> str | None:
    """Where a new experiment keeps its artifacts: None (the server decides) unless MLflow is a bare database.

    Without a tracking server, MLflow would put artifacts in ``./mlruns`` under whatever directory the process
    runs in; they belong under ``DRIFTLOOP_HOME`` with the rest of the state.
    """
    settings = settings or Settings.from_env()
    if settings.tracking_uri.startswith(("http://", "https://", "databricks")):
        return None
    return (settings.home_dir / "mlflow-artifacts" / name.replace("/", "__")).as_uri()


def ensure_experiment(client: Any, name: str, settings: Settings | None = None) -> str:
    """Return the id of experiment ``name``, creating it when missing (safe under concurrent callers)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location(name, settings)))
    except MlflowException:
        return str(client.get_experiment_by_name(name).experiment_id)


def tag_filter(tags: dict[str, str]) -> str:
    """MLflow search filter matching every ``tags`` key/value exactly."""
    clauses = []
    for key, value in tags.items():
        escaped = str(value).replace("'", "\\'")
        clauses.append(f"tags.`{key}` = '{escaped}'")
    return " and ".join(clauses)


FINISHED = "attributes.status = 'FINISHED'"
NOT_FINISHED = "attributes.status != 'FINISHED'"


def search_runs(
    client: Any,
    experiment_name: str,
    tags: dict[str, str] | None = None,
    extra_filter: str = "",
    max_results: int = 1000,
    order_by: list[str] | None = None,
) -> list[Any]:
    """Runs of ``experiment_name`` whose tags match, newest first. Empty when the experiment does not
    exist."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    filters = [f for f in (tag_filter(tags or {}), extra_filter) if f]
    return list(
        client.search_runs(
            [experiment.experiment_id],
            filter_string=" and ".join(filters),
            max_results=max_results,
            order_by=order_by or ["attributes.start_time DESC"],
        )
    )


def find_finished_run(client: Any, experiment_name: str, key_tags: dict[str, str]) -> Any | None:
    """The newest FINISHED run carrying ``key_tags``, or None."""
    runs = search_runs(client, experiment_name, key_tags, extra_filter=FINISHED)
    return runs[0] if runs else None


@contextmanager
def keyed_run(
    client: Any,
    experiment_name: str,
    key_tags: dict[str, str],
    run_name: str = "",
    settings: Settings | None = None,
) -> Iterator[Any]:
    """Start a run identified by ``key_tags``, reusing an unfinished one with the same key.

    This is what makes a task rerun idempotent: the same key always lands in the same run, so a retry after a
    crash completes the run instead of creating a duplicate. Callers check :func:`find_finished_run` first
    when a finished result should be reused as is. The block runs inside :func:`mlflow_scope`, so fluent calls
    (``mlflow.log_metrics``, ``log_model``) go to the same server as ``client``.

    Yields:
        The active ``mlflow.ActiveRun``.
    """
    import mlflow

    settings = settings or Settings.from_env()
    experiment_id = ensure_experiment(client, experiment_name, settings)
    unfinished = search_runs(client, experiment_name, key_tags, extra_filter=NOT_FINISHED)
    with mlflow_scope(settings):
        if unfinished:
            with mlflow.start_run(run_id=unfinished[0].info.run_id) as run:
                yield run
            return
        tags = {**key_tags, bus.GIT_COMMIT_TAG: git_commit(settings)}
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or None, tags=tags) as run:
            yield run


def read_run_frame(client: Any, run_id: str, artifact_path: str) -> Any:
    """A parquet artifact of a run as a DataFrame (e.g. ``bus.HOLDOUT_ARTIFACT``,
    ``bus.REFERENCE_ARTIFACT``)."""
    import tempfile

    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="driftloop-artifact-") as tmp:
        return pd.read_parquet(client.download_artifacts(run_id, artifact_path, tmp))


def git_commit(settings: Settings | None = None) -> str:
    """Commit of the project checkout (``DRIFTLOOP_GIT_COMMIT`` wins, for images built without ``.git``)."""
    settings = settings or Settings.from_env()
    if settings.git_commit:
        return settings.git_commit
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
