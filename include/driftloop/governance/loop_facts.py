"""The facts the view's loop state is decided from, read out of what :mod:`driftloop.governance.overview`
already fetched.

The versions (their answering ids), the charted monitoring runs (their firing fields) and the audit rows
(with ``undo``) become a :class:`driftloop.governance.loop_state.LoopFacts`; one more run search is made only
when no charted monitoring run fired, to find the newest firing beyond them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.governance.loop_state import Firing, LoopFacts, MonitoringResult, Move, VersionFact
from driftloop.governance.overview_results import FiredRun, FiringFields, MonitoringPoint, VersionRow

FIRINGS_SEARCHED = 5  # newest fired monitoring runs read when none is charted


def answers(tags: dict[str, str]) -> list[str]:
    """The monitoring run and trigger ids a version was trained for or asked for (``asked_by`` values read
    ``why: id``)."""
    found = {tags.get(bus.MONITORING_RUN_ID_TAG, ""), tags.get(bus.TRIGGER_ID_TAG, "")}
    found |= {v.partition(": ")[2] for k, v in tags.items() if k.startswith(bus.ASKED_BY_TAG_PREFIX)}
    return sorted(found - {""})


def firing_fields(tags: dict[str, str]) -> FiringFields:
    """A monitoring run's firing: ``fired_at`` epoch seconds (None: not fired), ``trigger_run_id``, and
    ``waiting``, the retrain's "waits for labels" note."""
    fired = tags.get(bus.SENSOR_FIRED_AT_TAG)
    return {
        "fired_at": float(fired) if fired else None,
        "trigger_run_id": tags.get(bus.SENSOR_TRIGGER_RUN_ID_TAG, ""),
        "waiting": tags.get(bus.RETRAIN_WAITING_TAG, ""),
    }


def newest_firing(client: Any, cfg: DatasetConfig, monitoring: Sequence[FiredRun]) -> FiredRun | None:
    """The newest fired monitoring run: among the charted points, else by one search beyond them; None when
    the sensor never fired (or no monitoring run exists)."""
    fired = [p for p in monitoring if p["fired_at"] is not None]
    if fired:
        return max(fired, key=lambda p: p["fired_at"] or 0.0)
    experiment = client.get_experiment_by_name(cfg.experiment_name("monitoring")) if monitoring else None
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{bus.SENSOR_FIRED_AT_TAG}` LIKE '%'",
        max_results=FIRINGS_SEARCHED,
        order_by=["attributes.start_time DESC"],
    )
    points: list[FiredRun] = [
        {
            "run_id": r.info.run_id,
            "champion_version": r.data.tags.get(bus.CHAMPION_VERSION_TAG, ""),
            **firing_fields(r.data.tags),
        }
        for r in runs
    ]
    return max(
        (p for p in points if p["fired_at"] is not None), key=lambda p: p["fired_at"] or 0.0, default=None
    )


def epoch_s(iso: str) -> float:
    """Epoch seconds of an ISO time (an audit entry's ``recorded_at``); a naive time is UTC."""
    moment = datetime.fromisoformat(iso)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def loop_facts(
    client: Any,
    cfg: DatasetConfig,
    champion: str | None,
    versions: Sequence[VersionRow],
    monitoring: Sequence[MonitoringPoint],
    audit: list[dict[str, Any]],
) -> LoopFacts:
    """The loop's facts from the overview's rows.

    Args:
        client: MLflow client (used only when no charted monitoring run fired).
        cfg: Dataset config.
        champion: The champion version, or None.
        versions: ``describe_versions`` rows.
        monitoring: ``describe_monitoring`` points, oldest first.
        audit: ``describe_audit`` rows, newest first.
    """
    f = newest_firing(client, cfg, monitoring)
    firing = None
    if f is not None and f["fired_at"] is not None:  # newest_firing returns a fired run only
        firing = Firing(f["fired_at"], f["run_id"], f["trigger_run_id"], f["champion_version"], f["waiting"])
    facts = tuple(
        VersionFact(
            version=v["version"],
            created_s=(v["created_ms"] or 0) / 1000,
            gate=v["gate"],
            gate_reason=v["gate_reason"],
            trigger=v["trigger"],
            answers=frozenset(v["answers"]),
        )
        for v in versions
    )
    move = None
    if audit:
        a = audit[0]
        move = Move(
            at_s=epoch_s(a["recorded_at"]),
            from_version=a["from_version"],
            to_version=a["to_version"],
            actor=a["actor"] or "",
            reason=a["reason"] or "",
            undo=bool(a["undo"]),
        )
    result = None
    if monitoring:
        last = monitoring[-1]
        result = MonitoringResult(
            at_s=last["start_ms"] / 1000,
            drift_share=last["drift_share"],
            drift_threshold=cfg.monitoring.drift_share_threshold,
            live_drop=last["live_drop"],
            drop_threshold=cfg.monitoring.performance_drop_threshold,
            fired=last["fired_at"] is not None,
            decision=last["decision"],
        )
    return LoopFacts(champion, firing, facts, move, result)
