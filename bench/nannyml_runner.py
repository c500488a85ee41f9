"""NannyML's CBPE on batches written by ``bench/bench_nannyml.py``, in a throwaway venv (never Driftloop's).

Usage (the interpreter of a venv with ``nannyml`` and ``pyarrow``)::

    python bench/nannyml_runner.py WORKDIR

WORKDIR holds ``spec.json`` (problem type, metrics, the probability columns, chunk rows),
``reference.parquet`` (labelled rows NannyML fits its calibrator on) and ``analysis.parquet`` (the batches,
one after another, each ``chunk_rows`` rows). Writes ``estimates.csv``: one row per chunk and metric with
NannyML's estimate, its sampling error and its own band (estimate +- 3 sampling errors, clipped). Imports
nothing from Driftloop.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # no usage analytics (and no network) from a bench


def main(workdir: str) -> int:
    import nannyml as nml
    import pandas as pd

    root = Path(workdir)
    spec = json.loads((root / "spec.json").read_text())
    reference = pd.read_parquet(root / "reference.parquet")
    analysis = pd.read_parquet(root / "analysis.parquet")
    proba = spec["y_pred_proba"]  # a column name (binary) or {class: column} (multiclass)
    estimator = nml.CBPE(
        metrics=spec["metrics"],
        y_pred_proba=proba,
        y_pred="y_pred",
        y_true="y_true",
        problem_type=spec["problem_type"],
        chunk_size=spec["chunk_rows"],
    )
    estimator.fit(reference)
    frame = estimator.estimate(analysis).filter(period="analysis").to_df()
    rows = []
    for chunk, record in enumerate(frame.itertuples(index=False)):
        values = dict(zip(frame.columns, record, strict=True))
        for metric in spec["metrics"]:
            rows.append(
                {
                    "chunk": chunk,
                    "metric": metric,
                    "estimate": values[(metric, "value")],
                    "sampling_error": values[(metric, "sampling_error")],
                    "lower": values[(metric, "lower_confidence_boundary")],
                    "upper": values[(metric, "upper_confidence_boundary")],
                }
            )
    pd.DataFrame(rows).to_csv(root / "estimates.csv", index=False)
    print(f"nannyml {nml.__version__}: {len(frame)} chunks, metrics {spec['metrics']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
