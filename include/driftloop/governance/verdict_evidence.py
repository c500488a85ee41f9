"""The evidence a verdict stands on, so the same candidate with the same evidence always gets the same
verdict.

The gate's head-to-head rule used to follow the trigger (a ``drift`` retrain was judged by non-inferiority, a
``new_data`` one by superiority), so two triggers asking for the same training could turn one verdict into its
opposite seconds apart. Now the rule follows the state the decision sees (:class:`EvidenceState`): when the
champion is known to be degraded on recent data (the newest finished monitoring run of the champion crossed
the drift or live-performance threshold), a candidate must only not be credibly worse
(``gates.rule_on_drift``, non-inferiority by default); otherwise it must be credibly better
(``gates.rule_on_new_data``, superiority). ``gates.rule`` overrides both.

The state (champion, its newest monitoring run and whether it crossed, the newest labelled production window)
is hashed with the candidate and the gate's settings into an evidence key (:meth:`EvidenceState.key`). A
version judged once in a state keeps that verdict: the report is kept per key (``bus.gate_decision_artifact``)
and a second request in the same state reuses it. New evidence (a monitoring run, a label file, another
champion, another limit) is a new key, and the version may be decided again; every decision stays on its
training run and on its card.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any, cast

from driftloop.core import bus, task_types
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.governance.governance_results import GateRecord, GateReport, HeadlineMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvidenceState:
    """What the gate knows about the world when it judges a candidate.

    Attributes:
        champion_version: The champion judged against (None: no champion, the first version).
        monitoring_run_id: The newest finished monitoring run of that champion (None: never monitored).
        drift_share: Its drift share.
        live_drop: Its relative live-metric drop (None: no labels yet).
        champion_degraded: Whether that run crossed ``monitoring.drift_share_threshold`` or
            ``monitoring.performance_drop_threshold``.
        label_window: The newest accepted label file (the production window the gate compares on).
    """

    champion_version: str | None
    monitoring_run_id: str | None
    drift_share: float | None
    live_drop: float | None
    champion_degraded: bool
    label_window: str | None

    def rule(self, cfg: DatasetConfig) -> str | None:
        """The head-to-head rule this state calls for (None without a champion)."""
        if self.champion_version is None:
            return None
        if cfg.gates.rule:
            return cfg.gates.rule
        return cfg.gates.rule_on_drift if self.champion_degraded else cfg.gates.rule_on_new_data

    def key(self, cfg: DatasetConfig, candidate_version: str) -> str:
        """The evidence key of judging ``candidate_version`` of ``cfg``'s model in this state under ``cfg``'s
        gate and fairness settings (hex, 24 characters): a changed limit is new evidence too."""
        payload = json.dumps(
            {
                "model": cfg.registered_model_name,
                "candidate": str(candidate_version),
                "gates": asdict(cfg.gates),
                "fairness": asdict(cfg.fairness),
                **asdict(self),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def describe(self) -> str:
        """One line for the verdict: why this rule."""
        if self.champion_version is None:
            return "no champion: floors and checks only"
        if self.monitoring_run_id is None:
            health = f"champion v{self.champion_version} has no monitoring result yet"
        else:
            drop = "no labels yet" if self.live_drop is None else f"live drop {self.live_drop:.1%}"
            verdict = "is degraded" if self.champion_degraded else "is healthy"
            health = (
                f"champion v{self.champion_version} {verdict} on its newest monitoring run "
                f"{self.monitoring_run_id[:12]} (drift share {self.drift_share or 0.0:.2f}, {drop})"
            )
        window = f"label window {self.label_window}" if self.label_window else "no labelled production window"
        return f"{health}; {window}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the gate report."""
        return asdict(self)


