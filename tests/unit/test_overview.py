"""The Driftloop view's data (driftloop.governance.overview) on a local SQLite MLflow with seeded runs and
versions."""

from __future__ import annotations

import json

import pytest

from driftloop.core import bus
from tests.conftest import FAST_OVERRIDES


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Three versions (v2 champion, v3 challenger rejected), four monitoring runs, one quarantine, audit
    moves.

    A store of its own (the session's store holds other tests' telco runs).
    """
    root = tmp_path_factory.mktemp("overview")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(root / "home"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps(FAST_OVERRIDES))
        mp.setenv("DRIFTLOOP_MLFLOW_UI_URL", "http://mlflow.example:5000")
        mp.setenv("DRIFTLOOP_DATASETS", "telco_churn")
        for name in ("DRIFTLOOP_DATASET", "DRIFTLOOP_CONFIG_DIR", "DRIFTLOOP_SERVING_URL"):
            mp.delenv(name, raising=False)
        yield seed_store()


def write_quarantine(paths) -> None:
    """Two batch manifests (one with quarantined rows) and a file quarantined whole, in either store."""
    from driftloop.core.storage import write_json

    write_json(
        paths.batches_dir / "b1.json",
        {
            "batch_id": "b1",
            "kind": "batch",
            "rows_received": 100,
            "rows_quarantined": 7,
            "reason_counts": {"type": 7},
            "ingested_at": "2026-01-02T00:00:00",
        },
    )
    write_json(
        paths.batches_dir / "b0.json",
        {"batch_id": "b0", "rows_received": 50, "rows_quarantined": 0, "ingested_at": "2026-01-01"},
    )
    write_json(
        paths.quarantine_dir / "broken" / "reason.json",
        {
            "batch_id": "broken",
            "source_file": "broken.csv",
            "reason_code": "parse",
            "message": "bad",
            "rows_received": 1,
            "rows_quarantined": 1,
            "quarantined_at": "2026-01-03T00:00:00",
        },
    )


# Batch 3 was estimated before its labels (its version had a calibration map); batches 0-2 were not.
ESTIMATE_OF_BATCH_3 = {
    "estimated_f1": 0.52,
    "estimated_f1_lower": 0.49,
    "estimated_f1_upper": 0.55,
    "estimated_auc": 0.71,
    "estimated_drop": 0.16,
    "estimated_drop_best_case": 0.11,
}


def seed_store() -> dict:
    from driftloop.core.config import load_dataset_config
    from driftloop.core.state import StatePaths
    from driftloop.core.tracking import ensure_experiment, get_client
    from driftloop.governance.audit import open_store

    telco_cfg = load_dataset_config("telco_churn")
    client = get_client()
    name = telco_cfg.registered_model_name
    client.create_registered_model(name)
    training = ensure_experiment(client, telco_cfg.experiment_name("training"))
    gates = {
        "1": ("passed", "first", "new_data"),
        "2": ("passed", "better", "drift"),
        "3": ("rejected", "AUC fell", "drift"),
    }
    run_ids = {}
    for version, auc in (("1", 0.80), ("2", 0.84), ("3", 0.79)):
        run = client.create_run(training)
        client.log_metric(run.info.run_id, "holdout_auc", auc)
        client.log_metric(run.info.run_id, bus.TRAIN_SECONDS, 10.0 + int(version))
        client.log_metric(run.info.run_id, "holdout_f1", 0.60 + int(version) / 100)
        client.set_terminated(run.info.run_id)
        gate, reason, trigger = gates[version]
        mv = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        assert str(mv.version) == version
        for key, value in (
            (bus.GATE_TAG, gate),
            (bus.GATE_REASON_TAG, reason),
            (bus.TRIGGER_REASON_TAG, trigger),
        ):
            client.set_model_version_tag(name, version, key, value)
        run_ids[version] = run.info.run_id
    client.set_registered_model_alias(name, bus.CHAMPION, "2")
    client.set_registered_model_alias(name, bus.CHALLENGER, "3")
    monitoring = ensure_experiment(client, telco_cfg.experiment_name("monitoring"))
    for i, (drift, live_f1) in enumerate(((0.05, 0.61), (0.10, 0.60), (0.50, 0.48), (0.45, 0.47))):
        run = client.create_run(monitoring, start_time=1_700_000_000_000 + i * 1000)
        rid = run.info.run_id
        client.log_metric(rid, bus.DRIFT_SHARE, drift)
        client.log_metric(rid, "live_f1", live_f1)
        client.set_tag(rid, bus.LIVE_DROP_METRIC_TAG, "live_f1")
        client.set_tag(rid, bus.BATCH_ID_TAG, f"batch-{i}")
        client.set_tag(rid, bus.CHAMPION_VERSION_TAG, "1" if i < 2 else "2")
        if i == 2:
            client.set_tag(rid, bus.SENSOR_FIRED_AT_TAG, "1700000002")
            client.set_tag(rid, bus.SENSOR_TRIGGER_RUN_ID_TAG, "drift__abc")
        if i == 3:
            client.set_tag(rid, bus.SENSOR_SUPPRESSED_TAG, bus.SUPPRESSED_COOLDOWN)
            for key, value in ESTIMATE_OF_BATCH_3.items():
                client.log_metric(rid, key, value)
            client.set_tag(rid, bus.ESTIMATION_METHOD_TAG, "cbpe")
        client.set_terminated(rid)
    write_quarantine(StatePaths.for_dataset(telco_cfg))
    store = open_store()
    store.append(
        {
            "dataset": "telco_churn",
            "model_name": name,
            "from_version": "1",
            "to_version": "2",
            "actor": "promote_model",
            "source": "driftloop",
            "reason": "gate passed",
            "gate_passed": True,
        }
    )
    store.append(
        {
            "dataset": "telco_churn",
            "model_name": name,
            "from_version": "2",
            "to_version": "1",
            "actor": "alice",
            "source": "external",
            "reason": "manual",
            "gate_passed": True,
        }
    )
    return {"client": client, "run_ids": run_ids, "name": name}


def test_overview_shows_champion_challenger_verdicts_and_deep_links(seeded):
    from driftloop.governance.overview import build_overview

    overview = build_overview(runs_n=3)
    [telco] = overview["datasets"]
    name = seeded["name"]
    assert telco["champion"]["version"] == "2" and telco["champion"]["gate"] == "passed"
    assert telco["champion"]["primary_metric"] == pytest.approx(0.84)
    assert telco["challenger"]["version"] == "3" and telco["challenger"]["gate_reason"] == "AUC fell"
    assert telco["champion"]["mlflow_url"] == f"http://mlflow.example:5000/#/models/{name}/versions/2"
    assert seeded["run_ids"]["2"] in telco["champion"]["run_url"]
    assert [v["version"] for v in telco["versions"]] == ["3", "2", "1"]
    assert telco["kpis"]["primary_value"] == pytest.approx(0.84) and telco["kpis"]["train_seconds"] == 12.0
    assert overview["serving"] == {}  # no serving URL configured: skipped, not an error


def test_overview_charts_the_last_monitoring_runs_and_the_last_decision(seeded):
    from driftloop.governance.overview import build_overview

    [telco] = build_overview(runs_n=3)["datasets"]
    points = telco["monitoring"]
    assert [p["batch_id"] for p in points] == ["batch-1", "batch-2", "batch-3"]  # last 3, oldest first
    assert [p["drift_share"] for p in points] == [0.10, 0.50, 0.45]
    assert points[1]["decision"] == "fired: drift__abc"
    assert (points[1]["fired_at"], points[1]["trigger_run_id"], points[1]["waiting"]) == (
        1700000002.0,
        "drift__abc",
        "",
    )
    assert points[2]["fired_at"] is None
    assert telco["last_decision"]["decision"] == "suppressed: cooldown"
    assert points[0]["live_value"] == 0.60 and points[0]["holdout_metric"] == "holdout_f1"
    # Live F1 is compared with the holdout F1 of the version that scored the batch (v1: 0.61, v2: 0.62).
    assert [p["holdout_value"] for p in points] == [
        pytest.approx(0.61),
        pytest.approx(0.62),
        pytest.approx(0.62),
    ]
    assert points[2]["live_bound"] == pytest.approx(0.62 * (1 - telco["drop_threshold"]))
    assert telco["drift_threshold"] == 0.3


def test_overview_lists_retrains_champion_moves_and_quarantine(seeded):
    from driftloop.governance.overview import build_overview

    [telco] = build_overview()["datasets"]
    assert [(v["version"], v["trigger"], v["gate"]) for v in telco["retrains"]] == [
        ("3", "drift", "rejected"),
        ("2", "drift", "passed"),
        ("1", "new_data", "passed"),
    ]
    assert [(a["actor"], a["to_version"]) for a in telco["audit"]] == [("alice", "1"), ("promote_model", "2")]
    assert [a["undo"] for a in telco["audit"]] == [False, False]
    quarantine = telco["quarantine"]
    assert [(q["batch_id"], q["rows_quarantined"], q["whole_file"]) for q in quarantine] == [
        ("broken", 1, True),
        ("b1", 7, False),
    ]


def test_overview_of_a_model_never_trained_is_empty_not_an_error(seeded, monkeypatch):
    from driftloop.governance.overview import build_overview

    monkeypatch.setenv(
        "DRIFTLOOP_CONFIG_OVERRIDES", json.dumps({**FAST_OVERRIDES, "model_name": "never-trained"})
    )
    [telco] = build_overview()["datasets"]
    assert telco["champion"] is None and telco["versions"] == [] and telco["audit"] == []


def test_the_page_shows_the_champion_link_the_last_decision_and_escapes_text(seeded):
    from driftloop.governance.overview import build_overview
    from driftloop.governance.overview_page import render_page

    overview = build_overview()
    overview["datasets"][0]["versions"][0]["gate_reason"] = "<script>alert(1)</script>"
    html = render_page(overview)
    assert f'href="http://mlflow.example:5000/#/models/{seeded["name"]}/versions/2"' in html
    assert "Last drift decision: suppressed: cooldown" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert html.count("<svg") == 2  # drift share and the live metric against the holdout


def test_each_monitored_batch_carries_its_estimate_before_labels_or_none(seeded):
    from driftloop.governance.overview import build_overview

    [telco] = build_overview()["datasets"]
    estimates = {p["batch_id"]: p["estimate"] for p in telco["monitoring"]}
    assert estimates == {
        "batch-0": None,
        "batch-1": None,
        "batch-2": None,
        "batch-3": {
            "metric": "f1",  # telco is binary: F1, not the gate's AUC
            "value": 0.52,
            "lower": 0.49,
            "upper": 0.55,
            "method": "cbpe",
            "drop": 0.16,
            "drop_best_case": 0.11,
        },
    }


def _batch_row(html: str, batch_id: str) -> str:
    """The cells of one batch's row of the page's monitored-batches table."""
    table = html.split("<h3>Monitored batches</h3>", 1)[1].split("</table>", 1)[0]
    [row] = [r for r in table.split("<tr>") if f">{batch_id}</a>" in r]
    return row


def test_the_page_shows_the_estimate_beside_the_live_value_of_each_batch(seeded):
    from driftloop.governance.overview import build_overview
    from driftloop.governance.overview_page import render_page

    overview = build_overview()
    html = render_page(overview)
    estimated = _batch_row(html, "batch-3")
    assert "<td>live F1 0.470</td><td>est. F1 0.520 [0.490–0.550] <span class=muted>cbpe</span></td>" in (
        estimated
    )
    assert "<td>live F1 0.480</td><td>—</td>" in _batch_row(html, "batch-2")  # no estimate: a dash
    assert html.index(">batch-3</a>") < html.index(">batch-0</a>")  # newest first
    assert "<title>estimated before labels 0.520</title>" in html  # charted beside the live metric
    overview["datasets"][0]["monitoring"][-1]["live_value"] = None  # before batch 3's labels land
    assert "<td>labels pending</td><td>est. F1 0.520 [0.490–0.550]" in _batch_row(
        render_page(overview), "batch-3"
    )
    overview["datasets"][0]["monitoring"][-1]["estimate"] = None  # no run estimated: no estimate line
    assert "■ estimated before labels" not in render_page(overview)
    assert "■ estimated before labels" in html


FIRED_AT = "the sensor fired 2023-11-14 22:13 UTC (monitoring run {})"


def test_the_loop_state_of_a_rejected_drift_retrain_is_champion_kept(seeded):
    """The seed's story: v2 scored the fired batch, the drift retrain v3 was rejected, v2 stays. (The seed's
    versions are registered after the firing's 2023 time, so v1 answers it too.)"""
    from driftloop.governance.overview import build_overview

    [telco] = build_overview()["datasets"]
    fired_run = telco["monitoring"][2]["run_id"]
    assert telco["loop_state"] == {
        "state": "retrained, champion kept",
        "detail": "v3 rejected (AUC fell), v1 passed (first); champion v2 kept; "
        + FIRED_AT.format(fired_run),
    }


