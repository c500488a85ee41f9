"""Fixtures of the serving tests: a dataset under a unique name, fitted models, settings and a running
service."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from tests.serving.helpers import fit_pipeline


@pytest.fixture
def cfg(telco_cfg):
    """Telco config under a unique name, so tests sharing the session's MLflow store never see each other."""
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(telco_cfg, name=f"telco_churn_{suffix}", model_name=f"telco-churn-{suffix}")


@pytest.fixture(scope="session")
def good_model(telco_frame):
    """A logistic regression fitted on the first 3,000 customers."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    return fit_pipeline(load_dataset_config("telco_churn", Settings.from_env({})), telco_frame)


@pytest.fixture(scope="session")
def flipped_model(telco_frame):
    """The same model fitted on inverted labels: wrong most of the time."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    return fit_pipeline(load_dataset_config("telco_churn", Settings.from_env({})), telco_frame, flip=True)


@pytest.fixture
def serve_env(driftloop_env, monkeypatch):
    """Serving settings for tests: one thread worker, fast registry polls, an admin token.

    The latency budget is generous (a loaded CI machine must not turn requests into 503s); the
    admission-control test sets its own.
    """
    monkeypatch.setenv("DRIFTLOOP_SERVE_WORKERS", "-1")
    monkeypatch.setenv("DRIFTLOOP_SERVE_LATENCY_BUDGET_MS", "60000")
    monkeypatch.setenv("DRIFTLOOP_SERVE_POLL_S", "0.2")
    monkeypatch.setenv("DRIFTLOOP_SERVE_ADMIN_TOKEN", "test-admin-token")
    return monkeypatch


def settings():
    """The process settings as the environment sets them now."""
    from driftloop.core.settings import Settings

    return Settings.from_env()
