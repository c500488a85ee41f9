"""Model registry: resolve aliases, load models and the promotion gate that moves ``champion``.

Models are pickles (cloudpickle) and unpickling runs code, so models are loaded only from our own MLflow
registry: that registry is the trust boundary. Never point :func:`load_model` at a URI from outside it.
"""

from __future__ import annotations

import math
from typing import Any

from driftloop.config import DatasetConfig, Settings
from driftloop.tracking import TAG_PREFIX, get_client

CHAMPION = "champion"
CHALLENGER = "challenger"
GATE_TAG = f"{TAG_PREFIX}gate"
GATE_REASON_TAG = f"{TAG_PREFIX}gate_reason"
GATE_CHAMPION_METRIC_TAG = f"{TAG_PREFIX}gate_champion_metric"
GATE_CANDIDATE_METRIC_TAG = f"{TAG_PREFIX}gate_candidate_metric"
GATE_CHAMPION_VERSION_TAG = f"{TAG_PREFIX}gate_champion_version"


class GateError(RuntimeError):
    """A candidate model failed an absolute quality floor; the message names the metric, value and floor."""


def model_uri(model_name: str, model_version: str | int) -> str:
    """``models:/<name>/<version>``."""
    return f"models:/{model_name}/{model_version}"


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
        "model_uri": model_uri(name, version.version),
    }


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

    get_client(settings)  # points the mlflow module at our tracking and registry URIs
    return mlflow.sklearn.load_model(model_uri)


def load_holdout(client: Any, run_id: str) -> Any:
    """The holdout rows (id + features + target labels) a training run logged."""
    import tempfile

    import pandas as pd

    from driftloop.training import HOLDOUT_ARTIFACT

    with tempfile.TemporaryDirectory(prefix="driftloop-holdout-") as tmp:
        return pd.read_parquet(client.download_artifacts(run_id, HOLDOUT_ARTIFACT, tmp))


def score_on_holdout(cfg: DatasetConfig, model: Any, holdout_df: Any, metric: str) -> float:
    """The gate metric (``AUC``, ``F1``, ...) of ``model`` on labelled holdout rows."""
    from driftloop.training import (
        encode_target,
        evaluate_predictions,
        gate_metric_key,
        predict_positive_proba,
    )

    y_true = encode_target(holdout_df[cfg.target], cfg.positive_label)
    proba = predict_positive_proba(model, holdout_df[cfg.features])
    return evaluate_predictions(y_true, proba, cfg.inference.threshold)[gate_metric_key(metric)]


def check_floors(cfg: DatasetConfig, metrics: dict[str, float]) -> list[str]:
    """Every absolute floor in ``cfg.gates.floors`` the metrics miss, as readable failures (empty: all met)."""
    from driftloop.training import gate_metric_key

    failures = []
    for metric, floor in cfg.gates.floors.items():
        key = gate_metric_key(metric)
        value = metrics.get(key)
        if value is None or math.isnan(value) or value < floor:
            shown = "missing" if value is None else f"{value:.4f}"
            failures.append(f"{metric} {shown} < floor {floor}")
    return failures


