"""Promotion: the one way a version becomes ``champion``, following the dataset's policy.

Whoever decides that a version should serve (the training gate, an A/B evaluation, a person with the CLI) calls
:func:`promote_version`. Under ``gates.policy: auto`` it moves ``champion``; under ``manual`` it only marks the
version ready (``driftloop.ready_for_champion``) and a person moves ``champion`` in the MLflow UI.
"""

from __future__ import annotations

from typing import Any

from driftloop import bus, registry
from driftloop.config import DatasetConfig
from driftloop.settings import Settings
from driftloop.tracking import get_client


def promote_version(cfg: DatasetConfig, version: str, *, actor: str, reason: str,
                    settings: Settings | None = None) -> dict[str, Any]:
    """Apply the dataset's promotion policy to a version that earned it.

    Args:
        cfg: Dataset config (``gates.policy``).
        version: Registered version of ``cfg.registered_model_name``.
        actor: Who decided, e.g. ``training_pipeline/<run id>`` or ``ab_evaluation/<run id>``.
        reason: Why, with the numbers.
        settings: Process settings.

    Returns:
        ``{"policy", "version", "champion_version", "moved"}``: ``moved`` is True when ``champion`` now points at
        ``version`` because of this call.
    """
    client = get_client(settings)
    name = cfg.registered_model_name
    current = registry.resolve_alias(cfg, bus.CHAMPION, settings)
    if cfg.gates.policy == "manual":
        client.set_model_version_tag(name, str(version), bus.READY_FOR_CHAMPION_TAG, f"{actor}: {reason}"[:5000])
        return {"policy": "manual", "version": str(version), "moved": False,
                "champion_version": current["model_version"] if current else None}
    moved = current is None or current["model_version"] != str(version)
    if moved:
        registry.move_alias(cfg, bus.CHAMPION, str(version), settings)
    return {"policy": "auto", "version": str(version), "champion_version": str(version), "moved": moved}
