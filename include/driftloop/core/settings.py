"""Process settings: the only reader of environment variables in Driftloop.

Reading them changes nothing on disk or in MLflow (no folder is created, no tracking URI is set), so DAG files may
import this module at parse time; it needs only the standard library.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from driftloop.core.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parents[3]
DEFAULT_DATASET = "telco_churn"
OVERRIDES_ENV = "DRIFTLOOP_CONFIG_OVERRIDES"
PII_SALT_ENV = "DRIFTLOOP_PII_SALT"


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _env_names(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of names, blanks dropped, order kept, each name once."""
    names = (part.strip() for part in env.get(name, "").split(","))
    return tuple(dict.fromkeys(n for n in names if n))


def _env_schedule(env: Mapping[str, str], name: str, default: str) -> str | None:
    value = env.get(name, default).strip()
    return None if value.lower() in ("", "none", "manual") else value


@dataclass(frozen=True)
class Settings:
    """Process settings: the only reader of environment variables in Driftloop.

    Reading them changes nothing (no folder is created, no MLflow URI is set). The JSON in
    ``DRIFTLOOP_CONFIG_OVERRIDES`` is kept raw and parsed by :attr:`overrides` when a dataset config is loaded,
    so a malformed value fails the tasks that load a config, with a message naming the variable, instead of the
    import of every DAG file.

    Attributes:
        home_dir: Root of all Driftloop state (``DRIFTLOOP_HOME``).
        tracking_uri: MLflow tracking server and registry (``MLFLOW_TRACKING_URI``).
        dataset: Default dataset of the CLI and the demo (``DRIFTLOOP_DATASET``).
        config_dir: Folder holding ``<dataset>.yaml`` configs (``DRIFTLOOP_CONFIG_DIR``).
        datasets: Dataset configs the Airflow deployment builds DAGs for, by name; empty for every config in
            ``config_dir`` (``DRIFTLOOP_DATASETS``, comma-separated).
        overrides_json: Raw ``DRIFTLOOP_CONFIG_OVERRIDES``.
        owner: Owner shown on every DAG (``DRIFTLOOP_OWNER``).
        task_retries: Retries of every task (``DRIFTLOOP_TASK_RETRIES``).
        retry_delay_s: First retry delay; later ones back off exponentially (``DRIFTLOOP_RETRY_DELAY_S``).
        data_schedule: ``data_pipeline`` cron, None for asset/manual runs only (``DRIFTLOOP_DATA_SCHEDULE``).
        sensor_schedule: ``drift_sensor`` schedule, None for manual runs only (``DRIFTLOOP_SENSOR_SCHEDULE``);
            the default ``@continuous`` starts the next run as soon as one ends.
        watch_schedule: ``registry_watch`` cron, None to switch it off (``DRIFTLOOP_WATCH_SCHEDULE``).
        sensor_poll_s: How often the drift trigger reads MLflow (``DRIFTLOOP_SENSOR_POKE_S``).
        sensor_timeout_s: How long one sensor run waits before it is skipped, 0 for no limit
            (``DRIFTLOOP_SENSOR_TIMEOUT_S``).
        n_jobs: PyCaret worker processes, -1 for all cores (``DRIFTLOOP_N_JOBS``).
        pii_salt: Salt of hashed PII columns (``DRIFTLOOP_PII_SALT``).
        profile_max_rows: Rows in the HTML profile; 0 skips it (``DRIFTLOOP_PROFILE_MAX_ROWS``).
        profile_timeout_s: Time budget of the HTML profile (``DRIFTLOOP_PROFILE_TIMEOUT_S``).
        git_commit: Commit tagged on runs when the code has no ``.git`` (``DRIFTLOOP_GIT_COMMIT``).
        mlflow_ui_url: MLflow UI linked from Airflow tasks (``DRIFTLOOP_MLFLOW_UI_URL``).
        mlflow_port: Embedded MLflow port (``DRIFTLOOP_MLFLOW_PORT``).
        airflow_port: Embedded Airflow port (``DRIFTLOOP_AIRFLOW_PORT``).
        worker_name: Name a Celery worker reports (``DRIFTLOOP_WORKER_NAME``).
        audit_db_uri: SQLAlchemy URL of the champion audit log (``DRIFTLOOP_AUDIT_DB_URI``); empty means SQLite
            under ``home_dir``.
        audit_owner_db_uri: The audit table owner's URL, used once to create the schema
            (``DRIFTLOOP_AUDIT_OWNER_DB_URI``; ``driftloop audit-init``).
        serve_host: Address ``driftloop serve`` binds (``DRIFTLOOP_SERVE_HOST``).
        serve_port: Port of ``driftloop serve`` (``DRIFTLOOP_SERVE_PORT``).
        serve_admin_token: Bearer token of the admin endpoints; empty disables them (``DRIFTLOOP_SERVE_ADMIN_TOKEN``).
        serve_max_body_bytes: Largest request body, checked before it is read (``DRIFTLOOP_SERVE_MAX_BODY_BYTES``).
        serve_max_request_rows: Most rows one request may carry (``DRIFTLOOP_SERVE_MAX_REQUEST_ROWS``).
        serve_max_batch_rows: Most rows one predict call takes from the queue (``DRIFTLOOP_SERVE_MAX_BATCH_ROWS``).
        serve_latency_budget_ms: Projected wait above which a request gets 503 (``DRIFTLOOP_SERVE_LATENCY_BUDGET_MS``).
        serve_queue_max: Most requests waiting for a worker (``DRIFTLOOP_SERVE_QUEUE_MAX``).
        serve_workers: Inference processes; 0 for one per core (``DRIFTLOOP_SERVE_WORKERS``).
        serve_poll_s: How often the registry is polled for alias moves (``DRIFTLOOP_SERVE_POLL_S``).
        prediction_log_uri: Prediction log: empty for SQLite under the state folder, a ``sqlite:///`` path or a
            ``postgresql://`` DSN (``DRIFTLOOP_PREDICTION_LOG_URI``).
        prediction_log_queue_rows: Rows buffered for the log writer before overflow is counted and dropped
            (``DRIFTLOOP_PREDICTION_LOG_QUEUE_ROWS``).
        ab_schedule: ``ab_evaluation`` schedule, None for manual runs only (``DRIFTLOOP_AB_SCHEDULE``).
        serving_url: Online serving base URL whose ``/metrics`` the Driftloop view reads (``DRIFTLOOP_SERVING_URL``).
    """

    home_dir: Path
    tracking_uri: str
    dataset: str
    config_dir: Path
    datasets: tuple[str, ...] = ()
    overrides_json: str = ""
    owner: str = "driftloop"
    task_retries: int = 2
    retry_delay_s: int = 30
    data_schedule: str | None = "*/10 * * * *"
    sensor_schedule: str | None = "@continuous"
    watch_schedule: str | None = "*/5 * * * *"
    sensor_poll_s: float = 10.0
    sensor_timeout_s: int = 0
    n_jobs: int = 1
    pii_salt: str = ""
    profile_max_rows: int = 50_000
    profile_timeout_s: float = 300.0
    git_commit: str = ""
    mlflow_ui_url: str = ""
    mlflow_port: int = 5000
    airflow_port: int = 8080
    worker_name: str = ""
    audit_db_uri: str = ""
    audit_owner_db_uri: str = ""
    serve_host: str = "127.0.0.1"
    serve_port: int = 8000
    serve_admin_token: str = ""
    serve_max_body_bytes: int = 1_048_576
    serve_max_request_rows: int = 10_000
    serve_max_batch_rows: int = 20_000
    serve_latency_budget_ms: float = 250.0
    serve_queue_max: int = 1024
    serve_workers: int = 0
    serve_poll_s: float = 10.0
    prediction_log_uri: str = ""
    prediction_log_queue_rows: int = 200_000
    ab_schedule: str | None = "@hourly"
    serving_url: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``).

        Raises:
            ConfigError: A numeric variable is not a number (the message names it).
        """
        env = os.environ if env is None else env
        tracking_uri = env.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
        return cls(
            home_dir=Path(env.get("DRIFTLOOP_HOME", str(PROJECT_DIR / ".driftloop"))).resolve(),
            tracking_uri=tracking_uri,
            dataset=env.get("DRIFTLOOP_DATASET", DEFAULT_DATASET),
            config_dir=Path(
                env.get("DRIFTLOOP_CONFIG_DIR", str(PROJECT_DIR / "include" / "configs"))
            ).resolve(),
            datasets=_env_names(env, "DRIFTLOOP_DATASETS"),
            overrides_json=env.get(OVERRIDES_ENV, "").strip(),
            owner=env.get("DRIFTLOOP_OWNER", "driftloop"),
            task_retries=_env_int(env, "DRIFTLOOP_TASK_RETRIES", 2),
            retry_delay_s=_env_int(env, "DRIFTLOOP_RETRY_DELAY_S", 30),
            data_schedule=_env_schedule(env, "DRIFTLOOP_DATA_SCHEDULE", "*/10 * * * *"),
            sensor_schedule=_env_schedule(env, "DRIFTLOOP_SENSOR_SCHEDULE", "@continuous"),
            watch_schedule=_env_schedule(env, "DRIFTLOOP_WATCH_SCHEDULE", "*/5 * * * *"),
            sensor_poll_s=_env_float(env, "DRIFTLOOP_SENSOR_POKE_S", 10.0),
            sensor_timeout_s=_env_int(env, "DRIFTLOOP_SENSOR_TIMEOUT_S", 0),
            n_jobs=_env_int(env, "DRIFTLOOP_N_JOBS", 1),
            pii_salt=env.get(PII_SALT_ENV, ""),
            profile_max_rows=_env_int(env, "DRIFTLOOP_PROFILE_MAX_ROWS", 50_000),
            profile_timeout_s=_env_float(env, "DRIFTLOOP_PROFILE_TIMEOUT_S", 300.0),
            git_commit=env.get("DRIFTLOOP_GIT_COMMIT", "").strip(),
            mlflow_ui_url=env.get("DRIFTLOOP_MLFLOW_UI_URL", "")
            or (tracking_uri if tracking_uri.startswith("http") else ""),
            mlflow_port=_env_int(env, "DRIFTLOOP_MLFLOW_PORT", 5000),
            airflow_port=_env_int(env, "DRIFTLOOP_AIRFLOW_PORT", 8080),
            worker_name=env.get("DRIFTLOOP_WORKER_NAME", "").strip(),
            audit_db_uri=env.get("DRIFTLOOP_AUDIT_DB_URI", "").strip(),
            audit_owner_db_uri=env.get("DRIFTLOOP_AUDIT_OWNER_DB_URI", "").strip(),
            serve_host=env.get("DRIFTLOOP_SERVE_HOST", "127.0.0.1").strip() or "127.0.0.1",
            serve_port=_env_int(env, "DRIFTLOOP_SERVE_PORT", 8000),
            serve_admin_token=env.get("DRIFTLOOP_SERVE_ADMIN_TOKEN", "").strip(),
            serve_max_body_bytes=_env_int(env, "DRIFTLOOP_SERVE_MAX_BODY_BYTES", 1_048_576),
            serve_max_request_rows=_env_int(env, "DRIFTLOOP_SERVE_MAX_REQUEST_ROWS", 10_000),
            serve_max_batch_rows=_env_int(env, "DRIFTLOOP_SERVE_MAX_BATCH_ROWS", 20_000),
            serve_latency_budget_ms=_env_float(env, "DRIFTLOOP_SERVE_LATENCY_BUDGET_MS", 250.0),
            serve_queue_max=_env_int(env, "DRIFTLOOP_SERVE_QUEUE_MAX", 1024),
            serve_workers=_env_int(env, "DRIFTLOOP_SERVE_WORKERS", 0),
            serve_poll_s=_env_float(env, "DRIFTLOOP_SERVE_POLL_S", 10.0),
            prediction_log_uri=env.get("DRIFTLOOP_PREDICTION_LOG_URI", "").strip(),
            prediction_log_queue_rows=_env_int(env, "DRIFTLOOP_PREDICTION_LOG_QUEUE_ROWS", 200_000),
            ab_schedule=_env_schedule(env, "DRIFTLOOP_AB_SCHEDULE", "@hourly"),
            serving_url=env.get("DRIFTLOOP_SERVING_URL", "").strip(),
        )

    @property
    def overrides(self) -> dict[str, Any]:
        """``DRIFTLOOP_CONFIG_OVERRIDES`` parsed: a JSON object deep-merged into every dataset config.

        Raises:
            ConfigError: The value is not a JSON object; the message names the variable.
        """
        if not self.overrides_json:
            return {}
        try:
            parsed = json.loads(self.overrides_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{OVERRIDES_ENV} is not valid JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise ConfigError(f"{OVERRIDES_ENV} must be a JSON object, got {type(parsed).__name__}")
        return parsed

    def with_overrides(self, overrides: dict[str, Any]) -> Settings:
        """A copy whose config overrides are ``overrides`` (tests and callers that build configs in code)."""
        return replace(self, overrides_json=json.dumps(overrides))
