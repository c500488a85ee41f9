"""Evidence predicts the holdout at most once, and shared predictions give the same evidence as fresh ones."""

from __future__ import annotations

import pytest
from sklearn.pipeline import Pipeline

from tests.fakes import fit_scorer

HOLDOUT_ROWS = 1500
TRAIN_ROWS = 2000


class CountingPipeline(Pipeline):
    """The fitted pipeline, recording the row count of every ``predict_proba`` call."""

    calls: list[int]

    def predict_proba(self, X, **params):  # sklearn's signature
        self.calls.append(len(X))
        return super().predict_proba(X, **params)


@pytest.fixture
def setup(telco_cfg, telco_frame):
    from driftloop.core.task_types import training_decision

    model = CountingPipeline(fit_scorer(telco_frame)[0].model.steps)
    model.calls = []
    frame = telco_frame.sample(HOLDOUT_ROWS + TRAIN_ROWS, random_state=3).reset_index(drop=True)
    train_df, holdout_df = frame.iloc[:TRAIN_ROWS], frame.iloc[TRAIN_ROWS:].reset_index(drop=True)
    decision = training_decision(telco_cfg, train_df[telco_cfg.target])
    return telco_cfg, model, train_df, holdout_df, decision


def test_shared_holdout_predictions_replace_every_holdout_predict_and_change_nothing(setup, tmp_path):
    from driftloop.governance.evidence import collect_evidence

    cfg, model, train_df, holdout_df, decision = setup
    fresh, _ = collect_evidence(cfg, model, train_df, holdout_df, tmp_path / "fresh", decision)
    fresh_holdout_calls = model.calls.count(HOLDOUT_ROWS)
    outputs = decision.predict(model, holdout_df[cfg.features])
    model.calls = []
    shared, _ = collect_evidence(
        cfg, model, train_df, holdout_df, tmp_path / "shared", decision, holdout_outputs=outputs
    )
    assert fresh_holdout_calls == 1, f"evidence predicted the holdout {fresh_holdout_calls} times"
    assert model.calls.count(HOLDOUT_ROWS) == 0, f"holdout predicted again: {model.calls}"
    assert fresh["errors"] == {} and shared["errors"] == {}
    assert shared["permutation_importance"] == fresh["permutation_importance"]
    assert shared["surrogate"] == fresh["surrogate"]
    assert shared["fairness"] == fresh["fairness"]
    assert shared["shap_importance"] == fresh["shap_importance"]


def test_permutation_importance_slices_shared_predictions_like_its_own_subsample(setup, monkeypatch):
    """Past PFI_ROWS the baseline comes from the sampled rows of the shared predictions, not a new predict."""
    from driftloop.governance import interpret

    cfg, model, _, holdout_df, decision = setup
    monkeypatch.setattr(interpret, "PFI_ROWS", 700)
    y = decision.encode(holdout_df[cfg.target])
    own = interpret.permutation_importance(model, holdout_df, list(cfg.features), y, decision, seed=5)
    outputs = decision.predict(model, holdout_df[cfg.features])
    model.calls = []
    shared = interpret.permutation_importance(
        model, holdout_df, list(cfg.features), y, decision, seed=5, outputs=outputs
    )
    assert 700 not in model.calls
    assert shared.equals(own)
