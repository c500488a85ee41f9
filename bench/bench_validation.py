"""Contract validation throughput: rows/s and peak memory of ``validate_file`` on 1,000,000 telco rows.

Writes a CSV of ``--rows`` rows (telco rows resampled, unique ids, ~0.1% bad values) to a temp folder, then
validates it in a fresh interpreter so the peak RSS belongs to validation alone. Prints one figure per line.

    .venv/bin/python bench/bench_validation.py [--rows 1000000] [--chunk-rows 200000] [--format csv|parquet]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_ROWS_PER_S = 200_000


def write_input(path: Path, rows: int, fmt: str) -> None:
    """Resample the telco data to ``rows`` rows with unique ids and a sprinkle of contract violations."""
    import numpy as np

    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.data.sources import load_source_frame

    cfg = load_dataset_config("telco_churn", Settings.from_env({}))
    base = load_source_frame(cfg)
    rng = np.random.default_rng(0)
    frame = base.iloc[rng.integers(0, len(base), rows)].reset_index(drop=True)
    frame[cfg.id_column] = [f"C{i:08d}" for i in range(rows)]
    bad = rng.choice(rows, size=rows // 1000, replace=False)
    frame.loc[bad[: len(bad) // 2], "tenure"] = -1
    frame.loc[bad[len(bad) // 2 :], "contract"] = "Lifetime"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def measure(path: str, chunk_rows: int) -> dict:
    """Validate ``path`` and return seconds, rows and peak RSS (run in a fresh interpreter)."""
    import resource

    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.data.contract import load_contract, validate_file

    cfg = load_dataset_config("telco_churn", Settings.from_env({}))
    contract = load_contract(cfg)
    import pandas  # noqa: F401 - imported before the baseline so library size is not counted as data
    import pandera.pandas  # noqa: F401
    import pyarrow  # noqa: F401

    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    report = validate_file(
        cfg,
        path,
        contract=contract,
        chunk_rows=chunk_rows,
        on_accepted=lambda df: None,
        on_rejected=lambda df: None,
    )
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = usage.ru_maxrss / 1024
    return {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu_before,
        "rows": report["rows_received"],
        "accepted": report["rows_accepted"],
        "quarantined": report["rows_quarantined"],
        "ok": report["ok"],
        "peak_rss_mb": peak_mb,
        "baseline_rss_mb": baseline_mb,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=200_000)
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--write", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.chunk_rows)))
        return 0
    if args.write:
        write_input(Path(args.write), args.rows, args.format)
        return 0
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as tmp:
        path = Path(tmp) / f"batch.{args.format}"
        # Both steps run in fresh interpreters: a forked child inherits its parent's peak RSS.
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--write",
                str(path),
                "--rows",
                str(args.rows),
                "--format",
                args.format,
            ],
            check=True,
        )
        out = subprocess.run(
            [sys.executable, __file__, "--measure", str(path), "--chunk-rows", str(args.chunk_rows)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        size_mb = path.stat().st_size / 1e6
    rate = result["rows"] / result["seconds"]
    print(f"validation_format: {args.format}")
    print(f"validation_rows: {result['rows']}")
    print(f"validation_file_mb: {size_mb:.1f}")
    print(f"validation_chunk_rows: {args.chunk_rows}")
    print(f"validation_accepted_rows: {result['accepted']}")
    print(f"validation_quarantined_rows: {result['quarantined']}")
    print(f"validation_seconds: {result['seconds']:.2f}")
    print(f"validation_rows_per_s: {rate:,.0f} (target >= {TARGET_ROWS_PER_S:,})")
    print(f"validation_cpu_seconds: {result['cpu_seconds']:.2f}")
    print(f"validation_load_average_1m: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"validation_peak_rss_mb: {result['peak_rss_mb']:.0f}")
    print(f"validation_rss_above_baseline_mb: {result['peak_rss_mb'] - result['baseline_rss_mb']:.0f}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
