"""The bus: every name the stages use to find each other's results, defined once.

The DAGs never pull each other's XCom. They meet in MLflow (experiments, run tags, metrics, artifacts, the
model registry and its aliases), in manifests under ``DRIFTLOOP_HOME`` and in Airflow assets. Every experiment
name, tag key, metric key, artifact path, manifest field, run-id format and asset URI lives here; writers,
readers, DAG files and test fakes import it, so renaming one is one edit and a fake cannot drift from the real
writer. The bus reference in ``docs/architecture.md`` is generated from this module (constants grouped by the
section comments, notes from end-of-line comments) by ``python -m driftloop_ops.doc_tables``; a test fails on
a metric or tag key written as a literal elsewhere. Standard library only: DAG files may import it at parse
time.
"""

from __future__ import annotations

import re
from typing import TypedDict

PREFIX = "driftloop."

# ------------------------------------------------------------------------------------------------------------
# Experiments and registry
STAGES = ("data", "training", "inference", "monitoring", "serving")
CHAMPION = "champion"
CHALLENGER = "challenger"


def experiment_name(dataset: str, stage: str) -> str:
    """MLflow experiment of a lifecycle stage of ``dataset``: ``driftloop/<dataset>/<stage>``.

    Raises:
        ValueError: ``stage`` is not one of :data:`STAGES`.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (known: {list(STAGES)})")
    return f"driftloop/{dataset}/{stage}"


def model_version_uri(model_name: str, version: str | int) -> str:
    """``models:/<name>/<version>``: a model pinned to one registered version."""
    return f"models:/{model_name}/{version}"


def model_alias_uri(model_name: str, alias: str) -> str:
    """``models:/<name>@<alias>``: whatever version the alias points at when it is resolved."""
    return f"models:/{model_name}@{alias}"


# ------------------------------------------------------------------------------------------------------------
# Run tags. Key tags identify a unit of work: a rerun with the same key lands in the same run.
SNAPSHOT_HASH_TAG = PREFIX + "snapshot_hash"  # key of data runs; lineage of training runs
TRIGGER_ID_TAG = PREFIX + "trigger_id"  # key of training runs (with the training key): one run per trigger
# What a training reads: snapshot hash, effective config and code version, hashed. One version per key.
TRAINING_KEY_TAG = PREFIX + "training_key"
DUPLICATE_OF_TAG = PREFIX + "duplicate_of"  # on a training run whose key already had a version: that version
ASKED_BY_TAG_PREFIX = PREFIX + "asked_by."  # + a hash of the trigger id, on a version: a trigger that asked
BATCH_ID_TAG = PREFIX + "batch_id"  # key of inference runs; also on monitoring runs
INFERENCE_RUN_ID_TAG = PREFIX + "inference_run_id"  # key of monitoring runs

# Lineage of a training run, copied onto its model version.
SNAPSHOT_URI_TAG = PREFIX + "snapshot_uri"
TRIGGER_REASON_TAG = PREFIX + "trigger_reason"
AIRFLOW_DAG_ID_TAG = PREFIX + "airflow_dag_id"
AIRFLOW_RUN_ID_TAG = PREFIX + "airflow_run_id"
MONITORING_RUN_ID_TAG = PREFIX + "monitoring_run_id"
GIT_COMMIT_TAG = PREFIX + "git_commit"
BEST_MODEL_TAG = PREFIX + "best_model"
EXPLAIN_TOP_FEATURES_TAG = PREFIX + "explain_top_features"
EXPLAIN_ERROR_TAG = PREFIX + "explain_error"

# Data runs.
DATASET_TAG = PREFIX + "dataset"
BATCH_COUNT_TAG = PREFIX + "batch_count"
PROFILE_SAMPLED_TAG = PREFIX + "profile_sampled"
PROFILE_HTML_TAG = PREFIX + "profile_html"  # logged | off | timed_out

# Inference runs.
BATCH_URI_TAG = PREFIX + "batch_uri"
PREDICTIONS_URI_TAG = PREFIX + "predictions_uri"
MODEL_NAME_TAG = PREFIX + "model_name"
MODEL_VERSION_TAG = PREFIX + "model_version"
MODEL_RUN_ID_TAG = PREFIX + "model_run_id"

# Monitoring runs.
CHAMPION_VERSION_TAG = PREFIX + "champion_version"  # the version that scored the batch
REFERENCE_RUN_ID_TAG = PREFIX + "reference_run_id"
CURRENT_SAMPLE_TAG = PREFIX + "current_sample"
LABELS_FINGERPRINT_TAG = PREFIX + "labels_fingerprint"
DRIFTED_COLUMN_NAMES_TAG = PREFIX + "drifted_column_names"
DRIFT_METHODS_TAG = PREFIX + "drift_methods"
DRIFT_ROOT_CAUSE_TAG = PREFIX + "drift_root_cause"  # drifted features by the champion's importance
ATTRIBUTION_TOP_TAG = PREFIX + "attribution_top_features"  # the champion's top SHAP features on this batch

# Written on a monitoring run by the drift sensor's bookkeeping, never by monitoring itself.
SENSOR_FIRED_AT_TAG = PREFIX + "sensor_fired_at"  # epoch seconds
SENSOR_TRIGGER_RUN_ID_TAG = PREFIX + "sensor_trigger_run_id"
SENSOR_SUPPRESSED_TAG = PREFIX + "sensor_suppressed"  # "cooldown" | "covered_by:<monitoring run id>"
SUPPRESSED_COOLDOWN = "cooldown"
SUPPRESSED_COVERED_BY = "covered_by:"

# The promotion gate's verdict, on the model version.
GATE_TAG = PREFIX + "gate"  # passed | rejected
GATE_REASON_TAG = PREFIX + "gate_reason"
GATE_CANDIDATE_METRIC_TAG = PREFIX + "gate_candidate_metric"
GATE_CHAMPION_METRIC_TAG = PREFIX + "gate_champion_metric"
GATE_CHAMPION_VERSION_TAG = PREFIX + "gate_champion_version"
GATE_PASSED = "passed"
GATE_REJECTED = "rejected"
GATE_FAILED_CHECKS_TAG = PREFIX + "gate_failed_checks"  # comma-separated check names
# The paired comparison behind beats_champion (driftloop.governance.comparison), on the version.
GATE_RULE_TAG = PREFIX + "gate_rule"  # superiority | non_inferiority
GATE_EVIDENCE_KEY_TAG = PREFIX + "gate_evidence_key"  # the evidence state of the version's latest verdict
GATE_METHOD_TAG = PREFIX + "gate_method"  # delong | delong_ovr | paired_bootstrap
GATE_DIFFERENCE_TAG = PREFIX + "gate_difference"  # challenger minus champion, in the metric's units
GATE_CI_LOW_TAG = PREFIX + "gate_ci_low"
GATE_CI_HIGH_TAG = PREFIX + "gate_ci_high"
GATE_ROWS_TAG = PREFIX + "gate_rows"
GATE_NEEDED_ROWS_TAG = PREFIX + "gate_needed_rows"  # rows the rule needs for 80% power ("" when undefined)
GATE_PRODUCTION_COMPARISON_TAG = PREFIX + "gate_production_comparison"  # JSON: the same, production window
# A person's decision on a version waiting for approval (driftloop.governance.approval), on the version.
APPROVAL_DECISION_TAG = PREFIX + "approval"  # approved | rejected | stale (approved after champion moved)
APPROVAL_BY_TAG = PREFIX + "approval_by"  # airflow:<username>
APPROVAL_AT_TAG = PREFIX + "approval_at"  # ISO time of the response
APPROVAL_COMMENT_TAG = PREFIX + "approval_comment"
APPROVAL_REQUEST_TAG = PREFIX + "approval_request"  # <dag_id>/<run_id> of the request decided
APPROVED = "approved"
REJECTED = "rejected"
APPROVAL_STALE = "stale"
# Binary decisions: predicted-positive rates out of fold (training) and on the holdout, side by side.
OOF_POSITIVE_RATE_TAG = PREFIX + "oof_positive_rate"
HOLDOUT_POSITIVE_RATE_TAG = PREFIX + "holdout_positive_rate"
THRESHOLD_FALLBACK_TAG = (
    PREFIX + "threshold_fallback"
)  # why the chosen threshold was replaced ("" if it was not)
# How a version decides (on the version and its training run): the task, the class vocabulary, the threshold.
TASK_TAG = PREFIX + "task"
CLASSES_TAG = PREFIX + "classes"  # JSON list; binary: [negative, positive]
THRESHOLD_TAG = PREFIX + "threshold"
THRESHOLD_OBJECTIVE_TAG = PREFIX + "threshold_objective"
SELECTION_TAG = PREFIX + "model_selection"  # "all N training rows" or "sampled n of N; finalized on all N"
LIVE_DROP_METRIC_TAG = PREFIX + "live_drop_metric"  # on monitoring runs: which live metric LIVE_DROP is about
# Under the manual policy a passing version is marked ready; a person moves champion.
READY_FOR_CHAMPION_TAG = PREFIX + "ready_for_champion"
PROMOTION_INTENT_TAG = PREFIX + "promotion_intent"  # JSON of a champion move under way (move_champion)
RETRAIN_WAITING_TAG = PREFIX + "retrain_waiting"  # monitoring run: its retrain waits for labels
CALIBRATION_METHOD_TAG = PREFIX + "calibration_method"  # training run: isotonic | platt (the map's curves)
ESTIMATION_METHOD_TAG = PREFIX + "estimation_method"  # monitoring run: cbpe | dle (estimated performance)

# Training-run tags copied onto the model version (lineage from the registry without opening the run).
# fmt: off
VERSION_LINEAGE_TAGS = (
    SNAPSHOT_HASH_TAG, SNAPSHOT_URI_TAG, TRIGGER_REASON_TAG, TRIGGER_ID_TAG, TRAINING_KEY_TAG,
    AIRFLOW_DAG_ID_TAG, AIRFLOW_RUN_ID_TAG, MONITORING_RUN_ID_TAG, GIT_COMMIT_TAG, BEST_MODEL_TAG, TASK_TAG,
    CLASSES_TAG, THRESHOLD_TAG, THRESHOLD_OBJECTIVE_TAG, THRESHOLD_FALLBACK_TAG,
)
# fmt: on

# ------------------------------------------------------------------------------------------------------------
# Metrics
# Holdout metrics of every task (driftloop.core.task_types.METRICS says which task logs which).
# fmt: off
HOLDOUT_METRICS = (
    "holdout_auc", "holdout_f1", "holdout_precision", "holdout_recall", "holdout_accuracy",
    "holdout_macro_f1", "holdout_auc_ovr", "holdout_rmse", "holdout_mae", "holdout_r2", "holdout_mape",
)
# Gate metric names as a dataset config spells them (PyCaret style) → holdout metric keys.
GATE_METRIC_KEYS = {
    "macro_f1": "holdout_macro_f1", "f1_macro": "holdout_macro_f1", "auc_ovr": "holdout_auc_ovr",
    "rmse": "holdout_rmse", "mae": "holdout_mae", "r2": "holdout_r2", "mape": "holdout_mape",
    "auc": "holdout_auc", "f1": "holdout_f1", "prec.": "holdout_precision", "precision": "holdout_precision",
    "recall": "holdout_recall", "accuracy": "holdout_accuracy",
}
# fmt: on
HOLDOUT_F1 = "holdout_f1"
HOLDOUT_ACCURACY = "holdout_accuracy"

# Training runs: seconds per phase, then their sum.
SETUP_SECONDS = "setup_seconds"
COMPARE_SECONDS = "compare_seconds"
TUNE_SECONDS = "tune_seconds"
FINALIZE_SECONDS = "finalize_seconds"
THRESHOLD_SECONDS = "threshold_seconds"
LOGGING_SECONDS = "logging_seconds"
# fmt: off
TRAIN_PHASE_METRICS = (
    SETUP_SECONDS, COMPARE_SECONDS, TUNE_SECONDS, FINALIZE_SECONDS, THRESHOLD_SECONDS, LOGGING_SECONDS,
)
# fmt: on
TRAIN_SECONDS = "train_seconds"
SELECTION_ROWS = "selection_rows"  # training rows model selection ran on (all of them unless sampled)
TUNE_ROWS = "tune_rows"  # selection rows tuning ran on (all of them unless sampled; 0: no tuning)
THRESHOLD_OBJECTIVE_VALUE = "threshold_objective_value"  # out-of-fold F1 or cost per row at the threshold
THRESHOLD_METRIC = "decision_threshold"  # binary: the threshold chosen on cross-validation folds
TRAIN_ROWS = "train_rows"
HOLDOUT_ROWS = "holdout_rows"
SURROGATE_FIDELITY = "surrogate_fidelity"  # agreement of the shallow surrogate tree with the model (evidence)
# Calibration of classification versions (driftloop.training.calibration): expected calibration error of the
# raw and the calibrated scores, out of fold (calibrator cross-fitted) and on the holdout (map of all folds).
CALIBRATION_ECE_BEFORE = "calibration_ece_oof_before"
CALIBRATION_ECE_AFTER = "calibration_ece_oof_after"
HOLDOUT_ECE_BEFORE = "calibration_ece_holdout_before"
HOLDOUT_ECE_AFTER = "calibration_ece_holdout_after"
CALIBRATION_OOF_ROWS = "calibration_oof_rows"  # out-of-fold rows the map was fitted on


def calibration_brier_metric(method: str) -> str:
    """Cross-fitted out-of-fold Brier score of one calibration method: ``calibration_brier.<method>``."""
    return f"calibration_brier.{metric_safe(method)}"


# Data and inference runs.
ROWS = "rows"
POSITIVE_RATE = "positive_rate"
PREDICTION_MEAN = "prediction_mean"  # regression inference runs: the mean predicted value
TARGET_MEAN = "target_mean"  # regression snapshots: the mean target value
ROWS_PER_S = "rows_per_s"
SOURCE_ROWS_RECEIVED = "source_rows_received"
SOURCE_ROWS_QUARANTINED = "source_rows_quarantined"
UNLABELLED_ROWS_EXCLUDED = "unlabelled_rows_excluded"  # accepted rows without a label, left out of a snapshot

# Monitoring runs: drift.
DRIFT_SHARE = "drift_share"
DRIFTED_COLUMNS = "drifted_columns"
PREDICTION_DRIFT_SCORE = "prediction_drift_score"
PREDICTION_DRIFTED = "prediction_drifted"
ROWS_COMPARED = "rows_compared"
REFERENCE_ROWS = "reference_rows"

# Monitoring runs: live metrics (live_<holdout metric>) of labelled rows, by task.
LIVE_F1 = "live_f1"
LIVE_AUC = "live_auc"
LIVE_MACRO_F1 = "live_macro_f1"
LIVE_ACCURACY = "live_accuracy"
LIVE_RMSE = "live_rmse"
LIVE_MAE = "live_mae"
LIVE_DROP = "live_drop"  # relative drop of the task's primary live metric from the champion's holdout value
# The same drop of the primary metric estimated before labels (CBPE / DLE), and the least drop its band allows
# (its optimistic end): what `monitoring.retrain_on: [estimated_performance]` compares with the threshold.
ESTIMATED_DROP = "estimated_drop"
ESTIMATED_DROP_BEST_CASE = "estimated_drop_best_case"
ESTIMATED_ROWS = "estimated_rows"  # rows the estimate is of (the drift sample)
LABELLED_ROWS = "labelled_rows"
DRIFT_IMPORTANCE_SHARE = "drift_importance_share"  # share of the champion's importance on drifted features
ATTRIBUTION_NDCG = "attribution_ndcg"  # 1.0: the same features drive predictions as on the reference
OOF_POSITIVE_RATE = "decision_oof_positive_rate"  # binary: predicted-positive share of out-of-fold rows
HOLDOUT_POSITIVE_RATE = "decision_holdout_positive_rate"  # binary: the same on the holdout, final threshold


def estimated_metric(name: str, bound: str = "") -> str:
    """Estimated performance of a monitoring run (before labels): ``estimated_<name>``, and its confidence
    band's ``estimated_<name>_lower`` / ``_upper`` (``bound``: ``lower`` or ``upper``)."""
    if bound not in ("", "lower", "upper"):
        raise ValueError(f"unknown bound {bound!r} (known: lower, upper)")
    return f"estimated_{name}" + (f"_{bound}" if bound else "")


