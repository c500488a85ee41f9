"""Fixtures of the monitoring and sensor tests: a unique dataset name, a small fitted scorer, a fake
champion."""

from __future__ import annotations

import dataclasses
import json
import uuid
from types import SimpleNamespace

import pytest

from tests.conftest import write_snapshot
from tests.constants import FAST_OVERRIDES as SHARED_FAST_OVERRIDES
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


# The shared fast overrides, with a smaller drift reference for the unit fixtures.
FAST_OVERRIDES = {
    **SHARED_FAST_OVERRIDES,
    "training": {**SHARED_FAST_OVERRIDES["training"], "reference_rows": 500},
}
SNAPSHOT_ROWS = 1500
TINY_ROWS = 40


@pytest.fixture(scope="module")
def models(tmp_path_factory, mlflow_uri, telco_frame):
    """Models whose order is known without the gate (see test_registry), trained once per module.

    The environment stays set for the whole module.
    """
    from driftloop.core.config import load_dataset_config
    from driftloop.core.tracking import get_client
    from driftloop.training.train import train_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(tmp_path_factory.mktemp("registry-home")))
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        mp.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps(FAST_OVERRIDES))
        mp.setenv("DRIFTLOOP_N_JOBS", "1")
        mp.delenv("DRIFTLOOP_DATASET", raising=False)
        mp.delenv("DRIFTLOOP_CONFIG_DIR", raising=False)
        suffix = uuid.uuid4().hex[:8]
        cfg = dataclasses.replace(
            load_dataset_config("telco_churn"),
            name=f"telco_churn_{suffix}",
            model_name=f"telco-churn-{suffix}",
        )
        frame = telco_frame.sample(SNAPSHOT_ROWS, random_state=11).reset_index(drop=True)
        snapshot_uri = write_snapshot(cfg, frame)["snapshot_uri"]
        good = train_model(cfg, snapshot_uri=snapshot_uri)
        weak_cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, models=("dt",)))
        weak = train_model(weak_cfg, snapshot_uri=snapshot_uri, trigger={"trigger_id": "weak"})
        shuffled_frame = frame.assign(churn=frame["churn"].sample(frac=1.0, random_state=5).to_numpy())
        shuffled_uri = write_snapshot(cfg, shuffled_frame)["snapshot_uri"]
        shuffled = train_model(cfg, snapshot_uri=shuffled_uri, trigger={"trigger_id": "shuffled"})
        tiny_uri = write_snapshot(cfg, frame.head(TINY_ROWS))["snapshot_uri"]
        tiny = train_model(cfg, snapshot_uri=tiny_uri, trigger={"trigger_id": "tiny"})
        yield SimpleNamespace(
            cfg=cfg, good=good, weak=weak, shuffled=shuffled, tiny=tiny, client=get_client()
        )


def fresh_registry(models, *trained: dict, **gates):
    """A new registered model holding copies of ``trained`` results as versions 1, 2, ...; returns its config.

    Only the floors and the head-to-head comparison are on unless ``gates`` turns more on: the 40-customer
    model's holdout has a dozen rows, on which fairness gaps and behavioural tests mean nothing.
    """
    client = models.client
    name = f"{models.cfg.registered_model_name}-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    for result in trained:
        source = client.get_model_version(result["model_name"], result["model_version"]).source
        client.create_model_version(name, source, run_id=result["run_id"])
    relaxed = {"behaviour": "", "max_latency_ms_per_row": None, "max_model_size_mb": None}
    cfg = dataclasses.replace(
        models.cfg,
        model_name=name,
        gates=dataclasses.replace(models.cfg.gates, **{**relaxed, **gates}),
        fairness=dataclasses.replace(
            models.cfg.fairness, max_equalized_odds_difference=None, max_demographic_parity_difference=None
        ),
    )
    return cfg


def alias_version(client, name: str, alias: str) -> str:
    return str(client.get_model_version_by_alias(name, alias).version)
