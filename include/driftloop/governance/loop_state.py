"""The state the retraining loop of one dataset is in, decided from the records the audit log is built from.

A pure function of facts read elsewhere (:mod:`driftloop.governance.overview` reads them from MLflow and the
audit log): the champion, the drift sensor's newest firing (its time, monitoring run, trigger run, the version
that scored the fired batch and the retrain's "waits for labels" note), the listed versions (creation time,
gate verdict, trigger, the monitoring runs and triggers they were trained or asked for), the newest audit
entry and the newest monitoring result.

A version **answers** the firing when it was registered at or after the firing's time, or names the firing's
monitoring run or trigger run (a drift retrain whose training key already had a version records itself on that
older version). The **last event** is the newest of the firing's time, the answering versions' creation times
and the newest audit entry's time.

Precedence, first match wins:

1. ``no champion``: no version holds ``champion``.
2. ``rolled back`` is the outcome when the newest audit entry is an undo (``rollback`` without ``--to``)
   recorded after the newest firing, or when there is no firing. Otherwise, with a firing:

   a. ``retrained`` is the outcome when the champion answers the firing and is not the version that scored
      the fired batch;
   b. ``retraining`` (under way) while an answering version other than the champion has no gate verdict yet;
   c. ``retrained, champion kept`` is the outcome when versions answer the firing but none of them became
      champion (rejected, or passed and not promoted);
   d. ``waiting for labels`` (under way) when no version answers and the retrain noted that it waits for
      labels;
   e. ``retraining`` (under way) when no version answers yet.

3. An under-way state (``retraining``, ``waiting for labels``) is the answer: it covers later crossings.
4. ``drift``: the newest monitoring result crosses a threshold (drift share at or above it, or a live drop
   above it), did not fire, and started after the last event.
5. The outcome of step 2 (``rolled back``, ``retrained``, ``retrained, champion kept``), when there is one.
6. ``ok``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

NO_CHAMPION, OK, DRIFT = "no champion", "ok", "drift"
RETRAINING, WAITING = "retraining", "waiting for labels"
RETRAINED, KEPT, ROLLED_BACK = "retrained", "retrained, champion kept", "rolled back"
STATES = (NO_CHAMPION, OK, DRIFT, RETRAINING, WAITING, RETRAINED, KEPT, ROLLED_BACK)
UNDER_WAY = (RETRAINING, WAITING)
NOTE_CHARS = 200  # of a waiting note or a gate reason in the detail


@dataclass(frozen=True)
class Firing:
    """The drift sensor's newest firing: when (epoch seconds) and for which monitoring run."""

    at_s: float
    monitoring_run_id: str
    trigger_run_id: str = ""
    champion_version: str = ""  # the version that scored the fired batch
    waiting: str = ""  # the retrain's "waits for labels" note; empty when it did not wait


@dataclass(frozen=True)
class VersionFact:
    """A registered version: creation time (epoch seconds), gate verdict (``passed``, ``rejected``, empty)."""

    version: str
    created_s: float
    gate: str = ""
    gate_reason: str = ""
    trigger: str = ""
    answers: frozenset[str] = frozenset()  # monitoring run and trigger ids it was trained or asked for


@dataclass(frozen=True)
class Move:
    """An audit entry: a move of ``champion`` (``undo``: a rollback without ``--to``)."""

    at_s: float
    from_version: str | None
    to_version: str | None
    actor: str = ""
    reason: str = ""
    undo: bool = False


@dataclass(frozen=True)
class MonitoringResult:
    """A monitoring run's result against the dataset's thresholds (``fired``: the sensor fired on it)."""

    at_s: float
    drift_share: float | None
    drift_threshold: float
    live_drop: float | None = None
    drop_threshold: float | None = None
    fired: bool = False
    decision: str = ""


@dataclass(frozen=True)
class LoopFacts:
    """What :func:`loop_state` decides from; ``versions`` may hold every listed version, in any order."""

    champion: str | None
    firing: Firing | None = None
    versions: tuple[VersionFact, ...] = ()
    newest_move: Move | None = None
    newest_result: MonitoringResult | None = None


@dataclass(frozen=True)
class LoopState:
    """One of :data:`STATES` and a line saying which version, when and why."""

    state: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        """``{"state", "detail"}`` for JSON."""
        return asdict(self)


