"""Data profiles of training snapshots: a ydata-profiling HTML report and a compact data-quality summary.

Profiling time grows with rows, so it is bounded: the HTML report always runs in ydata-profiling's ``minimal``
mode and on at most ``max_rows`` rows (a seeded random sample beyond that, stated in the report title and in the
summary). The quality summary is computed on every row; it is cheap. A hard time budget
(``$DRIFTLOOP_PROFILE_TIMEOUT_S``, default 300 s) backs this up: past it the HTML is dropped, the summary kept
and marked ``html_timed_out``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from driftloop.config import DatasetConfig, Settings, StatePaths

DEFAULT_MAX_PROFILE_ROWS = 50_000
SAMPLE_SEED = 0
# Override of max_rows for the HTML report; 0 skips the HTML (the summary is still written). Tests use it.
MAX_ROWS_ENV = "DRIFTLOOP_PROFILE_MAX_ROWS"
# Hard time budget of the HTML report in seconds (0: none); on expiry only the quality summary is kept.
TIMEOUT_ENV = "DRIFTLOOP_PROFILE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300
# Word clouds and SVG plots dominate rendering time and add little for tabular features.
REPORT_OPTIONS = {
    "vars": {"cat": {"words": False, "characters": False}, "text": {"words": False, "characters": False}},
    # The frequency tables stay; one matplotlib chart per categorical column took most of the render time.
    "plot": {"image_format": "png", "dpi": 60, "cat_freq": {"show": False}},
}


class ProfileTimeout(Exception):
    """The HTML profile took longer than its time budget."""


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`ProfileTimeout` inside the block after ``seconds`` (main thread only; elsewhere no limit).

    Sampling and minimal mode keep profiling short; this is the backstop for pathological data.
    """
    import signal
    import threading

    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise ProfileTimeout(f"profile exceeded {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _ensure_pkg_resources() -> None:
    """Make ``import pkg_resources`` work for ydata-profiling 4.18, which still imports it at module top.

    setuptools >= 81 no longer ships ``pkg_resources``; ydata-profiling only uses ``get_distribution(...).version``,
    so a shim backed by ``importlib.metadata`` suffices until the lock pins ``setuptools<81``.
    """
    import importlib.util
    import sys
    import types
    from importlib import metadata

    if "pkg_resources" in sys.modules or importlib.util.find_spec("pkg_resources") is not None:
        return
    shim = types.ModuleType("pkg_resources")
    shim.get_distribution = lambda name: types.SimpleNamespace(version=metadata.version(name))  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = shim


def summarize_quality(frame: Any) -> dict[str, Any]:
    """Per-column null share, min/max (numeric), distinct count and dtype, plus the row count.

    Args:
        frame: The data.

    Returns:
        ``{"rows", "columns": {name: {"dtype", "null_share", "distinct", "min", "max"}}}``.
    """
    rows = int(len(frame))
    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        entry: dict[str, Any] = {
            "dtype": str(series.dtype),
            "null_share": float(series.isna().mean()) if rows else 0.0,
            "distinct": int(series.nunique(dropna=True)),
            "min": None,
            "max": None,
        }
        if series.dtype.kind in "iuf" and series.notna().any():
            entry["min"], entry["max"] = float(series.min()), float(series.max())
        columns[str(name)] = entry
    return {"rows": rows, "columns": columns}


def profile_snapshot(
    cfg: DatasetConfig,
    snapshot_hash: str,
    settings: Settings | None = None,
    frame: Any = None,
    max_rows: int | None = None,
    html: bool = True,
) -> dict[str, Any]:
    """Write the profile HTML and the quality summary JSON of a snapshot under ``reports/``.

    Args:
        cfg: Dataset config.
        snapshot_hash: Snapshot to profile.
        settings: Process settings.
        frame: The snapshot's rows when the caller already has them (otherwise read from the snapshot).
        max_rows: Rows profiled in the HTML report; larger snapshots are sampled (seeded) and the report says so.
            Default: ``$DRIFTLOOP_PROFILE_MAX_ROWS`` or 50,000; 0 skips the HTML report.
        html: Set False to skip the HTML report (the summary is always written).

    Returns:
        ``{"profile_path", "summary_path", "rows", "profiled_rows", "sampled", "timed_out", "seconds"}``;
        ``profile_path`` is None when the HTML was switched off or ran past ``$DRIFTLOOP_PROFILE_TIMEOUT_S``.
    """
    import pandas as pd

    if max_rows is None:
        max_rows = int(os.environ.get(MAX_ROWS_ENV, DEFAULT_MAX_PROFILE_ROWS))
    html = html and max_rows > 0
    max_rows = max(max_rows, 1)
    paths = StatePaths.for_dataset(cfg, settings)
    if frame is None:
        from driftloop.data import read_snapshot_manifest

        frame = pd.read_parquet(read_snapshot_manifest(cfg, snapshot_hash, settings)["snapshot_uri"])
    started = time.monotonic()
    rows = int(len(frame))
    sampled = html and rows > max_rows
    # A copy either way: ydata-profiling renames columns of the frame it is given in place.
    profiled = frame.sample(n=max_rows, random_state=SAMPLE_SEED) if sampled else frame.copy()
    # As category dtype, string columns render as categorical (tables) instead of free text (word clouds):
    # 20 s → 4 s on the telco reference.
    for col in [*cfg.categorical_features, cfg.target]:
        if col in profiled.columns:
            profiled[col] = profiled[col].astype("category")
    reports = paths.reports_dir / "profiles"
    reports.mkdir(parents=True, exist_ok=True)
    short = snapshot_hash[:12]
    title = f"{cfg.name} snapshot {short}: {rows:,} rows"
    if sampled:
        title += f" (profiled on a random sample of {max_rows:,} rows, minimal mode)"
    profile_path: Path | None = None
    timed_out = False
    if html:
        _ensure_pkg_resources()
        from ydata_profiling import ProfileReport

        profile_path = reports / f"profile-{short}.html"
        report = ProfileReport(profiled, title=title, minimal=True, progress_bar=False, **REPORT_OPTIONS)
        try:
            with _deadline(float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))):
                report.to_file(profile_path, silent=True)
        except ProfileTimeout:
            timed_out, profile_path = True, None
    summary = summarize_quality(frame)
    summary.update(snapshot_hash=snapshot_hash, dataset=cfg.name, profiled_rows=int(len(profiled)),
                   sampled=sampled, html_report=profile_path is not None, html_timed_out=timed_out,
                   sample_seed=SAMPLE_SEED if sampled else None, title=title,
                   profile_seconds=round(time.monotonic() - started, 3))
    summary_path = reports / f"quality-{short}.json"
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return {"profile_path": str(profile_path) if profile_path else None, "summary_path": str(summary_path),
            "rows": rows, "profiled_rows": int(len(profiled)), "sampled": sampled, "timed_out": timed_out,
            "seconds": summary["profile_seconds"]}
