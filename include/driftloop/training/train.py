"""Training: PyCaret model selection on a snapshot, holdout evaluation, MLflow logging and registration.

A training is keyed by what it reads (:func:`driftloop.training.keys.training_key`: the snapshot's hash,
the effective training, gate and data config, and the code version), and a key gets one model version,
whoever asks and however often: a second trigger for a key that has a version (a drift retrain on the
snapshot a ``new_data`` retrain just trained on, a manual rerun, a retry) registers nothing, records on that
version that it asked (``bus.asked_by_tag``) and hands the version to the gate again. Each trigger has its
own run (keyed by the training key and the trigger id), so a retry resumes its own run; two triggers racing
on two workers both train, and :func:`driftloop.core.registry.register_once` registers one version between
them, under the promotion lock. The new version is handed to :mod:`driftloop.core.registry`, which copies its
lineage and points ``challenger`` at it.

Models are stored with cloudpickle (a PyCaret pipeline cannot be saved with skops). Unpickling runs code, so
models are loaded only from our own MLflow registry: that registry is the trust boundary.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from driftloop.core import bus, holdout, registry
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.task_types import (
    BINARY,
    Decision,
    holdout_metrics,
    is_classification,
    model_input,
    training_decision,
)
from driftloop.core.tracking import get_client, keyed_run
from driftloop.data import snapshots
from driftloop.training import keys
from driftloop.training.calibration import calibrate_version, log_calibration
from driftloop.training.data_checks import check_training_frames, training_data_error
from driftloop.training.loss_estimator import fit_loss_model, log_loss_model
from driftloop.training.selection import (
    choose_decision_threshold,
    fit_pycaret,
    out_of_fold_prediction,
    out_of_fold_proba,
    transfer_threshold,
)
from driftloop.training.training_results import TrainResult

log = logging.getLogger(__name__)

INPUT_EXAMPLE_ROWS = 5
DRIFT_REASONS = ("drift", "performance", "estimated_performance")  # trigger reasons of the drift sensor
# Packages a pickled PyCaret pipeline needs; pinned to the installed versions instead of letting MLflow infer
# them (inference loads the model in a subprocess and costs ~10 s per training).
MODEL_PACKAGES = (
    "pycaret",
    "scikit-learn",
    "cloudpickle",
    "pandas",
    "numpy",
    "category-encoders",
    "imbalanced-learn",
    "lightgbm",
    "xgboost",
    "catboost",
)


def _lineage_tags(snapshot: bus.SnapshotManifest, trigger: dict[str, Any], trigger_id: str) -> dict[str, str]:
    tags = {
        bus.SNAPSHOT_URI_TAG: snapshot.get("snapshot_uri", ""),
        bus.TRIGGER_REASON_TAG: trigger.get("reason") or "manual",
        bus.TRIGGER_ID_TAG: trigger_id,
    }
    for key, tag in (
        ("airflow_dag_id", bus.AIRFLOW_DAG_ID_TAG),
        ("airflow_run_id", bus.AIRFLOW_RUN_ID_TAG),
        ("monitoring_run_id", bus.MONITORING_RUN_ID_TAG),
    ):
        if trigger.get(key):
            tags[tag] = str(trigger[key])
    return {k: str(v) for k, v in tags.items()}


def _log_params_once(client: Any, run_id: str, params: dict[str, Any]) -> None:
    # MLflow params are immutable: a resumed run must not re-log a key with another value.
    import mlflow

    logged = client.get_run(run_id).data.params
    fresh = {k: str(v)[:500] for k, v in params.items() if k not in logged}
    if fresh:
        mlflow.log_params(fresh)


def _log_frame(frame: Any, artifact_path: str, work_dir: Path) -> None:
    import mlflow

    local = work_dir / artifact_path
    local.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(local, index=False)
    mlflow.log_artifact(str(local), artifact_path=str(Path(artifact_path).parent))


def _log_evidence(
    cfg: DatasetConfig,
    model: Any,
    train_df: Any,
    holdout_df: Any,
    work_dir: Path,
    seed: int,
    decision: Decision,
    holdout_outputs: dict[str, Any],
) -> None:
    import mlflow

    from driftloop.governance.evidence import collect_evidence

    summary, folder = collect_evidence(
        cfg, model, train_df, holdout_df, work_dir, decision, seed, holdout_outputs=holdout_outputs
    )
    mlflow.log_artifacts(str(folder), artifact_path=bus.EVIDENCE_DIR)
    top = [row["feature"] for row in summary.get("shap_importance", [])[:5]]
    if top:
        mlflow.set_tag(bus.EXPLAIN_TOP_FEATURES_TAG, ",".join(top))
    if summary["errors"]:
        mlflow.set_tag(bus.EXPLAIN_ERROR_TAG, json.dumps(summary["errors"])[:5000])
    if "surrogate" in summary:
        mlflow.log_metric(bus.SURROGATE_FIDELITY, summary["surrogate"]["fidelity"])


def model_pip_requirements() -> list[str]:
    """``package==version`` for each installed package in :data:`MODEL_PACKAGES`."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in MODEL_PACKAGES:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def _log_model(cfg: DatasetConfig, model: Any, train_df: Any) -> str:
    """Log the model (not registered: :func:`driftloop.core.registry.register_once` does that); its URI."""
    from mlflow.models import infer_signature

    example_df = model_input(train_df[cfg.features].head(INPUT_EXAMPLE_ROWS))
    # cloudpickle is required (skops cannot save a PyCaret pipeline) and only our registry loads it; missing
    # values in integer columns are the data contract's business (scoring and serving validate against it),
    # not the signature's. MLflow's WARNING about each would be on every green training run.
    sklearn_log = logging.getLogger("mlflow.sklearn")
    level = sklearn_log.level
    sklearn_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
            signature = infer_signature(example_df, model.predict(example_df))
            return _log_sklearn_model(cfg, model, signature, example_df)
    finally:
        sklearn_log.setLevel(level)


