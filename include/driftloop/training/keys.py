"""Which training a trigger asks for: its trigger id, its training key, and the answer when the key was
trained before.

A training is keyed by what it reads (:func:`training_key`): the snapshot's hash, the config that shapes the
model and its verdict, and the code version. A key gets one model version, whoever asks and however often
(:func:`driftloop.training.train.train_model`); a trigger asking for a key that has one gets
:func:`answer_repeat_request`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from driftloop.core import bus, registry
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.training.training_results import TrainingResult, WaitingResult

log = logging.getLogger(__name__)


def derive_trigger_id(trigger: dict[str, Any], snapshot_hash: str) -> str:
    """The trigger's identity: an explicit ``trigger_id``, the Airflow run id, else a hash of reason +
    snapshot."""
    if trigger.get("trigger_id"):
        return str(trigger["trigger_id"])
    if trigger.get("airflow_run_id"):
        return str(trigger["airflow_run_id"])
    reason = trigger.get("reason") or "manual"
    return hashlib.sha256(f"{reason}:{snapshot_hash}".encode()).hexdigest()[:16]


def training_key(cfg: DatasetConfig, snapshot_hash: str, settings: Settings) -> str:
    """What a training reads, hashed: the snapshot, the config that shapes the model and its verdict (columns,
    contract, ``training``, ``gates``, ``fairness``) and the code version (``tracking.git_commit``)."""
    from dataclasses import asdict

    from driftloop.core.tracking import git_commit

    shaping = {
        "snapshot_hash": snapshot_hash,
        "code": git_commit(settings),
        "columns": [cfg.id_column, cfg.target, cfg.positive_label, cfg.task, *cfg.features],
        "sensitive": list(cfg.sensitive_features),
        "contract": cfg.contract,
        "training": asdict(cfg.training),
        "gates": asdict(cfg.gates),
        "fairness": asdict(cfg.fairness),
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:32]


def result_from_run(cfg: DatasetConfig, run: Any, version: Any, reused: bool) -> TrainingResult:
    """A training result read back from its run and version (``reused``: not trained by this call).

    Args:
        cfg: Dataset config.
        run: The training run.
        version: Its registered version.
        reused: Whether the version was registered before this call.
    """
    name = cfg.registered_model_name
    return {
        "run_id": run.info.run_id,
        "model_name": name,
        "model_version": str(version.version),
        "model_uri": bus.model_version_uri(name, version.version),
        "snapshot_hash": run.data.tags.get(bus.SNAPSHOT_HASH_TAG, ""),
        "best_model": run.data.tags.get(bus.BEST_MODEL_TAG, ""),
        "metrics": {k: run.data.metrics[k] for k in bus.HOLDOUT_METRICS if k in run.data.metrics},
        "threshold": run.data.tags.get(bus.THRESHOLD_TAG),
        "reused": reused,
    }


def waiting_result(
    cfg: DatasetConfig, client: Any, snapshot_hash: str, trigger: dict[str, Any], reason: str
) -> WaitingResult:
    """The result of a drift retrain that registers nothing (no new labels); noted on its monitoring run.

    Args:
        cfg: Dataset config.
        client: MLflow client.
        snapshot_hash: The snapshot asked for.
        trigger: The trigger (its ``monitoring_run_id`` gets the note).
        reason: Why nothing is registered.
    """
    log.info("%s: %s", cfg.name, reason)
    if trigger.get("monitoring_run_id"):
        client.set_tag(trigger["monitoring_run_id"], bus.RETRAIN_WAITING_TAG, reason[:5000])
    return {
        "run_id": None,
        "model_name": cfg.registered_model_name,
        "model_version": None,
        "snapshot_hash": snapshot_hash,
        "registered": False,
        "waiting_for_labels": True,
        "reason": reason,
        "reused": False,
    }


def answer_repeat_request(
    cfg: DatasetConfig, client: Any, version: Any, key: str, trigger_id: str, reason: str
) -> TrainingResult:
    """The result of a trigger whose training key already has ``version``: recorded on it, nothing
    registered.

    Args:
        cfg: Dataset config.
        client: MLflow client.
        version: The key's registered version.
        key: The training key.
        trigger_id: The trigger asking.
        reason: Why it asks (``drift``, ``new_data``, ``manual``).
    """
    registry.record_request(client, cfg, str(version.version), trigger_id, reason)
    if bus.TRAINING_KEY_TAG not in version.tags:  # its run died between registering and tagging: finish it
        registry.register_challenger(client, cfg, version.version, client.get_run(version.run_id))
        version = client.get_model_version(cfg.registered_model_name, version.version)
    first = version.tags.get(bus.TRIGGER_REASON_TAG, "?")
    log.info(
        "training key %s already has v%s (trained for %s, trigger %s): %s asked for it again (trigger %s); "
        "registered nothing, recorded the request on v%s",
        key[:12], version.version, first, version.tags.get(bus.TRIGGER_ID_TAG, "?"), reason, trigger_id,
        version.version,
    )  # fmt: skip
    result = result_from_run(cfg, client.get_run(version.run_id), version, reused=True)
    result["asked_again"] = {"trigger_id": trigger_id, "reason": reason, "first_reason": first}
    return result