def test_the_reported_bug_a_retrain_that_serves_is_retrained_not_retraining(seeded):
    """Fired, then a version registered after the firing became champion: the strip said ``retraining``."""
    from driftloop.governance.overview import build_overview

    client, name = seeded["client"], seeded["name"]
    client.set_registered_model_alias(name, bus.CHAMPION, "3")
    try:
        [telco] = build_overview()["datasets"]
    finally:
        client.set_registered_model_alias(name, bus.CHAMPION, "2")
    state, detail = telco["loop_state"]["state"], telco["loop_state"]["detail"]
    assert state == "retrained"
    assert detail.startswith("champion v3 (drift, registered ")
    assert detail.endswith(f", gate rejected) after {FIRED_AT.format(telco['monitoring'][2]['run_id'])}")


def test_a_firing_older_than_the_charted_runs_is_found_by_one_search(seeded):
    from driftloop.governance.overview import build_overview

    [telco] = build_overview(runs_n=1)["datasets"]  # only batch-3 is charted; batch-2 fired
    assert [p["batch_id"] for p in telco["monitoring"]] == ["batch-3"]
    assert telco["loop_state"]["state"] == "retrained, champion kept"


def test_the_audit_rows_say_which_moves_were_undos():
    from types import SimpleNamespace

    from driftloop.governance.overview import describe_audit

    base = {"recorded_at": "2026-01-01T00:00:00+00:00", "actor": "alice", "source": "driftloop"}
    entries = [
        {**base, "from_version": "1", "to_version": "2", "reason": "gate passed", "evidence": {}},
        {
            **base,
            "from_version": "2",
            "to_version": "1",
            "reason": "rollback: bad",
            "evidence": {"kind": "undo"},
        },
        {
            **base,
            "from_version": "1",
            "to_version": "2",
            "reason": "rollback: pin",
            "evidence": {"kind": "to"},
        },
        {
            **base,
            "from_version": "2",
            "to_version": "1",
            "reason": "rollback: old",
            "evidence": {"rolled_back": "2"},
        },
    ]
    store = SimpleNamespace(entries=lambda name: entries)
    rows = describe_audit(store, SimpleNamespace(registered_model_name="m"))
    assert [(r["reason"], r["undo"]) for r in rows] == [
        ("rollback: old", True),
        ("rollback: pin", False),
        ("rollback: bad", True),
        ("gate passed", False),
    ]