def _log_sklearn_model(cfg: DatasetConfig, model: Any, signature: Any, example_df: Any) -> str:
    import mlflow

    info = mlflow.sklearn.log_model(
        model,
        name=bus.MODEL_ARTIFACT,
        serialization_format="cloudpickle",
        signature=signature,
        input_example=example_df,
        pip_requirements=model_pip_requirements(),
    )
    return str(info.model_uri)


def _log_artifacts(
    cfg: DatasetConfig,
    model: Any,
    fitted: dict[str, Any],
    train_df: Any,
    holdout_df: Any,
    decision: Decision,
    holdout_outputs: dict[str, Any],
) -> str:
    """Leaderboard, holdout, drift reference (with out-of-sample outputs), evidence and the model (its URI).

    ``holdout_outputs`` are the model's predictions on ``holdout_df`` (row by row): the reference rows and the
    evidence read them instead of predicting the same rows again.
    """
    import mlflow
    import numpy as np

    opts = cfg.training
    with tempfile.TemporaryDirectory(prefix="driftloop-train-") as tmp:
        work_dir = Path(tmp)
        leaderboard_path = work_dir / bus.LEADERBOARD_ARTIFACT
        fitted["leaderboard_df"].to_csv(leaderboard_path, index_label="model_id")
        mlflow.log_artifact(str(leaderboard_path))
        _log_frame(holdout_df, bus.HOLDOUT_ARTIFACT, work_dir)
        # Out-of-sample outputs: on training rows a flexible model (rf) scores differently than on new data,
        # which monitoring would read as prediction drift.
        reference_df = holdout_df.sample(min(opts.reference_rows, len(holdout_df)), random_state=opts.seed)
        positions = holdout_df.index.get_indexer(reference_df.index)
        reference_df = reference_df[[cfg.id_column, *cfg.features]].reset_index(drop=True)
        for column, values in holdout_outputs.items():
            reference_df[column] = np.asarray(values)[positions]
        _log_frame(reference_df, bus.REFERENCE_ARTIFACT, work_dir)
        _log_evidence(cfg, model, train_df, holdout_df, work_dir, opts.seed, decision, holdout_outputs)
    return _log_model(cfg, model, train_df)


