"""The Driftloop view as one server-rendered HTML page with inline SVG charts (no build step, no external
assets).

The page of :func:`driftloop.governance.overview.build_overview`'s result, beside it in governance; the
standard library only (:func:`html.escape`), so the Airflow plugin serves it importing nothing but
``driftloop``.
"""

from __future__ import annotations

from html import escape
from typing import Any

from driftloop.governance.overview_results import (
    DatasetOverview,
    Estimate,
    MonitoringPoint,
    Overview,
    VersionRow,
)

STYLE = """
body{font-family:system-ui,sans-serif;margin:16px;color:#1a202c;background:#fff}
h1{font-size:20px;margin:0 0 12px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #e2e8f0}
h3{font-size:14px;margin:14px 0 6px}table{border-collapse:collapse;font-size:13px;margin-bottom:8px}
td,th{border:1px solid #e2e8f0;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f7fafc}
.cards{display:flex;gap:10px;flex-wrap:wrap}.card{border:1px solid #cbd5e0;border-radius:6px;padding:8px 12px;
min-width:150px;max-width:340px}.card
b{display:block;font-size:18px}.passed{color:#276749}.rejected{color:#c53030}
.muted{color:#718096;font-size:12px}svg text{font-size:10px;fill:#4a5568}a{color:#2b6cb0}
.loop{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:13px;font-weight:500}
"""
# One colour per loop state (driftloop.governance.loop_state.STATES), as on the dashboard strip.
LOOP_COLORS = {
    "ok": "#2f855a",
    "drift": "#c05621",
    "retraining": "#2b6cb0",
    "waiting for labels": "#6b46c1",
    "retrained": "#2c7a7b",
    "retrained, champion kept": "#975a16",
    "rolled back": "#c53030",
    "no champion": "#718096",
}
CHART_W, CHART_H, PAD = 560, 150, 30
METRIC_NAMES = {"f1": "F1", "macro_f1": "macro-F1", "rmse": "RMSE", "mae": "MAE", "auc": "AUC"}
NO_ESTIMATE = "—"  # a run of a version without an estimator (trained before calibration), or no sample


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"
    return escape(str(value))


def _link(url: str, text: str) -> str:
    return (
        f'<a href="{escape(url)}" target="_blank" rel="noopener">{escape(text)}</a>' if url else escape(text)
    )


def _version_card(title: str, v: VersionRow | None, metric: str) -> str:
    if v is None:
        return f'<div class="card">{title}<b>none</b></div>'
    gate = v["gate"] or "no verdict"
    stage = v.get("rollout_stage") or ""
    rollout = f' · <span data-role="rollout">rollout {escape(stage)}</span>' if stage else ""
    return (
        '<div class="card" '
        f'data-role="{title.lower()}">{title}<b>{_link(v["mlflow_url"], "v" + v["version"])}</b>'
        f'<span class="{escape(v["gate"])}">gate {escape(gate)}</span> · {escape(metric)} '
        f"{_fmt(v['primary_metric'])}{rollout}"
        f'<div class="muted">{escape(v["gate_reason"])}</div></div>'
    )


def _polyline(values: list[float | None], lo: float, hi: float, color: str, label: str) -> str:
    span = (hi - lo) or 1.0
    step = (CHART_W - 2 * PAD) / max(len(values) - 1, 1)
    points, dots = [], []
    for i, value in enumerate(values):
        if value is None:
            continue
        x, y = PAD + i * step, CHART_H - PAD - (value - lo) / span * (CHART_H - 2 * PAD)
        points.append(f"{x:.1f},{y:.1f}")
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"><title>{label} '
            f"{value:.3f}</title></circle>"
        )
    line = (
        f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>'
        if points
        else ""
    )
    return line + "".join(dots)


def _hline(value: float | None, lo: float, hi: float, color: str, label: str) -> str:
    if value is None:
        return ""
    y = CHART_H - PAD - (value - lo) / ((hi - lo) or 1.0) * (CHART_H - 2 * PAD)
    return (
        f'<line x1="{PAD}" x2="{CHART_W - PAD}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" '
        'stroke-dasharray="4 3"/>'
        f'<text x="{CHART_W - PAD + 2}" y="{y + 3:.1f}">{escape(label)}</text>'
    )


