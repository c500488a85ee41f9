"""Calibration maps: fitted on out-of-fold scores, chosen by cross-fitted Brier score, applied from JSON.

The truth is known: labels are drawn from known probabilities, and the model's scores are a known distortion
of them, so a calibrated score can be compared with the probability that generated the label.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from driftloop.core import bus
from driftloop.core.calibration_map import (
    ISOTONIC,
    PLATT,
    CalibrationMap,
    Curve,
    describe_calibration,
    expected_calibration_error,
)
from driftloop.training.calibration import (
    OutOfFold,
    brier_score,
    calibration_metrics,
    fit_calibration,
    fit_curve,
)

CLASSES = ("No", "Yes")


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def overconfident(n: int, seed: int):
    """True probability sigmoid(z); the model scores sigmoid(3 z): right order, far too sure."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, n)
    truth = sigmoid(z)
    y = (rng.random(n) < truth).astype(int)
    return truth, sigmoid(3 * z), y


def step_shaped(n: int, seed: int):
    """Scores uniform on [0, 1]; the true probability jumps from 0.15 to 0.8 at 0.6 (no logistic curve of the
    score's logit fits a jump)."""
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    truth = np.where(score < 0.6, 0.15, 0.8)
    return truth, score, (rng.random(n) < truth).astype(int)


def test_ece_on_hand_computed_bins():
    # Bin [0.1, 0.2): two rows at 0.1, one positive (gap 0.1 - 0.5 = -0.4); bin [0.9, 1.0]: two rows at 0.9,
    # both positive (gap -0.1). ECE = (2 * 0.4 + 2 * 0.1) / 4 = 0.25.
    assert expected_calibration_error([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9]) == pytest.approx(0.25)
    # Top-label multiclass: confidences 0.7 (right) and 0.6 (wrong) in bins 7 and 6: (0.3 + 0.6) / 2.
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    assert expected_calibration_error([0, 2], proba) == pytest.approx(0.45)


def test_calibration_of_an_overconfident_model_moves_scores_to_the_true_probabilities():
    truth, score, y = overconfident(4000, seed=1)
    cmap = fit_calibration("binary", CLASSES, OutOfFold(y, score), seed=0)
    assert cmap.facts["ece_oof_after"] < cmap.facts["ece_oof_before"]
    # On fresh rows, against the probabilities that generate the labels (not the code's own ECE):
    fresh_truth, fresh_score, fresh_y = overconfident(4000, seed=2)
    calibrated = cmap.calibrate(fresh_score)
    assert np.mean(np.abs(calibrated - fresh_truth)) < 0.03 < np.mean(np.abs(fresh_score - fresh_truth))
    # The metrics logged on the training run say the same on "holdout" rows.
    metrics = calibration_metrics(cmap, fresh_y, {bus.SCORE_COLUMN: fresh_score})
    assert metrics[bus.HOLDOUT_ECE_AFTER] < metrics[bus.HOLDOUT_ECE_BEFORE]
    assert metrics[bus.CALIBRATION_OOF_ROWS] == 4000


def test_platt_recovers_a_logistic_distortion_and_is_chosen_for_it():
    # Score sigmoid(3 z) for probability sigmoid(z): logit(p) = logit(s) / 3, so a = 1/3, b = 0.
    _, score, y = overconfident(6000, seed=3)
    curve = fit_curve(PLATT, score, y)
    assert curve.a == pytest.approx(1 / 3, abs=0.04)
    assert curve.b == pytest.approx(0.0, abs=0.08)
    cmap = fit_calibration("binary", CLASSES, OutOfFold(y, score), seed=0)
    assert cmap.method == PLATT
    assert cmap.facts["brier"][PLATT] <= cmap.facts["brier"][ISOTONIC]


