"""Dataset configs: one YAML file per dataset, validated into :class:`DatasetConfig`.

Reading a config changes nothing on disk or in MLflow, so DAG files may import this module at parse time (it needs
only the standard library and PyYAML). Process settings are :mod:`driftloop.settings`; the state layout is
:mod:`driftloop.state`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import yaml

from driftloop import bus
from driftloop.errors import ConfigError
from driftloop.settings import Settings


@dataclass(frozen=True)
class SourceConfig:
    """Where the raw dataset comes from (used by the simulator and contract bootstrap)."""

    loader: str
    package: str = ""
    item: str = ""
    path: str = ""
    drop_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingConfig:
    """PyCaret options and the holdout split."""

    models: tuple[str, ...] = ("lr", "lightgbm", "rf")
    folds: int = 5
    tune_iter: int = 10
    sort_metric: str = "AUC"
    test_size: float = 0.2
    seed: int = 42
    reference_rows: int = 5000
    # New labelled data retrains on its own only when the snapshot grew by this share since the last training;
    # otherwise retraining waits for the drift sensor or an operator.
    retrain_min_growth: float = 0.5


@dataclass(frozen=True)
class GateConfig:
    """Promotion gate: absolute floors for a first champion, margin over the champion afterwards.

    ``policy`` says what a passing gate does: ``auto`` moves ``champion``; ``manual`` only marks the version ready,
    and a person moves ``champion`` in the MLflow UI.
    """

    primary_metric: str = "AUC"
    floors: dict[str, float] = field(default_factory=lambda: {"AUC": 0.7})
    min_improvement: float = 0.0
    policy: str = "auto"
    max_latency_ms_per_row: float | None = None  # measured on a 1,000-row batch of the holdout
    max_model_size_mb: float | None = None  # the logged model's artifacts
    production_window_min_rows: int = 100  # labelled production rows needed to compare there too
    behaviour: str = ""  # behavioural test file, relative to the dataset config; empty: none


@dataclass(frozen=True)
class FairnessConfig:
    """Fairness per sensitive attribute: bins for numeric ones and the gate's limits (None: report only)."""

    bins: dict[str, list[float]] = field(default_factory=dict)
    max_demographic_parity_difference: float | None = None
    max_equalized_odds_difference: float | None = None


@dataclass(frozen=True)
class MonitoringConfig:
    """Drift and live-performance thresholds used by monitoring and the drift sensor."""

    drift_share_threshold: float = 0.3
    f1_drop_threshold: float = 0.10
    cooldown_s: int = 3600
    min_rows: int = 30
    chunk_rows: int = 100_000  # batch rows read at a time when sampling the current data


@dataclass(frozen=True)
class IngestConfig:
    """Landing-zone validation options."""

    chunk_rows: int = 200_000  # rows validated at a time; memory is bounded by this, not by the file


@dataclass(frozen=True)
class InferenceConfig:
    """Batch scoring options."""

    threshold: float = 0.5
    chunk_rows: int = 100_000
    reasons: int = 3  # top-k SHAP reasons stored with each prediction; 0 stores none
    explain_ms_per_row: float = 0.2  # budget of the exact tree explainer before its path approximation is used


@dataclass(frozen=True)
class ServingConfig:
    """Online serving defaults (routing, export of served traffic) and the A/B evaluation (``docs/serving.md``).

    Routing can be changed at run time through the service's admin endpoint; these are its start values.
    """

    challenger_share: float = 0.0  # share of entities the challenger answers (A/B); 0 = champion only
    shadow: bool = False  # the other model also scores every row after the response; never returned
    salt: str = "driftloop"  # sticky assignment hashes (salt, challenger version, entity id)
    window_s: int = 3600  # served traffic is exported to monitoring one window at a time
    export_grace_s: int = 300  # a window is exported this long after it closed (late log writes)
    alpha: float = 0.05  # overall false-positive rate of the A/B decision
    power: float = 0.8
    min_detectable_effect: float = 0.05  # absolute accuracy difference the fixed horizon is sized for


