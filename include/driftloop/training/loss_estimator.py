"""The loss model of a regression version (direct loss estimation): what monitoring estimates RMSE and MAE
from before labels arrive (:class:`driftloop.core.loss_model.LossModel`).

Fitted on **out-of-fold errors of the training rows** (the selected pipeline refitted on ``training.folds``
folds, each predicting the rows it did not see: :func:`driftloop.training.selection.out_of_fold_prediction`),
never on the holdout: thousands of rows instead of the holdout's hundreds, which heavy-tailed errors need.
Two gradient-boosted models (Poisson loss, small trees: ``TREE_SETTINGS``) predict a row's absolute and
squared error from its features and the prediction, so an error that depends on a feature the prediction
does not reflect (noisier data in one region) is seen. Each is cross-fitted (``CROSS_FIT_FOLDS`` folds) on
the same rows to learn what it misses: ``noise_*`` (each row's realised loss over its prediction), which
monitoring draws for the band, and ``widening_*`` (:func:`band_widening`), which stretches that band over the
loss model's own error.

The trees are exported as their nodes (JSON, no pickle). That reads scikit-learn's fitted predictors
(``_predictors``, ``_baseline_prediction``: private, pinned by the lock file); :func:`export_trees` checks its
export against ``predict`` on the fitting rows and fails if they differ, so a scikit-learn that changes them
stops training loudly instead of logging wrong trees.
"""

from __future__ import annotations

import logging
from typing import Any

from driftloop.core import bus
from driftloop.core.loss_model import LossModel, Trees

log = logging.getLogger(__name__)

CROSS_FIT_FOLDS = 5
MAX_NOISE_ROWS = 2000  # noise values kept in the artifact (a seeded sample of the fitting rows)
MIN_ROWS = 50  # fewer rows with a prediction and a truth: no loss model
LEVEL = 0.9  # the band level the widening is calibrated for (monitoring's, estimated.BAND_LEVEL)
WIDENING_BATCHES = 40  # batches per cross-fitting fold behind the widening
WIDENING_DRAWS = 200
TREE_SETTINGS: dict[str, Any] = {
    "loss": "poisson",
    "max_iter": 100,
    "learning_rate": 0.05,
    "max_leaf_nodes": 8,
    "min_samples_leaf": 40,
    "early_stopping": False,
}
_EMPTY = (Trees(0.0, ()), Trees(0.0, ()), (1.0,), (1.0,))  # a shell that only encodes inputs


def _category_ranks(frame: Any, categorical: list[str], absolute_error: Any) -> dict[str, dict[str, float]]:
    """Each categorical feature's categories ranked by their mean absolute error (missing values left out)."""
    import pandas as pd

    ranks: dict[str, dict[str, float]] = {}
    for name in categorical:
        values = pd.Series(frame[name], dtype=object).reset_index(drop=True)
        known = values.notna()
        means = (
            pd.Series(absolute_error[known.to_numpy()]).groupby(values[known].astype(str).to_numpy()).mean()
        )
        ranks[name] = {str(k): float(i) for i, k in enumerate(means.sort_values(kind="stable").index)}
    return ranks


def export_trees(model: Any, check_inputs: Any) -> Trees:
    """The nodes of a fitted Poisson ``HistGradientBoostingRegressor`` (numeric splits only).

    Raises:
        RuntimeError: The export does not predict what ``model.predict`` does on ``check_inputs`` (a
            scikit-learn whose private tree layout changed).
    """
    import numpy as np

    trees = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            raise RuntimeError("loss model trees must split on numeric inputs only")
        trees.append(
            tuple(
                (-1, 0.0, 0, 0, 0, float(n["value"]))
                if n["is_leaf"]
                else (
                    int(n["feature_idx"]),
                    float(n["num_threshold"]),
                    int(n["missing_go_to_left"]),
                    int(n["left"]),
                    int(n["right"]),
                    0.0,
                )
                for n in nodes
            )
        )
    exported = Trees(float(np.ravel(model._baseline_prediction)[0]), tuple(trees))
    if not np.allclose(exported.predict(check_inputs), model.predict(check_inputs), rtol=1e-6, atol=0.0):
        raise RuntimeError(
            "exported loss trees do not predict what scikit-learn does: its tree layout changed"
        )
    return exported


