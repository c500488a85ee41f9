"""Served traffic in the data zones on a local folder and on S3 (moto's server): the export of a closed
window, and ``POST /labels``, write every file whole and once."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest

from driftloop.core import bus
from tests.serving.helpers import register_model
from tests.store_fakes import is_s3, read_store_frame, write_store_labels, zone_names

ROWS = slice(3000, 3200)


def _log_window(cfg, model, rows, version: str, logged_at: float) -> str:
    """Write one served request of ``rows`` into the prediction log, as the service does; returns its URI."""
    from driftloop.core.settings import Settings
    from driftloop.serving.online.prediction_log import PRIMARY, LogEntry, PredictionLogWriter, log_uri

    scores = model.predict_proba(rows[cfg.features])[:, 1]
    uri = log_uri(cfg, Settings.from_env())
    writer = PredictionLogWriter(uri, cfg.registered_model_name, 10_000, in_process=True)
    writer.start()
    n = len(rows)
    writer.submit(
        LogEntry(
            logged_at,
            "req-1",
            PRIMARY,
            list(range(n)),
            rows[cfg.id_column].tolist(),
            [bus.CHAMPION] * n,
            [version] * n,
            "",
            scores.tolist(),
            np.where(scores >= 0.5, "Yes", "No").tolist(),
            None,
            5.0,
            {column: rows[column].tolist() for column in cfg.features},
        )
    )
    writer.close()
    assert writer.written_rows == n
    return uri


def test_a_served_window_is_exported_to_the_store_once_and_monitored(
    data_store, cfg, serve_env, telco_frame, good_model
):
    from driftloop.core.settings import Settings
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import location, read_json
    from driftloop.monitoring.monitor import monitor_predictions
    from driftloop.serving.batch_scoring import pending_batches
    from driftloop.serving.online.export import export_served_windows
    from driftloop.serving.online.labels import read_accepted_labels

    version, _ = register_model(cfg, good_model, telco_frame, bus.CHAMPION)
    rows = telco_frame.iloc[ROWS].reset_index(drop=True)
    logged_at = time.time() - 3 * cfg.serving.window_s
    uri = _log_window(cfg, good_model, rows, version, logged_at)
    # The SQLite log needs a local disk: with the zones on S3 it stays under DRIFTLOOP_HOME.
    home = Settings.from_env().home_dir
    assert uri == f"sqlite:///{home / 'data' / cfg.name / 'serving' / 'prediction_log.sqlite'}"

    later = logged_at + cfg.serving.window_s + cfg.serving.export_grace_s + 1
    [window] = export_served_windows(cfg, now_s=later)["exported"]
    batch_id = window["batch_id"]
    assert window["rows"] == len(rows) and window["model_version"] == version
    expected = [f"{batch_id}.json", f"{batch_id}.parquet"]
    assert zone_names(cfg, "batches") == expected and zone_names(cfg, "predictions") == expected
    paths = StatePaths.for_dataset(cfg)
    batch_manifest = read_json(paths.batches_dir / f"{batch_id}.json")
    predictions_manifest = read_json(paths.predictions_dir / f"{batch_id}.json")
    assert batch_manifest["batch_uri"].startswith("s3://" if is_s3(data_store) else "file://")
    contents = {}
    for manifest, key in ((batch_manifest, "batch_uri"), (predictions_manifest, "predictions_uri")):
        contents[key] = location(manifest[key]).read_bytes()
        assert manifest["sha256"] == hashlib.sha256(contents[key]).hexdigest()
    predictions = read_store_frame(predictions_manifest["predictions_uri"])
    assert list(predictions[cfg.id_column]) == list(rows[cfg.id_column])
    assert predictions[bus.SCORE_COLUMN].to_numpy() == pytest.approx(
        good_model.predict_proba(rows[cfg.features])[:, 1]
    )
    assert predictions_manifest["rows"] == len(rows) and predictions_manifest["model_version"] == version

    assert export_served_windows(cfg, now_s=later)["exported"] == []  # idempotent: nothing written again
    assert zone_names(cfg, "batches") == expected and zone_names(cfg, "predictions") == expected
    for manifest, key in ((batch_manifest, "batch_uri"), (predictions_manifest, "predictions_uri")):
        assert location(manifest[key]).read_bytes() == contents[key]
    assert pending_batches(cfg) == []  # inference never re-scores a served window

    write_store_labels(cfg, rows, "served-labels")
    labels = read_accepted_labels(cfg)
    assert len(labels) == len(rows) and labels[rows[cfg.id_column][0]] == rows[cfg.target][0]
    [monitored] = monitor_predictions(cfg)["monitored"]
    assert monitored["batch_id"] == batch_id and monitored["labelled_rows"] == len(rows)


def test_posted_labels_land_whole_in_the_landing_zone_once(data_store, cfg, serve_env, telco_frame):
    from driftloop.core.settings import Settings
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import location
    from driftloop.serving.online.labels import FILE_PREFIX
    from driftloop.serving.online.service import ServingService

    service = ServingService(cfg, Settings.from_env(), worker_kind="thread", workers=1)
    pairs = list(zip(telco_frame[cfg.id_column][:3], telco_frame[cfg.target][:3], strict=True))
    body = json.dumps({"labels": [{cfg.id_column: i, cfg.target: t} for i, t in pairs]}).encode()

    first = service.accept_labels(body)
    again = service.accept_labels(body)  # a client retry

    assert first["accepted"] == 3 and not first["duplicate"]
    assert again["duplicate"] and again["file"] == first["file"]
    assert first["file"].startswith(FILE_PREFIX)
    assert zone_names(cfg, "landing/labels") == [first["file"]]  # one object, no temporary name
    landed = StatePaths.for_dataset(cfg).labels_landing_dir / first["file"]
    lines = location(landed).read_bytes().decode().splitlines()
    assert lines[0] == f"{cfg.id_column},{cfg.target}"
    assert lines[1:] == [f"{i},{t}" for i, t in pairs]
