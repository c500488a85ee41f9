"""Estimated performance before labels (CBPE, DLE) against realised metrics where the truth is known.

Labels are drawn from known probabilities (or values from a known noise model), so the realised metric of each
batch is computed independently with scikit-learn and compared with the estimate and its band:

* no shift: the estimate is close to the realised value and the band holds it about as often as it says;
* covariate shift (P(x) moves, P(y|x) does not): the realised value moves and the estimate follows it;
* concept shift (P(y|x) moves): the estimate cannot see it, the realised value leaves the band. This is the
  blind spot the validation reports: only labels (live metrics) detect a concept shift.

The last test validates the whole path (out-of-fold calibration, CBPE) on the shipped telco_churn data.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from driftloop.core import bus
from driftloop.core.calibration_map import LossCurve
from driftloop.monitoring.estimation import (
    PerformanceEstimate,
    estimate_batch,
    estimate_binary,
    estimate_classification,
    estimate_multiclass,
    estimate_regression,
    estimate_regression_curve,
    expected_auc,
    fit_loss_models,
    metric_name,
)
from driftloop.training.calibration import OutOfFold, fit_calibration, fit_loss_curve

LEVEL = 0.9
SINGLE = 0.99  # the level of one-off band checks (a 90% band misses one batch in ten by design)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def binary_batch(rng, n: int, mean: float = 0.0, sd: float = 1.0, concept: bool = False):
    """Rows x ~ N(mean, sd); true P(y=1|x) = sigmoid(2x - 1), which is also the (calibrated) model's score.
    Under ``concept`` the labels follow sigmoid(0.3 x + 0.5) instead: same x, another P(y|x)."""
    x = rng.normal(mean, sd, n)
    p = sigmoid(2 * x - 1)
    y = rng.random(n) < (sigmoid(0.3 * x + 0.5) if concept else p)
    return p, y.astype(int)


def realised_binary(metric: str, y, p, predicted) -> float:
    if metric == "auc":
        return float(roc_auc_score(y, p))
    if metric == "f1":
        return float(f1_score(y, predicted))
    return float(accuracy_score(y, predicted))


@pytest.mark.parametrize("metric", ["auc", "f1", "accuracy"])
def test_binary_estimate_is_the_expected_metric_of_labels_drawn_from_the_probabilities(metric):
    rng = np.random.default_rng(0)
    p, _ = binary_batch(rng, 2000)
    predicted = p >= 0.4
    # The oracle: scikit-learn's metric averaged over many label vectors drawn from p.
    draws = [realised_binary(metric, rng.random(len(p)) < p, p, predicted) for _ in range(300)]
    estimate = estimate_binary(p, predicted, p, metric, LEVEL, draws=200)
    assert estimate.estimate == pytest.approx(np.mean(draws), abs=0.003)
    # The band is where the realised value falls: close to the oracle's own percentiles.
    assert estimate.lower == pytest.approx(np.quantile(draws, 0.05), abs=0.006)
    assert estimate.upper == pytest.approx(np.quantile(draws, 0.95), abs=0.006)
    assert (estimate.metric, estimate.method, estimate.rows, estimate.level) == (metric, "cbpe", 2000, LEVEL)


def test_expected_auc_counts_tied_scores_half():
    # Two rows of equal score, one surely positive and one surely negative: AUC 0.5 whatever the order.
    assert expected_auc([1.0, 0.0], [0.3, 0.3]) == pytest.approx(0.5)
    assert expected_auc([1.0, 0.0, 1.0], [0.9, 0.1, 0.5]) == pytest.approx(1.0)
    assert expected_auc([0.0, 1.0], [0.9, 0.1]) == pytest.approx(0.0)


def test_binary_band_covers_the_realised_metric_at_its_nominal_rate():
    rng = np.random.default_rng(1)
    inside = {m: 0 for m in ("auc", "f1", "accuracy")}
    errors = {m: [] for m in inside}
    batches = 200
    for seed in range(batches):
        p, y = binary_batch(rng, 800)
        predicted = p >= 0.4
        for metric in inside:
            estimate = estimate_binary(p, predicted, p, metric, LEVEL, draws=200, seed=seed)
            value = realised_binary(metric, y, p, predicted)
            inside[metric] += estimate.contains(value)
            errors[metric].append(abs(estimate.estimate - value))
    for metric in inside:
        assert abs(inside[metric] / batches - LEVEL) <= 0.06, (metric, inside[metric] / batches)
        assert np.mean(errors[metric]) < 0.03, (metric, np.mean(errors[metric]))


@pytest.mark.parametrize("metric", ["auc", "f1", "accuracy"])
def test_binary_estimate_follows_a_covariate_shift_but_not_a_concept_shift(metric):
    rng = np.random.default_rng(2)
    p_ref, y_ref = binary_batch(rng, 3000)
    p_cov, y_cov = binary_batch(rng, 3000, mean=1.0, sd=0.5)  # P(x) moves, P(y|x) does not
    p_con, y_con = binary_batch(rng, 3000, concept=True)  # P(y|x) moves, P(x) does not
    reference = realised_binary(metric, y_ref, p_ref, p_ref >= 0.4)
    shifted = realised_binary(metric, y_cov, p_cov, p_cov >= 0.4)
    assert abs(shifted - reference) > 0.04, (
        "the covariate shift must change the metric for this test to mean much"
    )
    estimate = estimate_binary(p_cov, p_cov >= 0.4, p_cov, metric, SINGLE)
    assert abs(estimate.estimate - shifted) < 0.02 and estimate.contains(shifted)

    concept = realised_binary(metric, y_con, p_con, p_con >= 0.4)
    blind = estimate_binary(p_con, p_con >= 0.4, p_con, metric, SINGLE)
    assert abs(blind.estimate - reference) < 0.02  # the estimate does not move ...
    assert not blind.contains(concept)  # ... so the realised value leaves the band


def multiclass_batch(rng, n: int, k: int = 4, shift: float = 0.0, concept: bool = False):
    """Class probabilities softmax(x W) for x ~ N(shift, 1) in 2 dimensions; the model predicts the argmax.
    Under ``concept`` the labels follow another weight matrix."""
    weights = np.array([[2.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.5, -1.5]])[:, :k]
    x = rng.normal(shift, 1.0, (n, 2))
    logits = x @ weights
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    source = p
    if concept:
        other = x @ weights[::-1, ::-1]
        source = np.exp(other) / np.exp(other).sum(axis=1, keepdims=True)
    u = rng.random((n, 1))
    y = (u > np.cumsum(source, axis=1)).sum(axis=1)
    return p, np.minimum(y, k - 1)


def realised_multiclass(metric: str, y, predicted) -> float:
    if metric == "macro_f1":
        return float(f1_score(y, predicted, average="macro"))
    return float(accuracy_score(y, predicted))


@pytest.mark.parametrize("metric", ["macro_f1", "accuracy"])
def test_multiclass_estimate_band_and_shifts(metric):
    rng = np.random.default_rng(3)
    inside, errors, batches = 0, [], 100
    for seed in range(batches):
        p, y = multiclass_batch(rng, 600)
        estimate = estimate_multiclass(p, p.argmax(axis=1), metric, LEVEL, draws=200, seed=seed)
        value = realised_multiclass(metric, y, p.argmax(axis=1))
        inside += estimate.contains(value)
        errors.append(abs(estimate.estimate - value))
    assert abs(inside / batches - LEVEL) <= 0.08, inside / batches
    assert np.mean(errors) < 0.03

    p_ref, y_ref = multiclass_batch(rng, 4000)
    p_cov, y_cov = multiclass_batch(rng, 4000, shift=1.0)
    reference = realised_multiclass(metric, y_ref, p_ref.argmax(axis=1))
    shifted = realised_multiclass(metric, y_cov, p_cov.argmax(axis=1))
    assert abs(shifted - reference) > 0.04
    followed = estimate_multiclass(p_cov, p_cov.argmax(axis=1), metric, SINGLE)
    assert abs(followed.estimate - shifted) < 0.02 and followed.contains(shifted)
    p_con, y_con = multiclass_batch(rng, 4000, concept=True)
    blind = estimate_multiclass(p_con, p_con.argmax(axis=1), metric, SINGLE)
    assert not blind.contains(realised_multiclass(metric, y_con, p_con.argmax(axis=1)))


def test_classification_estimate_reads_a_predictions_frame_through_the_calibration_map():
    import pandas as pd

    rng = np.random.default_rng(4)
    # An overconfident model: scores sigmoid(3 z) for true probabilities sigmoid(z).
    z = rng.normal(0, 1.2, 6000)
    y = (rng.random(6000) < sigmoid(z)).astype(int)
    score = sigmoid(3 * z)
    cmap = fit_calibration("binary", ("stay", "leave"), OutOfFold(y[:3000], score[:3000]), seed=0)
    batch = pd.DataFrame(
        {
            bus.SCORE_COLUMN: score[3000:],
            bus.PREDICTION_COLUMN: np.where(score[3000:] >= 0.5, "leave", "stay"),
        }
    )
    truth = y[3000:]
    calibrated = estimate_classification(cmap, batch, "F1", level=SINGLE)
    realised = f1_score(truth, batch[bus.PREDICTION_COLUMN] == "leave")
    assert abs(calibrated.estimate - realised) < 0.02 and calibrated.contains(realised)
    # Without the map (raw, overconfident scores) the estimate would be far off: calibration matters.
    raw = estimate_binary(score[3000:], score[3000:] >= 0.5, score[3000:], "f1", LEVEL)
    assert abs(raw.estimate - realised) > 0.05
    every = {e.metric: e for e in estimate_batch(cmap, batch, level=SINGLE)}
    assert set(every) == {"auc", "f1", "accuracy"} and every["f1"] == calibrated
    assert abs(every["auc"].estimate - roc_auc_score(truth, score[3000:])) < 0.02
    assert calibrated.to_metrics() == {
        "estimated_f1": calibrated.estimate,
        "estimated_f1_lower": calibrated.lower,
        "estimated_f1_upper": calibrated.upper,
    }


def regression_batch(rng, n: int, shift: float = 0.0, noise_factor: float = 1.0, sd: float = 1.0):
    """y = 3 x1 + e, e ~ N(0, (0.5 + |x2|)^2): the model predicts 3 x1 exactly, its error depends on x2."""
    x = np.column_stack([rng.normal(0, 1, n), rng.normal(shift, sd, n)])
    sd = 0.5 + np.abs(x[:, 1])
    y = 3 * x[:, 0] + rng.normal(0, noise_factor * sd)
    return x, 3 * x[:, 0], y


@pytest.fixture(scope="module")
def loss_models():
    """DLE's loss models fitted on 4,000 labelled reference rows whose x2 spans every batch below."""
    return fit_loss_models(*regression_batch(np.random.default_rng(50), 4000, sd=1.5), seed=0)


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_dle_estimates_errors_that_depend_on_the_features(metric, loss_models):
    rng = np.random.default_rng(5)
    models = loss_models

    def realised(pred, y):
        error = y - pred
        return float(np.sqrt(np.mean(error**2)) if metric == "rmse" else np.mean(np.abs(error)))

    x, pred, y = regression_batch(rng, 1500)
    same = estimate_regression(models, x, pred, metric, SINGLE)
    assert abs(same.estimate / realised(pred, y) - 1) < 0.06 and same.method == "dle"
    x, pred, y = regression_batch(rng, 1500, shift=1.0)  # larger |x2|: larger errors, same P(y|x)
    shifted = estimate_regression(models, x, pred, metric, LEVEL)
    assert realised(pred, y) > 1.2 * same.estimate
    assert abs(shifted.estimate / realised(pred, y) - 1) < 0.06
    x, pred, y = regression_batch(rng, 1500, noise_factor=1.6)  # the noise grows: DLE cannot see it
    blind = estimate_regression(models, x, pred, metric, SINGLE)
    assert not blind.contains(realised(pred, y)) and abs(blind.estimate / same.estimate - 1) < 0.06


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_dle_band_covers_the_realised_error_near_its_nominal_rate(metric, loss_models):
    # The band covers the batch's sampling noise, not the loss models' own error: a little under nominal.
    rng = np.random.default_rng(9)
    inside = []
    for b in range(150):
        x, pred, y = regression_batch(rng, 500, shift=(b % 3) * 0.5)
        error = y - pred
        value = np.sqrt(np.mean(error**2)) if metric == "rmse" else np.mean(np.abs(error))
        inside.append(estimate_regression(loss_models, x, pred, metric, LEVEL).contains(value))
    assert abs(np.mean(inside) - LEVEL) <= 0.08, np.mean(inside)


