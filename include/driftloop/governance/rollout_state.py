"""Where a staged rollout stands, and its audit log.

A challenger in a rollout (``rollout.stages`` in the dataset config) carries its stage on its registered
version (``bus.ROLLOUT_STAGE_TAG``: ``shadow``, a share in %, ``completed`` or ``rolled_back``) with the time
the stage began (``bus.ROLLOUT_STAGE_STARTED_TAG``): the serving process reads them on its registry poll and
routes accordingly, and :mod:`driftloop.serving.online.rollout` counts a stage's evidence from that time.

Every stage a version enters is one entry of the append-only ``rollout_audit`` table (in the database of the
champion audit log, :mod:`driftloop.governance.audit`), unique per model, version and stage: a retried or
racing request to enter the same stage records nothing twice. The entry is written before the tag, under the
promotion lock, so the tag never shows a stage the log does not hold.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, cast

from driftloop.core import bus, registry
from driftloop.core.config import DatasetConfig
from driftloop.core.serving_config import RolloutConfig
from driftloop.core.settings import Settings
from driftloop.core.tracking import get_client
from driftloop.governance import audit
from driftloop.governance.governance_results import RolloutBegun, RolloutEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutStage:
    """The stage a version is in, as its registry tags say."""

    version: str
    stage: str | None  # None: the version is in no rollout
    started_s: float | None
    plan: RolloutConfig  # the plan its rollout follows (:func:`read_plan`), from the same read of its tags

    @property
    def active(self) -> bool:
        """True while the rollout still runs (not completed, not rolled back)."""
        return self.stage is not None and self.stage not in bus.ROLLOUT_DONE


def stage_name(stage: str | int) -> str:
    """A config stage as the tag spells it: ``shadow`` or the share in % (``5``)."""
    return str(stage)


def read_stage(client: Any, cfg: DatasetConfig, version: str) -> RolloutStage:
    """The stage ``version`` is in and the plan it follows (one read of its tags)."""
    tags = client.get_model_version(cfg.registered_model_name, str(version)).tags
    started = tags.get(bus.ROLLOUT_STAGE_STARTED_TAG)
    return RolloutStage(
        str(version),
        tags.get(bus.ROLLOUT_STAGE_TAG),
        float(started) if started else None,
        read_plan(cfg, tags),
    )


def rollout_entries(
    store: audit.AuditStore, model_name: str, version: str | None = None, conn: Any = None
) -> list[RolloutEntry]:
    """The rollout audit entries of ``model_name`` (of one ``version`` when given), oldest first."""
    from sqlalchemy import text

    where = "model_name = :name" + (" AND version = :version" if version is not None else "")
    query = text(
        f"SELECT {', '.join(audit.ROLLOUT_COLUMNS)} FROM {audit.ROLLOUT_TABLE} WHERE {where} ORDER BY id"
    )
    params = {"name": model_name, "version": str(version)}
    if conn is None:
        with store.engine.connect() as own:
            rows = own.execute(query, params).mappings().all()
    else:
        rows = conn.execute(query, params).mappings().all()
    # The table's columns (the schema is ours), with the evidence decoded.
    return [cast(RolloutEntry, {**dict(r), "evidence": json.loads(r["evidence"])}) for r in rows]


def enter_stage(
    cfg: DatasetConfig,
    client: Any,
    store: audit.AuditStore,
    conn: Any,
    version: str,
    to_stage: str,
    *,
    actor: str,
    reason: str,
    evidence: dict[str, Any],
) -> RolloutEntry | None:
    """Record that ``version`` enters ``to_stage`` and tag it, inside the caller's locked transaction.

    Returns:
        The new audit entry, or None when the version had entered that stage before (nothing is written but
        the tag, which a crash may have left behind the entry).
    """
    from sqlalchemy import text

    name = cfg.registered_model_name
    current = read_stage(client, cfg, version)
    earlier = [e for e in rollout_entries(store, name, version, conn) if e["to_stage"] == to_stage]
    entry: RolloutEntry | None = None
    if not earlier:
        entry = {
            "id": 0,  # the database's, below
            "recorded_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "dataset": cfg.name,
            "model_name": name,
            "version": str(version),
            "from_stage": current.stage,
            "to_stage": to_stage,
            "actor": actor,
            "reason": reason[:5000],
            "evidence": evidence,
        }
        columns = [c for c in audit.ROLLOUT_COLUMNS if c != "id"]
        values = {**entry, "evidence": json.dumps(evidence, sort_keys=True, default=str)}
        entry["id"] = conn.execute(
            text(
                f"INSERT INTO {audit.ROLLOUT_TABLE} ({', '.join(columns)})"
                f" VALUES ({', '.join(':' + c for c in columns)}) RETURNING id"
            ),
            {c: values[c] for c in columns},
        ).scalar_one()
    if current.stage != to_stage:
        started_s = time.time() if entry else _started_s(earlier[-1])
        client.set_model_version_tag(name, str(version), bus.ROLLOUT_STAGE_STARTED_TAG, f"{started_s:.3f}")
        client.set_model_version_tag(name, str(version), bus.ROLLOUT_STAGE_TAG, to_stage)
    return entry


def read_plan(cfg: DatasetConfig, tags: dict[str, str]) -> RolloutConfig:
    """The plan a version's rollout follows: the ``rollout`` section recorded when it began (a config edited
    since changes no running rollout), or the config's for a version without one."""
    recorded = tags.get(bus.ROLLOUT_PLAN_TAG)
    return RolloutConfig(**json.loads(recorded)) if recorded else cfg.rollout


