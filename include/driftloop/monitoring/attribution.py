"""Which drift matters: drifted features ranked by their importance to the champion, and attribution drift.

* **Root cause:** the features Evidently found drifted, ordered by the champion's mean |SHAP| (from its
  training evidence), and the share of the champion's total importance that sits on drifted features. Drift on
  a feature the model barely uses is noise; drift on its top feature is why predictions move.
* **Attribution drift:** the champion's SHAP ranking on the current batch against its ranking on the
  reference, scored with nDCG as SageMaker Clarify does (1.0: the same features drive predictions as before;
  lower: the model now decides on other grounds, even when no single input drifted much).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings

EXPLAIN_ROWS = 1000
TOP_K = 5


def importance_from_evidence(evidence: Mapping[str, Any]) -> dict[str, float]:
    """``feature -> mean |SHAP|`` from a training run's evidence summary (empty when it has none)."""
    return {row["feature"]: float(row["mean_abs_shap"]) for row in evidence.get("shap_importance", [])}


def rank_drift_by_importance(
    importance: dict[str, float], drifted: list[str], drift_scores: dict[str, float]
) -> dict[str, Any]:
    """Drifted features ordered by the champion's importance, and the importance share they carry.

    Returns:
        ``{"ranked": [{"feature", "importance", "drift_score"}], "importance_share", "summary"}``.
    """
    total = sum(importance.values())
    ranked: list[dict[str, Any]] = sorted(
        (
            {"feature": f, "importance": importance.get(f, 0.0), "drift_score": drift_scores.get(f)}
            for f in drifted
        ),
        key=lambda r: r["importance"],
        reverse=True,
    )
    share = sum(r["importance"] for r in ranked) / total if total else 0.0
    summary = "; ".join(f"{r['feature']} (importance {r['importance']:.3f})" for r in ranked[:TOP_K])
    return {"ranked": ranked, "importance_share": share, "summary": summary or "no drifted feature"}


def ndcg(reference: dict[str, float], current: dict[str, float], k: int = TOP_K) -> float:
    """nDCG@k of the current ranking, with the reference importances as relevance (1.0: same top features)."""
    ideal = sorted(reference.values(), reverse=True)[:k]
    order = sorted(current, key=lambda f: current[f], reverse=True)[:k]
    dcg = sum(reference.get(f, 0.0) / math.log2(i + 2) for i, f in enumerate(order))
    idcg = sum(value / math.log2(i + 2) for i, value in enumerate(ideal))
    return dcg / idcg if idcg else 1.0


def attribution_drift(
    model: Any, reference_df: Any, current_df: Any, features: list[str], seed: int = 42
) -> dict[str, Any]:
    """The champion's mean |SHAP| per feature on reference and current rows, and their nDCG.

    Returns:
        ``{"ndcg", "method", "reference_top", "current_top"}``.
    """
    from driftloop.governance.explain import explain_rows

    def mean_abs(frame: Any) -> tuple[dict[str, float], str]:
        rows = frame[features].sample(min(EXPLAIN_ROWS, len(frame)), random_state=seed)
        result = explain_rows(model, rows, budget_s=1.0, reference_df=reference_df[features])
        return {k: float(v) for k, v in result.values_df.abs().mean().items()}, result.method

    reference, method = mean_abs(reference_df)
    current, _ = mean_abs(current_df)

    def top(weights: dict[str, float]) -> list[str]:
        return sorted(weights, key=lambda f: weights[f], reverse=True)[:TOP_K]

    return {
        "ndcg": ndcg(reference, current),
        "method": method,
        "reference_top": top(reference),
        "current_top": top(current),
    }


def explain_drift(
    cfg: DatasetConfig,
    client: Any,
    reference_run_id: str,
    model_version: str,
    reference_df: Any,
    current_df: Any,
    drift: dict[str, Any],
    settings: Settings | None,
) -> dict[str, Any]:
    """Which drift matters: root cause by the champion's importance, and attribution drift (nDCG).

    Returns:
        ``{"metrics", "tags", "summary"}``; empty parts when the model or its evidence cannot be read (a
        version registered by hand), which never fails the monitoring run.
    """
    from driftloop.core.registry import load_model
    from driftloop.governance.model_card import read_evidence

    importance = importance_from_evidence(read_evidence(client, reference_run_id))
    root = rank_drift_by_importance(importance, drift["drifted_column_names"], drift["drift_scores"])
    out: dict[str, Any] = {
        "metrics": {},
        "tags": {bus.DRIFT_ROOT_CAUSE_TAG: root["summary"][:5000]},
        "summary": {"root_cause": root["ranked"]},
    }
    if importance:
        out["metrics"][bus.DRIFT_IMPORTANCE_SHARE] = root["importance_share"]
    try:
        model = load_model(bus.model_version_uri(cfg.registered_model_name, model_version), settings)
        attribution = attribution_drift(model, reference_df, current_df, list(cfg.features))
    except Exception as exc:  # an insight, never a reason to lose the drift numbers
        out["summary"]["attribution_error"] = repr(exc)[:500]
        return out
    out["metrics"][bus.ATTRIBUTION_NDCG] = attribution["ndcg"]
    out["tags"][bus.ATTRIBUTION_TOP_TAG] = ",".join(attribution["current_top"])
    out["summary"]["attribution"] = attribution
    return out
