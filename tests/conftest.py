"""Shared fixtures: an isolated Driftloop home and a SQLite-backed MLflow per test session."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.constants import FAST_OVERRIDES

PROJECT_DIR = Path(__file__).resolve().parents[1]

# moto's S3 server (s3_server, s3_env, s3_data_uri) for the tests whose storage matters.
pytest_plugins = ["tests.object_store"]


def pytest_configure(config: pytest.Config) -> None:
    """Give Airflow a private home before anything imports it (Airflow reads its config at import)."""
    import tempfile

    airflow_home = os.environ.get("DRIFTLOOP_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(
        prefix="driftloop-airflow-"
    )
    os.environ["DRIFTLOOP_TEST_AIRFLOW_HOME"] = airflow_home
    os.environ["AIRFLOW_HOME"] = airflow_home
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_DIR / "dags")
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_DIR / "plugins")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{airflow_home}/airflow.db"
    os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    plugins = str(PROJECT_DIR / "plugins")
    if plugins not in sys.path:
        sys.path.insert(0, plugins)


def _global_tracking_uri() -> str | None:
    module = sys.modules.get("mlflow.tracking._tracking_service.utils")  # never import MLflow just to look
    return None if module is None else module._tracking_uri


@pytest.fixture(autouse=True)
def _mlflow_global_uri_unchanged():
    """Fail the test that leaves MLflow's process-wide tracking URI changed: later tests' runs would go
    there."""
    before = _global_tracking_uri()
    yield
    after = _global_tracking_uri()
    if after != before:
        sys.modules["mlflow.tracking._tracking_service.utils"]._tracking_uri = before
        pytest.fail(f"MLflow's global tracking URI was left at {after!r} (was {before!r}); use mlflow_scope")


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite MLflow store for the session (creating one costs seconds of migrations)."""
    db_dir = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{db_dir / 'mlflow.db'}"


@pytest.fixture
def driftloop_env(tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point Driftloop at a fresh home folder and the session's MLflow store; returns the home folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("DRIFTLOOP_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps(FAST_OVERRIDES))
    monkeypatch.delenv("DRIFTLOOP_DATASET", raising=False)
    monkeypatch.delenv("DRIFTLOOP_CONFIG_DIR", raising=False)
    return home


@pytest.fixture
def telco_cfg(driftloop_env: Path):
    """The default dataset config with fast training overrides."""
    from driftloop.core.config import load_dataset_config

    return load_dataset_config("telco_churn")


@pytest.fixture(scope="session")
def telco_frame():
    """The raw telco churn data (7,043 rows) with its synthesised customer ids."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.data.sources import load_source_frame

    cfg = load_dataset_config("telco_churn", Settings.from_env({}))
    return load_source_frame(cfg)


def write_snapshot(cfg, frame, created_at: str = "2026-01-01T00:00:00+00:00") -> dict:
    """Store ``frame`` as a snapshot with the data stage's own writer (same canonical form, same hash)."""
    from driftloop.data.snapshots import write_snapshot as write

    return write(cfg, frame, created_at=created_at)


@pytest.fixture
def state(telco_cfg):
    """The telco state folders with empty landing zones."""
    from driftloop.core.state import StatePaths

    paths = StatePaths.for_dataset(telco_cfg)
    paths.landing_dir.mkdir(parents=True, exist_ok=True)
    paths.labels_landing_dir.mkdir(parents=True, exist_ok=True)
    return paths


@pytest.fixture(params=["local", "s3"])
def data_store(request: pytest.FixtureRequest, driftloop_env: Path) -> str:
    """The data location, once a local folder and once a bucket on the test S3 server; returns its URI.

    Request it before ``telco_cfg``/``state`` so that they see the location it sets.
    """
    if request.param == "s3":
        return str(request.getfixturevalue("s3_data_uri"))
    return str(driftloop_env / "data")
