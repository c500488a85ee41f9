"""Shared fixtures: an isolated Driftloop home and a SQLite-backed MLflow per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# Small, fast training for every test; production defaults live in include/configs/*.yaml.
FAST_OVERRIDES = {"training": {"models": ["lr"], "folds": 2, "tune_iter": 0, "reference_rows": 1000}}


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
    from driftloop.config import load_dataset_config

    return load_dataset_config("telco_churn")


@pytest.fixture(scope="session")
def telco_frame():
    """The raw telco churn data (7,043 rows) with its synthesised customer ids."""
    from driftloop.config import Settings, load_dataset_config
    from driftloop.sources import load_source_frame

    cfg = load_dataset_config("telco_churn", Settings.from_env({}))
    return load_source_frame(cfg)
