"""The config sections of online serving: routing and the A/B evaluation (``serving``), and the staged
rollout of a challenger (``rollout``, :mod:`driftloop.serving.online.rollout`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from driftloop.core.config_base import OpenShare, Share, dataclass

SHADOW_STAGE = "shadow"
Stage = Literal["shadow"] | Annotated[int, Field(gt=0, le=100)]  # shadow, or the challenger's share in %


@dataclass(frozen=True)
class ServingConfig:
    """Online serving defaults (routing, export of served traffic) and the A/B evaluation
    (``docs/serving.md``).

    Routing can be changed at run time through the service's admin endpoint; these are its start values.
    """

    challenger_share: Share = 0.0  # share of entities the challenger answers (A/B); 0 = champion only
    shadow: bool = False  # the other model also scores every row (logged, never returned)
    salt: str = "driftloop"  # sticky assignment hashes (salt, challenger version, entity id)
    window_s: Annotated[int, Field(ge=60)] = (
        3600  # served traffic is exported to monitoring one window at a time
    )
    export_grace_s: NonNegativeInt = 300  # a window is exported this long after it closed (late log writes)
    alpha: OpenShare = 0.05  # overall false-positive rate of the A/B decision
    power: OpenShare = 0.8
    min_detectable_effect: OpenShare = 0.05  # absolute accuracy difference the fixed horizon is sized for


@dataclass(frozen=True)
class RolloutGuardrails:
    """What rolls a challenger back at once, in any stage of its rollout."""

    max_error_share: Share = 0.01  # of the challenger's rows in the stage that failed (5xx, model error)
    max_p99_latency_ms: PositiveFloat | None = None  # of requests the challenger answered; None: no limit
    max_p99_latency_ratio: PositiveFloat = 2.0  # challenger's p99 over the champion's in the same stage
    # One-sided level of "credibly worse": the paired accuracy difference's upper bound below 0. Strict,
    # because the guardrail is looked at every evaluation.
    alpha: OpenShare = 0.01
    max_estimated_drop: NonNegativeFloat = 0.03  # estimated accuracy below the champion's, before labels


@dataclass(frozen=True)
class RolloutConfig:
    """A challenger that passed the gate (or was approved) goes through ``stages`` before it is champion.

    Empty ``stages`` (the default): the gate's promotion moves ``champion`` at once. Otherwise e.g.
    ``[shadow, 5, 25, 100]``: shadow first (the challenger scores every row, answers none), then the share
    of entities it answers in %, the last stage 100 making it champion. ``ab_evaluation`` advances a stage
    once it holds ``min_rows_per_stage`` challenger rows and ``min_labelled_per_stage`` labelled pairs
    whose accuracy difference is above ``-non_inferiority_margin``, and rolls back when a guardrail breaks.
    """

    stages: tuple[Stage, ...] = ()
    min_rows_per_stage: PositiveInt = 500
    min_labelled_per_stage: NonNegativeInt = 200  # 0: rows suffice (labels never arrive in time)
    non_inferiority_margin: NonNegativeFloat = 0.02  # accuracy (absolute) the lower bound may lose
    guardrails: RolloutGuardrails = RolloutGuardrails()

    def stage_problems(self) -> list[str]:
        """What is wrong with ``stages`` (empty when they are valid)."""
        if not self.stages:
            return []
        problems = []
        shares = [s for s in self.stages if s != SHADOW_STAGE]
        if SHADOW_STAGE in self.stages[1:]:
            problems.append("shadow can only be the first stage")
        if shares != sorted(set(shares)):
            problems.append("shares must increase")
        if self.stages[-1] != 100:
            problems.append("the last stage must be 100 (the challenger becomes champion)")
        return problems