def test_isotonic_is_chosen_where_no_logistic_curve_fits():
    truth, score, y = step_shaped(6000, seed=4)
    cmap = fit_calibration("binary", CLASSES, OutOfFold(y, score), seed=0)
    assert cmap.method == ISOTONIC
    assert cmap.facts["brier"][ISOTONIC] < cmap.facts["brier"][PLATT]
    fresh_truth, fresh_score, _ = step_shaped(4000, seed=5)
    assert np.mean(np.abs(cmap.calibrate(fresh_score) - fresh_truth)) < 0.06


def test_the_map_round_trips_through_json_and_applies_as_scikit_learn_does():
    from sklearn.isotonic import IsotonicRegression

    truth, score, y = step_shaped(3000, seed=6)
    cmap = fit_calibration("binary", CLASSES, OutOfFold(y, score), seed=0)
    text = cmap.to_json()
    again = CalibrationMap.from_json(text)
    assert again == cmap
    assert json.loads(text)["curves"][0]["method"] == cmap.method
    # An isotonic curve from JSON predicts what scikit-learn's fitted regressor predicts, also off its range.
    points = np.r_[-0.5, np.linspace(0, 1, 201), 1.5]
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(score, y)
    curve = Curve.from_dict(json.loads(json.dumps(fit_curve(ISOTONIC, score, y).to_dict())))
    np.testing.assert_allclose(curve.apply(points), iso.predict(points), atol=1e-12)


def test_a_platt_map_from_json_applies_the_logistic_formula():
    cmap = CalibrationMap.from_json(
        json.dumps(
            {
                "format": 1,
                "task": "binary",
                "method": "platt",
                "classes": ["no", "yes"],
                "curves": [{"method": "platt", "a": 2.0, "b": -1.0}],
            }
        )
    )
    # s = 0.5: logit 0, so p = sigmoid(-1); s = 0.8: logit ln 4, p = sigmoid(2 ln 4 - 1) = 16 / (16 + e).
    np.testing.assert_allclose(cmap.calibrate([0.5, 0.8]), [1 / (1 + np.e), 16 / (16 + np.e)], rtol=1e-9)


@pytest.mark.parametrize(
    "change",
    [
        {"format": 9},
        {"method": "beta"},
        {"top_curves": [{"method": "isotonic", "x": [0.1], "y": [0.5]}]},  # top curves of a binary map
        {"curves": []},
        {"curves": [{"method": "isotonic", "x": [0.2, 0.1], "y": [0.0, 1.0]}]},
    ],
)
def test_a_broken_map_is_refused(change):
    good = {
        "format": 1,
        "task": "binary",
        "method": "isotonic",
        "classes": ["no", "yes"],
        "curves": [{"method": "isotonic", "x": [0.1, 0.9], "y": [0.2, 0.7]}],
    }
    with pytest.raises(ValueError):
        CalibrationMap.from_json(json.dumps({**good, **change}))


def multiclass_overconfident(n: int, seed: int, k: int = 3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.0, (n, k))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in truth])
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)
    return truth, sharp, y


def test_multiclass_maps_are_one_vs_rest_and_rows_sum_to_one():
    truth, scores, y = multiclass_overconfident(4000, seed=7)
    classes = ("a", "b", "c")
    cmap = fit_calibration("multiclass", classes, OutOfFold(y, scores), seed=0)
    assert len(cmap.curves) == 3
    assert cmap.facts["ece_oof_after"] < cmap.facts["ece_oof_before"]
    fresh_truth, fresh_scores, _ = multiclass_overconfident(3000, seed=8)
    calibrated = cmap.calibrate(fresh_scores)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert np.mean(np.abs(calibrated - fresh_truth)) < 0.5 * np.mean(np.abs(fresh_scores - fresh_truth))
    assert CalibrationMap.from_json(cmap.to_json()) == cmap
    outputs = {bus.proba_column(c): fresh_scores[:, i] for i, c in enumerate(classes)}
    np.testing.assert_array_equal(cmap.scores_of(outputs), fresh_scores)


