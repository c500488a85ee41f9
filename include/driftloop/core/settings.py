"""Process settings: the only reader of environment variables in Driftloop.

Reading them changes nothing on disk or in MLflow (no folder is created, no tracking URI is set), so DAG files
may import this module at parse time. Each setting is one field of :class:`Settings`, written once: its
environment variable, its default and its description (the configuration tables of the README and
``docs/serving.md`` are generated from these fields by ``python -m driftloop_ops.doc_tables``). A new setting
is one field: ``alert_url: str = _setting("DRIFTLOOP_ALERT_URL", "", "where alerts go")``, then regenerate the
docs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from driftloop.core.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parents[3]
DEFAULT_DATASET = "telco_churn"
OVERRIDES_ENV = "DRIFTLOOP_CONFIG_OVERRIDES"
PII_SALT_ENV = "DRIFTLOOP_PII_SALT"

_SCHEDULE_OFF = ("", "none", "manual")
# DRIFTLOOP_DATA_SCHEDULE's event-driven value: data_pipeline runs when a new file lands (an Airflow asset
# watcher in the triggerer), not on a clock.
ON_ARRIVAL = "on_arrival"


def _setting(env: str, default: Any, description: str, *, shown_default: str = "") -> Any:
    """One setting: its environment variable, default and description (``shown_default``: the docs'
    wording)."""
    extra: dict[str, Any] | None = {"shown_default": shown_default} if shown_default else None
    return Field(default=default, validation_alias=env, description=description, json_schema_extra=extra)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key: value for key, value in self._env.items()}


class Settings(BaseSettings):
    """Process settings: the only reader of environment variables in Driftloop.

    Build them with :meth:`from_env`; each field's ``validation_alias`` is its environment variable. The JSON
    in ``DRIFTLOOP_CONFIG_OVERRIDES`` is kept raw and parsed by :attr:`overrides` when a dataset config is
    loaded, so a malformed value fails the tasks that load a config, with a message naming the variable,
    instead of the import of every DAG file.
    """

    model_config = SettingsConfigDict(
        frozen=True, case_sensitive=True, extra="ignore", populate_by_name=True, str_strip_whitespace=True
    )

    home_dir: Path = _setting(
        "DRIFTLOOP_HOME",
        PROJECT_DIR / ".driftloop",
        "all local state (data zones, MLflow and Airflow state in embedded mode)",
    )
    data_uri: str = _setting(
        "DRIFTLOOP_DATA_URI",
        "",
        "where the data zones live: a folder or `s3://bucket/prefix` (credentials: the AWS variables)",
        shown_default="(`$DRIFTLOOP_HOME/data`)",
    )
    tracking_uri: str = _setting(
        "MLFLOW_TRACKING_URI", "http://127.0.0.1:5000", "tracking server and registry"
    )
    tracking_username: str = _setting(
        "MLFLOW_TRACKING_USERNAME", "", "MLflow basic-auth user (MLflow's own variable; compose sets it)"
    )
    tracking_password: str = Field(
        default="",
        validation_alias="MLFLOW_TRACKING_PASSWORD",
        description="MLflow basic-auth password (MLflow's own variable)",
        repr=False,  # a secret: never in a log line or a traceback's locals
    )
    dataset: str = _setting(
        "DRIFTLOOP_DATASET",
        DEFAULT_DATASET,
        "default dataset of the `driftloop` CLI, `driftloop serve` and `make demo`",
    )
    config_dir: Path = _setting(
        "DRIFTLOOP_CONFIG_DIR", PROJECT_DIR / "include" / "configs", "where dataset configs live"
    )
    datasets: Annotated[tuple[str, ...], NoDecode] = _setting(
        "DRIFTLOOP_DATASETS",
        (),
        "comma-separated dataset configs Airflow builds DAGs for, e.g. `telco_churn,hpc_jobs`; "
        "`make demo` sets its own dataset",
        shown_default="(none: every config)",
    )
    overrides_json: str = _setting(
        OVERRIDES_ENV,
        "",
        'JSON deep-merged into every dataset config when a task loads it, e.g. `{"training": {"folds": 3}}`',
    )
    owner: str = _setting("DRIFTLOOP_OWNER", "driftloop", "owner shown on every DAG")
    task_retries: int = _setting("DRIFTLOOP_TASK_RETRIES", 2, "retries of every task")
    retry_delay_s: int = _setting(
        "DRIFTLOOP_RETRY_DELAY_S", 30, "first retry delay; later retries back off exponentially"
    )
    data_schedule: str | None = _setting(
        "DRIFTLOOP_DATA_SCHEDULE",
        ON_ARRIVAL,
        "`<dataset>__data_pipeline`: `on_arrival` runs it when a new file lands (the triggerer lists the "
        "landing zones every `DRIFTLOOP_LANDING_POKE_S`; no run while nothing lands), a cron expression "
        "polls on a clock, `none` for manual runs only",
    )
    landing_poll_s: Annotated[float, Field(gt=0)] = _setting(
        "DRIFTLOOP_LANDING_POKE_S",
        5.0,
        "how often the landing watch lists both landing zones (in the triggerer) under `on_arrival`",
    )
    sensor_schedule: str | None = _setting(
        "DRIFTLOOP_SENSOR_SCHEDULE",
        "@continuous",
        "`<dataset>__drift_sensor`: one deferred run waits until it fires, the next starts right after; "
        "`none` to disable",
    )
    watch_schedule: str | None = _setting(
        "DRIFTLOOP_WATCH_SCHEDULE",
        "@continuous",
        "`<dataset>__registry_watch`: one deferred run waits for a move of `champion` made in the MLflow UI "
        "or REST API (or a move not alerted yet), records and alerts it, the next starts right after; "
        "`none` to disable",
    )
    sensor_poll_s: float = _setting(
        "DRIFTLOOP_SENSOR_POKE_S", 10.0, "how often the waiting drift sensor reads MLflow (in the triggerer)"
    )
    sensor_timeout_s: int = _setting(
        "DRIFTLOOP_SENSOR_TIMEOUT_S", 0, "`> 0` skips a sensor run that waited that long; `0`: no limit"
    )
    watch_poll_s: float = _setting(
        "DRIFTLOOP_WATCH_POKE_S",
        15.0,
        "how often the waiting registry watch compares `champion` with the audit log (in the triggerer)",
    )
    n_jobs: int = _setting(
        "DRIFTLOOP_N_JOBS", 1, "PyCaret worker processes, `-1` for all cores (1 was fastest on 2 cores)"
    )
    pii_salt: str = _setting(PII_SALT_ENV, "", "salt for hashed PII columns (see the contract section)")
    profile_max_rows: int = _setting(
        "DRIFTLOOP_PROFILE_MAX_ROWS",
        50_000,
        "rows profiled in the HTML report; larger snapshots are sampled; `0` skips the HTML",
    )
    profile_timeout_s: float = _setting(
        "DRIFTLOOP_PROFILE_TIMEOUT_S",
        300.0,
        "time budget of the HTML profile; past it only the quality summary is kept",
    )
    git_commit: str = _setting(
        "DRIFTLOOP_GIT_COMMIT", "", "commit tagged on runs when the code has no `.git` (the image sets it)"
    )
    mlflow_ui_url: str = _setting(
        "DRIFTLOOP_MLFLOW_UI_URL",
        "",
        "MLflow UI linked from every Airflow task",
        shown_default="`MLFLOW_TRACKING_URI` when it is http",
    )
    mlflow_port: int = _setting(
        "DRIFTLOOP_MLFLOW_PORT", 5000, "embedded-mode MLflow port (bound to 127.0.0.1)"
    )
    airflow_port: int = _setting(
        "DRIFTLOOP_AIRFLOW_PORT", 8080, "embedded-mode Airflow port (bound to 127.0.0.1)"
    )
    worker_name: str = _setting(
        "DRIFTLOOP_WORKER_NAME",
        "",
        "name a Celery worker reports in the topology checks",
        shown_default="the host's name",
    )
    audit_db_uri: str = _setting(
        "DRIFTLOOP_AUDIT_DB_URI",
        "",
        "the audit log (`postgresql://audit_writer:...@host/driftloop_audit` in production)",
        shown_default="SQLite under `$DRIFTLOOP_HOME/audit/`",
    )
    audit_owner_db_uri: str = _setting(
        "DRIFTLOOP_AUDIT_OWNER_DB_URI",
        "",
        "the owner role `driftloop audit-init` creates the append-only schema with",
    )
    serve_host: str = _setting("DRIFTLOOP_SERVE_HOST", "127.0.0.1", "address `driftloop serve` binds")
    serve_port: int = _setting("DRIFTLOOP_SERVE_PORT", 8000, "port of `driftloop serve`")
    serve_admin_token: str = _setting(
        "DRIFTLOOP_SERVE_ADMIN_TOKEN",
        "",
        "bearer token of `/admin/*`; empty disables the admin endpoints (403)",
    )
    serve_max_body_bytes: int = _setting(
        "DRIFTLOOP_SERVE_MAX_BODY_BYTES",
        1_048_576,
        "larger bodies get 413, checked on `Content-Length` before reading",
    )
    serve_max_request_rows: int = _setting(
        "DRIFTLOOP_SERVE_MAX_REQUEST_ROWS", 10_000, "rows per request (and labels per `POST /labels`)"
    )
    serve_max_batch_rows: int = _setting(
        "DRIFTLOOP_SERVE_MAX_BATCH_ROWS", 20_000, "rows one predict call takes from a queue"
    )
    serve_latency_budget_ms: float = _setting(
        "DRIFTLOOP_SERVE_LATENCY_BUDGET_MS",
        250.0,
        "a request that would wait longer than this for a worker gets 503 + `Retry-After`",
    )
    serve_queue_max: int = _setting(
        "DRIFTLOOP_SERVE_QUEUE_MAX", 1024, "requests waiting at most; beyond, 503"
    )
    serve_workers: int = _setting(
        "DRIFTLOOP_SERVE_WORKERS",
        0,
        "inference processes; `0` is one per core; `-1` runs one worker as a thread (tests)",
    )
    serve_poll_s: float = _setting("DRIFTLOOP_SERVE_POLL_S", 10.0, "how often the registry aliases are read")
    prediction_log_uri: str = _setting(
        "DRIFTLOOP_PREDICTION_LOG_URI",
        "",
        "`sqlite:///path` or `postgresql://user:pass@host:5432/db`",
        shown_default="SQLite under `$DRIFTLOOP_HOME/data/<dataset>/serving/`",
    )
    prediction_log_queue_rows: int = _setting(
        "DRIFTLOOP_PREDICTION_LOG_QUEUE_ROWS",
        200_000,
        "rows buffered for the log writer; beyond, rows are dropped and counted",
    )
    ab_schedule: str | None = _setting(
        "DRIFTLOOP_AB_SCHEDULE", "@hourly", "schedule of the `ab_evaluation` DAG; `none` for manual runs only"
    )
    serving_url: str = _setting(
        "DRIFTLOOP_SERVING_URL",
        "",
        "online service base URL whose `/metrics` the Driftloop view reads; empty: off",
    )
    alert_http_conn_id: str = _setting(
        "DRIFTLOOP_ALERT_HTTP_CONN_ID",
        "",
        "Airflow HTTP connection (host: the full URL) Airflow tasks POST alerts to as Slack-compatible "
        "JSON through `HttpHook`; empty: off",
    )
    alert_slack_conn_id: str = _setting(
        "DRIFTLOOP_ALERT_SLACK_CONN_ID",
        "",
        "Airflow Slack incoming-webhook connection (`slackwebhook`) Airflow tasks post alerts to through "
        "`SlackWebhookHook`; empty: off",
    )
    alert_webhook_url: str = _setting(
        "DRIFTLOOP_ALERT_WEBHOOK_URL",
        "",
        "JSON webhook URL for processes without Airflow (the `driftloop` CLI); Airflow tasks use it only "
        "when `DRIFTLOOP_ALERT_HTTP_CONN_ID` is unset; empty: off",
    )
    alert_smtp_conn_id: str = _setting(
        "DRIFTLOOP_ALERT_SMTP_CONN_ID", "", "Airflow SMTP connection id alert emails go through; empty: off"
    )
    alert_template_dir: str = _setting(
        "DRIFTLOOP_ALERT_TEMPLATE_DIR",
        "",
        "folder of Jinja templates replacing the alert messages' defaults (`webhook_text.txt`, "
        "`email_subject.txt`, `email_body.html`; a file left out keeps its default); empty: the defaults",
    )
    airflow_api_conn_id: str = _setting(
        "DRIFTLOOP_AIRFLOW_API_CONN_ID",
        "",
        "Airflow HTTP connection (api-server URL, user, password) tasks write DAG run notes through under a "
        "scheduler; empty: notes only in the task log",
    )
    storage_conn_id: str = _setting(
        "DRIFTLOOP_STORAGE_CONN_ID",
        "",
        "Airflow AWS connection (login: key id, password: secret, extra `endpoint_url`, `region_name`) tasks "
        "reach `DRIFTLOOP_DATA_URI` with; empty: the standard AWS variables",
    )
    alert_email_to: Annotated[tuple[str, ...], NoDecode] = _setting(
        "DRIFTLOOP_ALERT_EMAIL_TO", (), "recipients of alert emails, comma-separated", shown_default="(none)"
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_numbers_are_unset(cls, data: Any) -> Any:
        """An empty numeric variable means its default (``DRIFTLOOP_N_JOBS=`` in a compose file)."""
        if not isinstance(data, dict):
            return data
        numeric = {f.validation_alias for f in cls.model_fields.values() if f.annotation in (int, float)}
        return {k: v for k, v in data.items() if not (k in numeric and isinstance(v, str) and not v.strip())}

    @field_validator("datasets", "alert_email_to", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        """A comma-separated list of names, blanks dropped, order kept, each name once."""
        if isinstance(value, str):
            value = (part.strip() for part in value.split(","))
        return tuple(dict.fromkeys(n for n in value if n))

    @field_validator("data_schedule", "sensor_schedule", "watch_schedule", "ab_schedule", mode="before")
    @classmethod
    def _schedule_off(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        word = value.strip().lower()
        return None if word in _SCHEDULE_OFF else ON_ARRIVAL if word == ON_ARRIVAL else value

    @field_validator(
        "alert_webhook_url",
        "alert_http_conn_id",
        "alert_slack_conn_id",
        "alert_smtp_conn_id",
        "alert_template_dir",
        "serving_url",
        "airflow_api_conn_id",
        "storage_conn_id",
        mode="before",
    )
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("home_dir", "config_dir", mode="after")
    @classmethod
    def _resolve(cls, value: Path) -> Path:
        return value.resolve()

    @property
    def data_root_uri(self) -> str:
        """Where every dataset's data zones live: ``DRIFTLOOP_DATA_URI``, else ``$DRIFTLOOP_HOME/data``."""
        return self.data_uri or str(self.home_dir / "data")

    @model_validator(mode="after")
    def _ui_follows_tracking(self) -> Settings:
        if not self.mlflow_ui_url and self.tracking_uri.startswith("http"):
            object.__setattr__(self, "mlflow_ui_url", self.tracking_uri)
        if not self.serve_host:
            object.__setattr__(self, "serve_host", "127.0.0.1")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only explicit values: the environment is read by :meth:`from_env`, never implicitly."""
        return (init_settings,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``).

        Raises:
            ConfigError: A variable has the wrong type, e.g. a number that is not one (the message names it).
        """
        values = _MappingEnvSource(cls, os.environ if env is None else env)()
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError("; ".join(_describe(error) for error in exc.errors())) from None

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
        return self.replace(overrides_json=json.dumps(overrides))

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (by field name), validated like :meth:`from_env`'s result.

        Raises:
            ConfigError: A changed value has the wrong type.
        """
        try:
            return type(self)(**{**self.model_dump(), **changes})
        except ValidationError as exc:
            raise ConfigError("; ".join(_describe(error) for error in exc.errors())) from None


_PARSE_ERRORS = {"int_parsing": "is not a whole number", "float_parsing": "is not a number"}


def _describe(error: Any) -> str:
    name = ".".join(str(part) for part in error["loc"])
    return f"{name}={error['input']!r} {_PARSE_ERRORS.get(error['type'], error['msg'])}"