def _chart(
    title: str, series: list[tuple[list[float | None], str, str]], lines: list[tuple[Any, str, str]]
) -> str:
    known = [v for values, _, _ in series for v in values if v is not None]
    known += [v for v, _, _ in lines if v is not None]
    if not known:
        return f'<p class="muted">{escape(title)}: no monitoring runs yet</p>'
    lo, hi = min(0.0, min(known)), max(known) * 1.1 or 1.0
    body = "".join(_polyline(values, lo, hi, color, label) for values, color, label in series)
    body += "".join(_hline(v, lo, hi, color, label) for v, color, label in lines)
    legend = " ".join(f'<span style="color:{c}">■ {escape(label)}</span>' for _, c, label in series)
    return (
        f'<div><h3>{escape(title)} <span class="muted">{legend}</span></h3>'
        f'<svg width="{CHART_W + 60}" height="{CHART_H}" role="img" aria-label="{escape(title)}">'
        f'<line x1="{PAD}" y1="{CHART_H - PAD}" x2="{CHART_W - PAD}" y2="{CHART_H - PAD}" stroke="#a0aec0"/>'
        f'<text x="2" y="{PAD}">{hi:.2f}</text><text x="2" '
        f'y="{CHART_H - PAD}">{lo:.2f}</text>{body}</svg></div>'
    )


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _metric_name(key: str) -> str:
    """``live_f1`` / ``f1`` → ``F1``."""
    name = key.removeprefix("live_")
    return METRIC_NAMES.get(name, name)


def _estimate_cell(estimate: Estimate | None) -> str:
    """A batch's primary metric estimated before labels with its band: ``est. F1 0.580 [0.550–0.610]``."""
    if not estimate:
        return NO_ESTIMATE
    band = f" [{_fmt(estimate['lower'])}–{_fmt(estimate['upper'])}]" if estimate["lower"] is not None else ""
    how = f" <span class=muted>{escape(estimate['method'])}</span>" if estimate["method"] else ""
    return f"est. {escape(_metric_name(estimate['metric']))} {_fmt(estimate['value'])}{band}{how}"


def _batches(points: list[MonitoringPoint]) -> str:
    """Per monitored batch, newest first: drift, the live metric once labels land, and the estimate beside."""
    return _table(
        ["batch", "scored by", "drift share", "live (labels)", "estimated before labels", "decision"],
        [
            [
                _link(p["run_url"], p["batch_id"] or p["run_id"]),
                _fmt("v" + p["champion_version"] if p["champion_version"] else ""),
                _fmt(p["drift_share"]),
                f"live {escape(_metric_name(p['live_metric']))} {_fmt(p['live_value'])}"
                if p["live_value"] is not None
                else "labels pending",
                _estimate_cell(p.get("estimate")),
                escape(p["decision"]),
            ]
            for p in reversed(points)
        ],
        "no monitoring run yet",
    )


def _loop_state(loop: dict[str, str]) -> tuple[str, str]:
    """The loop's state as a coloured badge (its detail as the title) and the detail on its own line."""
    state, detail = escape(loop["state"]), escape(loop["detail"])
    color = LOOP_COLORS.get(loop["state"], "#4a5568")
    badge = f'<span class="loop" data-role="loop-state" style="background:{color}" title="{detail}">'
    badge += f"{state}</span>"
    return badge, f'<p data-role="loop-detail">Loop: <b>{state}</b> · {detail}</p>'