def live_metric(name: str) -> str:
    """A live metric of a monitoring run: ``live_<name>`` (``f1``, ``auc``, ``macro_f1``, ``rmse``, ...)."""
    return f"live_{name}"


def proba_column(label: object) -> str:
    """The predictions column holding the probability of one class (multiclass): ``proba_<label>``."""
    return f"proba_{metric_safe(label)}"


def metric_safe(name: object) -> str:
    """``name`` with every character MLflow refuses in a metric key replaced by ``_``."""
    return re.sub(r"[^0-9A-Za-z_\-. /]", "_", str(name)) or "empty"


def drift_score_metric(column: str) -> str:
    """Per-column drift score metric of a monitoring run: ``drift_score.<column>``."""
    return f"drift_score.{metric_safe(column)}"


def class_share_metric(label: object) -> str:
    """Share of one class: among a snapshot's labels, or an inference run's predictions:
    ``class_share.<label>``."""
    return f"class_share.{metric_safe(label)}"


def fairness_metric(attribute: str, name: str) -> str:
    """Fairness metric of one sensitive attribute: ``fairness.<attribute>.<name>``."""
    return f"fairness.{metric_safe(attribute)}.{metric_safe(name)}"


def holdout_version_tag(metric: str) -> str:
    """Model-version tag that carries a holdout metric, e.g. ``driftloop.holdout_auc``."""
    return PREFIX + metric


