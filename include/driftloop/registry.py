"""Model registry: resolve aliases, load models, register challengers and the gate that moves ``champion``.

Aliases are set here and nowhere else. Models are pickles (cloudpickle) and unpickling runs code, so models are
loaded only from our own MLflow registry: that registry is the trust boundary. Never point :func:`load_model` at a
URI from outside it.
"""

from __future__ import annotations

import math
from typing import Any

from driftloop import bus, evaluation
from driftloop.config import DatasetConfig
from driftloop.errors import GateRejected
from driftloop.settings import Settings
from driftloop.tracking import get_client, mlflow_scope

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
            client.set_model_version_tag(name, version, bus.holdout_version_tag(key), f"{run.data.metrics[key]:.6f}")
    client.set_registered_model_alias(name, CHALLENGER, version)


def move_alias(cfg: DatasetConfig, alias: str, version: str, settings: Settings | None = None) -> None:
    """Point ``alias`` of ``cfg``'s model at ``version`` (callers: the gate and :mod:`driftloop.promotion`)."""
    get_client(settings).set_registered_model_alias(cfg.registered_model_name, alias, str(version))


def check_floors(cfg: DatasetConfig, metrics: dict[str, float]) -> list[str]:
    """Every absolute floor in ``cfg.gates.floors`` the metrics miss, as readable failures (empty: all met)."""
    failures = []
    for metric, floor in cfg.gates.floors.items():
        key = evaluation.gate_metric_key(metric)
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


def _verdict(decision: str, reason: str, champion_version: str | None, candidate_version: str,
             candidate_metric: float | None, champion_metric: float | None) -> dict[str, Any]:
    return {
        "decision": decision,
        "reason": reason,
        "champion_version": champion_version,
        "candidate_version": candidate_version,
        "candidate_metric": candidate_metric,
        "champion_metric": champion_metric,
    }


def _judge_floors(cfg: DatasetConfig, candidate_version: str, metrics: dict[str, float],
                  champion: dict[str, str] | None) -> dict[str, Any] | None:
    """The rejection when the candidate misses a floor, else None."""
    failures = check_floors(cfg, metrics)
    if not failures:
        return None
    floors_text = "; ".join(failures)
    if champion is None:
        reason = f"no {CHAMPION} yet and version {candidate_version} misses floors: {floors_text}"
    else:
        reason = (f"version {candidate_version} misses floors: {floors_text}; "
                  f"{CHAMPION} v{champion['model_version']} keeps serving")
    metric = metrics.get(evaluation.gate_metric_key(cfg.gates.primary_metric))
    return _verdict(bus.GATE_REJECTED, reason, champion and champion["model_version"], candidate_version, metric,
                    None)


def _judge_first(cfg: DatasetConfig, candidate_version: str, metrics: dict[str, float]) -> dict[str, Any]:
    """A first version that meets every floor becomes champion."""
    reason = f"first {CHAMPION}: version {candidate_version} meets every floor " + ", ".join(
        f"{m} {metrics[evaluation.gate_metric_key(m)]:.4f} >= {f}" for m, f in cfg.gates.floors.items()
    )
    metric = metrics.get(evaluation.gate_metric_key(cfg.gates.primary_metric))
    return _verdict(bus.GATE_PASSED, reason, candidate_version, candidate_version, metric, None)