def test_the_page_shows_the_loop_state_in_each_dataset_header(seeded):
    from driftloop.governance.overview import build_overview
    from driftloop.governance.overview_page import render_page

    overview = build_overview()
    overview["datasets"][0]["loop_state"] = {"state": "rolled back", "detail": "v3 -> v2 by <alice>"}
    html = render_page(overview)
    assert (
        '<span class="loop" data-role="loop-state" style="background:#c53030" '
        'title="v3 -&gt; v2 by &lt;alice&gt;">rolled back</span>'
    ) in html
    assert '<p data-role="loop-detail">Loop: <b>rolled back</b> · v3 -&gt; v2 by &lt;alice&gt;</p>' in html


def test_quarantine_is_read_from_a_folder_or_a_bucket(data_store, telco_cfg):
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import is_local
    from driftloop.governance.overview import describe_quarantine

    paths = StatePaths.for_dataset(telco_cfg)
    assert is_local(paths.root) == (not data_store.startswith("s3://"))
    assert describe_quarantine(paths) == []  # nothing written yet: no folder, no prefix
    write_quarantine(paths)
    write_quarantine_of_labels(paths)
    found = [
        (q["batch_id"], q["kind"], q["rows_quarantined"], q["whole_file"]) for q in describe_quarantine(paths)
    ]
    assert found == [
        ("labels_bad", "file", 3, True),
        ("broken", "file", 1, True),
        ("b1", "batch", 7, False),
    ]


