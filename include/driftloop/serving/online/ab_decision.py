"""The live comparison of champion and challenger on labelled served traffic, and its decision.

:func:`evaluate_ab` reads the prediction log of the current experiment (``v<champion>-vs-v<challenger>``) and
the accepted labels, then:

* **A/B** (both arms answered traffic): the unit is the entity, the unit of sticky assignment. Each entity
  counts once, with its latest served prediction; an entity seen in both arms (the share changed
  mid-experiment) is left out. The outcome is whether the prediction matched the label.
  :func:`driftloop.serving.online.ab_stats.decide_ab` combines a fixed-horizon two-proportion test (sized by a
  power analysis on the champion's holdout accuracy) with an always-valid sequential test, so looking every
  hour does not inflate false positives.
* **Shadow** (one model answered, the other scored the same rows): paired. McNemar on the first ``n`` labelled
  pairs decides; DeLong's paired test (the gate's, :mod:`driftloop.governance.comparison`) gives the AUC
  difference and its interval.

The decision (``promote_challenger``, ``keep_champion``, ``not_enough_data``) is recorded as a run in the
``driftloop/<dataset>/serving`` experiment, keyed by the experiment and a fingerprint of what was looked at,
so a rerun on the same data lands in the same run and promotes nothing twice. A promotion goes through
:func:`driftloop.governance.promotion.promote_version`, which applies the dataset's auto/manual policy.
"""

from __future__ import annotations

import hashlib
import json
import math
from statistics import NormalDist
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.tracking import find_finished_run, get_client, keyed_run
from driftloop.serving.online import ab_stats
from driftloop.serving.online.labels import join_labels, read_accepted_labels
from driftloop.serving.online.prediction_log import PRIMARY, SHADOW, log_uri, read_log
from driftloop.serving.online.serving_results import AbEvaluation

STAGE = "serving"


def _baseline_accuracy(client: Any, cfg: DatasetConfig, version: str) -> float | None:
    """The champion's holdout accuracy (a version tag set at registration), the power analysis' baseline."""
    tags = client.get_model_version(cfg.registered_model_name, version).tags
    try:
        return float(tags[bus.holdout_version_tag(bus.HOLDOUT_ACCURACY)])
    except (KeyError, ValueError):
        return None


def _arm_metrics(labelled: Any, decision: Any) -> dict[str, float]:
    """Entities, accuracy, F1 (binary; macro-F1 multiclass) and AUC (binary) per arm of labelled entities."""
    from sklearn.metrics import f1_score, roc_auc_score

    from driftloop.core.task_types import BINARY

    metrics = {}
    for arm, rows in labelled.groupby("arm"):
        truth, predicted = rows["label"].astype(str).to_numpy(), rows["prediction"].astype(str).to_numpy()
        metrics[bus.arm_metric(bus.AB_ENTITIES, arm)] = float(len(rows))
        metrics[bus.arm_metric(bus.AB_ACCURACY, arm)] = float(
            correct_predictions(rows["prediction"], rows["label"], decision).mean()
        )
        if decision.task == BINARY:
            positive = decision.classes[1]
            y = truth == positive
            metrics[bus.arm_metric(bus.AB_F1, arm)] = float(
                f1_score(y, predicted == positive, zero_division=0)
            )
            if 0 < y.sum() < len(y):
                metrics[bus.arm_metric(bus.AB_AUC, arm)] = float(
                    roc_auc_score(y, rows["score"].to_numpy(float))
                )
        else:
            metrics[bus.arm_metric(bus.AB_F1, arm)] = float(
                f1_score(truth, predicted, average="macro", zero_division=0)
            )
    return metrics


def correct_predictions(predicted: Any, truth: Any, decision: Any) -> Any:
    """Per row, whether the served prediction is the label; binary compares positive against not positive (a
    version registered without its class list names the negative class ``not <positive>``)."""
    from driftloop.core.task_types import BINARY

    predicted, truth = predicted.astype(str).to_numpy(), truth.astype(str).to_numpy()
    if decision.task == BINARY:
        positive = decision.classes[1]
        return (predicted == positive) == (truth == positive)
    return predicted == truth