# ------------------------------------------------------------------------------------------------------------
# Artifacts (paths inside a run's artifact root)
LEADERBOARD_ARTIFACT = "leaderboard.csv"
HOLDOUT_ARTIFACT = "holdout/holdout.parquet"
REFERENCE_ARTIFACT = "reference/reference.parquet"  # drift reference: holdout features + out-of-sample score
MODEL_ARTIFACT = "model"
EXPLAIN_DIR = "explain"
SHAP_PLOT_FILENAME = "shap_summary.png"
SHAP_CSV_FILENAME = "shap_importance.csv"
DRIFT_REPORT_ARTIFACT = "drift_report.html"
DRIFT_SUMMARY_ARTIFACT = "drift_summary.json"
PROFILE_DIR = "profile"
LINEAGE_BATCHES_ARTIFACT = "lineage/batches.json"
LINEAGE_SNAPSHOT_ARTIFACT = "lineage/snapshot_manifest.json"
# Governance evidence of a version, on its training run.
EVIDENCE_DIR = "evidence"
EVIDENCE_ARTIFACT = "evidence/evidence.json"  # SHAP importance, permutation importance, surrogate, fairness
PFI_FILENAME = "permutation_importance.csv"
FAIRNESS_PLOT_FILENAME = "fairness.png"
GATE_REPORT_ARTIFACT = "gate/gate_report.json"  # the latest verdict
GATE_DECISIONS_DIR = "gate/decisions"  # one report per evidence state the version was judged in
MODEL_CARD_MD_ARTIFACT = "model_card/model_card.md"
MODEL_CARD_JSON_ARTIFACT = "model_card/model_card.json"
CALIBRATION_MAP_ARTIFACT = "calibration/calibration_map.json"  # classification versions, on the training run
LOSS_MODEL_ARTIFACT = "calibration/loss_model.json"  # regression versions: DLE loss model (JSON trees)
LOSS_CURVE_ARTIFACT = "calibration/loss_curve.json"  # regression versions before it (no longer read)

