"""Airflow-side glue shared by the Driftloop DAGs: defaults, assets, the stage runner and the verdict
translation.

Every DAG file builds its DAG once per dataset config (:mod:`driftloop_airflow.factory`); the helpers here
take the dataset explicitly. Only light imports here: DAG files import this at parse time. At parse time only
the process settings that shape a DAG (schedules, retries, owner) and the dataset catalog (which configs,
validated without overrides) are read; each task loads its dataset's config with
``DRIFTLOOP_CONFIG_OVERRIDES`` when it runs, so a bad override fails the tasks with a message naming the
variable instead of breaking every DAG's import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from driftloop.core import bus
from driftloop.core.config import load_dataset_config
from driftloop.core.settings import Settings

R = TypeVar("R")
START_DATE = datetime(2026, 1, 1)
QUIET_PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def route_mlflow_logs_to_the_task_log() -> None:
    """MLflow's INFO records ("Created version '2' of model ...") go through the task's logging, at their
    level.

    MLflow gives its logger a handler writing to stderr, and a task runner under a scheduler records every
    stderr line as an ERROR: a green run then showed red lines. The handler goes, the records propagate to the
    root logger Airflow set up for the task, and a later ``import mlflow`` does not add it again.
    """
    import logging
    import os

    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"
    for name in ("mlflow", "sqlalchemy.engine", "alembic", "huey"):  # the loggers MLflow configures
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
        logger.propagate = True


def dag_settings() -> Settings:
    """The process settings that shape a DAG, read when the DAG is built.

    Read on every parse, not once when this module is first imported: a process that parses the DAG folder
    more than once (a test session, ``airflow dags test``) must build each DAG from the environment of that
    parse.
    """
    return Settings.from_env()


def default_args(settings: Settings) -> dict[str, Any]:
    """Owner, retries, exponential backoff and the failure alert of every Driftloop task."""
    from driftloop_airflow.notifiers import DriftloopFailureNotifier

    return {
        "on_failure_callback": [DriftloopFailureNotifier()],
        "owner": settings.owner,
        "retries": settings.task_retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    }


def dag_tags(dataset: str, stage: str) -> list[str]:
    """Tags shown in the Airflow UI (and its filter): product, dataset and stage."""
    return ["driftloop", dataset, stage]


def dag_defaults(dataset: str, stage: str, doc_md: str | None) -> dict[str, Any]:
    """The ``@dag`` arguments every Driftloop DAG shares: one run at a time, no catch-up, retries, docs, tags.

    Args:
        dataset: The dataset config the DAG is built for (in its tags and at the end of its docs).
        stage: The lifecycle stage, a tag (``data``, ``training``, ...).
        doc_md: The DAG file's docstring.
    """
    return {
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "default_args": default_args(dag_settings()),
        "tags": dag_tags(dataset, stage),
        "doc_md": f"{doc_md or ''}\n\n**Dataset:** `{dataset}` (config `{dataset}.yaml`).\n",
        "description": _headline(doc_md),
    }


def _headline(doc_md: str | None) -> str:
    """The doc's first line without Markdown heading marks: the one-liner in the Airflow UI's DAG list."""
    first = next((line for line in (doc_md or "").splitlines() if line.strip()), "")
    return first.lstrip("#").strip()


def asset(dataset: str, kind: str) -> Any:
    """The Airflow Asset of ``kind`` (``snapshot``, ``batches``, ``predictions``) of ``dataset``."""
    from airflow.sdk import Asset

    return Asset(bus.asset_uri(dataset, kind))


def data_schedule(dataset: str, settings: Settings) -> Any:
    """``data_pipeline``'s schedule: ``DRIFTLOOP_DATA_SCHEDULE`` as it is (a cron expression, or None), or
    under ``on_arrival`` the dataset's ``landing`` asset, watched in the triggerer by
    :class:`driftloop_airflow.triggers.LandingTrigger` every ``DRIFTLOOP_LANDING_POKE_S`` seconds."""
    from driftloop.core.settings import ON_ARRIVAL

    if settings.data_schedule != ON_ARRIVAL:
        return settings.data_schedule
    from airflow.sdk import Asset, AssetWatcher

    from driftloop_airflow.triggers import LandingTrigger

    watcher = AssetWatcher(
        name=f"{dataset}__landing_watch", trigger=LandingTrigger(dataset, poll_s=settings.landing_poll_s)
    )
    return [Asset(bus.asset_uri(dataset, "landing"), watchers=[watcher])]


@contextmanager
def fail_fast() -> Iterator[None]:
    """Turn a :class:`driftloop.core.errors.Verdict` into ``AirflowFailException``: retrying cannot change a
    verdict.

    Faults (any other exception) propagate unchanged and are retried with backoff.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from driftloop.core.errors import Verdict

    try:
        yield
    except Verdict as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def run_stage(
    dataset: str,
    stage_fn: Callable[..., R],
    *args: Any,
    skip_on: tuple[type[Exception], ...] = (),
    alerts: Callable[..., list[Any]] | None = None,
    **kwargs: Any,
) -> R:
    """Call a package function with one dataset's config and the process settings; verdicts fail fast.

    This is the one way a DAG task calls into ``driftloop``: ``run_stage(dataset, ingest.ingest_batches)``.
    The config is loaded here, when the task runs, with ``DRIFTLOOP_CONFIG_OVERRIDES`` applied.

    Args:
        dataset: Dataset config name (the factory's closure: the DAG's own dataset).
        stage_fn: Package function taking ``(cfg, *args, settings=..., **kwargs)``.
        *args: Positional arguments after the config.
        skip_on: Verdicts that mean "nothing to do yet" for this task: they skip it instead of failing it.
        alerts: The builder of the alerts the result calls for (``driftloop.core.alerts.promotion_alerts``,
            ``move_alerts``, ...), declared by the task; None: the stage alerts nothing.
        **kwargs: Keyword arguments.
    """
    import os

    from airflow.sdk.exceptions import AirflowSkipException

    from driftloop.core.errors import Verdict
    from driftloop_airflow import notifiers

    os.environ[QUIET_PROGRESS_ENV] = "false"  # MLflow's download bars go to stderr: ERROR lines in task logs
    route_mlflow_logs_to_the_task_log()
    stage = getattr(stage_fn, "__name__", str(stage_fn))
    settings = None
    try:
        with fail_fast():
            settings = Settings.from_env()
            use_storage_connection(settings)
            cfg = load_dataset_config(dataset, settings)
            result = stage_fn(cfg, *args, settings=settings, **kwargs)
    except Exception as exc:
        cause = exc.__cause__
        if skip_on and isinstance(cause, skip_on):
            raise AirflowSkipException(f"{type(cause).__name__}: {cause}") from cause
        if isinstance(cause, Verdict) and settings is not None:
            notifiers.send_verdict_alerts(stage, dataset, cause, args, settings)
            notifiers.set_run_note(notifiers.verdict_note(stage, cause, args))
        raise
    if alerts is not None:
        notifiers.send_stage_alerts(alerts, dataset, cfg.registered_model_name, result, settings)
    note = notifiers.stage_note(stage, result)
    if note:
        notifiers.set_run_note(note)
    return result


