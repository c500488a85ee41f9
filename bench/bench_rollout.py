"""Staged rollout through the real service: how much traffic a worse challenger answers before it is rolled
back, and how many rounds an equal or better one takes to become champion (issue 28 item 2).

Each scenario registers a champion and a challenger on a fresh SQLite MLflow (telco; logistic regressions
fitted on the first 3,000 customers: ``good``; the same on inverted labels: ``worse``, wrong most of the
time), starts the challenger's rollout as the gate would, and runs ``tests.serving.rollout_sim``: rounds of
300 customers the models never saw through ``POST /invocations`` (requests of 20), their true labels through
``POST /labels``, then ``advance_rollout`` (``min_rows_per_stage`` 200, ``min_labelled_per_stage`` 100).

Prints one figure per line:

* ``rollout_exposed_share.<scenario>``: share of the scenario's answered rows the worse (or slow) model
  answered;
* ``rollout_rolled_back.<scenario>``: 1 when the worse challenger was rolled back, and in which stage
  (comment line);
* ``rollout_rounds_to_champion.<scenario>``: evaluation rounds until the challenger became champion.

Run: ``nice -n 19 .venv/bin/python bench/bench_rollout.py`` (about a minute).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SCENARIOS = (
    # name, stages, champion, challenger
    ("worse_shadow_first", ("shadow", 5, 25, 100), "good", "worse"),
    ("worse_canary_5", (5, 25, 100), "good", "worse"),
    ("worse_canary_25", (25, 100), "good", "worse"),
    ("equal", ("shadow", 5, 25, 100), "good", "good"),
    ("better", ("shadow", 5, 25, 100), "worse", "good"),
    # As accurate, 150 ms slower per call: shadow cannot see it (nobody waits for the shadow), 5 % can.
    ("slow", ("shadow", 5, 25, 100), "good", "slow"),
)


def main() -> int:
    from tests.constants import FAST_OVERRIDES

    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-rollout-"))
    os.environ.update(
        {
            "DRIFTLOOP_HOME": str(work / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "DRIFTLOOP_CONFIG_OVERRIDES": json.dumps(FAST_OVERRIDES),
            "DRIFTLOOP_SERVE_WORKERS": "-1",
            "DRIFTLOOP_SERVE_LATENCY_BUDGET_MS": "60000",
            "DRIFTLOOP_SERVE_POLL_S": "0.2",
            "MPLBACKEND": "Agg",
        }
    )
    for name in ("DRIFTLOOP_DATASET", "DRIFTLOOP_CONFIG_DIR", "DRIFTLOOP_DATA_URI"):
        os.environ.pop(name, None)
    from driftloop.core import bus
    from driftloop.core.config import load_dataset_config
    from driftloop.core.serving_config import RolloutConfig
    from driftloop.data.sources import load_source_frame
    from tests.serving.helpers import SlowModel, fit_pipeline
    from tests.serving.rollout_sim import simulate_rollout

    base = load_dataset_config("telco_churn")
    frame = load_source_frame(base)
    good = fit_pipeline(base, frame)
    models = {"good": good, "worse": fit_pipeline(base, frame, flip=True), "slow": SlowModel(good, 0.15)}
    for name, stages, champion, challenger in SCENARIOS:
        suffix = uuid.uuid4().hex[:8]
        cfg = dataclasses.replace(
            base,
            name=f"telco_churn_{suffix}",
            model_name=f"telco-churn-{suffix}",
            rollout=RolloutConfig(stages=stages, min_rows_per_stage=200, min_labelled_per_stage=100),
        )
        run = simulate_rollout(
            cfg,
            models[champion],
            models[challenger],
            frame,
            first_row=3000,
            rows_per_round=300,
            request_rows=1 if challenger == "slow" else 20,  # one customer per request: latency per arm
        )
        print(f"# {name}: stages {list(stages)}; rounds: " + "; ".join(
            f"{r['stage']} -> {r['action']} ({r['answered_by_challenger']} answered): {r['reason']}"
            for r in run.rounds
        ))  # fmt: skip
        if challenger in ("worse", "slow"):
            print(f"rollout_exposed_share.{name} {run.answered_by_challenger / max(run.answered, 1):.4f}")
            rolled_back = run.final_stage == bus.ROLLOUT_ROLLED_BACK
            print(f"# {name}: rolled back in stage {run.rounds[-1]['stage']}, {len(run.rounds)} round(s)")
            print(f"rollout_rolled_back.{name} {int(rolled_back)}")
        else:
            became = run.champion_after == run.challenger_version
            print(f"rollout_rounds_to_champion.{name} {len(run.rounds) if became else -1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
