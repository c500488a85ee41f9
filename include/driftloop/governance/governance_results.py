"""What governance returns: JSON-ready dicts, as they travel between the tasks of ``training_pipeline``
(promote, plan and apply an approval), ``champion_rollback`` and ``registry_watch`` through XCom, are
printed by ``driftloop promote|champion|rollback`` and are logged as gate reports on training runs.

Each type names the keys the next task, the approval request and the alert builders
(:func:`driftloop.core.alerts.promotion_alerts`, ``move_alerts``, ``rollout_alerts``) read. The steps are
:mod:`driftloop.governance.gates` (the report), :mod:`~driftloop.governance.promotion` (the gate's move, a
move by hand), :mod:`~driftloop.governance.approval`, :mod:`~driftloop.governance.rollback` and
:mod:`~driftloop.governance.move_watch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

if TYPE_CHECKING:
    from numpy import float64
    from numpy.typing import NDArray


class AuditEntry(TypedDict):
    """One row of the champion audit log (:data:`driftloop.governance.audit.COLUMNS`)."""

    id: int
    recorded_at: str  # ISO time
    dataset: str
    model_name: str
    from_version: str | None  # None: the first champion
    to_version: str | None
    actor: str  # e.g. training_pipeline/<run id>, airflow:<user>, cli:<user>, or the external actor
    source: str  # driftloop | external
    reason: str
    gate_passed: bool | None  # None: the version was never judged
    override: bool  # moved to a version that had not passed the gate
    evidence: dict[str, Any]


class RolloutEntry(TypedDict):
    """One row of the rollout audit log (:func:`driftloop.governance.rollout_state.rollout_entries`)."""

    id: int
    recorded_at: str  # ISO time
    dataset: str
    model_name: str
    version: str
    from_stage: str | None  # None: the rollout began here
    to_stage: str  # shadow | <share %> | completed | rolled_back
    actor: str
    reason: str
    evidence: dict[str, Any]  # the stage's evidence when it was entered (rows, errors, p99s, differences)


# One check of a gate report: name, passed (None: measured, not enforced), value, limit, detail, plus the
# fields of its kind (a comparison's difference/ci_low/ci_high/rows/rule, a fairness gap's outcome, ...).
GateCheck = dict[str, Any]


class GateReport(TypedDict):
    """What :func:`~driftloop.governance.gates.judge` returns: every check on a candidate."""

    passed: bool
    candidate_version: str
    champion_version: str | None  # None: it would be the first champion
    metrics: dict[str, float]  # the candidate's holdout metrics
    checks: list[GateCheck]
    fairness: FairnessReport  # by sensitive attribute
    failed: list[str]  # names of the failing checks
    rule: str | None  # the head-to-head rule; None without a champion
    evidence_state: dict[str, Any]  # the EvidenceState judged in, with its "summary"
    evidence_key: str  # the state's key: the same key, the same verdict


class GateDecision(GateReport):
    """A :class:`GateReport` as promotion decides on it: when and for whom it was judged."""

    decided_at: str  # ISO 8601, UTC
    decided_for: str  # the actor that asked (training_pipeline/<run id>, cli:<user>, ...)


class GateRecord(GateDecision):
    """``bus.GATE_REPORT_ARTIFACT`` and ``bus.gate_decision_artifact(key)`` on the training run: the decision
    as logged, read back by :func:`~driftloop.governance.verdict_evidence.read_decision`."""

    model_name: str
    reason: str  # gates.summarize: the version's gate_reason tag
    policy: str  # auto | manual


class HeadlineMetrics(TypedDict):
    """The primary metric of candidate and champion as the gate compared them
    (:func:`~driftloop.governance.verdict_evidence.headline_metrics`)."""

    candidate_metric: float | None
    champion_metric: float | None  # None without a head-to-head check


class PromotionResult(HeadlineMetrics):
    """What :func:`~driftloop.governance.promotion.promote_model` returns: the gate's verdict and the policy's
    outcome. A candidate that already was champion (a retry) gets the first keys only."""

    decision: Literal["promoted", "rollout", "ready", "rejected"]
    reason: str
    champion_version: str | None  # after the decision
    candidate_version: str
    failed: list[str]
    policy: str
    moved: bool  # champion moved to the candidate
    recorded_moves: list[AuditEntry]  # audit entries this call appended (each alerted once)
    previous_champion_version: NotRequired[str | None]  # the champion when the gate judged
    rollout_entries: NotRequired[list[RolloutEntry]]  # a staged rollout begun (its first stage)
    rule: NotRequired[str | None]
    evidence: NotRequired[str]  # the evidence state the rule was chosen by, in words
    evidence_key: NotRequired[str | None]
    reused_verdict: NotRequired[bool]  # True: judged in the same state before; that verdict stands


class SkippedPromotion(TypedDict):
    """What :func:`~driftloop.governance.promotion.promote_trained` returns when training registered
    nothing."""

    decision: Literal["skipped"]
    reason: str
    moved: Literal[False]


TrainedPromotion = PromotionResult | SkippedPromotion
"""What :func:`~driftloop.governance.promotion.promote_trained` returns (``promote_model``'s XCom)."""


class VersionPromotion(TypedDict):
    """What :func:`~driftloop.governance.promotion.promote_version` returns (an A/B decision applied)."""

    policy: str  # manual: marked ready, nothing moved
    version: str
    champion_version: str | None
    moved: bool
    recorded_moves: list[AuditEntry]


class ChampionMove(TypedDict):
    """A move of ``champion`` by hand (:func:`~driftloop.governance.promotion.set_champion`): its audit
    entry's columns, and every entry the call appended."""

    id: int
    recorded_at: str
    dataset: str
    model_name: str
    from_version: str | None
    to_version: str | None
    actor: str
    source: str
    reason: str
    gate_passed: bool | None  # None: never judged
    override: bool
    evidence: dict[str, Any]
    recorded_moves: list[AuditEntry]  # its own entry last, after a move made outside Driftloop it recorded


class RollbackResult(TypedDict):
    """What :func:`~driftloop.governance.rollback.rollback_champion` returns: the move's audit entry (the
    columns of :class:`ChampionMove`), or only ``to_version`` when the target already was champion."""

    to_version: str | None
    moved: bool  # False: a retried request, or the target already was champion
    recorded_moves: list[AuditEntry]
    id: NotRequired[int]
    recorded_at: NotRequired[str]
    dataset: NotRequired[str]
    model_name: NotRequired[str]
    from_version: NotRequired[str | None]
    actor: NotRequired[str]
    source: NotRequired[str]
    reason: NotRequired[str]
    gate_passed: NotRequired[bool | None]
    override: NotRequired[bool]
    evidence: NotRequired[dict[str, Any]]


class ApprovalPlan(TypedDict):
    """:class:`~driftloop.governance.approval.ApprovalRequest` as plain values: what ``plan_approval`` hands
    the waiting HITL task (``subject``, ``body``) and ``apply_approval``."""

    needed: bool  # False: nothing waits for a person (the rest is then empty)
    why: str
    dataset: str
    model_name: str
    version: str | None
    champion_version: str | None  # the champion the gate compared with
    request_id: str  # <dag_id>/<run_id>: a decision is applied once per request
    subject: str
    body: str  # Markdown
    undecided: list[str]  # checks the gate measured but could not decide


class ApprovalResult(TypedDict):
    """What :func:`~driftloop.governance.approval.apply_decision` returns: a person's answer applied."""

    decision: str  # approved | rejected | stale
    version: str
    actor: str  # airflow:<username>
    champion_version: str | None  # after the decision
    moved: bool
    recorded_moves: list[AuditEntry]
    rollout_entries: list[RolloutEntry]  # approved into a staged rollout: its first stage
    request_id: str


class WatchResult(TypedDict):
    """What :func:`~driftloop.governance.move_watch.watch_champion` returns."""

    champion_version: str | None  # the audit log's last entry
    recorded_moves: list[AuditEntry]  # entries to announce: recorded now, or never alerted
    detail: str


class RolloutBegun(TypedDict):
    """What :func:`~driftloop.governance.rollout_state.begin_checked_rollout` returns (``driftloop rollout
    begin``); the rollout alerts read its entries."""

    version: str
    rollout_entries: list[RolloutEntry]  # its first stage; empty when it had begun before
    recorded_moves: list[AuditEntry]  # always empty: beginning a rollout moves no champion


class AucDifference(TypedDict):
    """What :func:`~driftloop.governance.delong.delong_auc_difference` returns: the paired AUC difference of
    two models scored on the same rows, with DeLong's standard error (NaN when the rows hold one class)."""

    champion: float  # the champion's AUC
    challenger: float
    difference: float  # challenger minus champion
    se: float
    ci_low: float  # the two-sided normal interval of the difference at the level asked
    ci_high: float
    rows: int


class AucDifferences(TypedDict):
    """:class:`AucDifference` of many samples at once
    (:func:`~driftloop.governance.delong.delong_auc_differences`, simulations): one value per sample."""

    champion: NDArray[float64]
    challenger: NDArray[float64]
    difference: NDArray[float64]
    se: NDArray[float64]
    ci_low: NDArray[float64]
    ci_high: NDArray[float64]
    rows: int  # rows per sample


class GapJudgement(TypedDict):
    """One fairness gap judged against its limit (:func:`~driftloop.governance.fairness.judge_gaps`)."""

    value: float  # the largest difference between two groups
    ci_low: float  # its simultaneous interval over every pair of groups
    ci_high: float
    level: float
    comparisons: int  # pairs of groups compared
    smallest_group: str
    smallest_group_rows: int
    limit: float | None  # None: the config sets none
    outcome: str  # fairness.PASS | FAIL | UNDECIDED | NO_LIMIT
    enforced: bool  # False without a limit and under fairness.mode: report
    relative_limit: NotRequired[float | None]  # the MAE gap: its limit as a share of the overall MAE
    overall_mae: NotRequired[float]


class AttributeFairness(TypedDict):
    """The fairness of one sensitive attribute: group metrics, the task's gaps and their judgements."""

    groups: dict[str, dict[str, float]]  # group -> metric -> value (counts such as count, tn, ... are ints)
    demographic_parity_difference: NotRequired[float]  # binary
    equalized_odds_difference: NotRequired[float]  # binary
    accuracy_difference: NotRequired[float]  # multiclass
    max_selection_rate_difference: NotRequired[float]  # multiclass
    mean_absolute_error_difference: NotRequired[float]  # regression
    judged: dict[str, GapJudgement]  # by gap name
    rows: int


FairnessReport = dict[str, AttributeFairness]
"""What :func:`~driftloop.governance.fairness.assess_decisions` returns, by sensitive attribute: logged in the
evidence and the gate report, turned into metrics by monitoring."""


class ShapImportance(TypedDict):
    """One feature's global importance in the evidence."""

    feature: str
    mean_abs_shap: float


class Evidence(TypedDict, total=False):
    """The evidence summary of a version (``bus.EVIDENCE_ARTIFACT``): what
    :func:`~driftloop.governance.evidence.collect_evidence` computes at training and
    :func:`~driftloop.governance.model_card.read_evidence` reads back (monitoring ranks drift by it). A piece
    that failed is missing, with its error in ``errors``."""

    errors: dict[str, str]  # piece -> error
    shap_method: str
    shap_output: str
    shap_rows: int
    shap_importance: list[ShapImportance]  # strongest first
    permutation_importance: list[dict[str, Any]]  # the importance table's rows
    surrogate: dict[str, Any]  # driftloop.governance.interpret.fit_surrogate's result
    fairness: FairnessReport
    seconds: dict[str, float]  # wall time per piece