def ab_analysis(
    cfg: DatasetConfig, log_df: Any, labels: Any, baseline: float | None, decision: Any
) -> dict[str, Any] | None:
    """The A/B decision on labelled entities, or None when only one arm answered traffic.

    Args:
        cfg: Dataset config (``serving.alpha``, ``power``, ``min_detectable_effect``).
        log_df: Prediction-log rows of one experiment.
        labels: Accepted labels (:func:`~driftloop.serving.online.labels.read_accepted_labels`).
        baseline: Champion accuracy for the power analysis (None: observed).
        decision: The champion's :class:`~driftloop.core.task_types.Decision` (classes for F1 and AUC).
    """
    primary = log_df[log_df["role"] == PRIMARY].sort_values("logged_at", kind="stable")
    if primary["arm"].nunique() < 2:
        return None
    arms_per_entity = primary.groupby("entity_id")["arm"].nunique()
    switched = set(arms_per_entity.index[arms_per_entity > 1])
    first_seen = primary.groupby("entity_id")["logged_at"].min()
    entities = primary[~primary["entity_id"].isin(switched)].drop_duplicates("entity_id", keep="last")
    labelled = join_labels(entities, labels)
    labelled = labelled.assign(first_seen=first_seen.reindex(labelled["entity_id"]).to_numpy())
    labelled = labelled.sort_values("first_seen", kind="stable")
    serving = cfg.serving
    verdict = ab_stats.decide_ab(
        labelled["arm"].to_numpy() == bus.CHALLENGER,
        correct_predictions(labelled["prediction"], labelled["label"], decision),
        alpha=serving.alpha,
        power=serving.power,
        min_effect=serving.min_detectable_effect,
        baseline_rate=baseline,
    )
    return {
        **verdict,
        "metrics": _arm_metrics(labelled, decision),
        "entities_in_both_arms": len(switched),
        "served_entities": int(primary["entity_id"].nunique()),
    }


def shadow_analysis(
    cfg: DatasetConfig, log_df: Any, labels: Any, baseline: float | None, decision: Any
) -> dict[str, Any] | None:
    """The paired (shadow) decision on labelled rows both models scored, or None when there are no pairs; the
    AUC difference for a binary task."""
    from driftloop.core.task_types import BINARY

    primary = log_df[log_df["role"] == PRIMARY]
    shadow = log_df[log_df["role"] == SHADOW]
    if shadow.empty:
        return None
    pairs = primary.merge(shadow, on=["request_id", "row_index"], suffixes=("", "_shadow"))
    if pairs.empty:
        return None
    champion_answered = (pairs["arm"] == bus.CHAMPION).to_numpy()
    pairs["score_champion"] = pairs["score"].where(champion_answered, pairs["score_shadow"])
    pairs["score_challenger"] = pairs["score_shadow"].where(champion_answered, pairs["score"])
    pairs["pred_champion"] = pairs["prediction"].where(champion_answered, pairs["prediction_shadow"])
    pairs["pred_challenger"] = pairs["prediction_shadow"].where(champion_answered, pairs["prediction"])
    pairs = pairs.sort_values("logged_at", kind="stable").drop_duplicates("entity_id", keep="last")
    labelled = join_labels(pairs, labels)
    serving = cfg.serving
    verdict = ab_stats.decide_shadow(
        correct_predictions(labelled["pred_champion"], labelled["label"], decision),
        correct_predictions(labelled["pred_challenger"], labelled["label"], decision),
        alpha=serving.alpha,
        power=serving.power,
        min_effect=serving.min_detectable_effect,
        baseline_rate=baseline,
    )
    if decision.task != BINARY:
        return {**verdict, "auc": None}
    from driftloop.governance.delong import delong_auc_difference

    positive = labelled["label"].astype(str).to_numpy() == decision.classes[1]
    auc = delong_auc_difference(
        positive, labelled["score_champion"].to_numpy(float), labelled["score_challenger"].to_numpy(float)
    )
    # The gate's paired test, at the level McNemar decides with.
    half = NormalDist().inv_cdf(1 - serving.alpha / 2) * auc["se"]
    diff = auc["difference"]
    low, high = diff - half, diff + half
    return {
        **verdict,
        "auc": {
            "auc_a": auc["champion"],
            "auc_b": auc["challenger"],
            "diff": diff,
            "low": low,
            "high": high,
            "se": auc["se"],
            "method": "delong",
        },
    }


