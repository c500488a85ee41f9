"""Airflow-side glue shared by the Driftloop DAGs: defaults, asset names and the dataset config loader.

Only light imports here: DAG files import this at parse time.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from driftloop.config import DatasetConfig, Settings, asset_uri, load_dataset_config

DATASET = Settings.from_env().dataset
OWNER = os.environ.get("DRIFTLOOP_OWNER", "driftloop")
START_DATE = datetime(2026, 1, 1)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": int(os.environ.get("DRIFTLOOP_TASK_RETRIES", "2")),
    "retry_delay": timedelta(seconds=int(os.environ.get("DRIFTLOOP_RETRY_DELAY_S", "30"))),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}


def schedule_from_env(var: str, default: str) -> str | None:
    """A cron schedule from ``var``; ``none`` means no schedule (manual and asset/trigger runs only)."""
    value = os.environ.get(var, default).strip()
    return None if value.lower() in ("", "none", "manual") else value


def dag_tags(stage: str) -> list[str]:
    """Tags shown in the Airflow UI: product, dataset and stage."""
    return ["driftloop", DATASET, stage]


def dag_defaults(stage: str, doc_md: str | None) -> dict[str, Any]:
    """The ``@dag`` arguments every Driftloop DAG shares: one run at a time, no catch-up, retries, docs."""
    return {
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "default_args": DEFAULT_ARGS,
        "tags": dag_tags(stage),
        "doc_md": doc_md,
        "description": _headline(doc_md),
    }


def _headline(doc_md: str | None) -> str:
    """The doc's first line without Markdown heading marks: the one-liner in the Airflow UI's DAG list."""
    first = next((line for line in (doc_md or "").splitlines() if line.strip()), "")
    return first.lstrip("#").strip()


def asset(kind: str) -> Any:
    """The Airflow Asset of ``kind`` (``snapshot``, ``batches``, ``predictions``) for the active dataset."""
    from airflow.sdk import Asset

    return Asset(asset_uri(DATASET, kind))


def load_config() -> DatasetConfig:
    """The active dataset config, read when a task runs (never at parse time)."""
    return load_dataset_config(DATASET)


def airflow_ids() -> dict[str, str]:
    """dag_id and run_id of the running task, for lineage tags."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    return {"airflow_dag_id": context["dag"].dag_id, "airflow_run_id": context["run_id"]}
