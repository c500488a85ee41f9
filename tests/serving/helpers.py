"""Small models, their registration as training runs, and a live server on 127.0.0.1 for the serving tests.

Models are plain scikit-learn pipelines on the raw telco features (milliseconds per predict call), registered
the way training registers them (cloudpickle, a signature, holdout metrics, the drift reference artifact), so
the service, the export to monitoring and the drift sensor all work on them. The wrappers below misbehave on
purpose: one fails on a magic value, one is slow; they live in an importable module so worker processes
unpickle them.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from driftloop.core import bus

FIT_ROWS = slice(0, 3000)
REFERENCE_ROWS = slice(-1000, None)  # the last 1,000 rows of any dataset
POISON_CHARGES = 123.45  # within the contract's range, so only the model can refuse it


def fit_pipeline(cfg: Any, frame: Any, flip: bool = False) -> Any:
    """A logistic (ridge, for regression) regression on one-hot categories; ``flip`` learns the opposite
    binary labels (a bad model)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), list(cfg.numeric_features)),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(cfg.categorical_features)),
        ]
    )
    from driftloop.core.task_types import training_decision

    train = frame.iloc[FIT_ROWS]
    y = training_decision(cfg, frame[cfg.target]).encode(train[cfg.target])  # as training encodes the target
    estimator = Ridge() if cfg.task == "regression" else LogisticRegression(max_iter=500)
    return Pipeline([("pre", pre), ("clf", estimator)]).fit(train[cfg.features], 1 - y if flip else y)


class PoisonModel:
    """Scores like ``inner`` but raises when a row has ``monthly_charges == POISON_CHARGES``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def predict(self, frame: Any) -> Any:
        return (self.predict_proba(frame)[:, 1] >= 0.5).astype(int)

    def predict_proba(self, frame: Any) -> Any:
        if (frame["monthly_charges"] == POISON_CHARGES).any():
            raise ValueError("poisoned row")
        return self.inner.predict_proba(frame)


class SlowModel(PoisonModel):
    """Sleeps ``delay_s`` per predict call (like a PyCaret pipeline's flat cost) whatever the rows; also
    poisoned."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        super().__init__(inner)
        self.delay_s = delay_s

    def predict_proba(self, frame: Any) -> Any:
        time.sleep(self.delay_s)
        return super().predict_proba(frame)


def register_model(cfg: Any, model: Any, frame: Any, alias: str | None = None) -> tuple[str, str]:
    """Log ``model`` as training does (decision tags, holdout metrics, drift reference) and register it.

    Returns:
        (version, training run id).
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from driftloop.core.task_types import holdout_metrics, training_decision
    from driftloop.core.tracking import ensure_experiment, get_client, mlflow_scope

    client = get_client()
    experiment_id = ensure_experiment(client, cfg.experiment_name("training"))
    decision = training_decision(cfg, frame[cfg.target])
    reference = frame.iloc[REFERENCE_ROWS][[cfg.id_column, *cfg.features]].reset_index(drop=True)
    outputs = decision.predict(model, reference[cfg.features])
    for column in decision.output_columns():
        if column != bus.PREDICTION_COLUMN:
            reference[column] = outputs[column]
    metrics = holdout_metrics(decision, decision.encode(frame.iloc[REFERENCE_ROWS][cfg.target]), outputs)
    metrics = {k: v for k, v in metrics.items() if v == v}  # no NaN
    # A local file whatever the data location (the zones may be on object storage): MLflow logs a local file.
    workdir = tempfile.TemporaryDirectory(prefix="driftloop-test-training-")
    local = Path(workdir.name) / Path(bus.REFERENCE_ARTIFACT).name
    reference.to_parquet(local, index=False)
    example = frame.iloc[FIT_ROWS][cfg.features].head(5).reset_index(drop=True)
    with (
        workdir,
        mlflow_scope(),
        mlflow.start_run(experiment_id=experiment_id, tags=decision.to_tags()) as run,
    ):
        info = mlflow.sklearn.log_model(
            model,
            name=bus.MODEL_ARTIFACT,
            serialization_format="cloudpickle",
            signature=infer_signature(example, model.predict(example)),
            registered_model_name=cfg.registered_model_name,
            pip_requirements=["scikit-learn"],
        )  # no slow inference of requirements
        mlflow.log_artifact(str(local), artifact_path=str(Path(bus.REFERENCE_ARTIFACT).parent))
        mlflow.log_metrics(metrics)
    version = str(info.registered_model_version)
    tags = {**decision.to_tags(), **{bus.holdout_version_tag(k): f"{v:.6f}" for k, v in metrics.items()}}
    for key, value in tags.items():
        client.set_model_version_tag(cfg.registered_model_name, version, key, value)
    if alias:
        client.set_registered_model_alias(cfg.registered_model_name, alias, version)
    return version, run.info.run_id


def split_body(cfg: Any, rows: Any, with_ids: bool = True) -> dict:
    """MLflow's ``dataframe_split`` body of ``rows`` (the id column first when ``with_ids``)."""
    columns = [cfg.id_column, *cfg.features] if with_ids else list(cfg.features)
    data = rows[columns].astype(object).where(rows[columns].notna(), None).values.tolist()
    return {"dataframe_split": {"columns": columns, "data": data}}


class LiveServer:
    """``app`` served by uvicorn (uvloop, httptools) on 127.0.0.1 in a thread, stopped on exit."""

    def __init__(self, app: Any, start_timeout_s: float = 120.0) -> None:
        import uvicorn

        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, loop="uvloop", http="httptools", lifespan="on", log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.start_timeout_s = start_timeout_s

    @property
    def service(self) -> Any:
        """The running :class:`~driftloop.serving.online.service.ServingService`."""
        return self.app.state.service

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the serving app did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.sock.close()

    def run_coroutine(self, coroutine: Any, timeout_s: float = 60.0) -> Any:
        """Run ``coroutine`` on the server's event loop (e.g. a registry refresh) and return its result."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.service.loop).result(timeout_s)