def band_widening(loss: Any, crossed: Any, noise: Any, folds: list[Any], root: bool, seed: int) -> float:
    """The factor the noise-only band's log half-widths need to hold ``LEVEL`` of batches of cross-fitted
    rows.

    Each cross-fitting fold's rows are a set the loss model did not see, as a batch at monitoring is:
    ``WIDENING_BATCHES`` batches of half of them each are estimated (mean cross-fitted loss) and given the
    noise-only band; the factor is the ``LEVEL`` quantile over the batches of the one each needs (1 when the
    noise-only band already holds them).
    """
    import numpy as np

    from driftloop.monitoring.estimation import dle

    rng = np.random.default_rng(seed)
    needed = []
    for rows in folds:
        for b in range(WIDENING_BATCHES):
            batch = rng.choice(rows, len(rows) // 2, replace=False)
            realised = float(np.mean(loss[batch]))
            band = dle(crossed[batch], noise, "rmse" if root else "mae", LEVEL, WIDENING_DRAWS, seed + b)
            value = np.sqrt(realised) if root else realised
            edge = band.upper if value > band.estimate else band.lower
            if value <= 0 or edge <= 0 or band.estimate <= 0 or edge == band.estimate:
                continue
            needed.append(np.log(value / band.estimate) / np.log(edge / band.estimate))
    return float(max(1.0, np.quantile(needed, LEVEL))) if needed else 1.0


def fit_loss_model(
    frame: Any, numeric: list[str], categorical: list[str], prediction: Any, truth: Any, seed: int = 0
) -> LossModel:
    """The version's loss model, on rows it (or a fold model) did not train on.

    Args:
        frame: The rows' features (raw, as batches carry them).
        numeric: Numeric features of the config.
        categorical: Categorical features of the config.
        prediction: Each row's out-of-fold prediction.
        truth: Each row's realised value.
        seed: Seed of the trees, the cross-fitting folds, the noise sample and the widening's batches.

    Raises:
        ValueError: Fewer than ``MIN_ROWS`` rows with a prediction and a truth.
    """
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import KFold, cross_val_predict

    p, y = np.asarray(prediction, dtype=float), np.asarray(truth, dtype=float)
    keep = np.isfinite(p) & np.isfinite(y)
    if keep.sum() < MIN_ROWS:
        raise ValueError(
            f"a loss model needs {MIN_ROWS} rows with a prediction and a truth, got {keep.sum()}"
        )
    rows = frame.reset_index(drop=True)[keep]
    p, error = p[keep], y[keep] - p[keep]
    shell = LossModel(tuple(numeric), _category_ranks(rows, categorical, np.abs(error)), *_EMPTY)
    x = shell.inputs(rows, p)
    folds = KFold(CROSS_FIT_FOLDS, shuffle=True, random_state=seed)
    held_out = [test for _, test in folds.split(x)]
    sample = np.random.default_rng(seed).permutation(len(p))[:MAX_NOISE_ROWS]
    fitted: dict[str, Any] = {}
    for kind, loss in (("absolute", np.abs(error)), ("squared", error**2)):
        unit = float(loss.mean()) or 1.0  # fitted on loss / its mean: Poisson on 1e9-sized squared errors
        model = HistGradientBoostingRegressor(**TREE_SETTINGS, random_state=seed)
        crossed = cross_val_predict(model, x, loss / unit, cv=folds) * unit
        trees = export_trees(model.fit(x, loss / unit), x)
        noise = loss / crossed
        noise = noise / noise.mean()
        widening = band_widening(loss, crossed, noise, held_out, kind == "squared", seed)
        kept = tuple(float(f"{v:.4g}") for v in noise[sample])
        fitted[kind] = (Trees(trees.baseline + float(np.log(unit)), trees.nodes), kept, widening)
    return LossModel(
        numeric=tuple(numeric),
        categorical=shell.categorical,
        absolute=fitted["absolute"][0],
        squared=fitted["squared"][0],
        noise_absolute=fitted["absolute"][1],
        noise_squared=fitted["squared"][1],
        widening_absolute=fitted["absolute"][2],
        widening_squared=fitted["squared"][2],
        facts={
            "rows": int(len(p)),
            "fitted_on": "out-of-fold errors of the training rows",
            "cross_fit_folds": CROSS_FIT_FOLDS,
            "trees": {k: v for k, v in TREE_SETTINGS.items() if k != "early_stopping"},
            "out_of_fold_rmse": float(np.sqrt(np.mean(error**2))),
            "out_of_fold_mae": float(np.mean(np.abs(error))),
        },
    )


def log_loss_model(model: LossModel) -> None:
    """Inside the training run: the loss model as ``bus.LOSS_MODEL_ARTIFACT``."""
    import mlflow

    mlflow.log_text(model.to_json(), bus.LOSS_MODEL_ARTIFACT)
    log.info("loss model: %d rows, %s", model.facts["rows"], model.facts["fitted_on"])
