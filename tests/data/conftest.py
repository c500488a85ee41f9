"""Fixtures for the contract and bad-input tests: a landing zone and a small clean telco batch."""

from __future__ import annotations

import pytest

from driftloop.config import StatePaths


@pytest.fixture
def state(telco_cfg):
    """The telco state folders with empty landing zones."""
    paths = StatePaths.for_dataset(telco_cfg)
    paths.landing_dir.mkdir(parents=True)
    paths.labels_landing_dir.mkdir(parents=True)
    return paths


@pytest.fixture
def good(telco_frame):
    """20 clean rows with a target column (a copy, free to corrupt)."""
    return telco_frame.iloc[:20].copy().reset_index(drop=True)
