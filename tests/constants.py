"""Values several test packages share, defined once: fast training overrides, the deployment's secret names,
and what a missing service means in CI."""

from __future__ import annotations

import os

import pytest

# Small, fast training for every test; production defaults live in include/configs/*.yaml.
FAST_OVERRIDES = {"training": {"models": ["lr"], "folds": 2, "tune_iter": 0, "reference_rows": 1000}}

# Secret-valued variables of the compose deployment (.env): generated per test stack, and searched for in the
# built images (a value found there is a leaked secret).
SECRET_NAMES = (
    "POSTGRES_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "REDIS_PASSWORD",
    "AUDIT_OWNER_PASSWORD",
    "AUDIT_DB_PASSWORD",
    "PREDICTION_LOG_DB_PASSWORD",
    "DRIFTLOOP_SERVE_ADMIN_TOKEN",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_ADMIN_PASSWORD",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "DRIFTLOOP_PII_SALT",
)
# Every variable docker-compose.yaml requires (``${NAME:?...}``): the secrets plus the admin identities.
REQUIRED_SECRETS = frozenset(
    {
        *SECRET_NAMES,
        "AIRFLOW_ADMIN_USERNAME",
        "AIRFLOW_ADMIN_EMAIL",
        "MLFLOW_ADMIN_USERNAME",
    }
)


def in_ci() -> bool:
    """True under ``CI=true`` (set by .ci/run): services CI promises must be there."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def service_missing(message: str) -> None:
    """Skip the test locally, but fail it in CI, where a missing service is a broken pipeline, not a pass."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: this service is required)", pytrace=False)
    pytest.skip(f"{message} (start it, or run with CI=true to make this a failure)")


# Airflow 3.3 race: an answer that reaches a HITL task within seconds of its pause (before the scheduler has
# processed the executor's "workload finished" event) resumes it while that event is pending; the scheduler
# then sees "finished with state success, but the task instance's state attribute is queued", marks it up for
# retry, and the retry asks again. The tests' approvals wait this long first, as a person reading does.
AIRFLOW_HITL_SETTLE_S = 15
