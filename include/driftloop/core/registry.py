"""Model registry: resolve aliases, load models, register challengers, move aliases.

Aliases are set here and nowhere else (the gate and every other promotion go through
:mod:`driftloop.governance.promotion`, which calls :func:`move_alias` under the audit log's lock). Models are
pickles (cloudpickle) and unpickling runs code, so models are loaded only from our own MLflow registry: that
registry is the trust boundary. Never point :func:`load_model` at a URI from outside it.
"""

from __future__ import annotations

from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.tracking import get_client, mlflow_scope

CHAMPION = bus.CHAMPION
CHALLENGER = bus.CHALLENGER


def resolve_alias(
    cfg: DatasetConfig, alias: str = CHAMPION, settings: Settings | None = None
) -> dict[str, str] | None:
    """The model version an alias points at.

    Args:
        cfg: Dataset config (gives the registered model name).
        alias: Registry alias, ``champion`` or ``challenger``.
        settings: Process settings; defaults to :meth:`Settings.from_env`.

    Returns:
        ``{"model_name", "model_version", "run_id", "model_uri"}``, or None when the model or alias is unset.
    """
    from mlflow.exceptions import MlflowException

    client = get_client(settings)
    name = cfg.registered_model_name
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return {
        "model_name": name,
        "model_version": str(version.version),
        "run_id": version.run_id,
        "model_uri": bus.model_version_uri(name, version.version),
    }


def read_alias_version(
    cfg: DatasetConfig, alias: str = CHAMPION, settings: Settings | None = None
) -> str | None:
    """The version ``alias`` points at, read cheaply: one REST call without importing MLflow when the tracking
    URI is a server (what Airflow's triggerer asks every few seconds), else :func:`resolve_alias`."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    settings = settings or Settings.from_env()
    base = settings.tracking_uri.rstrip("/")
    if not base.startswith(("http://", "https://")):
        found = resolve_alias(cfg, alias, settings)
        return found["model_version"] if found else None
    query = urllib.parse.urlencode({"name": cfg.registered_model_name, "alias": alias})
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/registered-models/alias?{query}")
    if settings.tracking_username:  # MLflow's basic auth, as its client sends it
        import base64

        pair = f"{settings.tracking_username}:{settings.tracking_password}".encode()
        request.add_header("Authorization", f"Basic {base64.b64encode(pair).decode()}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # the configured tracking server
            return str(json.load(response)["model_version"]["version"])
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        if exc.code in (400, 404) and (
            "RESOURCE_DOES_NOT_EXIST" in body or "INVALID_PARAMETER_VALUE" in body
        ):
            return None
        raise RuntimeError(
            f"MLflow at {base} answered HTTP {exc.code} for alias {alias}: {body[:300]}"
        ) from exc


def load_model(model_uri: str, settings: Settings | None = None) -> Any:
    """Load a registered model as the original sklearn/PyCaret object (with ``predict_proba``).

    Args:
        model_uri: ``models:/<name>/<version>`` or ``models:/<name>@<alias>`` of OUR registry only: the model
            is a pickle, and the registry is the trust boundary.
        settings: Process settings; defaults to :meth:`Settings.from_env`.

    Returns:
        The fitted pipeline.
    """
    import mlflow.sklearn

    with mlflow_scope(settings):
        return mlflow.sklearn.load_model(model_uri)


def find_run_versions(client: Any, cfg: DatasetConfig, run_id: str) -> list[Any]:
    """Registered versions of ``cfg``'s model created from training run ``run_id``, newest first."""
    name = cfg.registered_model_name
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return sorted(versions, key=lambda v: int(v.version), reverse=True)


def find_key_version(client: Any, cfg: DatasetConfig, training_key: str) -> Any | None:
    """The registered version trained for ``training_key`` (the oldest, should a legacy twin exist), or
    None."""
    from driftloop.core.tracking import search_runs

    runs = search_runs(client, cfg.experiment_name("training"), {bus.TRAINING_KEY_TAG: training_key})
    versions = [v for run in runs for v in find_run_versions(client, cfg, run.info.run_id)]
    return min(versions, key=lambda v: int(v.version)) if versions else None


def record_request(client: Any, cfg: DatasetConfig, version: str, trigger_id: str, reason: str) -> None:
    """Record on ``version`` that a trigger (``trigger_id``, why: ``reason``) asked for its training key."""
    client.set_model_version_tag(
        cfg.registered_model_name, version, bus.asked_by_tag(trigger_id), f"{reason}: {trigger_id}"[:5000]
    )


