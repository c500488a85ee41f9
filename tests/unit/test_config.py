"""Dataset configs and settings: validation messages, overrides, purity."""

from __future__ import annotations

import copy

import pytest
import yaml

from driftloop.config import (
    PROJECT_DIR,
    ConfigError,
    Settings,
    StatePaths,
    asset_uri,
    load_dataset_config,
    parse_dataset_config,
)

TELCO_RAW = yaml.safe_load((PROJECT_DIR / "include" / "configs" / "telco_churn.yaml").read_text())


def _raw(**changes):
    raw = copy.deepcopy(TELCO_RAW)
    raw.update(changes)
    return raw


def test_default_config_loads_with_features_and_names():
    cfg = load_dataset_config("telco_churn", Settings.from_env({}))
    assert cfg.target == "churn" and cfg.positive_label == "Yes"
    assert len(cfg.features) == 19 and cfg.features[:3] == ["tenure", "monthly_charges", "total_charges"]
    assert cfg.registered_model_name == "telco-churn"
    assert cfg.experiment_name("training") == "driftloop/telco_churn/training"
    assert cfg.training.models == ("lr", "lightgbm", "rf")


def test_overrides_deep_merge_into_the_file():
    env = {"DRIFTLOOP_CONFIG_OVERRIDES": '{"training": {"folds": 2}, "monitoring": {"cooldown_s": 5}}'}
    cfg = load_dataset_config("telco_churn", Settings.from_env(env))
    assert cfg.training.folds == 2
    assert cfg.training.models == ("lr", "lightgbm", "rf")  # untouched keys survive the merge
    assert cfg.monitoring.cooldown_s == 5


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"training": {"modles": ["lr"]}}, "unknown keys ['modles']"),
        ({"features": {"numeric": ["tenure"], "categorical": ["tenure"]}}, "both numeric and categorical"),
        ({"features": {"numeric": ["churn"]}}, "'churn' is the id or target"),
        ({"task": "regression"}, "not supported yet"),
        ({"sensitive": ["zip"]}, "sensitive columns ['zip'] are not features"),
        ({"training": {"test_size": 1.5}}, "test_size must be in (0, 1)"),
    ],
)
def test_invalid_configs_are_rejected_with_the_key(changes, message):
    with pytest.raises(ConfigError) as excinfo:
        parse_dataset_config(_raw(**changes), "x.yaml")
    assert message in str(excinfo.value)
    assert "x.yaml" in str(excinfo.value)


def test_missing_keys_and_missing_file_are_named(tmp_path):
    raw = _raw()
    del raw["target"]
    with pytest.raises(ConfigError, match=r"missing required keys \['target'\]"):
        parse_dataset_config(raw)
    settings = Settings.from_env({"DRIFTLOOP_CONFIG_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="no dataset config"):
        load_dataset_config("nope", settings)


def test_bad_overrides_json_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid JSON"):
        Settings.from_env({"DRIFTLOOP_CONFIG_OVERRIDES": "{nope"})
    with pytest.raises(ConfigError, match="JSON object"):
        Settings.from_env({"DRIFTLOOP_CONFIG_OVERRIDES": "[1]"})


def test_reading_config_creates_nothing(tmp_path):
    home = tmp_path / "home"
    settings = Settings.from_env({"DRIFTLOOP_HOME": str(home)})
    cfg = load_dataset_config("telco_churn", settings)
    paths = StatePaths.for_dataset(cfg, settings)
    assert paths.landing_dir == home / "data" / "telco_churn" / "landing" / "batches"
    assert not home.exists()


def test_asset_uris_are_per_dataset_and_kind():
    assert asset_uri("telco_churn", "snapshot") == "driftloop://telco_churn/training-snapshot"
    assert asset_uri("mlc_churn", "batches") == "driftloop://mlc_churn/scoring-batches"
    with pytest.raises(ConfigError, match="unknown asset kind"):
        asset_uri("telco_churn", "models")
