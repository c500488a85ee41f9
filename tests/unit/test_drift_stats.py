"""The fast drift statistics against Evidently 0.7 itself, on the shipped configs' data.

``compute_drift`` (numpy on value counts) and ``evidently_drift`` (Evidently's data drift preset, how
monitoring computed drift before) run on the same frames: unshifted and shifted batches, references above and
below Evidently's 1,000-row switch from p-values to distances, numbers stored as text, nulls, infinities, an
empty column. The methods, the drifted columns, the drift share and the prediction verdict must be identical,
and every score within 1e-9 (relative) of Evidently's: the tests read the same counts, only the summation
order differs.
"""

from __future__ import annotations

import numpy as np
import pytest

SHIPPED = ["telco_churn", "hpc_jobs", "ames_housing", "mlc_churn"]
SCORE_RTOL = 1e-9


def _with_outputs(cfg, frame, seed: int, shift: float = 0.0):
    """``frame`` with model outputs: a score, or two class probabilities for multiclass."""
    rng = np.random.default_rng(seed)
    frame = frame.copy()
    score = np.clip(rng.beta(2, 5, len(frame)) + shift, 0, 1)
    outputs = ("proba_a", "proba_b") if cfg.task == "multiclass" else ("score",)
    if len(outputs) == 2:
        frame["proba_a"], frame["proba_b"] = score, 1 - score
    else:
        frame["score"] = score
    return frame, outputs


def _shifted(cfg, frame):
    """Half the numeric features scaled up and half the categorical ones set to their rarest value."""
    frame = frame.copy()
    for col in cfg.numeric_features[::2]:
        frame[col] = frame[col] * 1.5 + 1
    for col in cfg.categorical_features[::2]:
        values = frame[col].dropna()
        if len(values):
            frame[col] = values.value_counts().index[-1]
    return frame


def _assert_same(cfg, reference, current, outputs):
    from driftloop.monitoring.drift import compute_drift
    from driftloop.monitoring.drift_report import evidently_drift

    fast = compute_drift(cfg, reference, current, outputs)
    slow = evidently_drift(cfg, reference, current, outputs)
    assert fast["methods"] == slow["methods"]
    assert fast["drifted_column_names"] == slow["drifted_column_names"]
    assert fast["drift_share"] == slow["drift_share"]
    assert fast["prediction_drifted"] == slow["prediction_drifted"]
    assert fast["empty_columns"] == slow["empty_columns"]
    assert fast["drift_scores"].keys() == slow["drift_scores"].keys()
    for col, score in slow["drift_scores"].items():
        assert fast["drift_scores"][col] == pytest.approx(score, rel=SCORE_RTOL, abs=1e-12), col
    assert fast["prediction_drift_score"] == pytest.approx(slow["prediction_drift_score"], rel=SCORE_RTOL)
    return fast


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("reference_rows", [800, 1500])
def test_same_scores_and_verdicts_as_evidently_on_shipped_data(name, reference_rows):
    from driftloop.core.config import load_dataset_config
    from driftloop.data.sources import load_source_frame

    cfg = load_dataset_config(name)
    frame = load_source_frame(cfg).sample(frac=1.0, random_state=7).reset_index(drop=True)
    reference, _ = _with_outputs(cfg, frame.iloc[:reference_rows], seed=1)
    current, outputs = _with_outputs(cfg, frame.iloc[reference_rows : reference_rows + 1200], seed=2)
    clean = _assert_same(cfg, reference, current, outputs)
    shifted, _ = _with_outputs(cfg, _shifted(cfg, current), seed=3, shift=0.3)
    drifted = _assert_same(cfg, reference, shifted, outputs)

    # Columns with at most 1,000 non-null reference rows keep the p-value tests, as in Evidently.
    distances = {"Wasserstein distance (normed)", "Jensen-Shannon distance"}
    assert bool(set(clean["methods"].values()) & distances) == (reference_rows > 1000)
    assert drifted["drift_share"] > clean["drift_share"] and drifted["prediction_drifted"]


def test_text_numbers_nulls_infinities_and_an_empty_column_as_evidently(telco_cfg, telco_frame):
    frame = telco_frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    reference, outputs = _with_outputs(telco_cfg, frame.iloc[:2000], seed=1)
    current, _ = _with_outputs(telco_cfg, frame.iloc[2000:5000], seed=2)
    current["partner"] = current["partner"].astype(str)  # "0"/"1" here, 0/1 in the reference: no drift
    current.loc[current.index[:700], "senior_citizen"] = None
    current["monthly_charges"] = current["monthly_charges"].astype(object)
    current.loc[current.index[:50], "monthly_charges"] = "n/a"  # not a number: dropped, as Evidently does
    current.loc[current.index[50:60], "total_charges"] = np.inf
    current["online_backup"] = None

    result = _assert_same(telco_cfg, reference, current, outputs)

    assert (
        "partner" not in result["drifted_column_names"] and "online_backup" in result["drifted_column_names"]
    )


def test_few_numeric_values_use_the_categorical_tests_as_evidently(telco_cfg, telco_frame):
    frame = telco_frame.sample(frac=1.0, random_state=4).reset_index(drop=True)
    frame["tenure"] = frame["tenure"] % 2  # two distinct values: Z-test or Jensen-Shannon
    frame["monthly_charges"] = (frame["monthly_charges"] // 40).astype(float)  # three: chi-square or J-S
    for reference_rows, methods in (
        (900, ("Z-test p_value", "chi-square p_value")),
        (3000, ("Jensen-Shannon distance",) * 2),
    ):
        reference, outputs = _with_outputs(telco_cfg, frame.iloc[:reference_rows], seed=1)
        current, _ = _with_outputs(telco_cfg, frame.iloc[reference_rows:], seed=2)
        current["tenure"] = (current["tenure"] + (np.arange(len(current)) % 3 == 0)) % 2
        result = _assert_same(telco_cfg, reference, current, outputs)
        assert (result["methods"]["tenure"], result["methods"]["monthly_charges"]) == methods


def test_an_output_without_values_is_a_monitoring_error(telco_cfg, telco_frame):
    from driftloop.core.errors import MonitoringError
    from driftloop.monitoring.drift import compute_drift

    reference, outputs = _with_outputs(telco_cfg, telco_frame.iloc[:2000], seed=1)
    current, _ = _with_outputs(telco_cfg, telco_frame.iloc[2000:3000], seed=2)

    with pytest.raises(MonitoringError, match="score"):
        compute_drift(telco_cfg, reference, current.assign(score=np.nan), outputs)


def test_the_report_is_drawn_on_a_sample_and_says_so(telco_cfg, telco_frame, tmp_path):
    from driftloop.monitoring.drift import compute_drift

    reference, outputs = _with_outputs(telco_cfg, telco_frame.iloc[:2000], seed=1)
    current, _ = _with_outputs(telco_cfg, telco_frame.iloc[2000:5000], seed=2)

    for rows, sampled in ((500, True), (5000, False)):
        path = tmp_path / f"report_{rows}.html"
        compute_drift(telco_cfg, reference, current, outputs, report_rows=rows)["snapshot"].save_html(
            str(path)
        )
        page = path.read_text(encoding="utf-8")
        assert "Value Drift for column tenure" in page and "Value Drift for column score" in page
        assert ("a sample of 500 of the 3,000 current rows" in page) is sampled
