"""One batch's chunks scored with the numpy replay of the preprocessing, when it scores like the pipeline.

Batch scoring used to call the logged pipeline for the predictions and again, through the explainer, for the
reasons: two passes of PyCaret's frames and the one-hot encoder's dict lookups per chunk. A
:class:`ChunkScorer` transforms each chunk once with the replay that online serving uses
(:mod:`driftloop.serving.replay`) and hands that matrix to both the final model and the reasons
(:mod:`driftloop.governance.row_reasons`).

The replay is used only after it gave the pipeline's outputs on the batch's first chunk (every prediction the
same, every score within :data:`~driftloop.serving.replay.MATCH_RTOL`) and on probe rows built from the
encoders' own categories; otherwise the whole batch is scored by the pipeline as before, and the log says why.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from driftloop.core.config import DatasetConfig
from driftloop.core.task_types import Decision, model_input

log = logging.getLogger(__name__)


def explain_chunk(
    model: Any, chunk: Any, cfg: DatasetConfig, reference_df: Any
) -> tuple[dict[str, Any], str]:
    """The top-k reasons (SHAP, original feature names) of every row of ``chunk`` as columns, and the method,
    explained through the whole pipeline (:func:`driftloop.governance.explain.explain_rows`)."""
    from driftloop.governance.explain import explain_rows, top_reasons

    budget_s = cfg.inference.explain_ms_per_row * len(chunk) / 1000
    attributions = explain_rows(model, chunk[cfg.features], budget_s=budget_s, reference_df=reference_df)
    reasons = top_reasons(chunk[cfg.features], attributions, cfg.inference.reasons)
    return {name: reasons[name].to_numpy() for name in reasons.columns}, attributions.method


# model -> (model, decision key, reference rows, (path, replay, row explainer, scoring model)) of the last
# verification in this process, so the other parts of a batch scored here are not verified again
_CHOSEN: dict[int, tuple[Any, Any, Any, tuple[str, Any, Any, Any]]] = {}


def _same(cached: Any, reference_df: Any) -> bool:
    """True when both reference frames are absent or hold the same rows."""
    if cached is None or reference_df is None:
        return cached is None and reference_df is None
    return bool(cached.equals(reference_df))


class ChunkScorer:
    """Predictions and top-k reasons of one batch's chunks, all by the same path (replay or pipeline)."""

    def __init__(
        self, model: Any, decision: Decision, cfg: DatasetConfig, reference_df: Any, use_replay: bool = True
    ) -> None:
        """Args:
        model: The fitted pipeline.
        decision: The version's decision (labels, score, per-class probabilities).
        cfg: Dataset config (features, ``inference.reasons``, ``inference.explain_ms_per_row``).
        reference_df: Reference rows for the explainer's background; None stores no reasons.
        use_replay: False scores with the pipeline only (the path before the replay, for benchmarks).
        """
        self.model = model
        self.decision = decision
        self.cfg = cfg
        self.reference_df = reference_df
        self.explain = cfg.inference.reasons > 0 and reference_df is not None
        self.use_replay = use_replay
        self.replay: Any = None
        self.row_explainer: Any = None
        self.scoring_model: Any = None  # the final model, or a forest scored through its kept leaves
        self.path = ""  # "replay" or "pipeline", set by the first chunk
        self.verified: tuple[Any, dict[str, Any]] | None = None  # the first chunk's replayed input, outputs
        self.key = (decision, tuple(cfg.features), cfg.inference.reasons)
        hit = _CHOSEN.get(id(model))
        if (
            use_replay
            and hit is not None
            and hit[0] is model
            and hit[1] == self.key
            and _same(hit[2], reference_df)
        ):
            # the parts of a batch scored in one process (score_pending_batches): the first one verified
            self.path, self.replay, self.row_explainer, self.scoring_model = hit[3]

    def score(self, chunk: Any) -> tuple[dict[str, Any], dict[str, Any], str]:
        """Score one chunk (the id column and the features).

        Returns:
            ``(outputs, reasons, explain method)``: the decision's columns, the reason columns (empty
            without reasons) and the method (``none`` without reasons).
        """
        raw = model_input(chunk[self.cfg.features])
        if not self.path:
            self.path = self._choose_path(raw)
        if self.path == "pipeline":
            outputs = self.decision.predict(self.model, raw)
            if not self.explain:
                return outputs, {}, "none"
            reasons, method = explain_chunk(self.model, chunk, self.cfg, self.reference_df)
            return outputs, reasons, method
        if self.verified is not None:  # the first chunk: transformed and scored while verifying
            (features_df, outputs), self.verified = self.verified, None
        else:
            features_df = self._transform(raw)
            outputs = self.decision.predict_rows(self.scoring_model, features_df)
        if not self.explain:
            return outputs, {}, "none"
        if self.row_explainer is None:  # a family without a closed form: ablation on the whole pipeline
            reasons, method = explain_chunk(self.model, chunk, self.cfg, self.reference_df)
            return outputs, reasons, method
        reasons, method = self._reasons(raw, features_df)
        return outputs, reasons, method

    def _reasons(self, raw: Any, features_df: Any) -> tuple[dict[str, Any], str]:
        from driftloop.governance.explain import top_reasons
        from driftloop.governance.row_reasons import explain_transformed

        budget_s = self.cfg.inference.explain_ms_per_row * len(raw) / 1000
        attributions = explain_transformed(self.row_explainer, features_df, budget_s)
        reasons = top_reasons(raw, attributions, self.cfg.inference.reasons)
        return {name: reasons[name].to_numpy() for name in reasons.columns}, attributions.method

    def _transform(self, raw: Any) -> Any:
        """The estimator's input frame of ``raw`` (model input rows) by the replay."""
        return self.replay.transform({name: raw[name].to_numpy() for name in self.cfg.features})

    def _choose_path(self, raw: Any) -> str:
        """``replay`` when the replay scores the first chunk and the probe rows as the pipeline does, else
        ``pipeline`` (logged with the reason)."""
        if not self.use_replay:
            return "pipeline"
        try:
            why = self._verify_replay(raw)
        except Exception as exc:  # the pipeline scores: the replay is only a faster way to the same numbers
            why = f"the replay failed: {type(exc).__name__}: {str(exc)[:200]}"
        path = "pipeline" if why else "replay"
        if why:
            log.warning("batch scoring uses the pipeline, not the numpy replay: %s", why)
            self.replay = self.row_explainer = self.verified = None
        else:
            log.info("batch scoring uses the numpy replay (verified on the first chunk of %d rows)", len(raw))
        _CHOSEN.clear()  # one model at a time: the replay and the explainer's state are not small
        _CHOSEN[id(self.model)] = (
            self.model,
            self.key,
            self.reference_df,
            (path, self.replay, self.row_explainer, self.scoring_model),
        )
        return path

    def _verify_replay(self, raw: Any) -> str:
        """Empty when the replay gives the pipeline's outputs on ``raw`` and probe rows, else what differs."""
        from driftloop.serving.replay import compile_model, first_difference

        replay = self.replay = compile_model(self.model)
        if replay is None:
            return "the pipeline is not driftloop's preprocessing"
        dtypes = {name: str(raw[name].dtype) for name in self.cfg.features}
        head = {name: raw[name].to_numpy()[:2].tolist() for name in self.cfg.features}
        with warnings.catch_warnings():  # the probe's unseen categories, through the pipeline's encoder
            warnings.simplefilter("ignore", UserWarning)
            mismatch = replay.check(self.model, self.decision, head, dtypes)
        if mismatch:
            return mismatch
        if self.explain:
            from driftloop.governance.row_reasons import prepare_row_explainer

            self.row_explainer = prepare_row_explainer(
                self.model, self._transform_raw, self.reference_df, list(self.cfg.features)
            )
        self.scoring_model = _scoring_model(replay.estimator, self.row_explainer)
        expected = self.decision.predict_rows(self.model, raw)
        features_df = self._transform(raw)
        got = self.decision.predict_rows(self.scoring_model, features_df)
        differing = first_difference(expected, got)
        if differing:
            return f"{differing} differs on the first chunk ({len(raw)} rows)"
        self.verified = features_df, got
        return ""

    def _transform_raw(self, rows: Any) -> Any:
        return self._transform(model_input(rows[list(self.cfg.features)]))


class _ForestByLeaves:
    """A scikit-learn forest scored by :func:`~driftloop.governance.tree_paths.forest_output`: the leaves
    found for the prediction are kept for the chunk's path attributions (one walk down the trees, not two)."""

    def __init__(self, forest: Any) -> None:
        self.forest = forest

    def predict_proba(self, rows: Any) -> Any:
        """The forest's class probabilities."""
        from driftloop.governance.tree_paths import forest_output

        return forest_output(self.forest, rows)

    def predict(self, rows: Any) -> Any:
        """The regression forest's values."""
        from driftloop.governance.tree_paths import forest_output

        return forest_output(self.forest, rows)


def _scoring_model(estimator: Any, row_explainer: Any) -> Any:
    """``estimator``, or :class:`_ForestByLeaves` of it when its reasons are path attributions of a forest."""
    from driftloop.governance.tree_paths import SKLEARN_FORESTS

    if (
        row_explainer is not None
        and row_explainer.kind == "tree"
        and type(estimator).__name__ in SKLEARN_FORESTS
    ):
        return _ForestByLeaves(estimator)
    return estimator
