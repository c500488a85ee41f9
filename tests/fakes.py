"""Fakes of what the training and inference stages publish on the bus, for tests of the stages downstream.

Every tag, artifact path, column and manifest field comes from :mod:`driftloop.core.bus`, exactly as the real
writers use them, so renaming one breaks the fakes and the real stages together and a test cannot pass on a
stale name.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from driftloop.core import bus
from driftloop.core.state import StatePaths, path_to_uri
from driftloop.core.task_types import BINARY, Decision

TRAIN_ROWS = slice(0, 4000)
BATCH_ROWS = slice(4000, 6000)
HOLDOUT_ROWS = slice(6000, None)
# How the fake champion decides, recorded on its run exactly as training records a real version's decision.
TELCO_DECISION = Decision(BINARY, ("No", "Yes"), 0.5)


def put_parquet(frame: Any, path: Any) -> None:
    """Write ``frame`` to ``path`` in a data zone (a folder or a bucket) as the stages do: whole or not at
    all."""
    from driftloop.core.storage import atomic_path

    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def put_text(text: str, path: Any) -> None:
    """Write ``text`` to ``path`` in a data zone (a folder or a bucket), e.g. a file dropped in landing."""
    from driftloop.core.storage import write_bytes_atomic

    write_bytes_atomic(path, text.encode())


def put_csv(frame: Any, path: Any) -> None:
    """Write ``frame`` as CSV (no index) to ``path`` in a data zone: a file dropped in a landing zone."""
    put_text(frame.to_csv(index=False), path)


def fit_scorer(telco_frame: Any) -> tuple[Any, float]:
    """A small logistic regression on the first 4,000 customers; returns (predict_proba fn, holdout_f1)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    base = load_dataset_config("telco_churn", Settings.from_env({}))
    numeric, categorical = list(base.numeric_features), list(base.categorical_features)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
                ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
            ]
        ),
        LogisticRegression(max_iter=500),
    )
    train = telco_frame.iloc[TRAIN_ROWS]
    model.fit(train[base.features], train[base.target] == base.positive_label)

    def score(frame: Any) -> Any:
        return model.predict_proba(frame[base.features])[:, 1]

    score.model = model  # type: ignore[attr-defined]  # for fakes that register the real model

    holdout = telco_frame.iloc[HOLDOUT_ROWS]
    holdout_f1 = f1_score(holdout[base.target] == base.positive_label, score(holdout) >= 0.5)
    return score, float(holdout_f1)


def register_champion(
    cfg: Any,
    frame: Any,
    scorer: tuple[Any, float],
    importance: dict[str, float] | None = None,
    calibrated: bool = False,
) -> tuple[str, str]:
    """Fake the training stage: a run with the drift reference and holdout metrics, registered as champion.

    With ``importance``, the run also carries the real fitted model and an evidence summary with that mean
    |SHAP| per feature (what training logs), so monitoring can explain drift. With ``calibrated``, it carries
    a calibration map fitted on the holdout's true labels (training fits it out of fold), so monitoring
    estimates performance.
    """
    from driftloop.core.tracking import ensure_experiment, get_client

    score, holdout_f1 = scorer
    client = get_client()
    run = client.create_run(
        ensure_experiment(client, cfg.experiment_name("training")), tags=TELCO_DECISION.to_tags()
    )
    run_id = run.info.run_id
    if importance is not None:
        client.log_dict(
            run_id,
            {"shap_importance": [{"feature": f, "mean_abs_shap": v} for f, v in importance.items()]},
            bus.EVIDENCE_ARTIFACT,
        )
        _log_real_model(run_id, score.model)
    reference = frame.iloc[TRAIN_ROWS][[cfg.id_column, *cfg.features]].copy()
    for column, values in TELCO_DECISION.predict(score.model, reference[cfg.features]).items():
        reference[column] = values
    with tempfile.TemporaryDirectory(prefix="driftloop-fake-training-") as tmp:
        local = Path(tmp) / Path(bus.REFERENCE_ARTIFACT).name
        reference.to_parquet(local, index=False)
        client.log_artifact(run_id, str(local), artifact_path=str(Path(bus.REFERENCE_ARTIFACT).parent))
    if calibrated:
        from driftloop.training.calibration import OutOfFold, fit_calibration

        holdout = frame.iloc[HOLDOUT_ROWS]
        truth = (holdout[cfg.target] == TELCO_DECISION.classes[1]).to_numpy().astype(int)
        cmap = fit_calibration("binary", TELCO_DECISION.classes, OutOfFold(truth, score(holdout)), seed=0)
        client.log_text(run_id, cmap.to_json(), bus.CALIBRATION_MAP_ARTIFACT)
    client.log_metric(run_id, bus.HOLDOUT_F1, holdout_f1)
    client.log_metric(run_id, "holdout_auc", 0.84)
    client.set_terminated(run_id)
    client.create_registered_model(cfg.registered_model_name)
    version = client.create_model_version(
        cfg.registered_model_name,
        source=f"{run.info.artifact_uri}/{bus.MODEL_ARTIFACT}",
        run_id=run_id,
        tags=TELCO_DECISION.to_tags(),
    ).version
    client.set_registered_model_alias(cfg.registered_model_name, bus.CHAMPION, version)
    return str(version), run_id