def register_once(
    cfg: DatasetConfig,
    client: Any,
    training_key: str,
    run_id: str,
    model_uri: str,
    lock: Any,
    settings: Settings | None = None,
) -> tuple[Any, bool]:
    """Register the model a training run logged, unless its training key already has a version.

    The look and the registration happen under ``lock`` (the audit store's promotion lock), so two runs of one
    key racing on two workers register one version between them.

    Args:
        cfg: Dataset config.
        client: MLflow client.
        training_key: The run's key (``bus.TRAINING_KEY_TAG``).
        run_id: The training run.
        model_uri: What the run logged (``models:/m-...``).
        lock: A context manager factory taking the model name (``AuditStore.locked``).
        settings: Process settings.

    Returns:
        ``(version, registered)``: the version of the key, and whether this call registered it.
    """
    import mlflow

    name = cfg.registered_model_name
    with lock(name):
        existing = find_key_version(client, cfg, training_key)
        if existing is not None:
            return existing, False
        with mlflow_scope(settings):
            registered = mlflow.register_model(model_uri, name)
    return client.get_model_version(name, registered.version), True


def register_challenger(client: Any, cfg: DatasetConfig, version: str, run: Any) -> None:
    """Copy the training run's lineage tags and holdout metrics onto the version; point ``challenger`` at it.

    Idempotent: safe to repeat when a retry resumes after registration.
    """
    name = cfg.registered_model_name
    run_tags = run.data.tags
    for tag in bus.VERSION_LINEAGE_TAGS:
        if run_tags.get(tag):
            client.set_model_version_tag(name, version, tag, run_tags[tag])
    for key in bus.HOLDOUT_METRICS:
        if key in run.data.metrics:
            client.set_model_version_tag(
                name, version, bus.holdout_version_tag(key), f"{run.data.metrics[key]:.6f}"
            )
    client.set_registered_model_alias(name, CHALLENGER, version)


def move_alias(cfg: DatasetConfig, alias: str, version: str, settings: Settings | None = None) -> None:
    """Point ``alias`` of ``cfg``'s model at ``version`` (callers: the gate and
    :mod:`driftloop.governance.promotion`)."""
    get_client(settings).set_registered_model_alias(cfg.registered_model_name, alias, str(version))


def waiting_for_labels(
    cfg: DatasetConfig, snapshot_hash: str, settings: Settings | None = None
) -> str | None:
    """Why a drift retrain on ``snapshot_hash`` would register a duplicate, or None when it would not.

    A drift retrain needs labels of the drifted period; while none arrived, the newest training snapshot is
    the one the champion was trained on (its ``bus.SNAPSHOT_HASH_TAG``), and training on it again reproduces
    the champion.
    """
    champion = resolve_alias(cfg, CHAMPION, settings)
    if champion is None or not snapshot_hash:
        return None
    tags = get_client(settings).get_model_version(cfg.registered_model_name, champion["model_version"]).tags
    if tags.get(bus.SNAPSHOT_HASH_TAG) != snapshot_hash:
        return None
    return (
        f"waiting for labels of the drifted period: snapshot {snapshot_hash[:12]} is the one champion "
        f"v{champion['model_version']} was trained on (no labelled rows arrived since); retraining on it "
        "would "
        "register a copy of the champion, so the retrain runs when labels land"
    )


def drop_alias(cfg: DatasetConfig, alias: str, version: str, settings: Settings | None = None) -> bool:
    """Delete ``alias`` of ``cfg``'s model when it points at ``version`` (e.g. ``challenger`` on a new
    champion).

    Returns:
        True when the alias was deleted, False when it pointed elsewhere or nowhere.
    """
    current = resolve_alias(cfg, alias, settings)
    if current is None or current["model_version"] != str(version):
        return False
    get_client(settings).delete_registered_model_alias(cfg.registered_model_name, alias)
    return True


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop alias``."""
    from driftloop.core.commands import dataset_parent

    alias = subparsers.add_parser(
        "alias", parents=[dataset_parent()], help="show the model version behind an alias"
    )
    alias.add_argument("alias", nargs="?", default=CHAMPION, help="alias (default: champion)")
    alias.set_defaults(func=_cmd_alias)


def _cmd_alias(args: Any) -> int:
    from driftloop.core.commands import print_result
    from driftloop.core.config import load_dataset_config

    resolved = resolve_alias(load_dataset_config(args.dataset), args.alias)
    print_result(resolved)
    return 0 if resolved else 1
