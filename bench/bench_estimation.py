"""How close estimated performance (CBPE, DLE) comes to the realised metric on the shipped datasets.

For each shipped config (its data ships offline): the config's holdout split; a model of the config's first
model family (scikit-learn defaults, a random forest for tree families; not a PyCaret selection: the figures
are about estimation, not about the model) fitted on the training rows; out-of-fold outputs of the training
rows (the config's ``training.folds``) for the calibration map (classification,
:func:`driftloop.training.calibration.fit_calibration`) or the DLE loss model (regression,
:func:`driftloop.training.loss_estimator.fit_loss_model`), as training fits them. Then BATCHES batches are
drawn from the holdout in three scenarios:

* ``none``: uniform samples;
* ``covariate``: rows sampled with weight ``exp(+-1.5 z)`` of the standardised first numeric feature: P(x)
  moves, P(y|x) does not, so the estimate should follow the realised metric;
* ``concept``: uniform samples whose labels change where ``z > 0`` (binary: 30% flipped; multiclass: 30%
  replaced by a random class; regression: noise of twice the residual spread added): P(y|x) moves, which
  the estimate cannot see.

Prints one line per dataset, metric and scenario: mean absolute estimation error, band coverage (share of
batches whose realised value is inside the 90% band) and mean realised value; regression also the mean
relative error (absolute error over the realised value). Run:
``PYTHONPATH=include nice -n 19 .venv/bin/python bench/bench_estimation.py [--splits N] [config ...]``.
``bench/bench_nannyml.py`` runs NannyML's CBPE on the same batches.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np

from driftloop.core.calibration_map import expected_calibration_error

BATCHES = 40
LEVEL = 0.9
CONFIGS = ("telco_churn", "mlc_churn", "hpc_jobs", "ames_housing")


def make_model(cfg, data):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline

    from driftloop.training.preprocessing import build_preprocessor

    family = cfg.training.models[0]
    if cfg.task == "regression":
        estimator = Ridge() if family == "ridge" else RandomForestRegressor(200, min_samples_leaf=3, n_jobs=1)
    elif family == "lr":
        estimator = LogisticRegression(max_iter=2000)
    else:
        estimator = RandomForestClassifier(300, min_samples_leaf=3, n_jobs=1, random_state=0)
    return Pipeline([("pre", build_preprocessor(cfg, data)), ("model", estimator)])


def realised(task: str, metric: str, y, outputs) -> float:
    from sklearn import metrics as m

    if task == "regression":
        error = y - outputs
        return float(np.sqrt(np.mean(error**2)) if metric == "rmse" else np.mean(np.abs(error)))
    predicted = outputs["predicted"]
    if metric == "auc":
        return float(m.roc_auc_score(y, outputs["score"]))
    if metric == "f1":
        return float(m.f1_score(y, predicted))
    if metric == "macro_f1":
        return float(m.f1_score(y, predicted, average="macro"))
    return float(m.accuracy_score(y, predicted))


def batches(holdout_rows: int, z, y, task: str, rng, residual_sd: float):
    n = min(500, holdout_rows // 2)
    for scenario in ("none", "covariate", "concept"):
        for b in range(BATCHES):
            if scenario == "covariate":
                w = np.exp((1.5 if b % 2 else -1.5) * z)
                rows = rng.choice(len(z), n, replace=False, p=w / w.sum())
            else:
                rows = rng.choice(len(z), n, replace=False)
            truth = y[rows].copy()
            if scenario == "concept":
                hit = (z[rows] > 0) & (rng.random(n) < 0.3)
                if task == "binary":
                    truth[hit] = 1 - truth[hit]
                elif task == "multiclass":
                    truth[hit] = rng.integers(0, int(y.max()) + 1, hit.sum())
                else:
                    truth = truth + np.where(z[rows] > 0, rng.normal(0, 2 * residual_sd, n), 0.0)
            yield scenario, rows, truth


def fit_version(name: str, split_seed: int | None = None) -> SimpleNamespace:
    """The config's split (or the holdout another seed's hash picks), a fitted model, and what the estimates
    need: the calibration map (classification) or DLE's loss models (regression), both from out-of-fold
    outputs of the training rows."""
    from dataclasses import replace

    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

    from driftloop.core.config import load_dataset_config
    from driftloop.core.holdout import split_holdout
    from driftloop.core.settings import Settings
    from driftloop.core.task_types import choose_threshold, model_input, training_decision
    from driftloop.data.sources import load_source_frame
    from driftloop.monitoring import estimation as est
    from driftloop.training.calibration import OutOfFold, fit_calibration
    from driftloop.training.loss_estimator import fit_loss_model

    cfg = load_dataset_config(name, Settings.from_env({}))
    if split_seed is not None:
        cfg = replace(cfg, training=replace(cfg.training, seed=split_seed))
    frame = load_source_frame(cfg)
    if cfg.id_column not in frame:
        frame[cfg.id_column] = np.arange(len(frame)).astype(str)
    train_df, holdout_df = split_holdout(cfg, frame.dropna(subset=[cfg.target]).reset_index(drop=True))
    decision = training_decision(cfg, train_df[cfg.target])
    X, Xh = model_input(train_df[cfg.features]), model_input(holdout_df[cfg.features])
    y = decision.encode(train_df[cfg.target]).to_numpy()
    model, task = make_model(cfg, X), decision.task
    splitter = KFold if task == "regression" else StratifiedKFold
    folds = splitter(cfg.training.folds, shuffle=True, random_state=cfg.training.seed)
    method = "predict" if task == "regression" else "predict_proba"
    oof = cross_val_predict(clone(model), X, y, cv=folds, method=method)
    model.fit(X, y)
    col = holdout_df[cfg.numeric_features[0]].astype(float)
    col = col.fillna(col.mean()).to_numpy()
    version = SimpleNamespace(
        name=name,
        task=task,
        rows=len(holdout_df),
        y=decision.encode(holdout_df[cfg.target]).to_numpy(),
        z=(col - col.mean()) / (col.std() or 1.0),
        residual_sd=float(np.std(y - oof)) if task == "regression" else 0.0,
    )
    if task == "regression":
        # As training: the loss model on out-of-fold errors of the training rows, features and prediction.
        numeric, categorical = list(cfg.numeric_features), list(cfg.categorical_features)
        version.loss_model = fit_loss_model(train_df[cfg.features], numeric, categorical, oof, y, seed=0)
        version.metrics, version.predicted = est.REGRESSION_METRICS, model.predict(Xh)
        version.features = holdout_df[cfg.features].reset_index(drop=True)
        version.about = f"DLE loss model on {len(y)} out-of-fold training rows ({cfg.training.folds} folds)"
        return version
    scores = oof[:, 1] if task == "binary" else oof
    version.metrics = est.BINARY_METRICS if task == "binary" else est.MULTICLASS_METRICS
    version.cmap = fit_calibration(task, decision.classes, OutOfFold(y, scores), seed=0)
    proba = model.predict_proba(Xh)
    version.raw = proba[:, 1] if task == "binary" else proba
    # The threshold training would choose: F1 on the out-of-fold scores (training.threshold_objective).
    threshold = choose_threshold(y, scores, "f1")["threshold"] if task == "binary" else 0.5
    version.predicted = (version.raw >= threshold).astype(int) if task == "binary" else proba.argmax(axis=1)
    # The rows the map is fitted on (a reference set for NannyML's CBPE, bench_nannyml.py): out-of-fold.
    version.reference = SimpleNamespace(
        y=y,
        raw=scores,
        predicted=(scores >= threshold).astype(int) if task == "binary" else oof.argmax(axis=1),
    )
    version.classes = decision.classes
    after = expected_calibration_error(version.y, version.cmap.calibrate(version.raw))
    version.about = (
        f"calibration {version.cmap.method} on {cfg.training.folds} folds, holdout ECE "
        f"{expected_calibration_error(version.y, version.raw):.4f} -> {after:.4f}"
    )
    return version


def estimate(version: SimpleNamespace, rows, metric: str):
    from driftloop.monitoring import estimation as est

    if version.task == "regression":
        frame, predicted = version.features.iloc[rows], version.predicted[rows]
        return est.estimate_regression(version.loss_model, frame, predicted, metric, LEVEL, 400)
    proba = version.cmap.calibrate(version.raw[rows])
    if version.task == "binary":
        positive = version.predicted[rows] == 1
        return est.estimate_binary(proba, positive, version.raw[rows], metric, LEVEL, 400)
    return est.estimate_multiclass(proba, version.predicted[rows], metric, LEVEL, 400)


def realised_of(version: SimpleNamespace, metric: str, rows, truth) -> float:
    """The batch's realised metric against ``truth``."""
    if version.task == "regression":
        return realised(version.task, metric, truth, version.predicted[rows])
    score = version.raw[rows] if version.task == "binary" else None
    return realised(version.task, metric, truth, {"predicted": version.predicted[rows], "score": score})