def write_quarantine_of_labels(paths) -> None:
    from driftloop.core.storage import write_json

    write_json(
        paths.quarantine_dir / "labels" / "labels_bad" / "reason.json",
        {
            "batch_id": "labels_bad",
            "reason_code": "parse",
            "rows_quarantined": 3,
            "quarantined_at": "2026-01-04",
        },
    )


def test_an_unreadable_data_store_leaves_the_view_up_without_quarantine(seeded, monkeypatch, caplog):
    from driftloop.core.errors import StorageError
    from driftloop.governance import overview

    def unreachable(paths, limit=overview.QUARANTINE_SHOWN):
        raise StorageError("object store unreachable or failing for s3://gone/zones: ConnectTimeout")

    monkeypatch.setattr(overview, "describe_quarantine", unreachable)
    [telco] = overview.build_overview()["datasets"]
    assert telco["quarantine"] == [] and telco["champion"]["version"] == "2"
    assert "quarantine not shown: object store unreachable" in caplog.text


def test_the_challenger_card_shows_its_rollout_stage(seeded):
    from driftloop.core import bus
    from driftloop.core.tracking import get_client
    from driftloop.governance.overview import build_overview
    from driftloop.governance.overview_page import render_page

    client, name = get_client(), seeded["name"]
    assert 'data-role="rollout"' not in render_page(build_overview())  # no rollout: nothing shown
    client.set_model_version_tag(name, "3", bus.ROLLOUT_STAGE_TAG, "25")
    try:
        overview = build_overview()
        assert overview["datasets"][0]["challenger"]["rollout_stage"] == "25"
        html = render_page(overview)
        card = html[html.index('data-role="challenger"') :]
        assert card[: card.index("</div></div>")].count('<span data-role="rollout">rollout 25</span>') == 1
    finally:
        client.delete_model_version_tag(name, "3", bus.ROLLOUT_STAGE_TAG)
