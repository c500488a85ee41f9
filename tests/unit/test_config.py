"""Dataset configs and settings: validation messages, overrides, purity."""

from __future__ import annotations

import copy

import pytest
import yaml

from driftloop.core.config import ConfigError, load_dataset_config, parse_dataset_config
from driftloop.core.settings import PROJECT_DIR, Settings
from driftloop.core.state import StatePaths

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
        ({"task": "ranking"}, "task 'ranking' is not one of ['binary', 'multiclass', 'regression']"),
        ({"task": "binary", "positive_label": ""}, "positive_label is required for a binary task"),
        (
            {"task": "regression", "gates": {"primary_metric": "AUC"}, "training": {"models": ["lr"]}},
            "gates: 'AUC' is not a regression metric",
        ),
        ({"training": {"threshold_objective": "accuracy"}}, "threshold_objective must be f1, cost or fixed"),
        (
            {"task": "regression", "gates": {}},
            "training.sort_metric 'AUC' is not a PyCaret regression metric",
        ),
        ({"sensitive": ["zip"]}, "sensitive columns ['zip'] are not features"),
        ({"training": {"test_size": 1.5}}, "test_size must be in (0, 1)"),
    ],
)
def test_invalid_configs_are_rejected_with_the_key(changes, message):
    with pytest.raises(ConfigError) as excinfo:
        parse_dataset_config(_raw(**changes), "x.yaml")
    assert message in str(excinfo.value)
    assert "x.yaml" in str(excinfo.value)


def test_task_defaults_pick_the_metrics_of_the_task():
    regression = parse_dataset_config(
        _raw(task="regression", gates={"floors": {"RMSE": 900.0}}, training={"models": ["lr"]}), "x.yaml"
    )
    assert regression.task == "regression"
    assert regression.gates.primary_metric == "RMSE" and regression.training.sort_metric == "RMSE"
    multiclass = parse_dataset_config(
        _raw(task="multiclass", gates={"floors": {}}, training={"models": ["lr"]}), "x.yaml"
    )
    assert multiclass.gates.primary_metric == "macro_f1" and multiclass.training.sort_metric == "F1"
    assert parse_dataset_config(_raw(task="classification"), "x.yaml").task == "binary"


def test_missing_keys_and_missing_file_are_named(tmp_path):
    raw = _raw()
    del raw["target"]
    with pytest.raises(ConfigError, match=r"missing required keys \['target'\]"):
        parse_dataset_config(raw)
    settings = Settings.from_env({"DRIFTLOOP_CONFIG_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="no dataset config"):
        load_dataset_config("nope", settings)


def test_bad_overrides_fail_when_a_config_is_loaded_naming_the_variable():
    # Reading the settings (what DAG files do at parse time) must not fail on a bad override...
    broken = Settings.from_env({"DRIFTLOOP_CONFIG_OVERRIDES": "{nope"})
    assert broken.dataset == "telco_churn"
    # ...loading a dataset config (what tasks do) must, with the variable's name.
    with pytest.raises(ConfigError, match="DRIFTLOOP_CONFIG_OVERRIDES is not valid JSON"):
        load_dataset_config("telco_churn", broken)
    with pytest.raises(ConfigError, match="DRIFTLOOP_CONFIG_OVERRIDES must be a JSON object"):
        load_dataset_config("telco_churn", Settings.from_env({"DRIFTLOOP_CONFIG_OVERRIDES": "[1]"}))


def test_numeric_settings_name_the_variable_when_malformed():
    with pytest.raises(ConfigError, match="DRIFTLOOP_TASK_RETRIES='two' is not a whole number"):
        Settings.from_env({"DRIFTLOOP_TASK_RETRIES": "two"})
    settings = Settings.from_env({"DRIFTLOOP_SENSOR_POKE_S": "2.5", "DRIFTLOOP_DATA_SCHEDULE": "none"})
    assert (settings.sensor_poll_s, settings.data_schedule) == (2.5, None)


def test_each_stage_has_its_own_chunk_size_key():
    env = {
        "DRIFTLOOP_CONFIG_OVERRIDES": '{"ingest": {"chunk_rows": 11}, "inference": {"chunk_rows": 22}, '
        '"monitoring": {"chunk_rows": 33}}'
    }
    cfg = load_dataset_config("telco_churn", Settings.from_env(env))
    assert (cfg.ingest.chunk_rows, cfg.inference.chunk_rows, cfg.monitoring.chunk_rows) == (11, 22, 33)
    with pytest.raises(ConfigError, match="ingest.chunk_rows must be at least 1"):
        parse_dataset_config(_raw(ingest={"chunk_rows": 0}), "x.yaml")


def test_reading_config_creates_nothing(tmp_path):
    home = tmp_path / "home"
    settings = Settings.from_env({"DRIFTLOOP_HOME": str(home)})
    cfg = load_dataset_config("telco_churn", settings)
    paths = StatePaths.for_dataset(cfg, settings)
    assert paths.landing_dir == home / "data" / "telco_churn" / "landing" / "batches"
    assert not home.exists()


def test_asset_uris_are_per_dataset_and_kind():
    from driftloop.core.bus import asset_uri

    assert asset_uri("telco_churn", "snapshot") == "driftloop://telco_churn/training-snapshot"
    assert asset_uri("mlc_churn", "batches") == "driftloop://mlc_churn/scoring-batches"
    with pytest.raises(ValueError, match="unknown asset kind"):
        asset_uri("telco_churn", "models")
