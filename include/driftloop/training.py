"""Training: PyCaret model selection on a snapshot, holdout evaluation, MLflow logging and registration.

One call of :func:`train_model` is one unit of work keyed by ``(snapshot_hash, trigger_id)``: a retry of the same
task finds the finished run (or resumes the unfinished one) and never registers a second model version.

Models are stored with cloudpickle (a PyCaret pipeline cannot be saved with skops). Unpickling runs code, so
models are loaded only from our own MLflow registry: that registry is the trust boundary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from driftloop.config import DatasetConfig, Settings, StatePaths, uri_to_path
from driftloop.tracking import TAG_PREFIX, find_finished_run, get_client, keyed_run

log = logging.getLogger(__name__)

# Holdout metric names logged on the training run; gate metric names (PyCaret style) map onto them.
HOLDOUT_METRICS = ("holdout_auc", "holdout_f1", "holdout_precision", "holdout_recall", "holdout_accuracy")
GATE_METRIC_KEYS = {
    "auc": "holdout_auc",
    "f1": "holdout_f1",
    "prec.": "holdout_precision",
    "precision": "holdout_precision",
    "recall": "holdout_recall",
    "accuracy": "holdout_accuracy",
}
LINEAGE_TAGS = (
    "snapshot_hash",
    "snapshot_uri",
    "trigger_reason",
    "trigger_id",
    "airflow_dag_id",
    "airflow_run_id",
    "monitoring_run_id",
    "git_commit",
    "best_model",
)
HOLDOUT_ARTIFACT = "holdout/holdout.parquet"
REFERENCE_ARTIFACT = "reference/reference.parquet"
MODEL_ARTIFACT = "model"
INPUT_EXAMPLE_ROWS = 5
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


class SnapshotNotFoundError(FileNotFoundError):
    """No training snapshot exists (or the given one is missing)."""


def find_latest_snapshot(cfg: DatasetConfig, settings: Settings | None = None) -> dict[str, Any]:
    """The manifest of the newest snapshot (see :func:`driftloop.data.latest_snapshot`).

    Args:
        cfg: Dataset config.
        settings: Process settings; defaults to :meth:`Settings.from_env`.

    Returns:
        The snapshot manifest (``snapshot_hash``, ``snapshot_uri``, ``rows``, ``created_at``, ...).

    Raises:
        SnapshotNotFoundError: The snapshots folder holds no manifest.
    """
    from driftloop.data import latest_snapshot

    manifest = latest_snapshot(cfg, settings)
    if manifest is None:
        snapshots_dir = StatePaths.for_dataset(cfg, settings).snapshots_dir
        raise SnapshotNotFoundError(
            f"{cfg.name}: no training snapshot in {snapshots_dir}; build one first (driftloop.data.build_snapshot)"
        )
    return manifest


def resolve_snapshot(cfg: DatasetConfig, snapshot_uri: str | None, settings: Settings | None = None) -> dict:
    """Manifest of ``snapshot_uri`` (its sibling ``<hash>.json``), or of the newest snapshot when None.

    A snapshot without a manifest is identified by the SHA-256 of its file bytes.

    Raises:
        SnapshotNotFoundError: The snapshot file does not exist.
    """
    if snapshot_uri is None:
        return find_latest_snapshot(cfg, settings)
    path = uri_to_path(snapshot_uri)
    if not path.is_file():
        raise SnapshotNotFoundError(f"{cfg.name}: snapshot {snapshot_uri} does not exist")
    manifest_path = path.with_suffix(".json")
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        return {**manifest, "snapshot_uri": manifest.get("snapshot_uri", snapshot_uri)}
    return {"snapshot_hash": hashlib.sha256(path.read_bytes()).hexdigest(), "snapshot_uri": snapshot_uri}


def derive_trigger_id(trigger: dict[str, Any], snapshot_hash: str) -> str:
    """The trigger's identity: an explicit ``trigger_id``, the Airflow run id, else a hash of reason + snapshot."""
    if trigger.get("trigger_id"):
        return str(trigger["trigger_id"])
    if trigger.get("airflow_run_id"):
        return str(trigger["airflow_run_id"])
    reason = trigger.get("reason") or "manual"
    return hashlib.sha256(f"{reason}:{snapshot_hash}".encode()).hexdigest()[:16]