def _started_s(entry: RolloutEntry) -> float:
    return datetime.fromisoformat(entry["recorded_at"]).timestamp()


def begin_rollout(
    cfg: DatasetConfig, version: str, *, actor: str, reason: str, settings: Settings | None = None
) -> RolloutEntry | None:
    """Start the rollout of a version the gate passed (or a person approved): it becomes ``challenger`` in
    the first stage of ``rollout.stages``; ``champion`` does not move.

    Returns:
        The audit entry, or None when the version had started its rollout before (a retry; one that went past
        its first stage, ended, or made the version champion is left where it is).
    """
    client, store = get_client(settings), audit.open_store(settings)
    first = stage_name(cfg.rollout.stages[0])
    plan = json.dumps(asdict(cfg.rollout), sort_keys=True)
    with store.locked(cfg.registered_model_name) as conn:
        current = read_stage(client, cfg, str(version)).stage
        champion = registry.resolve_alias(cfg, bus.CHAMPION, settings)
        serving = champion is not None and champion["model_version"] == str(version)
        if serving or current not in (None, first):  # a retry must not rewind the stage, nor re-alias it
            log.info("%s v%s: rollout begun before, now %s%s: left as it is", cfg.registered_model_name,
                     version, current, f" and {bus.CHAMPION}" if serving else "")  # fmt: skip
            return None
        if current is None:  # a retry keeps the plan it began with
            client.set_model_version_tag(cfg.registered_model_name, str(version), bus.ROLLOUT_PLAN_TAG, plan)
        entry = enter_stage(
            cfg,
            client,
            store,
            conn,
            str(version),
            first,
            actor=actor,
            reason=reason,
            evidence={"stages": [stage_name(s) for s in cfg.rollout.stages]},
        )
        registry.move_alias(cfg, bus.CHALLENGER, str(version), settings)
    log.info(
        "%s v%s: rollout %s; stage %s (%s)",
        cfg.registered_model_name,
        version,
        "started" if entry else "already started",
        first,
        " -> ".join(stage_name(s) for s in cfg.rollout.stages),
    )
    return entry


def begin_checked_rollout(
    cfg: DatasetConfig, version: str, *, actor: str, reason: str, settings: Settings | None = None
) -> RolloutBegun:
    """:func:`begin_rollout` of a version a person names (``driftloop rollout begin``): it must have passed
    the gate or been approved, and the config must have ``rollout.stages``.

    Raises:
        Verdict: No stages configured, or the version neither passed the gate nor was approved.
    """
    from driftloop.core.errors import Verdict

    if not cfg.rollout.stages:
        raise Verdict(
            f"{cfg.config_path or cfg.name}: no rollout.stages configured (e.g. [shadow, 5, 25, 100])"
        )
    tags = get_client(settings).get_model_version(cfg.registered_model_name, str(version)).tags
    if tags.get(bus.GATE_TAG) != bus.GATE_PASSED and tags.get(bus.APPROVAL_DECISION_TAG) != bus.APPROVED:
        raise Verdict(
            f"{cfg.registered_model_name} v{version}: gate {tags.get(bus.GATE_TAG) or 'not run'}, approval"
            f" {tags.get(bus.APPROVAL_DECISION_TAG) or 'none'}: only a version that passed the gate or was"
            " approved is rolled out"
        )
    entry = begin_rollout(cfg, str(version), actor=actor, reason=reason, settings=settings)
    return {"version": str(version), "rollout_entries": [entry] if entry else [], "recorded_moves": []}