def test_brier_score_on_known_values():
    assert brier_score("binary", [1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)
    assert brier_score("multiclass", [0], [[0.5, 0.5]]) == pytest.approx(0.25 + 0.25)


def test_the_model_card_line_names_the_method_and_both_eces():
    tags = {bus.CALIBRATION_METHOD_TAG: "isotonic"}
    metrics = {
        bus.CALIBRATION_ECE_BEFORE: 0.081,
        bus.CALIBRATION_ECE_AFTER: 0.012,
        bus.HOLDOUT_ECE_BEFORE: 0.07,
        bus.HOLDOUT_ECE_AFTER: 0.02,
    }
    text = describe_calibration(tags, metrics)
    assert "**isotonic**" in text and "0.0810 → 0.0120" in text and "0.0700 → 0.0200" in text
    assert describe_calibration({}, metrics) is None


def rare_class_scores(n: int, seed: int):
    """Three classes, the last rare, its score in [0.35, 0.45] on every row. On 30 % of the rows it is the
    highest score (the version predicts the rare class) and the class is right 90 % of the time; on the others
    class a scores higher and the rare class is right 10 % of the time. One curve of the rare class's score
    over every row cannot tell the two apart."""
    rng = np.random.default_rng(seed)
    rare_score = rng.uniform(0.35, 0.45, n)
    named = rng.random(n) < 0.3
    a = np.where(named, (1 - rare_score) / 2, 0.99 - rare_score)
    scores = np.column_stack([a, 1 - a - rare_score, rare_score])
    truth_rare = np.where(named, 0.9, 0.1)
    y = np.where(rng.random(n) < truth_rare, 2, np.where(rng.random(n) < 0.5, 0, 1))
    return scores, y, truth_rare


def test_a_multiclass_map_calibrates_the_predicted_class_on_the_rows_it_is_predicted_for():
    scores, y, _ = rare_class_scores(6000, seed=11)
    assert 0.2 < (scores.argmax(axis=1) == 2).mean() < 0.4  # the rare class is predicted on about 30 %
    cmap = fit_calibration("multiclass", ("a", "b", "rare"), OutOfFold(y, scores), seed=0)
    assert len(cmap.top_curves) == 3
    fresh, fresh_y, fresh_truth = rare_class_scores(4000, seed=12)
    calibrated = cmap.calibrate(fresh)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    named = fresh.argmax(axis=1) == 2
    # Where the rare class is predicted it is right 90 % of the time, elsewhere 10 %: the map says so.
    assert abs(calibrated[named, 2].mean() - 0.9) < 0.03
    assert abs(calibrated[~named, 2].mean() - 0.1) < 0.03
    # The format 1 map (one curve per class over every row) blurs them: what the top curves fix.
    one_vs_rest = CalibrationMap("multiclass", cmap.method, cmap.classes, tuple(
        fit_curve(cmap.method, scores[:, k], y == k) for k in range(3)
    ))  # fmt: skip
    blurred = one_vs_rest.calibrate(fresh)
    assert abs(blurred[named, 2].mean() - fresh_truth[named].mean()) > 0.1
    assert CalibrationMap.from_json(cmap.to_json()) == cmap


def test_a_format_1_multiclass_map_is_still_read_and_applied_one_vs_rest():
    text = json.dumps(
        {
            "format": 1,
            "task": "multiclass",
            "method": "platt",
            "classes": ["a", "b"],
            "curves": [
                {"method": "platt", "a": 1.0, "b": 0.0},
                {"method": "platt", "a": 1.0, "b": np.log(3)},
            ],
        }
    )
    cmap = CalibrationMap.from_json(text)
    assert cmap.top_curves == ()
    # Scores (0.5, 0.5): curve a keeps 0.5, curve b gives sigmoid(log 3) = 0.75; rows renormalised: 0.4, 0.6.
    np.testing.assert_allclose(cmap.calibrate([[0.5, 0.5]]), [[0.4, 0.6]])