def resolve_n_jobs() -> int:
    """Worker processes for PyCaret: ``DRIFTLOOP_N_JOBS`` (default 1; -1 means all cores).

    One process is the default because training shares its machine with other Airflow tasks: on 2 busy cores,
    parallel folds plus LightGBM's own threads made the default telco training 1.8x slower than serial.
    """
    return int(os.environ.get("DRIFTLOOP_N_JOBS", "1"))


def encode_target(labels: Any, positive_label: str) -> Any:
    """1 where the label is the positive class, else 0 (labels compared as strings)."""
    return (labels.astype(str) == str(positive_label)).astype(int)


def evaluate_predictions(y_true: Any, proba: Any, threshold: float = 0.5) -> dict[str, float]:
    """Holdout metrics from positive-class probabilities.

    Args:
        y_true: 1/0 true labels.
        proba: Positive-class probabilities.
        threshold: Probability at or above which a row is predicted positive.

    Returns:
        ``holdout_{auc,f1,precision,recall,accuracy}``; AUC is NaN when ``y_true`` has a single class.
    """
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=float)
    y_pred = (proba >= threshold).astype(int)
    auc = roc_auc_score(y_true, proba) if len(np.unique(y_true)) > 1 else float("nan")
    return {
        "holdout_auc": float(auc),
        "holdout_f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "holdout_precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "holdout_recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "holdout_accuracy": float(accuracy_score(y_true, y_pred)),
    }


def gate_metric_key(metric: str) -> str:
    """The holdout metric key for a gate metric name such as ``AUC`` or ``F1``.

    Raises:
        ValueError: The name is not a known metric.
    """
    key = GATE_METRIC_KEYS.get(metric.strip().lower(), metric if metric in HOLDOUT_METRICS else None)
    if key is None:
        raise ValueError(f"unknown gate metric {metric!r} (known: {sorted(GATE_METRIC_KEYS)})")
    return key


def predict_positive_proba(model: Any, features_df: Any) -> Any:
    """Positive-class probabilities; the index is reset because PyCaret pipelines multiply duplicate indexes."""
    return model.predict_proba(features_df.reset_index(drop=True))[:, 1]


def split_holdout(cfg: DatasetConfig, snapshot_df: Any) -> tuple[Any, Any]:
    """(train, holdout) split of the snapshot, decided per entity id by a seeded hash.

    An id is in the holdout of every snapshot or of none, so when snapshots grow, a champion trained on an
    earlier snapshot never saw the rows of a later candidate's holdout, and the gate's head-to-head comparison
    on that holdout is fair to both.
    """
    import pandas as pd

    key = f"{cfg.training.seed:016d}"[-16:]
    buckets = pd.util.hash_pandas_object(snapshot_df[cfg.id_column].astype(str), index=False, hash_key=key)
    in_holdout = (buckets % 10_000).to_numpy() < int(round(cfg.training.test_size * 10_000))
    return snapshot_df[~in_holdout].reset_index(drop=True), snapshot_df[in_holdout].reset_index(drop=True)


def import_classification_experiment() -> type:
    """PyCaret's ``ClassificationExperiment``, imported without PyCaret's process-wide side effects.

    Importing PyCaret opens ``logs.log`` in the current directory (an Airflow worker's cwd, a repo checkout) and
    routes every warning of the process into it. Its log goes to ``PYCARET_CUSTOM_LOGGING_PATH`` when set, else
    nowhere, and warnings go back to their normal handler.
    """
    os.environ.setdefault("PYCARET_CUSTOM_LOGGING_PATH", os.devnull)
    from pycaret.classification import ClassificationExperiment
    from pycaret.internal.logging import captureWarnings

    captureWarnings(False)
    return ClassificationExperiment


def fit_pycaret(cfg: DatasetConfig, train_df: Any, n_jobs: int) -> dict[str, Any]:
    """:func:`_fit_pycaret` with usable process std streams (closed in Celery task processes, see ``topology``)."""
    from driftloop.topology import usable_std_streams

    with usable_std_streams():
        return _fit_pycaret(cfg, train_df, n_jobs)


