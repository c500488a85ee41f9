"""What ``ab_evaluation``'s tasks return: JSON-ready dicts, as they travel through XCom, are printed by
``driftloop serving-export`` and ``driftloop ab-evaluate`` and are read by the A/B alerts
(:func:`driftloop.core.alerts.ab_alerts`). The rollout's result is
:class:`~driftloop.serving.online.rollout.RolloutResult`."""

from __future__ import annotations

from typing import Any, TypedDict

from driftloop.governance.governance_results import AuditEntry


class ExportedWindow(TypedDict):
    """One closed window of served traffic of one model version, exported as a scored batch."""

    batch_id: str  # bus.served_batch_id
    rows: int  # entities (one row each: the last served prediction wins)
    model_version: str
    inference_run_id: str
    window_start: str  # ISO time


class ExportResult(TypedDict):
    """What :func:`~driftloop.serving.online.export.export_served_windows` exported."""

    exported: list[ExportedWindow]
    scoring_batch_ids: list[str]
    until: str  # ISO end of the last closed window


class AbEvaluation(TypedDict, total=False):
    """What :func:`~driftloop.serving.online.ab_decision.evaluate_ab` decided, recorded and did.

    ``ab`` and ``shadow`` are the analyses as :mod:`~driftloop.serving.online.ab_stats` returns them (their
    keys depend on the test that decided), without the per-arm metrics, which are logged as metrics.
    """

    decision: str  # bus.AB_DECISIONS
    reason: str
    decided_by: str  # fixed_horizon | sequential | mcnemar | none
    experiment: str  # bus.ab_experiment_id
    champion_version: str | None
    challenger_version: str | None
    ab: dict[str, Any] | None
    shadow: dict[str, Any] | None
    run_id: str  # the serving run that records this look
    promotion: str  # none | moved | ready | unchanged | rollout
    reused: bool  # the same look was recorded before: nothing done again
    recorded_moves: list[AuditEntry]  # champion audit entries this call appended