def test_cbpe_on_hand_computed_cases():
    # Multiclass: the predicted class (not the most probable calibrated one) is right with p[i, pred[i]].
    proba = np.array([[0.6, 0.4], [0.3, 0.7]])
    assert estimate_multiclass(proba, [1, 1], "accuracy").estimate == pytest.approx((0.4 + 0.7) / 2)
    # Expected confusion per class: class 0 TP 0, predicted 0, true 0.9; class 1 TP 1.1, predicted 2, true
    # 1.1: F1 0 and 2.2 / 3.1, macro-F1 their mean.
    assert estimate_multiclass(proba, [1, 1], "macro_f1").estimate == pytest.approx((0 + 2.2 / 3.1) / 2)
    # Binary F1: TP 0.9 + 0.6 = 1.5, predicted 2, expected positives 0.9 + 0.6 + 0.2 = 1.7: 3 / 3.7.
    p = np.array([0.9, 0.6, 0.2])
    assert estimate_binary(p, [True, True, False], p, "f1").estimate == pytest.approx(3 / 3.7)
    assert estimate_binary(p, [True, True, False], p, "accuracy").estimate == pytest.approx(
        (0.9 + 0.6 + 0.8) / 3
    )


def priced(rng, n: int, low: float = 50.0, high: float = 150.0, noise: float = 0.2):
    """A regression version whose error grows with its prediction: y = f + N(0, (noise f)^2), prediction f."""
    f = rng.uniform(low, high, n)
    return f, f + rng.normal(0, noise * f)


