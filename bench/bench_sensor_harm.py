"""Does the drift sensor retrain on harm only? A harmless and a harmful covariate shift of real held-out telco
customers, with ``monitoring.retrain_on`` set to ``drift``, ``estimated_performance`` and both (issue 27 item
4).

1. The real loop's first steps, in-process on a SQLite MLflow: the simulator's reference half of telco is
   ingested, snapshotted, trained (``tests.constants.FAST_OVERRIDES``: logistic regression, 2 folds, no
   tuning; the training run fits the calibration map CBPE estimates from) and promoted to champion.
2. The other half (customers the champion never saw) is scored with the champion; three batches of BATCH_ROWS
   of them are landed, ingested, scored by the inference stage and monitored by the monitoring stage:

   * ``unshifted``: a uniform sample (no shift; the control);
   * ``harmless``: customers the champion scores >= 0.45. The features move (short tenure, monthly
     contracts, fibre), P(churn | features) does not, and churners are easy to find: F1 rises;
   * ``harmful``: customers scored < 0.15. The features move the other way; hardly a predicted positive is
     left and the few churners are missed: F1 collapses (to 0 when the champion's decision threshold is
     above 0.15: then no customer of the batch is predicted a churner, which CBPE sees as well as labels).

3. For each batch: its drift share, its estimated F1 with the 90% band (before labels: what the monitoring
   run logged) and its realised F1 (the batch's predictions against the customers' true labels, which the
   loop has not seen); for each ``retrain_on`` setting, whether the sensor's rule
   (:func:`driftloop.monitoring.sensor.crossing_reason`, thresholds of the shipped config) fires on the batch.

Prints one figure per line (``sensor_harm_fires.<setting>.<batch>``: 1 fires, 0 does not, the reason in the
comment line before), and ``sensor_harm_retrains_on_harm_only.<setting>``: 1 when the setting fires on the
harmful batch and on neither other. Issue 27's target: 1 for ``estimated_performance``; ``drift`` fires on
both shifts. Run: ``nice -n 19 .venv/bin/python bench/bench_sensor_harm.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "include"), str(PROJECT_DIR / "plugins")]

DATASET = "telco_churn"
BATCH_ROWS = 800
HARMLESS_MIN_SCORE, HARMFUL_MAX_SCORE = 0.45, 0.15
SETTINGS = {
    "drift": ("drift",),
    "estimated_performance": ("estimated_performance",),
    "both": ("drift", "estimated_performance"),
}


def train_champion(cfg) -> tuple[str, float]:
    """Reference half in, snapshot, train, promote: the champion's version and holdout F1."""
    from driftloop.core import bus
    from driftloop.core.tracking import get_client
    from driftloop.data import ingest, simulate, snapshots
    from driftloop.governance.promotion import promote_model, set_champion
    from driftloop.training import train

    simulate.simulate_reference(cfg)
    ingest.ingest_batches(cfg)
    snapshot = snapshots.build_snapshot(cfg)
    trained = train.train_model(cfg, snapshot["snapshot_uri"], trigger={"reason": "manual"})
    version = str(trained["model_version"])
    promoted = promote_model(cfg, version)
    if promoted.get("champion_version") != version:  # the sensor's rule needs a champion, not a gate verdict
        print(f"# the gate said {promoted.get('decision')}: {promoted.get('reason')}; champion set by hand")
        set_champion(cfg, version, actor="bench_sensor_harm", reason="sensor benchmark")
    return version, get_client().get_run(trained["run_id"]).data.metrics[bus.HOLDOUT_F1]


def held_out_customers(cfg):
    """Telco customers outside the training snapshot with the champion's score of each, and the champion's
    decision threshold."""
    from driftloop.core import bus
    from driftloop.core.registry import load_model
    from driftloop.data.snapshots import list_snapshots, read_snapshot_frame
    from driftloop.data.sources import load_source_frame
    from driftloop.serving.batch_scoring import read_version_decision, resolve_model

    seen = read_snapshot_frame(cfg, list_snapshots(cfg)[-1], columns=[cfg.id_column])[cfg.id_column]
    frame = load_source_frame(cfg)
    pool = frame[~frame[cfg.id_column].astype(str).isin(set(seen.astype(str)))].reset_index(drop=True)
    info = resolve_model(cfg)
    decision = read_version_decision(cfg, info, None)
    pool["champion_score"] = decision.predict(load_model(info["model_uri"]), pool[cfg.features])[
        bus.SCORE_COLUMN
    ]
    return pool, decision.threshold


def land_batch(cfg, rows, name: str) -> None:
    """The batch's features (no labels) as a CSV in the landing zone, written whole."""
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import atomic_path

    with atomic_path(StatePaths.for_dataset(cfg).landing_dir / f"{name}.csv") as tmp:
        rows[[cfg.id_column, *cfg.features]].to_csv(tmp, index=False)


