"""Monitoring's read of a version's facts: a missing training run falls back, a fault propagates (and is
retried)."""

from __future__ import annotations

import dataclasses

import pytest


class RaisingClient:
    """An MLflow client whose ``get_run`` raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def get_run(self, run_id: str):
        self.calls += 1
        raise self.error


def _unreachable():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    return MlflowException("API request to /runs/get failed: connection refused", TEMPORARILY_UNAVAILABLE)


def _gone():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    return MlflowException("Run 'abc' not found", RESOURCE_DOES_NOT_EXIST)


@pytest.fixture
def hpc_cfg(driftloop_env):
    from driftloop.core.config import load_dataset_config

    return load_dataset_config("hpc_jobs")


@pytest.mark.parametrize("error", [_unreachable, lambda: ConnectionError("connection refused")])
def test_an_unreachable_mlflow_is_a_fault_for_every_task_not_a_config_error_nor_silence(
    telco_cfg, hpc_cfg, error
):
    from mlflow.exceptions import MlflowException

    from driftloop.core.errors import Verdict
    from driftloop.monitoring.live import read_version_facts

    for cfg in (telco_cfg, hpc_cfg):
        raised = error()
        with pytest.raises((MlflowException, ConnectionError)) as caught:
            read_version_facts(cfg, RaisingClient(raised), "abc")
        assert caught.value is raised and not isinstance(caught.value, Verdict)


def test_a_deleted_training_run_falls_back_to_the_config_or_says_why_it_cannot(telco_cfg, hpc_cfg, caplog):
    from driftloop.core.errors import ConfigError, MonitoringError
    from driftloop.monitoring.live import read_version_facts

    facts = read_version_facts(telco_cfg, RaisingClient(_gone()), "abc")
    assert facts.holdout == {} and facts.decision.task == "binary"
    assert "not found" in caplog.text and "no live drop" in caplog.text
    with pytest.raises(MonitoringError, match="cannot say how the version decides") as caught:
        read_version_facts(hpc_cfg, RaisingClient(_gone()), "abc")
    assert not isinstance(caught.value, ConfigError)


def test_the_recorded_champion_metric_takes_the_margin_back_off_for_error_and_score_metrics(driftloop_env):
    from driftloop.core.config import load_dataset_config
    from driftloop.governance.verdict_evidence import headline_metrics as _headline_metrics

    ames = load_dataset_config("ames_housing")  # primary metric RMSE: lower is better
    ames = dataclasses.replace(ames, gates=dataclasses.replace(ames.gates, min_improvement=500.0))
    # The gate's check for a champion RMSE of 21,000 with a 500 margin: the candidate must reach 20,500.
    report = {"metrics": {}, "checks": [{"name": "beats_champion", "value": 20_000.0, "limit": 20_500.0}]}
    assert _headline_metrics(ames, report) == {"candidate_metric": 20_000.0, "champion_metric": 21_000.0}

    hpc = load_dataset_config("hpc_jobs")  # macro-F1: higher is better; champion 0.70 + margin 0.02 = 0.72
    hpc = dataclasses.replace(hpc, gates=dataclasses.replace(hpc.gates, min_improvement=0.02))
    report = {"metrics": {}, "checks": [{"name": "beats_champion", "value": 0.75, "limit": 0.72}]}
    assert _headline_metrics(hpc, report)["champion_metric"] == pytest.approx(0.70)