def test_loss_curve_is_the_mean_error_per_prediction_bin_and_round_trips():
    # 200 rows: two bins of 100. Predictions 0..99 miss by 1, predictions 100..199 by -3.
    prediction = np.arange(200.0)
    truth = prediction + np.where(prediction < 100, 1.0, -3.0)
    curve = fit_loss_curve(prediction, truth)
    assert curve.x == (49.5, 149.5) and curve.absolute == (1.0, 3.0) and curve.squared == (1.0, 9.0)
    assert curve.fourth == (1.0, 81.0)
    absolute, squared, fourth = curve.expected_losses(
        [0.0, 99.5, 500.0]
    )  # clipped at the ends, linear between
    np.testing.assert_allclose(absolute, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(squared, [1.0, 5.0, 9.0])
    np.testing.assert_allclose(fourth, [1.0, 41.0, 81.0])
    assert LossCurve.from_json(curve.to_json()) == curve
    with pytest.raises(ValueError):
        LossCurve.from_json(curve.to_json().replace('"format": 1', '"format": 9'))


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_dle_by_predicted_value_follows_a_shift_of_predictions_but_not_more_noise(metric):
    rng = np.random.default_rng(11)
    curve = fit_loss_curve(*priced(rng, 1000))  # a holdout of 1,000 rows: 10 bins

    def realised(pred, y):
        error = y - pred
        return float(np.sqrt(np.mean(error**2)) if metric == "rmse" else np.mean(np.abs(error)))

    inside = []
    for _ in range(100):
        pred, y = priced(rng, 500)
        estimate = estimate_regression_curve(curve, pred, metric, LEVEL)
        inside.append(estimate.contains(realised(pred, y)))
    assert abs(np.mean(inside) - LEVEL) <= 0.1, np.mean(inside)
    pred, y = priced(rng, 2000, low=100.0)  # dearer items: larger errors, same P(y|x)
    shifted = estimate_regression_curve(curve, pred, metric, SINGLE)
    assert realised(pred, y) > 1.15 * estimate_regression_curve(curve, priced(rng, 2000)[0], metric).estimate
    assert abs(shifted.estimate / realised(pred, y) - 1) < 0.05 and shifted.contains(realised(pred, y))
    pred, y = priced(rng, 2000, noise=0.3)  # the same items, noisier: DLE cannot see it
    assert not estimate_regression_curve(curve, pred, metric, SINGLE).contains(realised(pred, y))


def test_metric_names_follow_the_configs_spelling():
    assert metric_name("AUC", "binary") == "auc"
    assert metric_name("F1", "binary") == "f1"
    assert metric_name("F1", "multiclass") == "macro_f1"
    assert metric_name("macro_f1", "multiclass") == "macro_f1"
    assert metric_name("RMSE", "regression") == "rmse"
    with pytest.raises(ValueError, match="precision"):
        metric_name("precision", "binary")
    with pytest.raises(ValueError):
        metric_name("AUC", "regression")
    with pytest.raises(ValueError):
        estimate_binary([0.5], [True], [0.5], "auc", level=1.5)
    assert PerformanceEstimate("auc", 0.8, 0.7, 0.9, 0.9, "cbpe", 10).contains(0.9)


def test_validation_on_the_shipped_telco_config(telco_frame):
    """The issue's validation on telco_churn: the config's holdout split, the config's first model family
    (logistic regression on Driftloop's preprocessing; scikit-learn, not a PyCaret selection) and its 5 folds
    for the out-of-fold calibration; 500-row batches of the holdout, uniform and covariate-shifted (sampled by
    tenure: P(x) moves, P(y|x) does not), then with labels flipped for long-tenure customers (concept shift).
    """
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import Pipeline

    from driftloop.core.config import load_dataset_config
    from driftloop.core.holdout import split_holdout
    from driftloop.core.settings import Settings
    from driftloop.core.task_types import choose_threshold, model_input, training_decision
    from driftloop.training.preprocessing import build_preprocessor

    cfg = load_dataset_config("telco_churn", Settings.from_env({}))
    train_df, holdout_df = split_holdout(cfg, telco_frame)
    decision = training_decision(cfg, train_df[cfg.target])
    X, Xh = model_input(train_df[cfg.features]), model_input(holdout_df[cfg.features])
    y, yh = (
        decision.encode(train_df[cfg.target]).to_numpy(),
        decision.encode(holdout_df[cfg.target]).to_numpy(),
    )
    model = Pipeline([("pre", build_preprocessor(cfg, X)), ("lr", LogisticRegression(max_iter=2000))])
    folds = StratifiedKFold(cfg.training.folds, shuffle=True, random_state=cfg.training.seed)
    oof = cross_val_predict(clone(model), X, y, cv=folds, method="predict_proba")[:, 1]
    cmap = fit_calibration("binary", decision.classes, OutOfFold(y, oof), seed=cfg.training.seed)
    threshold = choose_threshold(y, oof, "f1")["threshold"]
    score = model.fit(X, y).predict_proba(Xh)[:, 1]
    batch_rows = 500  # the realised F1 of fewer rows is noisier than the 0.03 target
    tenure = holdout_df["tenure"].to_numpy(dtype=float)
    z = (tenure - tenure.mean()) / tenure.std()
    rng = np.random.default_rng(0)
    found: dict[tuple[str, str], list[tuple[float, bool]]] = {}
    for scenario in ("none", "covariate", "concept"):
        for b in range(30):
            weight = np.exp((1.5 if b % 2 else -1.5) * z) if scenario == "covariate" else np.ones(len(z))
            rows = rng.choice(len(z), batch_rows, replace=False, p=weight / weight.sum())
            truth = yh[rows].copy()
            if scenario == "concept":
                flip = (z[rows] > 0) & (rng.random(batch_rows) < 0.3)
                truth[flip] = 1 - truth[flip]
            proba, predicted = cmap.calibrate(score[rows]), score[rows] >= threshold
            for metric in ("auc", "f1"):
                estimate = estimate_binary(proba, predicted, score[rows], metric, LEVEL, draws=200, seed=b)
                value = realised_binary(metric, truth, score[rows], predicted)
                found.setdefault((metric, scenario), []).append(
                    (abs(estimate.estimate - value), estimate.contains(value))
                )
    summary = {key: (np.mean([e for e, _ in v]), np.mean([c for _, c in v])) for key, v in found.items()}
    for metric in ("auc", "f1"):
        for scenario in ("none", "covariate"):
            error, coverage = summary[(metric, scenario)]
            assert error <= 0.03, (metric, scenario, summary)
            # Batches overlap (500 of 1,421 rows), so coverage is noisier than 30 batches': 15 points.
            assert abs(coverage - LEVEL) <= 0.15, (metric, scenario, summary)
        error, coverage = summary[(metric, "concept")]
        assert error > 0.05 and coverage < 0.5, (metric, "concept", summary)
