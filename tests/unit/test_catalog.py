"""The dataset catalog: which configs a deployment serves, and why a config is refused."""

from __future__ import annotations

from driftloop.core.catalog import list_config_paths, read_catalog
from driftloop.core.settings import Settings
from tests.config_copies import SHIPPED_DIR, copy_config


def settings_for(config_dir, tmp_path, **env) -> Settings:
    return Settings.from_env(
        {"DRIFTLOOP_CONFIG_DIR": str(config_dir), "DRIFTLOOP_HOME": str(tmp_path / "home"), **env}
    )


def test_shipped_configs_are_all_usable_and_companions_are_not_configs():
    catalog = read_catalog(Settings.from_env({}))
    assert catalog.describe_problems() == ""
    assert {"telco_churn", "mlc_churn"} <= set(catalog.datasets)
    assert not any(
        "." in name for name in catalog.datasets
    )  # telco_churn.contract, .behaviour are companions
    assert [p.stem for p in list_config_paths(SHIPPED_DIR)] == catalog.datasets


def test_datasets_setting_is_a_clean_list_of_names():
    assert Settings.from_env({"DRIFTLOOP_DATASETS": " b, a,,b , "}).datasets == ("b", "a")
    assert Settings.from_env({}).datasets == ()


def test_a_broken_config_is_refused_alone_naming_its_file_and_key(tmp_path):
    copy_config(tmp_path / "configs", "telco_churn", "good")
    bad = copy_config(tmp_path / "configs", "telco_churn", "bad", training={"models": ["lr"], "foldz": 3})
    catalog = read_catalog(settings_for(tmp_path / "configs", tmp_path))
    assert catalog.datasets == ["good"]
    [refused] = catalog.refused
    assert refused.name == "bad" and str(bad) in refused.error
    assert "training" in refused.error and "foldz" in refused.error


def test_unreadable_yaml_and_a_top_level_list_are_refused_with_the_file_name(tmp_path):
    configs = tmp_path / "configs"
    copy_config(configs, "telco_churn", "good")
    (configs / "broken.yaml").write_text("name: broken\nfeatures: [unclosed\n")
    (configs / "listed.yaml").write_text("- name: listed\n")
    catalog = read_catalog(settings_for(configs, tmp_path))
    assert catalog.datasets == ["good"]
    errors = {entry.name: entry.error for entry in catalog.refused}
    assert "broken.yaml: is not valid YAML" in errors["broken"]
    assert "listed.yaml: top level must be a mapping" in errors["listed"]


def test_a_name_that_differs_from_the_file_name_is_refused(tmp_path):
    path = copy_config(tmp_path / "configs", "mlc_churn", "churn_b", file_stem="churn_a")
    catalog = read_catalog(settings_for(tmp_path / "configs", tmp_path))
    [refused] = catalog.refused
    assert catalog.datasets == []
    assert f"{path}: name: 'churn_b' differs from the file name 'churn_a'" in refused.error


def test_a_file_name_that_cannot_be_a_dag_id_is_refused(tmp_path):
    copy_config(tmp_path / "configs", "mlc_churn", "my churn")
    [refused] = read_catalog(settings_for(tmp_path / "configs", tmp_path)).refused
    assert "is not a dataset name" in refused.error


def test_two_configs_registering_one_model_are_both_refused_naming_both_files(tmp_path):
    configs = tmp_path / "configs"
    first = copy_config(configs, "telco_churn", "churn_one", model_name="Shared-Churn")
    second = copy_config(configs, "mlc_churn", "churn_two", model_name="shared-churn")  # case-insensitive
    copy_config(configs, "mlc_churn", "other")
    catalog = read_catalog(settings_for(configs, tmp_path))
    assert catalog.datasets == ["other"]
    assert {entry.name for entry in catalog.refused} == {"churn_one", "churn_two"}
    for entry in catalog.refused:
        assert "model_name" in entry.error and str(first) in entry.error and str(second) in entry.error


def test_a_copy_keeping_the_original_name_refuses_both_for_the_shared_state_folder(tmp_path):
    configs = tmp_path / "configs"
    original = copy_config(configs, "telco_churn", "telco_churn")
    copy = copy_config(configs, "telco_churn", "telco_churn", file_stem="telco_copy", model_name="copy-model")
    catalog = read_catalog(settings_for(configs, tmp_path))
    assert catalog.datasets == []
    errors = {entry.name: entry.error for entry in catalog.refused}
    state_dir = tmp_path / "home" / "data" / "telco_churn"
    for error in errors.values():
        assert f"name: {original}, {copy}" in error or f"name: {copy}, {original}" in error
        assert str(state_dir) in error
    assert "differs from the file name" in errors["telco_copy"]


def test_a_companion_named_like_a_config_is_not_a_config(tmp_path):
    configs = tmp_path / "configs"
    contract = (SHIPPED_DIR / "telco_churn.contract.yaml").read_text()
    (configs / "churn_rules.yaml").parent.mkdir(parents=True)
    (configs / "churn_rules.yaml").write_text(contract)
    copy_config(configs, "telco_churn", "telco_churn", contract={"path": "churn_rules.yaml"})
    catalog = read_catalog(settings_for(configs, tmp_path))
    assert catalog.datasets == ["telco_churn"] and catalog.refused == []


def test_datasets_restricts_the_catalog_and_an_unknown_name_is_reported(tmp_path):
    configs = tmp_path / "configs"
    for name in ("alpha", "beta", "gamma"):
        copy_config(configs, "mlc_churn", name)
    catalog = read_catalog(settings_for(configs, tmp_path, DRIFTLOOP_DATASETS="gamma,alpha"))
    assert catalog.datasets == ["alpha", "gamma"] and catalog.problems == ()
    catalog = read_catalog(settings_for(configs, tmp_path, DRIFTLOOP_DATASETS="alpha,delta"))
    assert catalog.datasets == ["alpha"]
    [problem] = catalog.problems
    assert problem.startswith("DRIFTLOOP_DATASETS: no config for ['delta']") and "beta" in problem


def test_overrides_are_not_applied_when_the_catalog_is_read(tmp_path):
    copy_config(tmp_path / "configs", "mlc_churn", "alpha")
    catalog = read_catalog(
        settings_for(tmp_path / "configs", tmp_path, DRIFTLOOP_CONFIG_OVERRIDES="{not json")
    )
    assert catalog.datasets == ["alpha"]