def _tag_gate(client: Any, name: str, version: str, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        if value is None:
            continue
        client.set_model_version_tag(
            name, version, key, f"{value:.6f}" if isinstance(value, float) else str(value)
        )


def promote_model(cfg: DatasetConfig, model_version: str, settings: Settings | None = None) -> dict[str, Any]:
    """The promotion gate: make ``model_version`` the ``champion`` if it is good enough.

    The candidate must always meet every floor in ``cfg.gates.floors`` (on its logged holdout metrics). Without
    a champion that is enough. With one, both models score the candidate's holdout and the candidate wins when
    its ``cfg.gates.primary_metric`` is at least the champion's plus ``cfg.gates.min_improvement``. Floors apply
    with a champion too because the comparison runs on the candidate's own holdout: a candidate trained on bad
    data (e.g. broken labels) also has a bad holdout, on which the champion looks just as bad.

    Losing while a champion serves is a normal outcome, not an error: the candidate stays ``challenger``. The
    decision is tagged on the version either way. Calling twice on the same version leaves the same aliases.

    Args:
        cfg: Dataset config.
        model_version: Registered version of ``cfg.registered_model_name`` to judge.
        settings: Process settings; defaults to :meth:`Settings.from_env`.

    Returns:
        ``{"decision": "promoted"|"rejected", "reason", "champion_version", "candidate_version",
        "candidate_metric", "champion_metric"}``; ``champion_version`` is the champion after the decision.

    Raises:
        GateError: There is no champion and the candidate misses a floor (the version is tagged rejected), so
            nothing can serve.
    """
    from driftloop.training import gate_metric_key

    client = get_client(settings)
    name = cfg.registered_model_name
    candidate_version = str(model_version)
    version = client.get_model_version(name, candidate_version)
    primary = cfg.gates.primary_metric
    candidate_run = client.get_run(version.run_id)
    candidate_metrics = candidate_run.data.metrics
    champion = resolve_alias(cfg, CHAMPION, settings)

    if champion is not None and champion["model_version"] == candidate_version:
        # Already champion (e.g. a retried task): report the recorded decision, change nothing.
        return {
            "decision": "promoted",
            "reason": version.tags.get(GATE_REASON_TAG, f"version {candidate_version} is already {CHAMPION}"),
            "champion_version": candidate_version,
            "candidate_version": candidate_version,
            "candidate_metric": _float_or_none(version.tags.get(GATE_CANDIDATE_METRIC_TAG)),
            "champion_metric": _float_or_none(version.tags.get(GATE_CHAMPION_METRIC_TAG)),
        }

    failures = check_floors(cfg, candidate_metrics)
    if failures:
        logged_metric = candidate_metrics.get(gate_metric_key(primary))
        floors_text = "; ".join(failures)
        if champion is None:
            reason = f"no {CHAMPION} yet and version {candidate_version} misses floors: {floors_text}"
        else:
            reason = (
                f"version {candidate_version} misses floors: {floors_text}; "
                f"{CHAMPION} v{champion['model_version']} keeps serving"
            )
        _tag_gate(
            client,
            name,
            candidate_version,
            {GATE_TAG: "rejected", GATE_REASON_TAG: reason, GATE_CANDIDATE_METRIC_TAG: logged_metric},
        )
        if champion is None:
            raise GateError(f"{name}: {reason}")
        return {
            "decision": "rejected",
            "reason": reason,
            "champion_version": champion["model_version"],
            "candidate_version": candidate_version,
            "candidate_metric": logged_metric,
            "champion_metric": None,
        }

    if champion is None:
        candidate_metric = candidate_metrics.get(gate_metric_key(primary))
        reason = f"first {CHAMPION}: version {candidate_version} meets every floor " + ", ".join(
            f"{m} {candidate_metrics[gate_metric_key(m)]:.4f} >= {f}" for m, f in cfg.gates.floors.items()
        )
        _tag_gate(
            client,
            name,
            candidate_version,
            {GATE_TAG: "passed", GATE_REASON_TAG: reason, GATE_CANDIDATE_METRIC_TAG: candidate_metric},
        )
        client.set_registered_model_alias(name, CHAMPION, candidate_version)
        return {
            "decision": "promoted",
            "reason": reason,
            "champion_version": candidate_version,
            "candidate_version": candidate_version,
            "candidate_metric": candidate_metric,
            "champion_metric": None,
        }

    # Both models score the same rows (the candidate's holdout), so the comparison is like for like.
    holdout_df = load_holdout(client, version.run_id)
    candidate_model = load_model(model_uri(name, candidate_version), settings)
    champion_model = load_model(champion["model_uri"], settings)
    candidate_metric = score_on_holdout(cfg, candidate_model, holdout_df, primary)
    champion_metric = score_on_holdout(cfg, champion_model, holdout_df, primary)
    required = champion_metric + cfg.gates.min_improvement
    wins = candidate_metric >= required
    comparison = (
        f"{primary} on version {candidate_version}'s holdout ({len(holdout_df)} rows): candidate "
        f"{candidate_metric:.4f} {'>=' if wins else '<'} {CHAMPION} v{champion['model_version']} "
        f"{champion_metric:.4f} + min_improvement {cfg.gates.min_improvement}"
    )
    reason = f"{'beats' if wins else 'does not beat'} {CHAMPION}: {comparison}"
    _tag_gate(
        client,
        name,
        candidate_version,
        {
            GATE_TAG: "passed" if wins else "rejected",
            GATE_REASON_TAG: reason,
            GATE_CANDIDATE_METRIC_TAG: candidate_metric,
            GATE_CHAMPION_METRIC_TAG: champion_metric,
            GATE_CHAMPION_VERSION_TAG: champion["model_version"],
        },
    )
    if wins:
        client.set_registered_model_alias(name, CHAMPION, candidate_version)
    return {
        "decision": "promoted" if wins else "rejected",
        "reason": reason,
        "champion_version": candidate_version if wins else champion["model_version"],
        "candidate_version": candidate_version,
        "candidate_metric": candidate_metric,
        "champion_metric": champion_metric,
    }


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop promote`` and ``driftloop alias``."""
    promote = subparsers.add_parser("promote", help="run the champion gate on a model version")
    promote.add_argument("version", help="registered model version to judge")
    promote.set_defaults(func=_run_promote_cli)
    alias = subparsers.add_parser("alias", help="show the model version behind an alias")
    alias.add_argument("alias", nargs="?", default=CHAMPION, help="alias (default: champion)")
    alias.set_defaults(func=_run_alias_cli)


def _run_promote_cli(args: Any) -> int:
    from driftloop.cli import print_result
    from driftloop.config import load_dataset_config

    try:
        print_result(promote_model(load_dataset_config(args.dataset), args.version))
    except GateError as exc:
        print(exc)
        return 1
    return 0


def _run_alias_cli(args: Any) -> int:
    from driftloop.cli import print_result
    from driftloop.config import load_dataset_config

    resolved = resolve_alias(load_dataset_config(args.dataset), args.alias)
    print_result(resolved)
    return 0 if resolved else 1