# ------------------------------------------------------------------------------------------------------------
# Predictions partitions (``predictions/<batch_id>.parquet``): the entity id column, then these.
SCORE_COLUMN = "score"
PREDICTION_COLUMN = "prediction"
PREDICTION_LINEAGE_COLUMNS = ("model_name", "model_version", "model_run_id")
SCORED_AT_COLUMN = "scored_at"
PREDICTION_COLUMNS = (SCORE_COLUMN, PREDICTION_COLUMN, *PREDICTION_LINEAGE_COLUMNS, SCORED_AT_COLUMN)
REASON_PARTS = ("feature", "value", "contribution")
EXPLAIN_METHOD_TAG = PREFIX + "explain_method"  # on inference runs: how the reasons were computed


def reason_column(rank: int, part: str) -> str:
    """Column of the ``rank``-th strongest reason of a prediction:
    ``reason_<rank>_<feature|value|contribution>``."""
    if part not in REASON_PARTS:
        raise ValueError(f"unknown reason part {part!r} (known: {list(REASON_PARTS)})")
    return f"reason_{rank}_{part}"


# ------------------------------------------------------------------------------------------------------------
# Manifests under DRIFTLOOP_HOME: written last, so a manifest marks its partition as complete.


class BatchManifest(TypedDict, total=False):
    """``batches/<batch_id>.json`` (feature batches) and ``labels/<batch_id>.json`` (label files)."""

    batch_id: str
    kind: str  # batch | labels
    source_file: str
    sha256: str  # of the original file's bytes (replay detection)
    rows_received: int
    rows_accepted: int
    rows_quarantined: int
    reason_counts: dict[str, int]
    quarantine_uri: str | None
    ingested_at: str
    contract: str
    original_archived: bool
    original_removed_reason: str
    has_target: bool  # feature batches only
    batch_uri: str | None  # feature batches only
    label_batch_id: str  # label files only
    labels_uri: str | None  # label files only