def _judge_head_to_head(cfg: DatasetConfig, client: Any, version: Any, champion: dict[str, str],
                        settings: Settings | None) -> dict[str, Any]:
    """Both models score the candidate's holdout, so the comparison is like for like."""
    name, candidate_version = cfg.registered_model_name, str(version.version)
    primary = cfg.gates.primary_metric
    key = evaluation.gate_metric_key(primary)
    holdout_df = evaluation.load_holdout(client, version.run_id)
    candidate_model = load_model(bus.model_version_uri(name, candidate_version), settings)
    champion_model = load_model(champion["model_uri"], settings)
    candidate_metric = evaluation.score_on_holdout(cfg, candidate_model, holdout_df)[key]
    champion_metric = evaluation.score_on_holdout(cfg, champion_model, holdout_df)[key]
    wins = candidate_metric >= champion_metric + cfg.gates.min_improvement
    comparison = (
        f"{primary} on version {candidate_version}'s holdout ({len(holdout_df)} rows): candidate "
        f"{candidate_metric:.4f} {'>=' if wins else '<'} {CHAMPION} v{champion['model_version']} "
        f"{champion_metric:.4f} + min_improvement {cfg.gates.min_improvement}"
    )
    reason = f"{'beats' if wins else 'does not beat'} {CHAMPION}: {comparison}"
    return _verdict(bus.GATE_PASSED if wins else bus.GATE_REJECTED, reason,
                    candidate_version if wins else champion["model_version"], candidate_version, candidate_metric,
                    champion_metric)


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
        GateRejected: There is no champion and the candidate misses a floor (the version is tagged rejected), so
            nothing can serve.
    """
    client = get_client(settings)
    name = cfg.registered_model_name
    candidate_version = str(model_version)
    version = client.get_model_version(name, candidate_version)
    champion = resolve_alias(cfg, CHAMPION, settings)
    if champion is not None and champion["model_version"] == candidate_version:
        # Already champion (e.g. a retried task): report the recorded decision, change nothing.
        tags = version.tags
        return {
            **_verdict(bus.GATE_PASSED, tags.get(bus.GATE_REASON_TAG, f"version {candidate_version} is already "
                                                 f"{CHAMPION}"), candidate_version, candidate_version,
                       _float_or_none(tags.get(bus.GATE_CANDIDATE_METRIC_TAG)),
                       _float_or_none(tags.get(bus.GATE_CHAMPION_METRIC_TAG))),
            "decision": "promoted",
        }
    metrics = client.get_run(version.run_id).data.metrics
    verdict = _judge_floors(cfg, candidate_version, metrics, champion)
    if verdict is None:
        verdict = (_judge_first(cfg, candidate_version, metrics) if champion is None
                   else _judge_head_to_head(cfg, client, version, champion, settings))
    _tag_gate(client, name, candidate_version, {
        bus.GATE_TAG: verdict["decision"],
        bus.GATE_REASON_TAG: verdict["reason"],
        bus.GATE_CANDIDATE_METRIC_TAG: verdict["candidate_metric"],
        bus.GATE_CHAMPION_METRIC_TAG: verdict["champion_metric"],
        bus.GATE_CHAMPION_VERSION_TAG: champion["model_version"] if champion and verdict["champion_metric"] is not None
        else None,
    })
    if verdict["decision"] == bus.GATE_PASSED:
        client.set_registered_model_alias(name, CHAMPION, candidate_version)
    elif champion is None:
        raise GateRejected(f"{name}: {verdict['reason']}")
    return {**verdict, "decision": "promoted" if verdict["decision"] == bus.GATE_PASSED else "rejected"}


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def add_cli(subparsers: Any) -> None:
    """Register ``driftloop promote`` and ``driftloop alias``."""
    from driftloop.cli import dataset_parent

    promote = subparsers.add_parser("promote", parents=[dataset_parent()], help="run the champion gate on a version")
    promote.add_argument("version", help="registered model version to judge")
    promote.set_defaults(func=_cmd_promote)
    alias = subparsers.add_parser("alias", parents=[dataset_parent()], help="show the model version behind an alias")
    alias.add_argument("alias", nargs="?", default=CHAMPION, help="alias (default: champion)")
    alias.set_defaults(func=_cmd_alias)


def _cmd_promote(args: Any) -> int:
    from driftloop.cli import print_result
    from driftloop.config import load_dataset_config

    print_result(promote_model(load_dataset_config(args.dataset), args.version))
    return 0


def _cmd_alias(args: Any) -> int:
    from driftloop.cli import print_result
    from driftloop.config import load_dataset_config

    resolved = resolve_alias(load_dataset_config(args.dataset), args.alias)
    print_result(resolved)
    return 0 if resolved else 1