def _log_real_model(run_id: str, model: Any) -> None:
    import mlflow.sklearn

    from driftloop.core.tracking import get_client

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / bus.MODEL_ARTIFACT
        mlflow.sklearn.save_model(model, str(local), serialization_format="cloudpickle")
        get_client().log_artifacts(run_id, str(local), bus.MODEL_ARTIFACT)


def write_batch(cfg: Any, frame: Any, batch_id: str) -> dict[str, Any]:
    """Fake the data stage's accepted scoring batch: features parquet plus its manifest."""
    from driftloop.core.storage import write_json

    paths = StatePaths.for_dataset(cfg)
    path = paths.batches_dir / f"{batch_id}.parquet"
    put_parquet(frame[[cfg.id_column, *cfg.features]], path)
    manifest: bus.BatchManifest = {
        "batch_id": batch_id,
        "kind": "batch",
        "batch_uri": path_to_uri(path),
        "has_target": False,
        "rows_received": len(frame),
        "rows_accepted": len(frame),
        "rows_quarantined": 0,
        "ingested_at": "2026-11-22T00:00:00+00:00",
    }
    write_json(paths.batches_dir / f"{batch_id}.json", dict(manifest))
    return dict(manifest)


def score_batch(
    cfg: Any, batch_df: Any, batch_id: str, version: str, model_run_id: str, scorer: tuple[Any, float]
) -> str:
    """Fake the inference stage for one batch (batch, predictions partition, FINISHED run); returns the run
    id."""
    from driftloop.core.tracking import ensure_experiment, get_client

    score, _ = scorer
    manifest = write_batch(cfg, batch_df, batch_id)
    predictions_path = StatePaths.for_dataset(cfg).predictions_dir / f"{batch_id}.parquet"
    predictions = batch_df[[cfg.id_column]].copy().reset_index(drop=True)
    for column, values in TELCO_DECISION.predict(score.model, batch_df[cfg.features]).items():
        predictions[column] = values
    lineage = {
        "model_name": cfg.registered_model_name,
        "model_version": version,
        "model_run_id": model_run_id,
    }
    for column in bus.PREDICTION_LINEAGE_COLUMNS:
        predictions[column] = lineage[column]
    predictions[bus.SCORED_AT_COLUMN] = "2026-11-22T00:00:00Z"
    put_parquet(predictions, predictions_path)

    client = get_client()
    tags = {
        bus.BATCH_ID_TAG: batch_id,
        bus.BATCH_URI_TAG: manifest["batch_uri"],
        bus.PREDICTIONS_URI_TAG: path_to_uri(predictions_path),
        bus.MODEL_VERSION_TAG: version,
        bus.MODEL_RUN_ID_TAG: model_run_id,
    }
    run = client.create_run(ensure_experiment(client, cfg.experiment_name("inference")), tags=tags)
    client.log_metric(run.info.run_id, bus.ROWS, len(predictions))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def write_labels(cfg: Any, batch_df: Any, name: str, flip: bool = False) -> None:
    """Fake the data stage's accepted late labels; ``flip`` swaps Yes/No to simulate concept drift."""
    labels = batch_df[[cfg.id_column, cfg.target]].copy()
    if flip:
        labels[cfg.target] = labels[cfg.target].map({"Yes": "No", "No": "Yes"})
    put_parquet(labels, StatePaths.for_dataset(cfg).labels_dir / f"{name}.parquet")


def drift_frame(frame: Any) -> Any:
    """Covariate shift on 3 numeric and 6 categorical features (9 of 19)."""
    drifted = frame.copy()
    drifted["tenure"] = drifted["tenure"] * 3
    drifted["monthly_charges"] = drifted["monthly_charges"] + 50
    drifted["total_charges"] = drifted["total_charges"] * 2.5
    drifted["contract"] = "Month-to-month"
    drifted["internet_service"] = "Fiber optic"
    drifted["payment_method"] = "Electronic check"
    drifted["tech_support"] = "No"
    drifted["online_security"] = "No"
    drifted["paperless_billing"] = 1
    return drifted


def monitoring_runs(cfg: Any) -> list[Any]:
    """Every monitoring run of ``cfg``, newest first."""
    from driftloop.core.tracking import get_client, search_runs

    return search_runs(get_client(), cfg.experiment_name("monitoring"))