class SnapshotManifest(TypedDict):
    """``snapshots/<snapshot_hash>.json``."""

    snapshot_hash: str  # driftloop.data.snapshots.canonical_hash of the rows
    snapshot_uri: str
    rows: int
    batch_ids: list[str]
    label_batch_ids: list[str]
    columns: list[str]
    target: str
    id_column: str
    created_at: str
    unlabelled_rows_excluded: int  # accepted rows left out because their label is null


# ------------------------------------------------------------------------------------------------------------
# Run ids, run names and assets
ASSET_KINDS = {
    "snapshot": "training-snapshot",
    "batches": "scoring-batches",
    "predictions": "predictions",
    "landing": "landed-files",  # `landing`: new files, watched in the triggerer (DATA_SCHEDULE on_arrival)
}
DRIFT_RUN_ID_PREFIX = "drift__"


def drift_trigger_run_id(monitoring_run_id: str) -> str:
    """Airflow run id of the training run a drift result triggers; one result can trigger one run only."""
    return f"{DRIFT_RUN_ID_PREFIX}{monitoring_run_id}"


def asset_uri(dataset: str, kind: str) -> str:
    """URI of the Airflow Asset of ``kind`` (``snapshot``, ``batches``, ``predictions``, ``landing``) of
    ``dataset``.

    Raises:
        ValueError: ``kind`` is unknown.
    """
    if kind not in ASSET_KINDS:
        raise ValueError(f"unknown asset kind {kind!r} (known: {sorted(ASSET_KINDS)})")
    return f"driftloop://{dataset}/{ASSET_KINDS[kind]}"