def _log_loss_model(cfg: DatasetConfig, selection_df: Any, oof: Any) -> None:
    """The regression version's loss model, on the out-of-fold errors of its selection rows (none, with a
    warning, when too few rows have a prediction and a truth: monitoring then estimates nothing)."""
    numeric, categorical = list(cfg.numeric_features), list(cfg.categorical_features)
    try:
        model = fit_loss_model(
            selection_df[cfg.features], numeric, categorical, oof.scores, oof.y, cfg.training.seed
        )
    except ValueError as exc:
        log.warning("no loss model, so no estimated performance before labels: %s", exc)
        return
    log_loss_model(model)


def _selection_text(selection_rows: int, tune_rows: int, train_rows: int) -> str:
    tuned = f"; tuned on {tune_rows} of them" if 0 < tune_rows < selection_rows else ""
    if selection_rows == train_rows:
        return f"all {train_rows} training rows{tuned}"
    return f"sampled {selection_rows} of {train_rows} training rows{tuned}; finalized on all {train_rows}"


def _fit_and_log(
    cfg: DatasetConfig, client: Any, run_id: str, snapshot: bus.SnapshotManifest, settings: Settings
) -> tuple[dict[str, float], str]:
    """Inside an active run: split, fit, choose the threshold, evaluate and log everything; returns the
    timings and the logged model's URI."""
    import mlflow

    columns = [cfg.id_column, *cfg.features, cfg.target]
    snapshot_df = snapshots.read_snapshot_frame(cfg, snapshot, columns)
    train_df, holdout_df = holdout.split_holdout(cfg, snapshot_df)
    check_training_frames(cfg, train_df, holdout_df)
    decision = training_decision(cfg, train_df[cfg.target])
    try:
        fitted = fit_pycaret(cfg, train_df, settings.n_jobs, decision)
    except ValueError as exc:
        verdict = training_data_error(cfg, exc)
        if verdict is None:
            raise
        raise verdict from exc
    model, timings = fitted["model"], fitted["timings"]
    started = time.perf_counter()
    # Out-of-fold outputs of the selection rows: the threshold and the calibration map read the scores,
    # the regression loss model (estimated RMSE/MAE before labels) the errors.
    out_of_fold = out_of_fold_proba if is_classification(cfg) else out_of_fold_prediction
    oof = out_of_fold(cfg, fitted["pipeline"], fitted["selection_df"], decision, settings.n_jobs)
    chosen = choose_decision_threshold(cfg, decision, oof)
    if decision.task == BINARY:  # falls back when the out-of-fold threshold does not transfer to the holdout
        chosen = transfer_threshold(cfg, chosen, decision.score(model, holdout_df[cfg.features]))
    timings[bus.THRESHOLD_SECONDS] = time.perf_counter() - started
    decision = replace(decision, threshold=float(chosen["threshold"]))
    # Predicted once: the metrics, the drift reference and the evidence all read these.
    holdout_outputs = decision.predict(model, holdout_df[cfg.features])
    holdout_y = decision.encode(holdout_df[cfg.target]).to_numpy()
    metrics = holdout_metrics(decision, holdout_y, holdout_outputs)
    opts = cfg.training
    if is_classification(cfg):
        log_calibration(
            *calibrate_version(decision.task, decision.classes, oof, opts.seed, holdout_y, holdout_outputs)
        )
    else:
        _log_loss_model(cfg, fitted["selection_df"], oof)
    _log_params_once(
        client,
        run_id,
        {
            "task": cfg.task,
            "models": ",".join(opts.models),
            "folds": opts.folds,
            "tune_iter": opts.tune_iter,
            "sort_metric": opts.sort_metric,
            "seed": opts.seed,
            "test_size": opts.test_size,
            "threshold_objective": chosen["objective"],
            "threshold_oof_rows": chosen["oof_rows"],
            "selection_max_rows": opts.selection_max_rows,
            "tune_max_rows": opts.tune_max_rows,
            "best_model": fitted["best_model"],
            "n_jobs": settings.n_jobs,
        },
    )
    selection_rows = len(fitted["selection_df"])
    mlflow.set_tags(
        {
            bus.BEST_MODEL_TAG: fitted["best_model"],
            **decision.to_tags(),
            bus.THRESHOLD_OBJECTIVE_TAG: chosen["objective"],
            bus.THRESHOLD_FALLBACK_TAG: chosen.get("fallback") or "none",
            bus.SELECTION_TAG: _selection_text(selection_rows, fitted["tune_rows"], len(train_df)),
        }
    )
    extra = {bus.THRESHOLD_METRIC: decision.threshold} if decision.task == BINARY else {}
    if chosen["objective_value"] is not None:
        extra[bus.THRESHOLD_OBJECTIVE_VALUE] = chosen["objective_value"]
    if chosen.get("holdout_positive_rate") is not None:
        extra[bus.OOF_POSITIVE_RATE] = chosen["oof_positive_rate"]
        extra[bus.HOLDOUT_POSITIVE_RATE] = chosen["holdout_positive_rate"]
    mlflow.log_metrics(
        {
            **metrics,
            **timings,
            **extra,
            bus.TRAIN_SECONDS: sum(timings.values()),
            bus.TRAIN_ROWS: len(train_df),
            bus.SELECTION_ROWS: selection_rows,
            bus.TUNE_ROWS: fitted["tune_rows"],
            bus.HOLDOUT_ROWS: len(holdout_df),
            bus.UNLABELLED_ROWS_EXCLUDED: int(snapshot.get("unlabelled_rows_excluded", 0)),
        }
    )
    started = time.perf_counter()
    model_uri = _log_artifacts(cfg, model, fitted, train_df, holdout_df, decision, holdout_outputs)
    timings[bus.LOGGING_SECONDS] = time.perf_counter() - started
    mlflow.log_metric(bus.LOGGING_SECONDS, timings[bus.LOGGING_SECONDS])
    return timings, model_uri


