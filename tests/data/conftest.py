"""Fixtures for the contract and bad-input tests: a landing zone and a small clean telco batch."""

from __future__ import annotations

import pytest


@pytest.fixture
def good(telco_frame):
    """20 clean rows with a target column (a copy, free to corrupt)."""
    return telco_frame.iloc[:20].copy().reset_index(drop=True)