def gate_decision_artifact(evidence_key: str) -> str:
    """The artifact path of a version's verdict in one evidence state (on its training run)."""
    return f"{GATE_DECISIONS_DIR}/{evidence_key}.json"


APPROVAL_RECORDS_DIR = "approval"  # on the version's training run: one record per decided request


def approval_record_artifact(request_id: str) -> str:
    """The record of one approval decision: ``approval/<request id, one path-safe name>.json``."""
    return f"{APPROVAL_RECORDS_DIR}/{re.sub(r'[^0-9A-Za-z_.-]', '_', request_id)}.json"


def asked_by_tag(trigger_id: str) -> str:
    """The version tag recording that trigger ``trigger_id`` asked for the version's training key (trigger ids
    hold characters a tag key may not, so the key carries a hash of it and the value the id itself)."""
    import hashlib

    return ASKED_BY_TAG_PREFIX + hashlib.sha256(trigger_id.encode()).hexdigest()[:12]


def training_run_name(snapshot_hash: str) -> str:
    """Display name of a training run."""
    return f"train-{snapshot_hash[:8]}"


def data_run_name(snapshot_hash: str) -> str:
    """Display name of a data (snapshot) run."""
    return f"snapshot-{snapshot_hash[:12]}"


def inference_run_name(batch_id: str) -> str:
    """Display name of an inference run."""
    return f"score-{batch_id}"


