"""The watch on ``champion``: moves made outside Driftloop recorded and every recorded move announced, within
a minute.

The MLflow registry keeps no alias history and says nothing when a person moves an alias in its UI, so
``registry_watch`` asks :func:`find_unrecorded_move` every few seconds from Airflow's triggerer (a pure read,
cheap, safe to run twice) and runs :func:`watch_champion` on a worker only when it finds something: a champion
that differs from the audit log's last entry, or a recorded move whose ``champion_moved`` alert was never
sent (a ``driftloop champion`` run from a shell without the alert settings, a process that died between its
move and its alert). Each move is alerted once, from its audit entry, naming its mover; the watch only sends
what the mover could not.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime, timedelta

from driftloop.core import alert_claims, alerts, bus, registry
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.governance import audit
from driftloop.governance.governance_results import AuditEntry, WatchResult

log = logging.getLogger(__name__)

ANNOUNCE_WINDOW_S = 86_400  # older unannounced moves are history, not news (alerting may just be switched on)


def unannounced_moves(
    cfg: DatasetConfig, history: list[AuditEntry], settings: Settings, now: datetime | None = None
) -> list[AuditEntry]:
    """Audit entries of the last :data:`ANNOUNCE_WINDOW_S` seconds whose ``champion_moved`` alert was never
    sent; none when no alert channel is configured (nothing could send them)."""
    if not alerts.alerting_configured(settings):
        return []
    since = (now or datetime.now(UTC)) - timedelta(seconds=ANNOUNCE_WINDOW_S)
    out = []
    for entry in history:
        if datetime.fromisoformat(entry["recorded_at"]) < since:
            continue
        alert = alerts.champion_moved_alert(cfg.name, cfg.registered_model_name, entry, settings)
        if not alert_claims.was_sent(alert.dedupe_key, settings):
            out.append(entry)
    return out


@functools.lru_cache(maxsize=8)
def _watch_store(url: str) -> audit.AuditStore:
    """One audit store (one engine) per database for the life of the triggerer, not one per look."""
    return audit.AuditStore(url)


def find_unrecorded_move(cfg: DatasetConfig, settings: Settings | None = None) -> str | None:
    """Why the watch must act now, or None: ``champion`` differs from the audit log's last entry, or a
    recorded move was never announced. Read-only and light (the triggerer calls it every few seconds): the
    alias by one REST call without importing MLflow, the audit log through one cached engine."""
    settings = settings or Settings.from_env()
    store = _watch_store(audit.AuditStore.url_for(settings))
    current_version = registry.read_alias_version(cfg, bus.CHAMPION, settings)
    try:
        history = store.entries(cfg.registered_model_name)
    except Exception:  # no audit table yet: nothing recorded
        history = []
    recorded = history[-1]["to_version"] if history else None
    if current_version != recorded:
        return f"{bus.CHAMPION} is v{current_version} in the registry, v{recorded} in the audit log"
    waiting = unannounced_moves(cfg, history, settings)
    if waiting:
        return (
            f"{len(waiting)} recorded move(s) not announced yet (audit entries {[e['id'] for e in waiting]})"
        )
    return None


def watch_champion(cfg: DatasetConfig, settings: Settings | None = None) -> WatchResult:
    """Record a move made outside Driftloop (and rebuild the cards of both versions), then hand every move not
    announced yet to the alerts.

    Returns:
        ``{"champion_version", "recorded_moves", "detail"}``: ``recorded_moves`` are the entries to announce
        (the one recorded now, and older ones whose alert was never sent), each alerted once by
        :func:`driftloop.core.alerts.move_alerts`.
    """
    from driftloop.governance.promotion import reconcile_and_refresh

    settings = settings or Settings.from_env()
    entry = reconcile_and_refresh(cfg, settings)
    history = audit.open_store(settings).entries(cfg.registered_model_name)
    announce = unannounced_moves(cfg, history, settings)
    if entry is not None and all(e["id"] != entry["id"] for e in announce):
        announce.append(entry)
    champion = history[-1]["to_version"] if history else None
    detail = (
        f"recorded a move of {bus.CHAMPION} to v{entry['to_version']} by {entry['actor']}"
        if entry
        else f"registry matches the audit log ({bus.CHAMPION} v{champion})"
    ) + (f"; announcing {len(announce)} move(s)" if announce else "")
    log.info("%s: %s", cfg.registered_model_name, detail)
    return {"champion_version": champion, "recorded_moves": announce, "detail": detail}
