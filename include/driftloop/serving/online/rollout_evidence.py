"""A rollout stage's evidence from the prediction log, and the verdict on it (advance, hold, roll back).

:func:`gather_evidence` reads the rows the current experiment logged since the stage began: the challenger's
answered and shadow rows, its failed rows (``error``, logged by the service for a 5xx, a model error or a
timeout), each arm's request latency, and the pairs both models scored (every stage scores in shadow too),
joined to the accepted labels. :func:`judge_stage` is pure: the same evidence always gets the same verdict.

* **Guardrails** (roll back at once): the challenger's error share above ``max_error_share``; the p99 latency
  of requests it answered alone (from ``MIN_LATENCY_REQUESTS``) above ``max_p99_latency_ms`` or
  ``max_p99_latency_ratio`` times the champion's; its accuracy on labelled pairs credibly worse (the paired
  difference's one-sided upper bound at ``alpha`` below 0, from ``MIN_TEST_PAIRS`` pairs); before labels, its
  estimated accuracy (the calibrated probability of its own prediction, averaged over the pairs) below the
  champion's by more than ``max_estimated_drop``.
* **Advance** once the stage holds ``min_rows_per_stage`` challenger rows and ``min_labelled_per_stage``
  labelled pairs whose difference's lower bound is above ``-non_inferiority_margin`` (the gate's rule on
  live traffic); else hold, saying what is missing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from driftloop.core import bus
from driftloop.core.serving_config import RolloutConfig
from driftloop.serving.online.prediction_log import ERROR, PRIMARY, SHADOW

MIN_TEST_PAIRS = 30  # below this the paired interval is not trusted for a rollback
MIN_LATENCY_REQUESTS = 10  # requests an arm answered alone before its p99 is compared (else: not measured)


@dataclass(frozen=True)
class StageEvidence:
    """What one stage of a rollout has seen so far (None: not measurable yet)."""

    stage: str
    challenger_rows: int  # rows the challenger scored in the stage (answered or in the shadow)
    challenger_errors: int  # rows of the challenger that failed
    challenger_p99_ms: float | None  # p99 latency of requests the challenger answered alone
    champion_p99_ms: float | None
    pairs: int  # rows both models scored
    labelled_pairs: int  # entities of those pairs with a label (each entity once, its latest pair)
    accuracy_diff: float | None  # challenger minus champion on labelled pairs
    diff_low: float | None  # one-sided bounds at the guardrail's alpha
    diff_high: float | None
    estimated_diff: float | None  # challenger minus champion, estimated from calibrated scores (binary)

    @property
    def error_share(self) -> float | None:
        """Failed share of the challenger's rows."""
        total = self.challenger_rows + self.challenger_errors
        return self.challenger_errors / total if total else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (NaN as None), with the error share."""
        values = {**asdict(self), "error_share": self.error_share}
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


@dataclass(frozen=True)
class StageVerdict:
    """What the evidence says to do with the rollout."""

    action: str  # bus.ROLLOUT_ADVANCE | ROLLOUT_HOLD | ROLLOUT_ROLL_BACK
    next_stage: str | None  # the stage to enter (completed when the last one is reached; rolled_back)
    reason: str
    broken: tuple[str, ...] = ()  # the guardrails that broke


def _p99(latencies: Any) -> float | None:
    import numpy as np

    return float(np.percentile(latencies, 99)) if len(latencies) >= MIN_LATENCY_REQUESTS else None


def _request_latency(primary: Any, arm: str) -> Any:
    """Latency of each request ``arm`` answered alone: a request both answered waits for both models, so it
    says nothing of either (with a small share and many rows per request there may be none yet)."""
    per_request = primary.groupby("request_id").agg(
        arms=("arm", "nunique"), arm=("arm", "first"), latency_ms=("latency_ms", "first")
    )
    alone = (per_request["arms"] == 1) & (per_request["arm"] == arm)
    return per_request.loc[alone, "latency_ms"].dropna().to_numpy(float)


def _pairs(stage_log: Any) -> Any:
    """Rows both models scored: ``pred_<arm>``, ``score_<arm>``, ``entity_id``, ``logged_at``."""
    primary = stage_log[stage_log["role"] == PRIMARY]
    shadow = stage_log[stage_log["role"] == SHADOW]
    pairs = primary.merge(shadow, on=["request_id", "row_index"], suffixes=("", "_shadow"))
    champion_answered = (pairs["arm"] == bus.CHAMPION).to_numpy()
    for column in ("prediction", "score"):
        pairs[f"{column}_{bus.CHAMPION}"] = pairs[column].where(champion_answered, pairs[f"{column}_shadow"])
        pairs[f"{column}_{bus.CHALLENGER}"] = pairs[f"{column}_shadow"].where(
            champion_answered, pairs[column]
        )
    return pairs


def paired_difference(
    correct_challenger: Any, correct_champion: Any, alpha: float
) -> tuple[float, float, float] | tuple[None, None, None]:
    """Challenger minus champion accuracy on paired rows with its one-sided ``alpha`` bounds (each bound is
    a one-sided test at ``alpha``)."""
    import numpy as np

    d = np.asarray(correct_challenger, dtype=float) - np.asarray(correct_champion, dtype=float)
    if len(d) < 2:
        return None, None, None
    mean = float(d.mean())
    half = NormalDist().inv_cdf(1 - alpha) * float(d.std(ddof=1)) / math.sqrt(len(d))
    return mean, mean - half, mean + half


def estimated_accuracy(calibration: Any, scores: Any, predictions: Any, positive: str) -> float:
    """Expected accuracy of binary predictions (the mean calibrated probability of the predicted class)."""
    import numpy as np

    p = calibration.calibrate(np.asarray(scores, dtype=float))
    said_positive = np.asarray(predictions).astype(str) == positive
    return float(np.where(said_positive, p, 1 - p).mean())


def gather_evidence(
    stage: str,
    stage_log: Any,
    labels: Any,
    decision: Any,
    alpha: float,
    calibrations: dict[str, Any] | None = None,
) -> StageEvidence:
    """A stage's evidence from the rows its experiment logged since it began.

    Args:
        stage: The stage (for the record).
        stage_log: Prediction-log rows of the experiment logged since the stage began.
        labels: Accepted labels by entity id (:func:`~driftloop.serving.online.labels.read_accepted_labels`).
        decision: The champion's :class:`~driftloop.core.task_types.Decision` (the positive class).
        alpha: The guardrail's one-sided level.
        calibrations: Calibration map by arm (binary; an arm without one gets no estimate).
    """
    from driftloop.core.task_types import BINARY
    from driftloop.serving.online.ab_decision import correct_predictions

    of_challenger = stage_log["arm"] == bus.CHALLENGER
    primary = stage_log[stage_log["role"] == PRIMARY]
    pairs = _pairs(stage_log)
    latest = pairs.sort_values("logged_at", kind="stable").drop_duplicates("entity_id", keep="last")
    labelled = latest[latest["entity_id"].isin(labels.index)]
    truth = labels.reindex(labelled["entity_id"])
    correct = {
        arm: correct_predictions(labelled[f"prediction_{arm}"], truth, decision)
        for arm in (bus.CHAMPION, bus.CHALLENGER)
    }
    diff, low, high = paired_difference(correct[bus.CHALLENGER], correct[bus.CHAMPION], alpha)
    estimated = None
    if (
        calibrations
        and decision.task == BINARY
        and len(pairs)
        and all(calibrations.get(a) for a in (bus.CHAMPION, bus.CHALLENGER))
    ):
        estimated = estimated_accuracy(
            calibrations[bus.CHALLENGER],
            pairs[f"score_{bus.CHALLENGER}"],
            pairs[f"prediction_{bus.CHALLENGER}"],
            decision.classes[1],
        ) - estimated_accuracy(
            calibrations[bus.CHAMPION],
            pairs[f"score_{bus.CHAMPION}"],
            pairs[f"prediction_{bus.CHAMPION}"],
            decision.classes[1],
        )
    return StageEvidence(
        stage=stage,
        challenger_rows=int((of_challenger & stage_log["role"].isin([PRIMARY, SHADOW])).sum()),
        challenger_errors=int((of_challenger & (stage_log["role"] == ERROR)).sum()),
        challenger_p99_ms=_p99(_request_latency(primary, bus.CHALLENGER)),
        champion_p99_ms=_p99(_request_latency(primary, bus.CHAMPION)),
        pairs=len(pairs),
        labelled_pairs=len(labelled),
        accuracy_diff=diff,
        diff_low=low,
        diff_high=high,
        estimated_diff=estimated,
    )


def _broken_guardrails(rollout: RolloutConfig, ev: StageEvidence) -> list[str]:
    guard = rollout.guardrails
    broken = []
    share = ev.error_share
    if share is not None and share > guard.max_error_share:
        broken.append(
            f"error share {share:.2%} ({ev.challenger_errors} of {ev.challenger_rows + ev.challenger_errors}"
            f" rows) > {guard.max_error_share:.2%}"
        )
    if ev.challenger_p99_ms is not None:
        if guard.max_p99_latency_ms is not None and ev.challenger_p99_ms > guard.max_p99_latency_ms:
            broken.append(f"p99 latency {ev.challenger_p99_ms:.0f} ms > {guard.max_p99_latency_ms:.0f} ms")
        champion = ev.champion_p99_ms
        if champion and ev.challenger_p99_ms > guard.max_p99_latency_ratio * champion:
            broken.append(
                f"p99 latency {ev.challenger_p99_ms:.0f} ms > {guard.max_p99_latency_ratio:g} x the"
                f" champion's {champion:.0f} ms"
            )
    if ev.labelled_pairs >= MIN_TEST_PAIRS and ev.diff_high is not None and ev.diff_high < 0:
        broken.append(
            f"live accuracy credibly worse: {ev.accuracy_diff:+.3f} on {ev.labelled_pairs} labelled pairs,"
            f" upper bound {ev.diff_high:+.3f} < 0 (one-sided alpha {guard.alpha:g})"
        )
    elif (
        ev.labelled_pairs < max(rollout.min_labelled_per_stage, MIN_TEST_PAIRS)
        and ev.estimated_diff is not None
        and ev.estimated_diff < -guard.max_estimated_drop
    ):
        broken.append(
            f"estimated accuracy {ev.estimated_diff:+.3f} below the champion's on {ev.pairs} pairs"
            f" (labels not in yet; limit -{guard.max_estimated_drop:g})"
        )
    return broken


def judge_stage(rollout: RolloutConfig, ev: StageEvidence) -> StageVerdict:
    """Advance, hold or roll back (see the module docstring); pure."""
    stages = [str(s) for s in rollout.stages]
    broken = _broken_guardrails(rollout, ev)
    if broken:
        return StageVerdict(
            bus.ROLLOUT_ROLL_BACK,
            bus.ROLLOUT_ROLLED_BACK,
            f"stage {ev.stage}: " + "; ".join(broken),
            tuple(broken),
        )
    missing = []
    if ev.challenger_rows < rollout.min_rows_per_stage:
        missing.append(f"{ev.challenger_rows} of {rollout.min_rows_per_stage} challenger rows")
    if ev.labelled_pairs < rollout.min_labelled_per_stage:
        missing.append(f"{ev.labelled_pairs} of {rollout.min_labelled_per_stage} labelled pairs")
    elif rollout.min_labelled_per_stage and (
        ev.diff_low is None or ev.diff_low <= -rollout.non_inferiority_margin
    ):
        low = "n/a" if ev.diff_low is None else f"{ev.diff_low:+.3f}"
        missing.append(
            f"non-inferiority not shown (lower bound {low} <= -{rollout.non_inferiority_margin:g})"
        )
    if missing:
        return StageVerdict(bus.ROLLOUT_HOLD, None, f"stage {ev.stage} holds: " + "; ".join(missing))
    position = stages.index(ev.stage)
    following = stages[position + 1]
    next_stage = bus.ROLLOUT_COMPLETED if following == stages[-1] else following
    diff = (
        "" if ev.accuracy_diff is None else f", accuracy {ev.accuracy_diff:+.3f} on {ev.labelled_pairs} pairs"
    )
    then = "the challenger becomes champion" if next_stage == bus.ROLLOUT_COMPLETED else f"{following}%"
    return StageVerdict(
        bus.ROLLOUT_ADVANCE,
        next_stage,
        f"stage {ev.stage} passed ({ev.challenger_rows} challenger rows{diff}); {then}",
    )