def read_evidence_state(
    cfg: DatasetConfig, client: Any, champion_version: str | None, settings: Settings | None = None
) -> EvidenceState:
    """The state the gate judges in: the champion's newest finished monitoring run and the newest label file.

    Args:
        cfg: Dataset config (``monitoring`` thresholds).
        client: MLflow client.
        champion_version: The current champion (None: none).
        settings: Process settings (the state folder).
    """
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import list_manifests
    from driftloop.core.tracking import FINISHED, search_runs
    from driftloop.monitoring.sensor import crossing_reason

    labels = [
        m for m in list_manifests(StatePaths.for_dataset(cfg, settings).labels_dir) if m.get("labels_uri")
    ]
    window = str(labels[-1].get("batch_id") or labels[-1]["labels_uri"]) if labels else None
    if champion_version is None:
        return EvidenceState(None, None, None, None, False, window)
    runs = search_runs(
        client,
        cfg.experiment_name("monitoring"),
        {bus.CHAMPION_VERSION_TAG: str(champion_version)},
        extra_filter=FINISHED,
        max_results=1,
    )
    if not runs:
        return EvidenceState(str(champion_version), None, None, None, False, window)
    metrics = runs[0].data.metrics
    degraded = crossing_reason(cfg, metrics) is not None
    return EvidenceState(
        str(champion_version),
        runs[0].info.run_id,
        metrics.get(bus.DRIFT_SHARE),
        metrics.get(bus.LIVE_DROP),
        degraded,
        window,
    )


def read_decision(client: Any, run_id: str, evidence_key: str) -> GateRecord | None:
    """The gate report a version got in the evidence state ``evidence_key`` (on its training run), or None."""
    import tempfile

    path = bus.gate_decision_artifact(evidence_key)
    listed = {a.path for a in client.list_artifacts(run_id, bus.GATE_DECISIONS_DIR)}
    if path not in listed:
        return None
    with tempfile.TemporaryDirectory(prefix="driftloop-decision-") as tmp:
        with open(client.download_artifacts(run_id, path, tmp)) as handle:
            return cast(GateRecord, json.load(handle))  # as promotion logged it


def read_decisions(client: Any, run_id: str, model_name: str, version: str) -> list[GateRecord]:
    """Every verdict version ``version`` of ``model_name`` got, one per evidence state, oldest first (by
    ``decided_at``); ``run_id`` is its training run."""
    import tempfile

    reports: list[GateRecord] = []
    with tempfile.TemporaryDirectory(prefix="driftloop-decisions-") as tmp:
        for artifact in client.list_artifacts(run_id, bus.GATE_DECISIONS_DIR):
            with open(client.download_artifacts(run_id, artifact.path, tmp)) as handle:
                reports.append(cast(GateRecord, json.load(handle)))  # as promotion logged it
    mine = [
        r
        for r in reports
        if str(r.get("candidate_version")) == str(version) and r.get("model_name") == model_name
    ]
    return sorted(mine, key=lambda r: str(r.get("decided_at", "")))


def describe_decisions(decisions: list[GateRecord], version_tags: dict[str, str]) -> list[str]:
    """The card's lines on a version's decisions (one per evidence state) and the triggers that asked for its
    training key."""
    lines = []
    for d in decisions:
        state = (d.get("evidence_state") or {}).get("summary", "evidence not recorded")
        verdict = "passed" if d.get("passed") else "rejected"
        lines.append(
            f"- {str(d.get('decided_at', '?'))[:19]}Z, for {d.get('decided_for', '?')}: **{verdict}** by "
            f"{d.get('rule') or 'floors and checks'} ({state}; evidence `{d.get('evidence_key', '?')[:12]}`)"
        )
    asked = sorted(v for k, v in version_tags.items() if k.startswith(bus.ASKED_BY_TAG_PREFIX))
    if asked:
        lines.append(f"- Asked for again, nothing retrained: {'; '.join(asked)[:600]}")
    return lines


def headline_metrics(cfg: DatasetConfig, report: GateReport) -> HeadlineMetrics:
    """The primary metric of candidate and champion as the gate compared them (the champion's: None if
    absent).

    The check's limit is the champion's value with the margin applied (``champion + min_improvement``, or
    ``champion - min_improvement`` for error metrics); the margin is taken back off here.
    """
    head_to_head = next((c for c in report["checks"] if c["name"] == "beats_champion"), None)
    key = task_types.gate_metric_key(cfg.gates.primary_metric)
    if head_to_head is None:
        return {"candidate_metric": report["metrics"].get(key), "champion_metric": None}
    margin = cfg.gates.min_improvement
    limit = head_to_head["limit"]
    return {
        "candidate_metric": head_to_head["value"],
        "champion_metric": limit + margin if task_types.is_lower_better(key) else limit - margin,
    }