def draw_batches(version: SimpleNamespace) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The BATCHES batches of each scenario (seeded: every estimator sees the same rows and labels)."""
    rng = np.random.default_rng(0)
    return list(batches(version.rows, version.z, version.y, version.task, rng, version.residual_sd))


def validate(version: SimpleNamespace, drawn) -> dict[tuple[str, str], list[tuple[float, bool, float]]]:
    """(metric, scenario) -> per batch: absolute error of the estimate, realised value inside the band,
    realised value (the relative error is the first over the last)."""
    results: dict[tuple[str, str], list[tuple[float, bool, float]]] = {}
    for scenario, rows, truth in drawn:
        for metric in version.metrics:
            e = estimate(version, rows, metric)
            value = realised_of(version, metric, rows, truth)
            results.setdefault((metric, scenario), []).append(
                (abs(e.estimate - value), e.contains(value), value)
            )
    return results


def report(title: str, results) -> list[str]:
    lines = [title]
    for (metric, scenario), values in results.items():
        errors, inside, real = (np.asarray(v, dtype=float) for v in zip(*values, strict=True))
        relative = f"  mean relative error {np.mean(errors / real):.1%}" if metric in ("rmse", "mae") else ""
        lines.append(
            f"  {metric:9s} {scenario:10s} mean abs error {np.mean(errors):.4f}  "
            f"coverage {np.mean(inside):.0%} (nominal {LEVEL:.0%})  "
            f"realised mean {np.mean(real):.4f}{relative}"
        )
    return lines


def describe(version: SimpleNamespace) -> str:
    return f"{version.name} ({version.task}, {version.rows} holdout rows, {version.about})"


def main(argv: list[str]) -> int:
    """``[--splits N] [config ...]``: with ``--splits``, also N other holdouts (the config's hash with seeds
    1..N), pooled, so that no single holdout's luck decides the figures (every batch of one holdout shares
    that holdout's deviation from the population)."""
    splits = 0
    if argv[:1] == ["--splits"]:
        splits, argv = int(argv[1]), argv[2:]
    for name in argv or CONFIGS:
        version = fit_version(name)
        print("\n".join(report(describe(version), validate(version, draw_batches(version)))), flush=True)
        if not splits:
            continue
        pooled: dict[tuple[str, str], list[tuple[float, bool, float]]] = {}
        for seed in range(1, splits + 1):
            other = fit_version(name, split_seed=seed)
            for key, values in validate(other, draw_batches(other)).items():
                pooled.setdefault(key, []).extend(values)
        print("\n".join(report(f"{name}: {splits} other holdouts (split seeds 1..{splits}), pooled", pooled)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
