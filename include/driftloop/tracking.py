"""MLflow helpers shared by every stage: client set-up, experiments and idempotent runs keyed by tags.

MLflow is the bus between DAGs: stages find each other's results by searching runs on tags, never by XCom.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from driftloop.config import PROJECT_DIR, Settings

TAG_PREFIX = "driftloop."


def get_client(settings: Settings | None = None) -> Any:
    """Point MLflow at the configured tracking server and return an ``MlflowClient``."""
    import mlflow
    from mlflow import MlflowClient

    settings = settings or Settings.from_env()
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


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
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(name, settings))
    except MlflowException:
        return client.get_experiment_by_name(name).experiment_id


def tag_filter(tags: dict[str, str]) -> str:
    """MLflow search filter matching every ``tags`` key/value exactly."""
    clauses = []
    for key, value in tags.items():
        escaped = str(value).replace("'", "\\'")
        clauses.append(f"tags.`{key}` = '{escaped}'")
    return " and ".join(clauses)


def search_runs(
    client: Any,
    experiment_name: str,
    tags: dict[str, str] | None = None,
    extra_filter: str = "",
    max_results: int = 1000,
    order_by: list[str] | None = None,
) -> list[Any]:
    """Runs of ``experiment_name`` whose tags match, newest first. Empty when the experiment does not exist."""
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
    runs = search_runs(client, experiment_name, key_tags, extra_filter="attributes.status = 'FINISHED'")
    return runs[0] if runs else None


@contextmanager
def keyed_run(client: Any, experiment_name: str, key_tags: dict[str, str], run_name: str = "") -> Iterator[Any]:
    """Start a run identified by ``key_tags``, reusing an unfinished one with the same key.

    This is what makes a task rerun idempotent: the same key always lands in the same run, so a retry after a
    crash completes the run instead of creating a duplicate. Callers check :func:`find_finished_run` first when
    a finished result should be reused as is.

    Yields:
        The active ``mlflow.ActiveRun``.
    """
    import mlflow

    experiment_id = ensure_experiment(client, experiment_name)
    unfinished = search_runs(client, experiment_name, key_tags, extra_filter="attributes.status != 'FINISHED'")
    if unfinished:
        run_id = unfinished[0].info.run_id
        with mlflow.start_run(run_id=run_id) as run:
            yield run
        return
    tags = {**key_tags, f"{TAG_PREFIX}git_commit": git_commit()}
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or None, tags=tags) as run:
        yield run


def git_commit() -> str:
    """Commit of the project checkout (``DRIFTLOOP_GIT_COMMIT`` wins, for images built without ``.git``)."""
    import os

    if os.environ.get("DRIFTLOOP_GIT_COMMIT"):
        return os.environ["DRIFTLOOP_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