def monitoring_run_name(batch_id: str) -> str:
    """Display name of a monitoring run."""
    return f"drift-{batch_id}"


# ------------------------------------------------------------------------------------------------------------
# Airflow DAG ids: each DAG file builds its DAG once per dataset config (driftloop_airflow.factory).
DATA_PIPELINE = "data_pipeline"
TRAINING_PIPELINE = "training_pipeline"
INFERENCE_PIPELINE = "inference_pipeline"
MONITORING_PIPELINE = "monitoring_pipeline"
DRIFT_SENSOR = "drift_sensor"
REGISTRY_WATCH = "registry_watch"
CHAMPION_ROLLBACK = "champion_rollback"
AB_EVALUATION = "ab_evaluation"
# fmt: off
DAG_NAMES = (
    DATA_PIPELINE, TRAINING_PIPELINE, INFERENCE_PIPELINE, MONITORING_PIPELINE, DRIFT_SENSOR, REGISTRY_WATCH,
    CHAMPION_ROLLBACK, AB_EVALUATION,
)
# fmt: on
DAG_ID_SEPARATOR = "__"


def dag_id(dataset: str, dag_name: str) -> str:
    """Airflow DAG id of one dataset's DAG: ``<dataset>__<dag name>`` (``telco_churn__training_pipeline``).

    Raises:
        ValueError: ``dag_name`` is not one of :data:`DAG_NAMES`, or ``dataset`` is empty.
    """
    if dag_name not in DAG_NAMES or not dataset:
        raise ValueError(f"no DAG id for dataset {dataset!r} and DAG {dag_name!r} (DAGs: {list(DAG_NAMES)})")
    return f"{dataset}{DAG_ID_SEPARATOR}{dag_name}"


def split_dag_id(value: str) -> tuple[str, str]:
    """``(dataset, dag name)`` of a :func:`dag_id`; ValueError when ``value`` is not one."""
    dataset, _, dag_name = value.rpartition(DAG_ID_SEPARATOR)
    if not dataset or dag_name not in DAG_NAMES:
        raise ValueError(f"{value!r} is not a Driftloop DAG id (<dataset>{DAG_ID_SEPARATOR}<dag name>)")
    return dataset, dag_name


# ------------------------------------------------------------------------------------------------------------
# Serving: online scoring (driftloop.serving), served windows exported to monitoring, A/B evaluation runs.

# Inference runs written by driftloop.serving.online.export for one window of served traffic (one model
# version each).
SERVED_WINDOW_TAG = PREFIX + "served_window"  # window start, ISO 8601 UTC; absent on batch-scored runs
SERVED_BATCH_PREFIX = "served__"