def _fit_pycaret(cfg: DatasetConfig, train_df: Any, n_jobs: int) -> dict[str, Any]:
    """Select, tune and finalize a model with PyCaret on the training part only.

    Args:
        cfg: Dataset config (features, target, training options).
        train_df: Training rows (id + features + target labels).
        n_jobs: Worker processes.

    Returns:
        ``{"model", "best_model", "leaderboard_df", "timings"}``; ``timings`` holds ``setup_seconds``,
        ``compare_seconds``, ``tune_seconds`` and ``finalize_seconds``.

    Raises:
        RuntimeError: No candidate model could be trained.
    """
    ClassificationExperiment = import_classification_experiment()  # noqa: N806 (a class)

    opts = cfg.training
    data = train_df[cfg.features].copy()
    data[cfg.target] = encode_target(train_df[cfg.target], cfg.positive_label).to_numpy()

    class QuietExperiment(ClassificationExperiment):
        def _check_environment(self) -> None:
            # PyCaret imports ~30 optional packages (evidently, gradio, ...) here only to log their versions:
            # 8 s on an idle machine, minutes under load. The run's pip requirements record what matters.
            pass

    timings = {}
    started = time.perf_counter()
    exp = QuietExperiment()
    exp.setup(
        data=data.reset_index(drop=True),
        target=cfg.target,
        session_id=opts.seed,
        fold=opts.folds,
        numeric_features=list(cfg.numeric_features),
        categorical_features=list(cfg.categorical_features),
        verbose=False,
        html=False,
        log_experiment=False,  # PyCaret's MLflow logger crashes on MLflow 3; we log ourselves
        system_log=False,  # else PyCaret writes logs.log into the worker's cwd
        memory=False,  # a joblib cache path inside the pickled pipeline would not exist where it is loaded
        normalize=True,  # unscaled charges (thousands) keep lbfgs from converging in 1,000 iterations; trees ignore it
        n_jobs=n_jobs,
    )
    timings["setup_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    best = exp.compare_models(include=list(opts.models), sort=opts.sort_metric, n_select=1, verbose=False)
    leaderboard_df = exp.pull()
    timings["compare_seconds"] = time.perf_counter() - started
    if isinstance(best, list):
        if not best:
            raise RuntimeError(f"{cfg.name}: PyCaret trained none of the models {list(opts.models)}")
        best = best[0]

    started = time.perf_counter()
    if opts.tune_iter > 0:
        best = exp.tune_model(
            best, n_iter=opts.tune_iter, optimize=opts.sort_metric, choose_better=True, verbose=False
        )
    timings["tune_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    model = exp.finalize_model(best)
    timings["finalize_seconds"] = time.perf_counter() - started
    return {
        "model": model,
        "best_model": type(best).__name__,
        "leaderboard_df": leaderboard_df,
        "timings": timings,
    }


def _lineage_tags(snapshot: dict, trigger: dict, trigger_id: str) -> dict[str, str]:
    tags = {
        "snapshot_uri": snapshot.get("snapshot_uri", ""),
        "trigger_reason": trigger.get("reason") or "manual",
        "trigger_id": trigger_id,
    }
    for key in ("airflow_dag_id", "airflow_run_id", "monitoring_run_id"):
        if trigger.get(key):
            tags[key] = str(trigger[key])
    return {f"{TAG_PREFIX}{k}": str(v) for k, v in tags.items()}


def find_run_versions(client: Any, model_name: str, run_id: str) -> list[Any]:
    """Registered versions of ``model_name`` created from ``run_id``, newest first."""
    versions = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    return sorted(versions, key=lambda v: int(v.version), reverse=True)


def tag_model_version(client: Any, cfg: DatasetConfig, version: str, run: Any) -> None:
    """Copy the run's lineage tags and holdout metrics onto the model version and point ``challenger`` at it.

    Idempotent: safe to repeat when a retry resumes after registration.
    """
    name = cfg.registered_model_name
    run_tags = run.data.tags
    for key in LINEAGE_TAGS:
        value = run_tags.get(f"{TAG_PREFIX}{key}")
        if value:
            client.set_model_version_tag(name, version, f"{TAG_PREFIX}{key}", value)
    for key in HOLDOUT_METRICS:
        if key in run.data.metrics:
            client.set_model_version_tag(name, version, f"{TAG_PREFIX}{key}", f"{run.data.metrics[key]:.6f}")
    client.set_registered_model_alias(name, "challenger", version)


def _result_from_run(cfg: DatasetConfig, run: Any, version: Any, reused: bool) -> dict[str, Any]:
    name = cfg.registered_model_name
    return {
        "run_id": run.info.run_id,
        "model_name": name,
        "model_version": str(version.version),
        "model_uri": f"models:/{name}/{version.version}",
        "snapshot_hash": run.data.tags.get(f"{TAG_PREFIX}snapshot_hash", ""),
        "best_model": run.data.tags.get(f"{TAG_PREFIX}best_model", ""),
        "metrics": {k: run.data.metrics[k] for k in HOLDOUT_METRICS if k in run.data.metrics},
        "reused": reused,
    }


def _log_params_once(client: Any, run: Any, params: dict[str, Any]) -> None:
    # MLflow params are immutable: a resumed run must not re-log a key with another value.
    import mlflow

    logged = client.get_run(run.info.run_id).data.params
    fresh = {k: str(v)[:500] for k, v in params.items() if k not in logged}
    if fresh:
        mlflow.log_params(fresh)


def _log_frame(frame: Any, artifact_path: str, work_dir: Path) -> None:
    import mlflow

    local = work_dir / artifact_path
    local.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(local, index=False)
    mlflow.log_artifact(str(local), artifact_path=str(Path(artifact_path).parent))


def _log_explanation(model: Any, sample_df: Any, work_dir: Path, seed: int) -> None:
    import mlflow

    from driftloop.explain import explain_model

    try:
        explained = explain_model(model, sample_df, work_dir / "explain", seed=seed)
        mlflow.log_artifacts(str(work_dir / "explain"), artifact_path="explain")
        mlflow.set_tag(f"{TAG_PREFIX}explain_top_features", ",".join(explained["top_features"]))
    except Exception as exc:  # an explanation is a nice-to-have: never fail training over it
        log.warning("SHAP explanation failed: %r", exc)
        mlflow.set_tag(f"{TAG_PREFIX}explain_error", repr(exc)[:500])


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


def _log_model(cfg: DatasetConfig, model: Any, train_df: Any) -> None:
    import mlflow
    from mlflow.models import infer_signature

    example_df = train_df[cfg.features].head(INPUT_EXAMPLE_ROWS).reset_index(drop=True)
    signature = infer_signature(example_df, model.predict(example_df))
    mlflow.sklearn.log_model(
        model,
        name=MODEL_ARTIFACT,
        serialization_format="cloudpickle",
        signature=signature,
        input_example=example_df,
        registered_model_name=cfg.registered_model_name,
        pip_requirements=model_pip_requirements(),
    )


def train_model(
    cfg: DatasetConfig,
    snapshot_uri: str | None = None,
    trigger: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Train a model on a snapshot, evaluate it on a stratified holdout, log and register it as ``challenger``.

    Args:
        cfg: Dataset config.
        snapshot_uri: Snapshot parquet to train on; the newest snapshot when None.
        trigger: Why training runs: ``reason`` (``drift``/``new_data``/``manual``), optional ``airflow_dag_id``,
            ``airflow_run_id``, ``monitoring_run_id``, ``trigger_id``.
        settings: Process settings; defaults to :meth:`Settings.from_env`.

    Returns:
        ``{"run_id", "model_name", "model_version", "model_uri", "snapshot_hash", "best_model", "metrics",
        "reused"}``; ``reused`` is True when a finished run with the same snapshot and trigger was returned
        instead of training again. A fresh result also carries ``timings`` (seconds per stage).

    Raises:
        SnapshotNotFoundError: No snapshot to train on.
        RuntimeError: PyCaret could not train any configured model.
    """
    import pandas as pd

    settings = settings or Settings.from_env()
    trigger = dict(trigger or {})
    snapshot = resolve_snapshot(cfg, snapshot_uri, settings)
    snapshot_hash = str(snapshot["snapshot_hash"])
    trigger_id = derive_trigger_id(trigger, snapshot_hash)
    key_tags = {f"{TAG_PREFIX}snapshot_hash": snapshot_hash, f"{TAG_PREFIX}trigger_id": trigger_id}
    experiment = cfg.experiment_name("training")
    client = get_client(settings)
    model_name = cfg.registered_model_name

    finished = find_finished_run(client, experiment, key_tags)
    if finished is not None:
        versions = find_run_versions(client, model_name, finished.info.run_id)
        if versions:
            log.info("reusing training run %s (version %s)", finished.info.run_id, versions[0].version)
            return _result_from_run(cfg, finished, versions[0], reused=True)

    with keyed_run(client, experiment, key_tags, run_name=f"train-{snapshot_hash[:8]}") as run:
        run_id = run.info.run_id
        versions = find_run_versions(client, model_name, run_id)
        if versions:  # a retry resumed a run that crashed after registration: finish it, do not retrain
            tag_model_version(client, cfg, versions[0].version, client.get_run(run_id))
            return _result_from_run(cfg, client.get_run(run_id), versions[0], reused=True)

        import mlflow

        mlflow.set_tags(_lineage_tags(snapshot, trigger, trigger_id))
        snapshot_df = pd.read_parquet(uri_to_path(str(snapshot["snapshot_uri"])))
        columns = [cfg.id_column, *cfg.features, cfg.target]
        missing = [c for c in columns if c not in snapshot_df.columns]
        if missing:
            raise ValueError(f"{cfg.name}: snapshot {snapshot['snapshot_uri']} lacks columns {missing}")
        train_df, holdout_df = split_holdout(cfg, snapshot_df[columns])
        n_jobs = resolve_n_jobs()

        fitted = fit_pycaret(cfg, train_df, n_jobs)
        model = fitted["model"]
        timings = fitted["timings"]
        holdout_y = encode_target(holdout_df[cfg.target], cfg.positive_label)
        metrics = evaluate_predictions(
            holdout_y, predict_positive_proba(model, holdout_df[cfg.features]), cfg.inference.threshold
        )
        opts = cfg.training
        _log_params_once(
            client,
            run,
            {
                "models": ",".join(opts.models),
                "folds": opts.folds,
                "tune_iter": opts.tune_iter,
                "sort_metric": opts.sort_metric,
                "seed": opts.seed,
                "test_size": opts.test_size,
                "threshold": cfg.inference.threshold,
                "best_model": fitted["best_model"],
                "n_jobs": n_jobs,
            },
        )
        mlflow.set_tag(f"{TAG_PREFIX}best_model", fitted["best_model"])
        mlflow.log_metrics(
            {
                **metrics,
                **timings,
                "train_seconds": sum(timings.values()),
                "train_rows": len(train_df),
                "holdout_rows": len(holdout_df),
            }
        )

        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="driftloop-train-") as tmp:
            work_dir = Path(tmp)
            leaderboard_path = work_dir / "leaderboard.csv"
            fitted["leaderboard_df"].to_csv(leaderboard_path, index_label="model_id")
            mlflow.log_artifact(str(leaderboard_path))
            _log_frame(holdout_df, HOLDOUT_ARTIFACT, work_dir)
            # Out-of-sample scores: on training rows a flexible model (rf) scores differently than on new data,
            # which monitoring would read as prediction drift.
            reference_df = holdout_df.sample(min(opts.reference_rows, len(holdout_df)), random_state=opts.seed)
            reference_df = reference_df[[cfg.id_column, *cfg.features]].reset_index(drop=True)
            reference_df["score"] = predict_positive_proba(model, reference_df[cfg.features])
            _log_frame(reference_df, REFERENCE_ARTIFACT, work_dir)
            _log_explanation(model, train_df[cfg.features], work_dir, opts.seed)
        _log_model(cfg, model, train_df)
        timings["logging_seconds"] = time.perf_counter() - started
        mlflow.log_metric("logging_seconds", timings["logging_seconds"])

        versions = find_run_versions(client, model_name, run_id)
        if not versions:
            raise RuntimeError(
                f"{cfg.name}: run {run_id} logged a model but no version of {model_name} exists"
            )
        tag_model_version(client, cfg, versions[0].version, client.get_run(run_id))
        result = _result_from_run(cfg, client.get_run(run_id), versions[0], reused=False)
    result["timings"] = {k: round(v, 2) for k, v in timings.items()}
    return result


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop train``."""
    parser = subparsers.add_parser("train", help="train on a snapshot and register the model as challenger")
    parser.add_argument("--snapshot-uri", help="snapshot parquet (default: the newest snapshot)")
    parser.add_argument("--reason", default="manual", help="trigger reason tag (default: manual)")
    parser.add_argument("--trigger-id", help="idempotency key (default: hash of reason and snapshot)")
    parser.set_defaults(func=_run_train_cli)


def _run_train_cli(args: Any) -> int:
    from driftloop.cli import print_result
    from driftloop.config import load_dataset_config

    trigger = {"reason": args.reason, "trigger_id": args.trigger_id}
    print_result(
        train_model(load_dataset_config(args.dataset), snapshot_uri=args.snapshot_uri, trigger=trigger)
    )
    return 0