def _fingerprint(experiment: str, log_df: Any, labels: Any) -> str:
    """Identity of what an evaluation looked at: the log rows and the labels of its entities."""
    labelled = labels.reindex(log_df["entity_id"].unique()).dropna()
    digest = hashlib.sha256(
        "\n".join(f"{k}={v}" for k, v in labelled.astype(str).items()).encode()
    ).hexdigest()
    payload = json.dumps(
        [
            experiment,
            len(log_df),
            float(log_df["logged_at"].max()) if len(log_df) else 0,
            len(labelled),
            digest,
        ]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _metrics(ab: dict[str, Any] | None, shadow: dict[str, Any] | None) -> dict[str, float]:
    values: dict[str, Any] = {}
    if ab:
        values.update(ab["metrics"])
        values.update(
            {
                bus.AB_MIN_ENTITIES_PER_ARM: ab["min_entities_per_arm"],
                bus.AB_FIXED_P_VALUE: ab["fixed_p_value"],
                bus.AB_SEQUENTIAL_P_VALUE: ab["sequential_p_value"],
                bus.AB_ACCURACY_DIFF: ab["diff"],
            }
        )
    if shadow:
        values.update(
            {
                bus.SHADOW_PAIRS: shadow["pairs"],
                bus.SHADOW_MCNEMAR_P_VALUE: shadow["p_value"],
                bus.SHADOW_ACCURACY_DIFF: shadow["diff"],
            }
        )
    if shadow and shadow["auc"]:
        values.update(
            {
                bus.SHADOW_AUC_DIFF: shadow["auc"]["diff"],
                bus.SHADOW_AUC_DIFF_LOW: shadow["auc"]["low"],
                bus.SHADOW_AUC_DIFF_HIGH: shadow["auc"]["high"],
            }
        )
    return {k: float(v) for k, v in values.items() if v is not None and not math.isnan(float(v))}


def evaluate_ab(
    cfg: DatasetConfig,
    settings: Settings | None = None,
    actor: str = "driftloop ab-evaluate",
    apply: bool = True,
) -> AbEvaluation:
    """Decide between champion and challenger on labelled served traffic, record it, promote when earned.

    Args:
        cfg: Dataset config (``serving`` statistics, ``gates.policy`` for the promotion).
        settings: Process settings; defaults to :meth:`Settings.from_env`.
        actor: Who asks, recorded with a promotion (e.g. ``ab_evaluation/<Airflow run id>``).
        apply: False to decide and record without promoting (a dry run).

    Returns:
        ``{"decision", "reason", "decided_by", "experiment", "champion_version", "challenger_version",
        "run_id", "promotion", "ab", "shadow"}``; ``decision`` is ``no_challenger`` (and nothing is recorded)
        when there is no challenger distinct from the champion.
    """
    from driftloop.core.registry import resolve_alias
    from driftloop.core.task_types import REGRESSION, read_decision

    settings = settings or Settings.from_env()
    client = get_client(settings)
    champion, challenger = (resolve_alias(cfg, alias, settings) for alias in (bus.CHAMPION, bus.CHALLENGER))
    if champion is None or challenger is None or champion["model_version"] == challenger["model_version"]:
        return {
            "decision": bus.AB_NO_CHALLENGER,
            "reason": "no challenger distinct from the champion",
            "champion_version": champion["model_version"] if champion else None,
            "challenger_version": None,
        }
    champion_v, challenger_v = champion["model_version"], challenger["model_version"]
    experiment = bus.ab_experiment_id(champion_v, challenger_v)
    decision = read_decision(cfg, client.get_model_version(cfg.registered_model_name, champion_v).tags)
    if decision.task == REGRESSION:
        return {
            "decision": bus.AB_NOT_ENOUGH_DATA,
            "decided_by": "none",
            "experiment": experiment,
            "champion_version": champion_v,
            "challenger_version": challenger_v,
            "reason": "live comparisons test classification accuracy; regression is not supported yet",
        }
    log_df = read_log(log_uri(cfg, settings), cfg.registered_model_name, experiment=experiment)
    labels = read_accepted_labels(cfg, settings)
    baseline = _baseline_accuracy(client, cfg, champion_v)
    ab = ab_analysis(cfg, log_df, labels, baseline, decision) if not log_df.empty else None
    shadow = shadow_analysis(cfg, log_df, labels, baseline, decision) if not log_df.empty else None
    verdict = (
        ab
        or shadow
        or {
            "decision": bus.AB_NOT_ENOUGH_DATA,
            "decided_by": "none",
            "reason": f"no served traffic of experiment {experiment} compares the two models yet",
        }
    )
    result: AbEvaluation = {
        "decision": verdict["decision"],
        "reason": verdict["reason"],
        "decided_by": verdict["decided_by"],
        "experiment": experiment,
        "champion_version": champion_v,
        "challenger_version": challenger_v,
        "ab": _public(ab),
        "shadow": _public(shadow),
    }
    name, key = (
        cfg.experiment_name(STAGE),
        {
            bus.AB_EXPERIMENT_TAG: experiment,
            bus.AB_INPUT_FINGERPRINT_TAG: _fingerprint(experiment, log_df, labels),
        },
    )
    recorded = find_finished_run(client, name, key)
    if recorded is not None:  # this very look was recorded (and acted on) already
        result["run_id"], result["reused"] = recorded.info.run_id, True
        result["promotion"] = recorded.data.tags.get(bus.AB_PROMOTION_TAG, "")
        return result
    promotion, recorded_moves = "none", []
    stage = client.get_model_version(cfg.registered_model_name, challenger_v).tags.get(bus.ROLLOUT_STAGE_TAG)
    if stage is not None and stage not in bus.ROLLOUT_DONE:
        promotion = "rollout"  # a staged rollout decides (driftloop.serving.online.rollout), stage by stage
    elif apply and verdict["decision"] == bus.AB_PROMOTE:
        from driftloop.governance.promotion import promote_version

        outcome = promote_version(
            cfg, challenger_v, actor=actor, reason=f"A/B {experiment}: {verdict['reason']}", settings=settings
        )
        promotion = (
            "moved" if outcome["moved"] else ("ready" if outcome["policy"] == "manual" else "unchanged")
        )
        recorded_moves = outcome["recorded_moves"]
    run_id = _record(cfg, client, settings, key, result, promotion, _metrics(ab, shadow))
    result["run_id"], result["promotion"], result["reused"] = run_id, promotion, False
    result["recorded_moves"] = recorded_moves
    return result


def _json_safe(value: Any) -> Any:
    """``value`` with NaN as None and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def _public(analysis: dict[str, Any] | None) -> dict[str, Any] | None:
    """The analysis without its per-arm metrics (logged as metrics), JSON-safe."""
    return None if analysis is None else _json_safe({k: v for k, v in analysis.items() if k != "metrics"})


def _record(
    cfg: DatasetConfig,
    client: Any,
    settings: Settings,
    key: dict[str, str],
    result: AbEvaluation,
    promotion: str,
    metrics: dict[str, float],
) -> str:
    import mlflow

    tags = {
        bus.CHAMPION_VERSION_TAG: result["champion_version"],
        bus.CHALLENGER_VERSION_TAG: result["challenger_version"],
        bus.AB_DECISION_TAG: result["decision"],
        bus.AB_DECISION_REASON_TAG: result["reason"][:5000],
        bus.AB_DECIDED_BY_TAG: result["decided_by"],
        bus.AB_PROMOTION_TAG: promotion,
    }
    with keyed_run(
        client, cfg.experiment_name(STAGE), key, bus.serving_run_name(result["experiment"]), settings
    ) as run:
        mlflow.set_tags(tags)
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.log_dict({**result, "promotion": promotion}, bus.AB_SUMMARY_ARTIFACT)
        run_id: str = run.info.run_id
        return run_id