def when(epoch_s: float) -> str:
    """``2026-05-03 14:05 UTC``."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d %H:%M UTC")


def crossing(result: MonitoringResult) -> str:
    """What of ``result`` crosses its threshold (``drift share 0.45 >= 0.30``); empty when nothing does."""
    parts = []
    if result.drift_share is not None and result.drift_share >= result.drift_threshold:
        parts.append(f"drift share {result.drift_share:.2f} >= {result.drift_threshold:.2f}")
    if (
        result.live_drop is not None
        and result.drop_threshold is not None
        and result.live_drop > result.drop_threshold
    ):
        parts.append(f"live drop {result.live_drop:.3f} > {result.drop_threshold:.3f}")
    return " and ".join(parts)


def answering(facts: LoopFacts) -> list[VersionFact]:
    """The versions that answer the newest firing, newest first (none without a firing)."""
    f = facts.firing
    if f is None:
        return []
    ids = {f.monitoring_run_id, f.trigger_run_id} - {""}
    found = [v for v in facts.versions if v.created_s >= f.at_s or ids & v.answers]
    return sorted(
        found, key=lambda v: (v.created_s, int(v.version) if v.version.isdigit() else 0), reverse=True
    )


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"


def _verdict(v: VersionFact) -> str:
    reason = f" ({v.gate_reason[:NOTE_CHARS]})" if v.gate_reason else ""
    return f"v{v.version} {v.gate or 'no verdict'}{reason}"


def _after_firing(facts: LoopFacts, f: Firing) -> LoopState:
    """Step 2a-e: the state the newest firing ``f`` left the loop in."""
    champion = facts.champion
    fired = f"the sensor fired {when(f.at_s)} (monitoring run {f.monitoring_run_id})"
    versions = answering(facts)
    mine = next((v for v in versions if v.version == champion), None)
    if mine is not None and champion != f.champion_version:
        move = facts.newest_move
        promoted = (
            f", promoted {when(move.at_s)} by {move.actor}"
            if move and move.to_version == champion and not move.undo
            else ""
        )
        return LoopState(
            RETRAINED,
            f"champion v{champion} ({mine.trigger or 'retrain'}, registered {when(mine.created_s)}, gate "
            f"{mine.gate or 'no verdict'}{promoted}) after {fired}",
        )
    pending = [v for v in versions if not v.gate and v.version != champion]
    if pending:
        return LoopState(
            RETRAINING,
            f"v{pending[0].version} registered {when(pending[0].created_s)}, gate verdict pending; {fired}",
        )
    if versions:
        others = [v for v in versions if v.version != champion]
        verdicts = ", ".join(_verdict(v) for v in others[:3]) or f"champion v{champion}'s training key again"
        return LoopState(KEPT, f"{verdicts}; champion v{champion} kept; {fired}")
    if f.waiting:
        return LoopState(WAITING, f"{fired}; no version since: {f.waiting[:NOTE_CHARS]}")
    return LoopState(RETRAINING, f"{fired}; no version registered since; champion v{champion}")


def _last_event_s(facts: LoopFacts) -> float | None:
    times = [v.created_s for v in answering(facts)]
    times += [facts.firing.at_s] if facts.firing else []
    times += [facts.newest_move.at_s] if facts.newest_move else []
    return max(times, default=None)


def loop_state(facts: LoopFacts) -> LoopState:
    """The state the loop is in, by the precedence in this module's docstring.

    Args:
        facts: The champion, the newest firing, the versions, the newest audit entry and monitoring result.

    Returns:
        The state (one of :data:`STATES`) and a one-line detail: which version, when and why.
    """
    champion, move, result = facts.champion, facts.newest_move, facts.newest_result
    if not champion:
        return LoopState(NO_CHAMPION, "no version holds champion yet")
    outcome = None
    if move is not None and move.undo and (facts.firing is None or move.at_s > facts.firing.at_s):
        outcome = LoopState(
            ROLLED_BACK,
            f"champion rolled back from {_v(move.from_version)} to {_v(move.to_version)} {when(move.at_s)} "
            f"by {move.actor}: {move.reason[:NOTE_CHARS]}",
        )
    elif facts.firing is not None:
        outcome = _after_firing(facts, facts.firing)
    if outcome is not None and outcome.state in UNDER_WAY:
        return outcome
    crosses = crossing(result) if result is not None and not result.fired else ""
    last = _last_event_s(facts)
    if result is not None and crosses and (last is None or result.at_s > last):
        why = f" ({result.decision})" if result.decision else ""
        return LoopState(
            DRIFT,
            f"monitoring result {when(result.at_s)}: {crosses}, no retrain fired{why}; champion v{champion}",
        )
    return outcome or _ok(champion, result, crosses, last)


def _ok(champion: str, result: MonitoringResult | None, crosses: str, last: float | None) -> LoopState:
    """Step 6, with the newest monitoring result (a crossing here predates the champion's last move)."""
    if result is None:
        return LoopState(OK, f"champion v{champion}; no monitoring result yet")
    if crosses:
        return LoopState(
            OK,
            f"champion v{champion} moved {when(last or 0)}, after the result of {when(result.at_s)} "
            f"({crosses})",
        )
    below = (
        f"drift share {result.drift_share:.2f} < {result.drift_threshold:.2f}"
        if result.drift_share is not None
        else "no drift share"
    )
    return LoopState(OK, f"champion v{champion}; monitoring result {when(result.at_s)}: {below}")
