"""Fixtures of the monitoring and sensor tests: a unique dataset name, a small fitted scorer, a fake champion."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from tests.fakes import fit_scorer, register_champion


@pytest.fixture
def cfg(telco_cfg):
    """Telco config under a unique name, so tests sharing the session's MLflow store never see each other."""
    suffix = uuid.uuid4().hex[:8]
    return dataclasses.replace(telco_cfg, name=f"telco_churn_{suffix}", model_name=f"telco-churn-{suffix}")


@pytest.fixture(scope="session")
def scorer(telco_frame):
    """(predict_proba fn, holdout F1) of a logistic regression fitted on the first 4,000 customers."""
    return fit_scorer(telco_frame)


@pytest.fixture
def champion(cfg, telco_frame, scorer):
    """(version, training run id) of a registered champion for ``cfg``."""
    return register_champion(cfg, telco_frame, scorer)
