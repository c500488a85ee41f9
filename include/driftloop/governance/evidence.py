"""The governance evidence of a new version, computed once at training time and logged on its training run.

Global SHAP by original feature (table and summary plot), permutation feature importance on the whole
pipeline, a global surrogate tree with its fidelity and rules, and fairness per sensitive attribute on the
holdout (table and plot). A summary goes to ``bus.EVIDENCE_ARTIFACT``; the model card and monitoring's drift
root cause read it. A failing piece is recorded as an error in the summary and never fails training.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.task_types import Decision
from driftloop.governance.governance_results import Evidence

log = logging.getLogger(__name__)


def _shap(cfg: DatasetConfig, model: Any, train_df: Any, folder: Path, seed: int) -> Evidence:
    from driftloop.governance.explain import explain_model

    explained = explain_model(model, train_df[cfg.features], folder, seed=seed)
    return {
        "shap_method": explained["method"],
        "shap_output": explained["output"],
        "shap_rows": explained["rows"],
        "shap_importance": [{"feature": f, "mean_abs_shap": v} for f, v in explained["importance"].items()],
    }


def _pfi(
    cfg: DatasetConfig,
    model: Any,
    holdout_df: Any,
    folder: Path,
    decision: Decision,
    seed: int,
    outputs: dict[str, Any],
) -> Evidence:
    from driftloop.governance.interpret import permutation_importance

    table = permutation_importance(
        model,
        holdout_df,
        list(cfg.features),
        decision.encode(holdout_df[cfg.target]),
        decision,
        seed=seed,
        outputs=outputs,
    )
    table.to_csv(folder / bus.PFI_FILENAME, index=False)
    return {"permutation_importance": table.to_dict(orient="records")}


def _surrogate(
    cfg: DatasetConfig,
    model: Any,
    train_df: Any,
    holdout_df: Any,
    decision: Decision,
    seed: int,
    outputs: dict[str, Any],
) -> Evidence:
    from driftloop.governance.interpret import fit_surrogate

    sample = train_df.sample(min(len(train_df), 5000), random_state=seed)
    return {
        "surrogate": fit_surrogate(
            model,
            sample,
            holdout_df,
            list(cfg.numeric_features),
            list(cfg.categorical_features),
            decision,
            seed,
            test_outputs=outputs,
        )
    }


def _fairness(
    cfg: DatasetConfig, holdout_df: Any, folder: Path, decision: Decision, outputs: dict[str, Any]
) -> Evidence:
    from driftloop.governance.fairness import assess_decisions, plot_fairness

    report = assess_decisions(cfg, holdout_df, decision, outputs)
    plot_fairness(report, folder / bus.FAIRNESS_PLOT_FILENAME, f"{cfg.name}: fairness on the holdout")
    return {"fairness": report}


def collect_evidence(
    cfg: DatasetConfig,
    model: Any,
    train_df: Any,
    holdout_df: Any,
    work_dir: Path,
    decision: Decision,
    seed: int = 42,
    holdout_outputs: dict[str, Any] | None = None,
) -> tuple[Evidence, Path]:
    """Compute every piece of evidence into ``work_dir/evidence``; returns the summary and that folder.

    Args:
        cfg: Dataset config.
        model: The fitted pipeline.
        train_df: Training rows (features and target).
        holdout_df: Holdout rows (features and target).
        work_dir: Scratch folder.
        decision: How the version decides (task, classes, threshold).
        seed: Sampling seed.
        holdout_outputs: ``decision.predict(model, holdout_df[cfg.features])`` when the caller has it
            (training scored the holdout already); else predicted here, once, and shared by every piece.

    Returns:
        ``(summary, folder)``; ``summary`` holds ``shap_*``, ``permutation_importance``, ``surrogate``,
        ``fairness``, ``seconds`` (wall time per piece) and, for any piece that failed, ``errors``.
    """
    folder = work_dir / bus.EVIDENCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    summary: Evidence = {"errors": {}}
    outputs = holdout_outputs
    if outputs is None:
        try:
            outputs = decision.predict(model, holdout_df[cfg.features])
        except Exception as exc:  # the pieces that need these fail below, each recorded
            log.warning("evidence: predicting the holdout failed: %r", exc)
            summary["errors"]["holdout_predictions"] = repr(exc)[:500]
    pieces: dict[str, Callable[[], Evidence]] = {"shap": lambda: _shap(cfg, model, train_df, folder, seed)}
    if outputs is not None:
        shared = outputs
        pieces["permutation_importance"] = lambda: _pfi(
            cfg, model, holdout_df, folder, decision, seed, shared
        )
        pieces["surrogate"] = lambda: _surrogate(cfg, model, train_df, holdout_df, decision, seed, shared)
        pieces["fairness"] = lambda: _fairness(cfg, holdout_df, folder, decision, shared)
    else:  # each piece that needs the holdout's predictions says why it is missing
        for name in ("permutation_importance", "surrogate", "fairness"):
            summary["errors"][name] = "no holdout predictions (see holdout_predictions)"
    seconds: dict[str, float] = {}
    for name, compute in pieces.items():
        started = time.perf_counter()
        try:
            summary.update(compute())
        except Exception as exc:  # evidence informs people; a failing piece must not lose the model
            log.warning("evidence %s failed: %r", name, exc)
            summary["errors"][name] = repr(exc)[:500]
        seconds[name] = round(time.perf_counter() - started, 2)
    summary["seconds"] = seconds
    log.info("evidence computed in %s s", ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    (folder / Path(bus.EVIDENCE_ARTIFACT).name).write_text(json.dumps(summary, indent=2, default=str))
    return summary, folder