# Runs of the serving experiment, one per A/B look (driftloop.serving.online.ab_decision).
AB_EXPERIMENT_TAG = PREFIX + "ab_experiment"  # key: "v<champion>-vs-v<challenger>"
AB_INPUT_FINGERPRINT_TAG = PREFIX + "ab_input_fingerprint"  # key: inputs looked at; a rerun reuses the run
AB_DECISION_TAG = PREFIX + "ab_decision"
AB_DECISION_REASON_TAG = PREFIX + "ab_decision_reason"
AB_DECIDED_BY_TAG = PREFIX + "ab_decided_by"  # fixed_horizon | sequential | mcnemar | none
AB_PROMOTION_TAG = PREFIX + "ab_promotion"  # what promotion.promote_version did: moved | ready | unchanged
CHALLENGER_VERSION_TAG = PREFIX + "challenger_version"
AB_PROMOTE = "promote_challenger"
AB_KEEP = "keep_champion"
AB_NOT_ENOUGH_DATA = "not_enough_data"
AB_NO_CHALLENGER = "no_challenger"
AB_DECISIONS = (AB_PROMOTE, AB_KEEP, AB_NOT_ENOUGH_DATA, AB_NO_CHALLENGER)
AB_SUMMARY_ARTIFACT = "ab_summary.json"

# Metrics of a serving run. Per-arm metrics are ``<name>.<arm>`` (arms: champion, challenger).
AB_MIN_ENTITIES_PER_ARM = "ab_min_entities_per_arm"  # fixed horizon from the power analysis
AB_FIXED_P_VALUE = "ab_fixed_p_value"
AB_SEQUENTIAL_P_VALUE = "ab_sequential_p_value"  # always-valid (mixture SPRT)
AB_ACCURACY_DIFF = "ab_accuracy_diff"  # challenger minus champion
SHADOW_PAIRS = "shadow_pairs"
SHADOW_MCNEMAR_P_VALUE = "shadow_mcnemar_p_value"
SHADOW_ACCURACY_DIFF = "shadow_accuracy_diff"
SHADOW_AUC_DIFF = "shadow_auc_diff"
SHADOW_AUC_DIFF_LOW = "shadow_auc_diff_low"  # paired bootstrap interval
SHADOW_AUC_DIFF_HIGH = "shadow_auc_diff_high"
AB_ENTITIES = "ab_entities"  # per arm
AB_ACCURACY = "ab_accuracy"  # per arm
AB_F1 = "ab_f1"  # per arm; macro-F1 for multiclass
AB_AUC = "ab_auc"  # per arm, binary
AB_ARM_METRICS = (AB_ENTITIES, AB_ACCURACY, AB_F1, AB_AUC)


def arm_metric(name: str, arm: str) -> str:
    """Per-arm metric of a serving run, e.g. ``ab_accuracy.challenger``."""
    return f"{name}.{arm}"


def ab_experiment_id(champion_version: str | int, challenger_version: str | int | None) -> str:
    """Identity of an A/B (or shadow) comparison: ``v<champion>-vs-v<challenger>``, ``v<champion>`` alone."""
    return f"v{champion_version}-vs-v{challenger_version}" if challenger_version else f"v{champion_version}"


def served_batch_id(window_start: str, model_version: str | int) -> str:
    """Batch id of one window of served traffic of one model version:
    ``served__<yyyymmddThhmmssZ>__v<version>``."""
    return f"{SERVED_BATCH_PREFIX}{window_start}__v{model_version}"


def serving_run_name(experiment: str) -> str:
    """Display name of a serving (A/B evaluation) run."""
    return f"ab-{experiment}"


# Staged rollout (driftloop.serving.online.rollout): the stage is a tag on the challenger's version, read by
# the service's registry poll; every stage entered is an entry of the rollout audit table.
ROLLOUT_STAGE_TAG = PREFIX + "rollout_stage"  # shadow | <share %> | completed | rolled_back
ROLLOUT_STAGE_STARTED_TAG = PREFIX + "rollout_stage_started_s"  # epoch seconds; evidence counts from here
ROLLOUT_PLAN_TAG = (
    PREFIX + "rollout_plan"
)  # the rollout section (JSON) when it began: a running rollout keeps it
ROLLOUT_COMPLETED, ROLLOUT_ROLLED_BACK = "completed", "rolled_back"
ROLLOUT_DONE = (ROLLOUT_COMPLETED, ROLLOUT_ROLLED_BACK)
ROLLOUT_ADVANCE, ROLLOUT_HOLD, ROLLOUT_ROLL_BACK = "advance", "hold", "roll_back"
