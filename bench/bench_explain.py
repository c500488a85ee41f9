"""Per-prediction SHAP reasons: seconds to explain 10,000 rows with the champion families PyCaret picks.

Each family is trained with PyCaret on the telco reference (the same pipeline inference scores with), then the
top-3 reasons of 10,000 rows are computed the way ``inference_pipeline`` does (``inference.explain_chunk``:
linear closed form; TreeSHAP when its projected time fits 0.2 ms per row, else the same trees' path
attributions; single- feature ablation for other families). Targets: <= 2 s for linear and tree champions, <=
10 s for any champion. The ratio against a bare ``predict_proba`` of the same rows (measured in the same run)
is printed too. Prints one figure per line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROWS = 10_000
FAMILIES = {"lr": 2.0, "lightgbm": 2.0, "rf": 2.0, "knn": 10.0}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="driftloop-bench-explain-"))
    os.environ.update(
        {
            "DRIFTLOOP_HOME": str(work / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'm.db'}",
            "DRIFTLOOP_CONFIG_OVERRIDES": json.dumps({"training": {"folds": 2, "tune_iter": 0}}),
        }
    )
    import dataclasses

    from driftloop.core import holdout
    from driftloop.core.config import load_dataset_config
    from driftloop.data.sources import load_source_frame
    from driftloop.serving.chunk_scoring import explain_chunk
    from driftloop.training.train import fit_pycaret

    cfg = load_dataset_config("telco_churn")
    frame = load_source_frame(cfg)
    train_df, holdout_df = holdout.split_holdout(cfg, frame)
    rows = holdout_df.sample(ROWS, replace=True, random_state=0).reset_index(drop=True)
    reference = holdout_df[cfg.features].head(1000)
    for family, target_s in FAMILIES.items():
        family_cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, models=(family,)))
        model = fit_pycaret(family_cfg, train_df, n_jobs=1)["model"]
        explain_chunk(
            model, rows.head(200), cfg, reference
        )  # first-call costs (imports, JIT) out of the timing
        started = time.perf_counter()
        model.predict_proba(rows[cfg.features])
        predict_s = time.perf_counter() - started
        started = time.perf_counter()
        _, method = explain_chunk(model, rows, cfg, reference)
        explain_s = time.perf_counter() - started
        print(f"# {family}: {type(model.steps[-1][1]).__name__}, method {method}")
        print(f"explain_seconds_10k_rows.{family} {explain_s:.2f}")
        print(f"explain_vs_target_ratio.{family} {explain_s / target_s:.2f}")
        print(f"explain_vs_predict_ratio.{family} {explain_s / max(predict_s, 1e-9):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
