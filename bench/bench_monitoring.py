"""Monitoring at scale: the drift decision and a monitoring run's computation on a 1,000,000-row batch, the
numpy drift statistics against Evidently's drift preset in the same process, on the same rows.

Telco rows resampled with fresh ids and mild jitter (``bench_capacity.jitter_rows``), a third of them shifted
(contract set to "Two year", tenure + 3) so the decision has drifted and undrifted columns; the reference is
1,409 rows (the size of the telco holdout a training run logs); outputs from a logistic regression pipeline
fitted on the telco data. Both paths are warmed up first (imports are not in the figures).

1. ``monitoring_drift_1m_*``: the drift decision on all 1M current rows, ``compute_drift`` (numpy on value
   counts) vs ``evidently_drift`` (Evidently 0.7's preset, how monitoring decided before); same methods,
   drifted columns, drift share and prediction verdict (``_same_decisions`` 1), largest relative score gap.
2. ``monitoring_run_1m_*``: what a monitoring run computes for a 1M-row labelled batch, without MLflow: the
   batch, predictions and labels as parquet, cut into ``monitoring.part_rows`` parts, each part sampled
   (``draw_part_sample``: ids hashed, labels joined, the drift sample drawn), the samples merged (50,000
   drift rows, 50,000 labelled rows), drift, estimated performance (CBPE, an identity Platt map), live
   metrics with fairness, attribution drift (SHAP on 1,000 rows a side) and the HTML drift report written.
   Before: Evidently decides and its snapshot is the report; after: numpy decides on the 50,000 rows,
   Evidently draws the report on 10,000 of them (``drift_report.REPORT_MAX_ROWS``).
   ``monitoring_run_1m_all_rows_s``: the new path comparing all 1M rows for drift instead of a 50,000-row
   sample (the report drawn on 10,000 of them). ``monitoring_run_1m_<step>_s``: the new path's steps
   (sampling the parts, live metrics with fairness, the HTML report, CBPE, drift).

MLflow logging (a handful of metrics, tags and two artifacts) is left out: it does not depend on the rows.

    .venv/bin/python bench/bench_monitoring.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

REFERENCE_ROWS = 1409
SHIFTED_SHARE = 3


def emit(name: str, value: Any) -> None:
    print(f"monitoring_{name} {value}", flush=True)


def build_frames(rows: int) -> tuple[Any, Any, Any, Any]:
    """Config, fitted model, reference and ``rows`` current rows (with ``prediction`` and ``score``)."""
    import numpy as np
    from bench_capacity import jitter_rows
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    from driftloop.core.config import load_dataset_config
    from driftloop.data.sources import load_source_frame
    from driftloop.training.preprocessing import build_preprocessor

    cfg = load_dataset_config("telco_churn")
    base = load_source_frame(cfg)
    model = Pipeline([("pre", build_preprocessor(cfg, base)), ("model", LogisticRegression(max_iter=2000))])
    model.fit(base[list(cfg.features)], base[cfg.target] == cfg.positive_label)
    rng = np.random.default_rng(0)
    reference = base.sample(REFERENCE_ROWS, random_state=1).reset_index(drop=True)
    current = jitter_rows(cfg, base, rows, rng, "m", 0)
    shifted = current.index[: rows // SHIFTED_SHARE]
    current.loc[shifted, "contract"] = "Two year"
    current.loc[shifted, "tenure"] += 3
    for frame in (reference, current):
        frame["score"] = model.predict_proba(frame[list(cfg.features)])[:, 1]
        frame["prediction"] = np.where(frame["score"] >= cfg.inference.threshold, cfg.positive_label, "No")
    return cfg, model, reference, current


def timed(call: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def compare_drift(cfg: Any, reference: Any, current: Any) -> None:
    from driftloop.monitoring.drift import compute_drift
    from driftloop.monitoring.drift_report import evidently_drift

    fast, fast_s = timed(lambda: compute_drift(cfg, reference, current))
    slow, slow_s = timed(lambda: evidently_drift(cfg, reference, current, ("score",)))
    same = (
        fast["methods"] == slow["methods"]
        and fast["drifted_column_names"] == slow["drifted_column_names"]
        and fast["drift_share"] == slow["drift_share"]
        and fast["prediction_drifted"] == slow["prediction_drifted"]
    )
    gap = max(
        abs(fast["drift_scores"][col] - score) / max(abs(score), 1e-300)
        for col, score in slow["drift_scores"].items()
    )
    print(f"# drifted: {fast['drifted_column_names']}; methods {sorted(set(fast['methods'].values()))}")
    emit("drift_1m_evidently_s", f"{slow_s:.2f}")
    emit("drift_1m_s", f"{fast_s:.2f}")
    emit("drift_1m_speedup", f"{slow_s / fast_s:.1f}")
    emit("drift_1m_same_decisions", int(same))
    emit("drift_1m_drift_share", f"{fast['drift_share']:.3f}")
    emit("drift_1m_max_score_rel_gap", f"{gap:.1e}")


def write_batch(cfg: Any, current: Any, folder: Path) -> tuple[str, str, str]:
    from driftloop.core.state import path_to_uri

    paths = [folder / name for name in ("batch.parquet", "predictions.parquet", "labels.parquet")]
    current[[cfg.id_column, *cfg.features]].to_parquet(paths[0], index=False)
    current[[cfg.id_column, "prediction", "score"]].to_parquet(paths[1], index=False)
    current[[cfg.id_column, cfg.target]].to_parquet(paths[2], index=False)
    batch_uri, predictions_uri, labels_uri = (path_to_uri(path) for path in paths)
    return batch_uri, predictions_uri, labels_uri


def monitoring_run(
    cfg: Any, model: Any, reference: Any, uris: tuple[str, str, str], folder: Path, old: bool, max_rows: int
) -> dict[str, float]:
    """One monitoring run's computation (no MLflow); seconds per step."""
    from driftloop.core.calibration_map import CalibrationMap, Curve
    from driftloop.core.task_types import training_decision
    from driftloop.monitoring import attribution, live
    from driftloop.monitoring.drift import compute_drift
    from driftloop.monitoring.drift_report import evidently_drift
    from driftloop.monitoring.estimated import estimate_performance
    from driftloop.monitoring.monitor import MAX_LIVE_ROWS
    from driftloop.monitoring.samples import cut_parts, draw_part_sample, merge_samples

    decision = training_decision(cfg, reference[cfg.target])
    facts = live.VersionFacts(decision, {"holdout_f1": 0.6, "holdout_auc": 0.84})
    estimator = CalibrationMap("binary", "platt", decision.classes, (Curve("platt"),))
    steps: dict[str, float] = {}
    start = time.perf_counter()
    parts = cut_parts(
        cfg,
        inference_run_id="bench",
        batch_id="bench",
        batch_uri=uris[0],
        predictions_uri=uris[1],
        output_columns=facts.output_columns,
        scored_columns=facts.scored_columns,
        max_rows=max_rows,
        max_live_rows=MAX_LIVE_ROWS,
        label_uris=(uris[2],),
    )
    sample = merge_samples([draw_part_sample(cfg, part, True) for part in parts], max_rows, MAX_LIVE_ROWS)
    steps["sample"] = time.perf_counter() - start
    current = sample.current
    if old:
        drift, steps["drift"] = timed(lambda: evidently_drift(cfg, reference, current, facts.output_columns))
    else:
        drift, steps["drift"] = timed(lambda: compute_drift(cfg, reference, current, facts.output_columns))
    _, steps["estimation"] = timed(lambda: estimate_performance(facts, estimator, current))
    _, steps["live"] = timed(lambda: live.live_performance(cfg, facts, sample))
    _, steps["attribution"] = timed(
        lambda: attribution.attribution_drift(model, reference, current, list(cfg.features))
    )
    _, steps["report"] = timed(lambda: drift["snapshot"].save_html(str(folder / "drift_report.html")))
    steps["total"] = sum(steps.values())
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    from driftloop.monitoring.monitor import MAX_CURRENT_ROWS

    cfg, model, reference, current = build_frames(args.rows)
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-monitoring-") as tmp:
        folder = Path(tmp)
        warm = current.iloc[:5000]
        uris = write_batch(cfg, warm, folder)
        for old in (True, False):  # imports and first calls out of the figures
            monitoring_run(cfg, model, reference, uris, folder, old, MAX_CURRENT_ROWS)
        compare_drift(cfg, reference, current)
        uris = write_batch(cfg, current, folder)
        before = monitoring_run(cfg, model, reference, uris, folder, True, MAX_CURRENT_ROWS)
        after = monitoring_run(cfg, model, reference, uris, folder, False, MAX_CURRENT_ROWS)
        all_rows = monitoring_run(cfg, model, reference, uris, folder, False, args.rows)
    for name, steps in (("before", before), ("after", after), ("all_rows", all_rows)):
        print(f"# {name}: " + ", ".join(f"{step} {seconds:.2f} s" for step, seconds in steps.items()))
    emit("run_1m_evidently_s", f"{before['total']:.2f}")
    emit("run_1m_s", f"{after['total']:.2f}")
    for step in ("sample", "live", "report", "estimation", "drift"):  # where the run's time goes
        emit(f"run_1m_{step}_s", f"{after[step]:.2f}")
    emit("run_1m_speedup", f"{before['total'] / after['total']:.2f}")
    emit("run_1m_all_rows_s", f"{all_rows['total']:.2f}")


if __name__ == "__main__":
    main()
