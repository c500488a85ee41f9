"""Driftloop's CBPE beside NannyML's on the same batches (the classification configs of bench_estimation.py).

NannyML is never a dependency of Driftloop: it runs in a throwaway venv outside the repository, through
``bench/nannyml_runner.py`` in a subprocess, on parquet files this script writes. Set it up once::

    nice python3 -m venv /tmp/nannyml-venv
    /tmp/nannyml-venv/bin/pip install nannyml==0.13.1 pyarrow statsmodels   # FLAML imports statsmodels

For each config, both estimators get the same inputs: the reference set is the out-of-fold rows of the
training rows (raw scores, the decision at the version's threshold, labels), which Driftloop fits its
calibration map on and NannyML fits its calibrator on; the analysis data are the BATCHES batches per scenario
of bench_estimation.py (the same seed, rows and labels), one NannyML chunk each. Realised values are computed
once, with scikit-learn. NannyML's band is its estimate +- 3 sampling errors (about 99.7 %); for a
like-for-like 90 % figure this also reports estimate +- 1.645 sampling errors. Run::

    PYTHONPATH=include nice -n 10 .venv/bin/python bench/bench_nannyml.py [config ...]

(``NANNYML_PYTHON`` names another interpreter.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_estimation as bench

NANNYML_PYTHON = os.environ.get("NANNYML_PYTHON", "/tmp/nannyml-venv/bin/python")
RUNNER = Path(__file__).resolve().parent / "nannyml_runner.py"
CONFIGS = ("telco_churn", "mlc_churn", "hpc_jobs")
NANNYML_METRIC = {"auc": "roc_auc", "f1": "f1", "macro_f1": "f1"}  # ours -> NannyML's (multiclass F1: macro)
Z90 = NormalDist().inv_cdf((1 + bench.LEVEL) / 2)


def outputs_frame(version, raw, predicted, y=None) -> tuple[pd.DataFrame, object]:
    """NannyML's columns: ``y_pred_proba`` (binary) or one ``proba_<i>`` per class, ``y_pred``, ``y_true``."""
    if version.task == "binary":
        frame, proba = pd.DataFrame({"proba": raw, "y_pred": predicted}), "proba"
    else:
        labels = np.asarray(version.classes)
        frame = pd.DataFrame({f"proba_{i}": raw[:, i] for i in range(raw.shape[1])})
        frame["y_pred"] = labels[predicted]
        proba = {label: f"proba_{i}" for i, label in enumerate(labels)}
    if y is not None:
        frame["y_true"] = y if version.task == "binary" else np.asarray(version.classes)[y]
    return frame, proba


def run_nannyml(version, drawn, metrics: list[str]) -> pd.DataFrame:
    """NannyML's estimates of ``metrics`` (our names) for each drawn batch: columns chunk, metric (ours),
    estimate, sampling_error, lower, upper."""
    ref = version.reference
    reference, proba = outputs_frame(version, ref.raw, ref.predicted, ref.y)
    parts = [outputs_frame(version, version.raw[rows], version.predicted[rows])[0] for _, rows, _ in drawn]
    chunk_rows = {len(p) for p in parts}
    if len(chunk_rows) != 1:
        raise ValueError(f"batches of unequal size cannot be NannyML chunks: {sorted(chunk_rows)}")
    theirs = [NANNYML_METRIC[m] for m in metrics]
    spec = {
        "problem_type": "classification_binary" if version.task == "binary" else "classification_multiclass",
        "metrics": theirs,
        "y_pred_proba": proba,
        "chunk_rows": chunk_rows.pop(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-nannyml-") as workdir:
        root = Path(workdir)
        (root / "spec.json").write_text(json.dumps(spec))
        reference.to_parquet(root / "reference.parquet")
        pd.concat(parts, ignore_index=True).to_parquet(root / "analysis.parquet")
        done = subprocess.run(
            [NANNYML_PYTHON, str(RUNNER), workdir], capture_output=True, text=True, timeout=1800, check=False
        )
        if done.returncode:
            raise RuntimeError(f"nannyml runner failed ({done.returncode}): {done.stderr[-3000:]}")
        print("  " + done.stdout.strip(), flush=True)
        found = pd.read_csv(root / "estimates.csv")
    found["metric"] = found["metric"].map(dict(zip(theirs, metrics, strict=True)))
    return found


def compare(name: str) -> list[str]:
    version = bench.fit_version(name)
    drawn = bench.draw_batches(version)
    ours = bench.validate(version, drawn)
    metrics = [m for m in version.metrics if m in NANNYML_METRIC]
    theirs = run_nannyml(version, drawn, metrics).set_index(["chunk", "metric"])
    lines = [bench.describe(version)]
    for metric in metrics:
        for scenario in ("none", "covariate", "concept"):
            errors, inside90, inside_own = [], [], []
            for chunk, (drawn_scenario, rows, truth) in enumerate(drawn):
                if drawn_scenario != scenario:
                    continue
                value = bench.realised_of(version, metric, rows, truth)
                row = theirs.loc[(chunk, metric)]
                errors.append(abs(row["estimate"] - value))
                inside90.append(abs(row["estimate"] - value) <= Z90 * row["sampling_error"])
                inside_own.append(row["lower"] <= value <= row["upper"])
            our_errors, our_inside, _ = zip(*ours[(metric, scenario)], strict=True)
            ours_text = f"{np.mean(our_errors):.4f} / {np.mean(our_inside):.0%}"
            lines.append(
                f"  {metric:9s} {scenario:10s} driftloop {ours_text}"
                f"   nannyml {np.mean(errors):.4f} / {np.mean(inside90):.0%} "
                f"(its +-3 SE band {np.mean(inside_own):.0%})"
            )
    return lines


def main(names: list[str]) -> int:
    if not Path(NANNYML_PYTHON).exists():
        # An optional comparison (NannyML is never a Driftloop dependency): `make bench` goes on without it.
        print(f"skipped: no NannyML interpreter at {NANNYML_PYTHON} (see this script's docstring)")
        return 0
    print("mean absolute error / share of batches whose realised value is in the 90 % band")
    for name in names or CONFIGS:
        print("\n".join(compare(name)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