@dataclass(frozen=True)
class DatasetConfig:
    """Everything Driftloop needs to know about one tabular dataset.

    A new dataset is a new YAML file in the config folder; no code changes.
    """

    name: str
    source: SourceConfig
    id_column: str
    target: str
    positive_label: str
    task: str
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    sensitive_features: tuple[str, ...] = ()
    description: str = ""
    model_name: str = ""
    contract: dict[str, Any] = field(default_factory=dict)
    training: TrainingConfig = TrainingConfig()
    gates: GateConfig = GateConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    inference: InferenceConfig = InferenceConfig()
    ingest: IngestConfig = IngestConfig()
    fairness: FairnessConfig = FairnessConfig()
    serving: ServingConfig = ServingConfig()
    config_path: str = ""

    @property
    def features(self) -> list[str]:
        """All model input columns, numeric first."""
        return [*self.numeric_features, *self.categorical_features]

    @property
    def registered_model_name(self) -> str:
        """Name of the model in the MLflow registry."""
        return self.model_name or self.name.replace("_", "-")

    def experiment_name(self, stage: str) -> str:
        """MLflow experiment for a lifecycle stage (``data``, ``training``, ``inference``, ``monitoring``)."""
        return bus.experiment_name(self.name, stage)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _build(cls: type, raw: dict[str, Any] | None, where: str) -> Any:
    raw = raw or {}
    known = set(cls.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return cls(**values)


def _check_values(cfg: DatasetConfig, where: str) -> None:
    """Cross-field checks of a built config.

    Raises:
        ConfigError: A value is out of range; the message names the file and the key.
    """
    if not 0 < cfg.training.test_size < 1:
        raise ConfigError(f"{where}: training.test_size must be in (0, 1), got {cfg.training.test_size}")
    if not cfg.training.models:
        raise ConfigError(f"{where}: training.models is empty")
    if cfg.gates.policy not in ("auto", "manual"):
        raise ConfigError(f"{where}: gates.policy must be 'auto' or 'manual', got {cfg.gates.policy!r}")
    for section in ("inference", "monitoring", "ingest"):
        if getattr(cfg, section).chunk_rows < 1:
            raise ConfigError(f"{where}: {section}.chunk_rows must be at least 1")
    unknown_bins = set(cfg.fairness.bins) - set(cfg.sensitive_features)
    if unknown_bins:
        raise ConfigError(f"{where}: fairness.bins names {sorted(unknown_bins)}, which are not sensitive attributes")


def _check_serving(serving: ServingConfig, where: str) -> None:
    """Ranges of the ``serving`` section.

    Raises:
        ConfigError: A value is out of range; the message names the file and the key.
    """
    for key in ("alpha", "power", "min_detectable_effect"):
        if not 0 < getattr(serving, key) < 1:
            raise ConfigError(f"{where}: serving.{key} must be in (0, 1), got {getattr(serving, key)}")
    if not 0 <= serving.challenger_share <= 1:
        raise ConfigError(f"{where}: serving.challenger_share must be in [0, 1], got {serving.challenger_share}")
    if serving.window_s < 60 or serving.export_grace_s < 0:
        raise ConfigError(f"{where}: serving.window_s must be at least 60 and serving.export_grace_s at least 0")


def parse_dataset_config(raw: dict[str, Any], config_path: str = "") -> DatasetConfig:
    """Validate a raw config mapping and build a :class:`DatasetConfig`.

    Args:
        raw: Parsed YAML mapping.
        config_path: Where it was read from, for error messages.

    Returns:
        The dataset config.

    Raises:
        ConfigError: A required key is missing, a key is unknown or a value is inconsistent.
    """
    where = config_path or "dataset config"
    required = ["name", "source", "target", "positive_label", "task", "features"]
    missing = [key for key in required if key not in raw]
    if missing:
        raise ConfigError(f"{where}: missing required keys {missing}")
    features = raw["features"] or {}
    numeric = tuple(features.get("numeric", []))
    categorical = tuple(features.get("categorical", []))
    if not numeric and not categorical:
        raise ConfigError(f"{where}: features.numeric and features.categorical are both empty")
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise ConfigError(f"{where}: columns listed as both numeric and categorical: {sorted(overlap)}")
    if raw["task"] != "classification":
        raise ConfigError(f"{where}: task {raw['task']!r} is not supported yet (supported: classification)")
    id_column = raw.get("id_column", "row_id")
    for col in (raw["target"], id_column):
        if col in numeric or col in categorical:
            raise ConfigError(f"{where}: {col!r} is the id or target and cannot also be a feature")
    sensitive = tuple(raw.get("sensitive", []))
    unknown_sensitive = set(sensitive) - set(numeric) - set(categorical)
    if unknown_sensitive:
        raise ConfigError(f"{where}: sensitive columns {sorted(unknown_sensitive)} are not features")
    cfg = DatasetConfig(
        name=raw["name"],
        description=raw.get("description", ""),
        source=_build(SourceConfig, raw["source"], f"{where}: source"),
        id_column=id_column,
        target=raw["target"],
        positive_label=str(raw["positive_label"]),
        task=raw["task"],
        numeric_features=numeric,
        categorical_features=categorical,
        sensitive_features=sensitive,
        model_name=raw.get("model_name", ""),
        contract=raw.get("contract", {}) or {},
        training=_build(TrainingConfig, raw.get("training"), f"{where}: training"),
        gates=_build(GateConfig, raw.get("gates"), f"{where}: gates"),
        monitoring=_build(MonitoringConfig, raw.get("monitoring"), f"{where}: monitoring"),
        inference=_build(InferenceConfig, raw.get("inference"), f"{where}: inference"),
        ingest=_build(IngestConfig, raw.get("ingest"), f"{where}: ingest"),
        fairness=_build(FairnessConfig, raw.get("fairness"), f"{where}: fairness"),
        serving=_build(ServingConfig, raw.get("serving"), f"{where}: serving"),
        config_path=config_path,
    )
    _check_values(cfg, where)
    _check_serving(cfg.serving, where)
    return cfg


def load_dataset_config(name: str | None = None, settings: Settings | None = None) -> DatasetConfig:
    """Read ``<config_dir>/<name>.yaml``, apply ``DRIFTLOOP_CONFIG_OVERRIDES`` and validate it.

    Args:
        name: Dataset config name; defaults to ``settings.dataset``.
        settings: Process settings; defaults to :meth:`Settings.from_env`.

    Returns:
        The validated dataset config.

    Raises:
        ConfigError: The file does not exist or is invalid.
    """
    settings = settings or Settings.from_env()
    name = name or settings.dataset
    path = settings.config_dir / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in settings.config_dir.glob("*.yaml"))
        raise ConfigError(f"no dataset config {path} (available: {available})")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return parse_dataset_config(_deep_merge(raw, settings.overrides), str(path))
