"""Model selection with PyCaret: compare and tune on (a sample of) the training rows, finalize on all of them.

PyCaret's classification module serves binary and multiclass targets, its regression module regression
targets. When the training rows exceed ``training.selection_max_rows``, compare and tune run on a sample
(stratified by class), and the chosen pipeline is then fitted on every training row: selection cost stays
bounded while the model still learns from the whole snapshot. When the selection rows exceed
``training.tune_max_rows``, tuning (``tune_iter`` candidates x ``folds`` fits of the chosen family) runs on a
smaller sample of them. The run says which happened (``bus.SELECTION_TAG``).

The binary decision threshold is chosen here too, on out-of-fold scores of the training rows (which the
calibration map is fitted on as well), never the holdout.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.task_types import (
    BINARY,
    REGRESSION,
    Decision,
    choose_threshold,
    model_input,
    positive_rate_is_far,
)
from driftloop.training.calibration import OutOfFold
from driftloop.training.preprocessing import build_preprocessor

log = logging.getLogger(__name__)


def sample_rows(cfg: DatasetConfig, frame: Any, limit: int) -> Any:
    """``limit`` rows of ``frame``, or all of them when it has no more (or ``limit`` is 0).

    Classification samples every class in proportion, so rare classes stay in the sample.
    """
    if limit <= 0 or len(frame) <= limit:
        return frame
    seed = cfg.training.seed
    if cfg.task == REGRESSION:
        return frame.sample(limit, random_state=seed).reset_index(drop=True)
    share = limit / len(frame)
    per_class = frame.groupby(frame[cfg.target].astype(str), group_keys=False)
    return per_class.sample(frac=share, random_state=seed).reset_index(drop=True)


def select_rows(cfg: DatasetConfig, train_df: Any) -> Any:
    """The training rows model selection (compare, tune) runs on: all, or ``training.selection_max_rows`` of
    them (:func:`sample_rows`)."""
    return sample_rows(cfg, train_df, cfg.training.selection_max_rows)


def tune_rows(cfg: DatasetConfig, selection_df: Any) -> Any:
    """The selection rows tuning runs on: all, or ``training.tune_max_rows`` of them (:func:`sample_rows`)."""
    return sample_rows(cfg, selection_df, cfg.training.tune_max_rows)


def _setup(cfg: DatasetConfig, frame: Any, decision: Decision, n_jobs: int) -> Any:
    """A PyCaret experiment set up on ``frame`` (features and target labels)."""
    from driftloop.training.pycaret_env import import_experiment

    opts = cfg.training
    exp = import_experiment(decision.task)()
    options = {"transform_target": False} if decision.task == REGRESSION else {}
    data = encoded_frame(cfg, frame, decision)
    exp.setup(
        data=data,
        target=cfg.target,
        session_id=opts.seed,
        fold=opts.folds,
        numeric_features=list(cfg.numeric_features),
        categorical_features=list(cfg.categorical_features),
        verbose=False,
        html=False,
        log_experiment=False,  # PyCaret's MLflow logger crashes on MLflow 3; we log ourselves
        system_log=False,  # else PyCaret writes logs.log into the worker's cwd
        # A joblib cache path inside the pickled pipeline would not exist where it is loaded.
        memory=False,
        # Our scikit-learn preprocessing instead of PyCaret's (4x cheaper, refitted in every fold):
        # see driftloop.training.preprocessing.
        preprocess=False,
        custom_pipeline=[("preprocess", build_preprocessor(cfg, data))],
        n_jobs=n_jobs,
        **options,
    )
    return exp


def fit_pycaret(cfg: DatasetConfig, train_df: Any, n_jobs: int, decision: Decision) -> dict[str, Any]:
    """Select a model with PyCaret on (a sample of) the training rows, tune it on (a smaller sample of) those,
    then fit it on all of them.

    Args:
        cfg: Dataset config (features, target, training options).
        train_df: Training rows (id + features + target labels); never the holdout.
        n_jobs: Worker processes.
        decision: The task and class list the target is encoded by.

    Returns:
        ``{"model", "best_model", "leaderboard_df", "timings", "selection_df", "tune_rows", "pipeline"}``:
        ``pipeline`` is the tuned, unfitted-on-everything candidate (for out-of-fold scores); ``tune_rows``
        the rows tuning ran on (0: no tuning); ``timings`` holds ``setup_seconds``, ``compare_seconds``,
        ``tune_seconds`` (with the tuning sample's setup) and ``finalize_seconds``.

    Raises:
        RuntimeError: No candidate model could be trained.
    """
    from driftloop.training.pycaret_env import frozen_heap, usable_std_streams

    opts = cfg.training
    selection_df = select_rows(cfg, train_df)
    tune_df = tune_rows(cfg, selection_df)
    timings = {}
    with usable_std_streams(), frozen_heap():
        started = time.perf_counter()
        exp = _setup(cfg, selection_df, decision, n_jobs)
        timings[bus.SETUP_SECONDS] = time.perf_counter() - started

        started = time.perf_counter()
        best = exp.compare_models(include=list(opts.models), sort=opts.sort_metric, n_select=1, verbose=False)
        leaderboard_df = exp.pull()
        timings[bus.COMPARE_SECONDS] = time.perf_counter() - started
        if isinstance(best, list):
            if not best:
                raise RuntimeError(f"{cfg.name}: PyCaret trained none of the models {list(opts.models)}")
            best = best[0]

        started = time.perf_counter()
        if opts.tune_iter > 0:
            tune_exp = exp if len(tune_df) == len(selection_df) else _setup(cfg, tune_df, decision, n_jobs)
            best = tune_exp.tune_model(
                best, n_iter=opts.tune_iter, optimize=opts.sort_metric, choose_better=True, verbose=False
            )
        timings[bus.TUNE_SECONDS] = time.perf_counter() - started

        started = time.perf_counter()
        pipeline = exp.finalize_model(best)
        model = pipeline if len(selection_df) == len(train_df) else _refit(pipeline, cfg, train_df, decision)
        timings[bus.FINALIZE_SECONDS] = time.perf_counter() - started
    return {
        "model": model,
        "pipeline": pipeline,
        "best_model": type(best).__name__,
        "leaderboard_df": leaderboard_df,
        "timings": timings,
        "selection_df": selection_df,
        "tune_rows": len(tune_df) if opts.tune_iter > 0 else 0,
    }


def encoded_frame(cfg: DatasetConfig, frame: Any, decision: Decision) -> Any:
    """Features plus the encoded target, index reset: what PyCaret and the refits are given."""
    data = model_input(frame[cfg.features])
    data[cfg.target] = decision.encode(frame[cfg.target]).to_numpy()
    return data


def _refit(pipeline: Any, cfg: DatasetConfig, frame: Any, decision: Decision) -> Any:
    """A fresh copy of the selected pipeline fitted on every row of ``frame``."""
    from sklearn.base import clone

    data = encoded_frame(cfg, frame, decision)
    return clone(pipeline).fit(data[cfg.features], data[cfg.target])


def out_of_fold_proba(
    cfg: DatasetConfig, pipeline: Any, selection_df: Any, decision: Decision, n_jobs: int
) -> OutOfFold:
    """Out-of-fold class probabilities of the selection rows (classification): the selected pipeline
    refitted on ``training.folds`` stratified folds, each scoring the rows it did not see; the holdout is
    never touched.

    Returns:
        Encoded truth and scores: binary the positive-class score ``(n,)``, multiclass ``(n, k)``.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from driftloop.training.pycaret_env import usable_std_streams

    data = encoded_frame(cfg, selection_df, decision)
    folds = StratifiedKFold(n_splits=max(2, cfg.training.folds), shuffle=True, random_state=cfg.training.seed)
    with usable_std_streams():
        proba = cross_val_predict(
            clone(pipeline),
            data[cfg.features],
            data[cfg.target],
            cv=folds,
            method="predict_proba",
            n_jobs=n_jobs,
        )
    return OutOfFold(data[cfg.target].to_numpy(), proba[:, 1] if decision.task == BINARY else proba)


def out_of_fold_prediction(
    cfg: DatasetConfig, pipeline: Any, selection_df: Any, decision: Decision, n_jobs: int
) -> OutOfFold:
    """Out-of-fold predictions of the selection rows (regression, for the loss model): the selected
    pipeline refitted on ``training.folds`` folds, each predicting the rows it did not see; the holdout is
    never touched.

    Returns:
        The truth and the predictions ``(n,)`` (as :class:`OutOfFold` ``scores``).
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold, cross_val_predict

    from driftloop.training.pycaret_env import usable_std_streams

    data = encoded_frame(cfg, selection_df, decision)
    folds = KFold(n_splits=max(2, cfg.training.folds), shuffle=True, random_state=cfg.training.seed)
    with usable_std_streams():
        prediction = cross_val_predict(
            clone(pipeline), data[cfg.features], data[cfg.target], cv=folds, n_jobs=n_jobs
        )
    return OutOfFold(data[cfg.target].to_numpy(dtype=float), prediction)


def choose_decision_threshold(
    cfg: DatasetConfig, decision: Decision, oof: OutOfFold | None
) -> dict[str, Any]:
    """The binary threshold chosen on out-of-fold scores of the training rows
    (``training.threshold_objective``; :func:`out_of_fold_proba`).

    ``fixed`` (and non-binary tasks, or no out-of-fold scores) keep ``inference.threshold``.

    Returns:
        ``{"threshold", "objective", "objective_value", "oof_rows", "oof_positive_rate"}``; the last is the
        share of out-of-fold rows predicted positive at the threshold (None without out-of-fold scores).
    """
    opts = cfg.training
    if decision.task != BINARY or opts.threshold_objective == "fixed" or oof is None:
        return {
            "threshold": cfg.inference.threshold,
            "objective": "fixed",
            "objective_value": None,
            "oof_rows": 0,
            "oof_positive_rate": None,
        }
    cost = {str(kind): float(value) for kind, value in opts.cost.items()}
    chosen = choose_threshold(oof.y, oof.scores, opts.threshold_objective, cost)
    return {
        **chosen,
        "objective": opts.threshold_objective,
        "oof_rows": len(oof.y),
        "oof_positive_rate": float((oof.scores >= chosen["threshold"]).mean()),
    }


def transfer_threshold(cfg: DatasetConfig, chosen: dict[str, Any], holdout_score: Any) -> dict[str, Any]:
    """The out-of-fold threshold, unless it does not transfer to the final model on the holdout.

    It does not transfer when the holdout's predicted-positive rate is far from the out-of-fold one
    (:func:`driftloop.core.task_types.positive_rate_is_far`). It then falls back to the threshold at which the
    holdout's predicted-positive rate equals the out-of-fold rate (the share of positives the threshold was
    chosen for): it reads the final model's scores on the holdout, never its labels.

    Returns:
        ``chosen`` plus ``{"holdout_positive_rate", "fallback"}``; ``fallback`` says why the threshold changed
        (empty when it did not).
    """
    import numpy as np

    oof_rate = chosen.get("oof_positive_rate")
    score = np.asarray(holdout_score, dtype=float)
    if oof_rate is None or not len(score):
        return {**chosen, "holdout_positive_rate": None, "fallback": ""}
    threshold = float(chosen["threshold"])
    rate = float((score >= threshold).mean())
    if not positive_rate_is_far(oof_rate, rate, len(score), cfg.gates.positive_rate_max_ratio):
        log.info(
            "%s: threshold %.4g: %.1f%% positive out of fold, %.1f%% on the holdout",
            cfg.name,
            threshold,
            100 * oof_rate,
            100 * rate,
        )
        return {**chosen, "holdout_positive_rate": rate, "fallback": ""}
    matched = float(np.quantile(score, 1 - oof_rate, method="higher")) if oof_rate > 0 else 1.0 + 1e-9
    new_rate = float((score >= matched).mean())
    why = (
        f"threshold {threshold:.4g} predicts {rate:.1%} of holdout rows positive against {oof_rate:.1%} out "
        "of "
        f"fold (beyond x{cfg.gates.positive_rate_max_ratio:g}); threshold {matched:.4g} matches the "
        "out-of-fold "
        f"rate ({new_rate:.1%} of holdout rows)"
    )
    log.warning("%s: the out-of-fold threshold does not transfer: %s", cfg.name, why)
    return {**chosen, "threshold": matched, "holdout_positive_rate": new_rate, "fallback": why}