# Where botocore (and so s3fs) looks for each part of an AWS connection.
_AWS_ENV = {
    "login": "AWS_ACCESS_KEY_ID",
    "password": "AWS_SECRET_ACCESS_KEY",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region_name": "AWS_DEFAULT_REGION",
}


def use_storage_connection(settings: Settings) -> None:
    """Give this task process the object-store credentials of ``DRIFTLOOP_STORAGE_CONN_ID``, if it is set.

    The connection (Airflow's ``aws`` type: login = access key id, password = secret, extra ``endpoint_url``
    and ``region_name``) becomes the standard AWS variables, which s3fs reads; the secret never reaches a
    config file, an image layer or a log line.
    """
    if not settings.storage_conn_id:
        return
    import os

    from airflow.sdk import Connection

    conn = Connection.get(settings.storage_conn_id)
    extra = conn.extra_dejson or {}
    values = {
        "login": conn.login,
        "password": conn.password,
        "endpoint_url": extra.get("endpoint_url") or conn.host,
        "region_name": extra.get("region_name"),
    }
    for part, value in values.items():
        if value:
            os.environ[_AWS_ENV[part]] = str(value)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # a client cached by an earlier task keeps its credentials


def airflow_ids() -> dict[str, str]:
    """dag_id and run_id of the running task, for lineage tags."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    return {"airflow_dag_id": context["dag"].dag_id, "airflow_run_id": context["run_id"]}