def realised_f1(cfg, scored: dict, truth) -> float:
    """F1 of the batch's committed predictions against the customers' true labels."""
    from sklearn.metrics import f1_score

    from driftloop.core import bus
    from driftloop.core.state import uri_to_path
    from driftloop.core.storage import read_parquet

    predictions = read_parquet(uri_to_path(scored["predictions_uri"]))
    label = truth.set_index(cfg.id_column)[cfg.target]
    actual = predictions[cfg.id_column].map(label)
    return float(f1_score(actual == "Yes", predictions[bus.PREDICTION_COLUMN] == "Yes"))


def main() -> int:
    from tests.constants import FAST_OVERRIDES

    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-sensor-harm-"))
    os.environ.update(
        {
            "DRIFTLOOP_HOME": str(work / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "DRIFTLOOP_CONFIG_OVERRIDES": json.dumps(FAST_OVERRIDES),
            "MPLBACKEND": "Agg",
        }
    )
    for name in ("DRIFTLOOP_DATASET", "DRIFTLOOP_CONFIG_DIR", "DRIFTLOOP_DATA_URI"):
        os.environ.pop(name, None)
    from driftloop.core import bus
    from driftloop.core.config import load_dataset_config
    from driftloop.core.tracking import get_client
    from driftloop.data import ingest
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.monitoring.sensor import crossing_reason
    from driftloop.serving.scoring_parts import score_pending_batches

    started = time.monotonic()
    cfg = load_dataset_config(DATASET)
    version, holdout_f1 = train_champion(cfg)
    pool, threshold = held_out_customers(cfg)
    score = pool["champion_score"]
    batches = {
        "unshifted": pool.sample(n=BATCH_ROWS, random_state=0),
        "harmless": pool[score >= HARMLESS_MIN_SCORE].sample(frac=1.0, random_state=0).head(BATCH_ROWS),
        "harmful": pool[score < HARMFUL_MAX_SCORE].sample(frac=1.0, random_state=0).head(BATCH_ROWS),
    }
    for name, rows in batches.items():
        land_batch(cfg, rows, name)
    ingest.ingest_batches(cfg)
    scored = {s["batch_id"]: s for s in score_pending_batches(cfg)["scored"]}
    monitored = {m["batch_id"]: m for m in monitor_predictions(cfg)["monitored"]}
    client = get_client()
    metrics = {b: client.get_run(monitored[b]["monitoring_run_id"]).data.metrics for b in batches}

    thresholds = cfg.monitoring
    print(f"# champion v{version} (decision threshold {threshold:.3f}); {len(pool)} held-out customers; "
          f"fires on drift share >= {thresholds.drift_share_threshold} or a drop > "
          f"{thresholds.performance_drop_threshold} across the band")  # fmt: skip
    print(f"sensor_harm_holdout_f1 {holdout_f1:.3f}")
    f1, lower, upper = (bus.estimated_metric("f1", bound) for bound in ("", "lower", "upper"))
    for batch, rows in batches.items():
        m = metrics[batch]
        print(f"sensor_harm_rows.{batch} {len(rows)}")
        print(f"sensor_harm_churn_rate.{batch} {(rows[cfg.target] == 'Yes').mean():.3f}")
        print(f"sensor_harm_drift_share.{batch} {m[bus.DRIFT_SHARE]:.3f}")
        print(f"sensor_harm_estimated_f1.{batch} {m[f1]:.3f}")
        print(f"sensor_harm_estimated_f1_lower.{batch} {m[lower]:.3f}")
        print(f"sensor_harm_estimated_f1_upper.{batch} {m[upper]:.3f}")
        print(f"sensor_harm_estimated_drop_best_case.{batch} {m[bus.ESTIMATED_DROP_BEST_CASE]:.3f}")
        print(f"sensor_harm_realised_f1.{batch} {realised_f1(cfg, scored[batch], rows):.3f}")
    for setting, retrain_on in SETTINGS.items():
        monitoring = dataclasses.replace(cfg.monitoring, retrain_on=retrain_on)
        rule = dataclasses.replace(cfg, monitoring=monitoring)
        reasons = {batch: crossing_reason(rule, metrics[batch]) for batch in batches}
        for batch, reason in reasons.items():
            print(f"# retrain_on {list(retrain_on)}, {batch}: {reason or 'does not fire'}")
            print(f"sensor_harm_fires.{setting}.{batch} {int(reason is not None)}")
        harm_only = reasons["harmful"] is not None and not (reasons["harmless"] or reasons["unshifted"])
        print(f"sensor_harm_retrains_on_harm_only.{setting} {int(harm_only)}")
    print(f"sensor_harm_total_s {time.monotonic() - started:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