def render_dataset(d: DatasetOverview) -> str:
    """One dataset's section: cards, charts and tables."""
    k, metric = d["kpis"], d["kpis"]["primary_metric"]
    last = d["last_decision"]
    decision = (
        f"{escape(last['decision'])} (drift share {_fmt(last['drift_share'])} on batch "
        f"{escape(last['batch_id'])}, "
        f"threshold {_fmt(d['drift_threshold'])}) {_link(last['run_url'], 'monitoring run')}"
        if last
        else "no monitoring run yet"
    )
    cards = "".join(
        [
            _version_card("Champion", d["champion"], metric),
            _version_card("Challenger", d["challenger"], metric),
            f'<div class="card">training time<b>{_fmt(k["train_seconds"], 1)} s</b></div>',
            f'<div class="card">snapshot rows<b>{_fmt(k["snapshot_rows"], 0)}</b>'
            f'<span class="muted">ingest {_fmt(k["ingest_rows_per_s"], 0)} rows/s</span></div>',
            f'<div class="card">inference<b>{_fmt(k["inference_rows_per_s"], 0)} rows/s</b></div>',
        ]
    )
    points = d["monitoring"]
    live_name = next((p["live_metric"] for p in points if p["live_metric"]), "live metric")
    holdout = next((p for p in reversed(points) if p.get("holdout_value") is not None), None)
    estimated = [e.get("value") if (e := p.get("estimate")) else None for p in points]
    charts = _chart(
        f"Drift share, last {len(points)} monitoring runs",
        [([p["drift_share"] for p in points], "#3182ce", "drift share")],
        [(d["drift_threshold"], "#c53030", "threshold")],
    ) + _chart(
        f"{live_name} against the holdout",
        [([p["live_value"] for p in points], "#38a169", live_name)]
        + (
            [(estimated, "#805ad5", "estimated before labels")]
            if any(v is not None for v in estimated)
            else []
        ),
        [
            (holdout["holdout_value"] if holdout else None, "#718096", "holdout"),
            (holdout["live_bound"] if holdout else None, "#c53030", "retrain bound"),
        ],
    )
    versions = _table(
        ["version", "aliases", "trigger", "gate", "reason", metric, "train s"],
        [
            [
                _link(v["mlflow_url"], "v" + v["version"]),
                escape(", ".join(v["aliases"])),
                escape(v["trigger"]),
                f'<span class="{escape(v["gate"])}">{escape(v["gate"])}</span>',
                escape(v["gate_reason"][:160]),
                _fmt(v["primary_metric"]),
                _fmt(v["train_seconds"], 1),
            ]
            for v in d["versions"]
        ],
        "no model version yet",
    )
    audit = _table(
        ["when", "from", "to", "who", "why", "gate passed", "override"],
        [
            [_fmt(a["recorded_at"]), _fmt(a["from_version"]), _fmt(a["to_version"]), _fmt(a["actor"]),
             escape(str(a["reason"])[:160]), _fmt(a["gate_passed"]), "yes" if a["override"] else ""]
            for a in d["audit"]
        ],
        "champion never moved",
    )  # fmt: skip
    quarantine = _table(
        ["batch", "kind", "file", "rows received", "rows quarantined", "reasons"],
        [
            [_fmt(q["batch_id"]), _fmt(q["kind"]), _fmt(q["file"]), _fmt(q["rows_received"]),
             _fmt(q["rows_quarantined"]), escape(", ".join(f"{r}: {n}" for r, n in q["reasons"].items()))]
            for q in d["quarantine"]
        ],
        "nothing quarantined",
    )  # fmt: skip
    badge, loop_line = _loop_state(d["loop_state"])
    return (
        f'<section data-dataset="{escape(d["dataset"])}"><h2>{escape(d["dataset"])} {badge} '
        f'<span class="muted">{escape(d["model_name"])} · {escape(d["task"])} · {d["version_count"]} versions'
        f"</span></h2>{loop_line}<div class=cards>{cards}</div><p>Last drift decision: {decision}</p>{charts}"
        f"<h3>Monitored batches</h3>{_batches(points)}"
        f"<h3>Versions and retrains</h3>{versions}<h3>Champion moves (audit log)</h3>{audit}"
        f"<h3>Quarantine</h3>{quarantine}</section>"
    )


def render_page(overview: Overview, title: str = "Driftloop") -> str:
    """The whole page for :func:`driftloop.governance.overview.build_overview`'s result."""
    serving = overview.get("serving") or {}
    serving_html = (
        f"<p>Serving: p99 {_fmt(serving.get('serving_p99_ms'), 0)} ms · 5xx share "
        f"{_fmt(serving.get('serving_5xx_share'))} · {_fmt(serving.get('serving_requests'), 0)} requests"
        f"{' · ' + escape(serving['serving_error']) if serving.get('serving_error') else ''}</p>"
        if serving
        else ""
    )
    refused = "".join(
        f'<p class="rejected">{escape(r["dataset"])} refused: {escape(r["error"] or "")}</p>'
        for r in overview.get("refused", [])
    )
    sections = "".join(render_dataset(d) for d in overview["datasets"]) or "<p>No dataset configured.</p>"
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{serving_html}{refused}{sections}"
        "</body></html>"
    )