def train_model(
    cfg: DatasetConfig,
    snapshot_uri: str | None = None,
    trigger: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> TrainResult:
    """Train a model on a snapshot, evaluate it on the id-hash holdout, log it and register it as
    ``challenger``.

    Args:
        cfg: Dataset config.
        snapshot_uri: Snapshot parquet to train on; the newest snapshot when None.
        trigger: Why training runs: ``reason`` (``drift``/``new_data``/``manual``), optional
            ``airflow_dag_id``, ``airflow_run_id``, ``monitoring_run_id``, ``trigger_id``, and ``seed``
            (``training.seed`` for this training: the same data and config with another seed is a new
            training key, the one way to ask for a second model of unchanged inputs).
        settings: Process settings; defaults to :meth:`Settings.from_env`.

    Returns:
        ``{"run_id", "model_name", "model_version", "model_uri", "snapshot_hash", "best_model", "metrics",
        "reused"}``; ``reused`` is True when the training key already had a version (then ``asked_again``
        says which trigger asked and why), which is returned instead of training again. A fresh result
        also carries ``timings`` (seconds per stage). A drift retrain (reason ``drift``/``performance``) on
        the snapshot the champion was trained on registers nothing and returns ``{"model_version": None,
        "registered": False, "waiting_for_labels": True, "reason", ...}``.

    Raises:
        SnapshotNotFoundError: No snapshot to train on.
        TrainingDataError: The snapshot cannot train a model (null labels, too few rows, a single class).
        RuntimeError: PyCaret could not train any configured model.
    """
    settings = settings or Settings.from_env()
    trigger = dict(trigger or {})
    if trigger.get("seed") is not None:  # a retrain with another seed is another training (its own key)
        cfg = replace(cfg, training=replace(cfg.training, seed=int(trigger["seed"])))
    snapshot = snapshots.resolve_snapshot(cfg, snapshot_uri, settings)
    snapshot_hash = str(snapshot["snapshot_hash"])
    trigger_id = keys.derive_trigger_id(trigger, snapshot_hash)
    key = keys.training_key(cfg, snapshot_hash, settings)
    reason = str(trigger.get("reason") or "manual")
    client = get_client(settings)
    if reason in DRIFT_REASONS or trigger.get("monitoring_run_id"):
        waiting = registry.waiting_for_labels(cfg, snapshot_hash, settings)
        if waiting is not None:
            return keys.waiting_result(cfg, client, snapshot_hash, trigger, waiting)

    existing = registry.find_key_version(client, cfg, key)
    if existing is not None:
        return keys.answer_repeat_request(cfg, client, existing, key, trigger_id, reason)

    experiment = cfg.experiment_name("training")
    key_tags = {bus.TRAINING_KEY_TAG: key, bus.TRIGGER_ID_TAG: trigger_id}
    with keyed_run(client, experiment, key_tags, bus.training_run_name(snapshot_hash), settings) as run:
        run_id = run.info.run_id
        versions = registry.find_run_versions(client, cfg, run_id)
        if versions:  # a retry resumed a run that crashed after registration: finish it, do not retrain
            registry.register_challenger(client, cfg, versions[0].version, client.get_run(run_id))
            return keys.result_from_run(cfg, client.get_run(run_id), versions[0], reused=True)

        import mlflow

        from driftloop.governance.audit import open_store

        mlflow.set_tags(
            {**_lineage_tags(snapshot, trigger, trigger_id), bus.SNAPSHOT_HASH_TAG: snapshot_hash}
        )
        timings, model_uri = _fit_and_log(cfg, client, run_id, snapshot, settings)
        version, registered = registry.register_once(
            cfg, client, key, run_id, model_uri, open_store(settings).locked, settings
        )
        if not registered:  # a racing trigger of the same key registered first
            mlflow.set_tag(bus.DUPLICATE_OF_TAG, str(version.version))
    if not registered:
        return keys.answer_repeat_request(cfg, client, version, key, trigger_id, reason)
    registry.register_challenger(client, cfg, version.version, client.get_run(run_id))
    result = keys.result_from_run(cfg, client.get_run(run_id), version, reused=False)
    result["timings"] = {k: round(v, 2) for k, v in timings.items()}
    numbers = ", ".join(f"{k} {v:.4g}" for k, v in sorted(result["metrics"].items()) if isinstance(v, float))
    log.info(
        "trained %s on snapshot %s (%d rows, trigger %s, training key %s): registered v%s as %s; holdout %s; "
        "seconds %s",
        result["best_model"], snapshot_hash[:12], snapshot["rows"], reason, key[:12], result["model_version"],
        bus.CHALLENGER, numbers, result["timings"],
    )  # fmt: skip
    return result


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop train``."""
    from driftloop.core.commands import dataset_parent

    parser = subparsers.add_parser(
        "train", parents=[dataset_parent()], help="train on a snapshot and register the model as challenger"
    )
    parser.add_argument("--snapshot-uri", help="snapshot parquet (default: the newest snapshot)")
    parser.add_argument("--reason", default="manual", help="trigger reason tag (default: manual)")
    parser.add_argument("--trigger-id", help="idempotency key (default: hash of reason and snapshot)")
    parser.set_defaults(func=_cmd_train)


def _cmd_train(args: Any) -> int:
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config

    trigger = {"reason": args.reason, "trigger_id": args.trigger_id}
    print_result(
        train_model(load_dataset_config(args.dataset), snapshot_uri=args.snapshot_uri, trigger=trigger)
    )
    return 0
