"""Data profiles of training snapshots: a ydata-profiling HTML report and a compact data-quality summary.

Profiling time grows with rows, so it is bounded: the HTML report always runs in ydata-profiling's ``minimal``
mode and on at most ``max_rows`` rows (a seeded random sample beyond that, stated in the report title and in
the summary). The quality summary is computed on every row; it is cheap. A hard time budget
(``$DRIFTLOOP_PROFILE_TIMEOUT_S``, default 300 s) backs this up: past it the HTML is dropped, the summary kept
and marked ``html_timed_out``.

The files go to ``reports/profiles/`` in the data zones. On object storage they are rendered in a local
temporary folder and uploaded, each in one PUT.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, TypedDict

from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths
from driftloop.core.storage import StoragePath, to_uri, write_bytes_atomic

SAMPLE_SEED = 0


class ProfileResult(TypedDict):
    """Where :func:`profile_snapshot` wrote a snapshot's profile and quality summary, and how."""

    profile_path: str | None  # the HTML report; None when switched off or past profile_timeout_s
    summary_path: str  # the quality summary JSON
    rows: int
    profiled_rows: int
    sampled: bool
    timed_out: bool
    seconds: float


# Word clouds and SVG plots dominate rendering time and add little for tabular features.
REPORT_OPTIONS = {
    "vars": {"cat": {"words": False, "characters": False}, "text": {"words": False, "characters": False}},
    # The frequency tables stay; one matplotlib chart per categorical column took most of the render time.
    "plot": {"image_format": "png", "dpi": 60, "cat_freq": {"show": False}},
}


def _render_html(profiled: Any, title: str, path: str) -> None:
    """Render the ydata-profiling HTML of ``profiled`` to ``path`` (run in the worker process)."""
    from ydata_profiling import ProfileReport

    report = ProfileReport(profiled, title=title, minimal=True, progress_bar=False, **REPORT_OPTIONS)
    report.to_file(Path(path), silent=True)


def render_main(argv: list[str]) -> None:
    """Entry point of the render process: ``<rows parquet> <title> <html path>``."""
    import pandas as pd

    data_path, title, html_path = argv
    _render_html(pd.read_parquet(data_path), title, html_path)


def _render_within(seconds: float, profiled: Any, title: str, path: Path) -> bool:
    """Render the HTML in a child process stopped after ``seconds`` (<= 0: no limit); True when it finished.

    A process, not a signal: no SIGALRM, so an alarm or timer the caller set is left alone, and it works off
    the main thread too. A fresh interpreter (``subprocess``), not ``multiprocessing``: a spawned or
    forkserver child first re-runs the parent's ``__main__``, which in a task under a scheduler is Airflow's
    CLI, and that fails inside a task (no metadata DB) and left the task waiting. The rows go through a
    parquet file. Sampling and minimal mode keep profiling short; this is the backstop for pathological
    data. A stopped render leaves no file behind.

    Raises:
        RuntimeError: The render failed (with the end of its stderr).
    """
    import subprocess
    import sys
    import tempfile

    package_root = str(Path(__file__).resolve().parents[2])
    code = (
        f"import sys; sys.path.insert(0, {package_root!r}); "
        f"from {__name__} import render_main; render_main(sys.argv[1:])"
    )
    with tempfile.TemporaryDirectory(prefix="driftloop-profile-") as work_dir:
        data_path = Path(work_dir) / "rows.parquet"
        profiled.to_parquet(data_path, index=False)
        try:
            done = subprocess.run(
                [sys.executable, "-c", code, str(data_path), title, str(path)],
                capture_output=True,
                text=True,
                timeout=seconds if seconds > 0 else None,
                check=False,
            )
        except subprocess.TimeoutExpired:  # run() has killed the child
            path.unlink(missing_ok=True)
            return False
    if done.returncode != 0:
        path.unlink(missing_ok=True)
        raise RuntimeError(
            f"profile rendering failed (exit code {done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    return True


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
    frame: Any,
    settings: Settings | None = None,
    max_rows: int | None = None,
    html: bool = True,
) -> ProfileResult:
    """Write the profile HTML and the quality summary JSON of a snapshot under ``reports/``.

    Args:
        cfg: Dataset config.
        snapshot_hash: Snapshot the rows belong to (names the files).
        frame: The snapshot's rows.
        settings: Process settings (``profile_max_rows``, ``profile_timeout_s``).
        max_rows: Rows profiled in the HTML report; larger snapshots are sampled (seeded) and the report says
            so. Default: ``settings.profile_max_rows``; 0 skips the HTML report.
        html: Set False to skip the HTML report (the summary is always written).

    Returns:
        ``{"profile_path", "summary_path", "rows", "profiled_rows", "sampled", "timed_out", "seconds"}``;
        ``profile_path`` is None when the HTML was switched off or ran past ``settings.profile_timeout_s``.
        The paths are local paths, or ``s3://`` URIs when the data zones are on object storage.
    """
    settings = settings or Settings.from_env()
    reports = StatePaths.for_dataset(cfg, settings).reports_dir / "profiles"
    if isinstance(reports, Path):
        return _profile_into(reports, cfg, snapshot_hash, frame, settings, max_rows, html)
    with tempfile.TemporaryDirectory(prefix="driftloop-profile-") as work:
        result = _profile_into(Path(work), cfg, snapshot_hash, frame, settings, max_rows, html)
        if result["profile_path"]:
            result["profile_path"] = _publish(Path(result["profile_path"]), reports)
        result["summary_path"] = _publish(Path(result["summary_path"]), reports)
    return result


def _publish(rendered: Path, reports: StoragePath) -> str:
    """Copy a locally rendered file into ``reports`` (object storage); returns its URI."""
    target: StoragePath = reports / rendered.name
    write_bytes_atomic(target, rendered.read_bytes())
    return to_uri(target)


def _profile_into(
    reports: Path,
    cfg: DatasetConfig,
    snapshot_hash: str,
    frame: Any,
    settings: Settings,
    max_rows: int | None,
    html: bool,
) -> ProfileResult:
    """:func:`profile_snapshot` writing its files into the local folder ``reports``."""
    if max_rows is None:
        max_rows = settings.profile_max_rows
    html = html and max_rows > 0
    max_rows = max(max_rows, 1)
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
    reports.mkdir(parents=True, exist_ok=True)
    short = snapshot_hash[:12]
    title = f"{cfg.name} snapshot {short}: {rows:,} rows"
    if sampled:
        title += f" (profiled on a random sample of {max_rows:,} rows, minimal mode)"
    profile_path: Path | None = None
    timed_out = False
    if html:
        profile_path = reports / f"profile-{short}.html"
        if not _render_within(float(settings.profile_timeout_s), profiled, title, profile_path):
            timed_out, profile_path = True, None
    summary = summarize_quality(frame)
    summary.update(
        snapshot_hash=snapshot_hash,
        dataset=cfg.name,
        profiled_rows=int(len(profiled)),
        sampled=sampled,
        html_report=profile_path is not None,
        html_timed_out=timed_out,
        sample_seed=SAMPLE_SEED if sampled else None,
        title=title,
        profile_seconds=round(time.monotonic() - started, 3),
    )
    summary_path = reports / f"quality-{short}.json"
    write_bytes_atomic(summary_path, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    return {
        "profile_path": str(profile_path) if profile_path else None,
        "summary_path": str(summary_path),
        "rows": rows,
        "profiled_rows": int(len(profiled)),
        "sampled": sampled,
        "timed_out": timed_out,
        "seconds": summary["profile_seconds"],
    }
