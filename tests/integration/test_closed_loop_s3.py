"""The closed loop with its data zones on S3-compatible object storage: moto's S3 server on 127.0.0.1.

The same story as ``test_closed_loop.py`` (real MLflow server process, real Airflow runs with ``dag.test``),
for one dataset, with ``DRIFTLOOP_DATA_URI=s3://<bucket>/zones``: the simulator drops files into the bucket's
landing zone, and ingestion, snapshots, training, scoring, monitoring, the sensor, the gate and the alerts'
claims all read and write there. Nothing of the data zones may land on the local disk. A malformed file is
quarantined in the bucket with its reason, and the loop's own report and the view find it there.

The dataset is a copy of telco_churn under its own name (``telco_s3``): its DAG ids, experiments and model are
its own, so this module and ``test_closed_loop.py`` never see each other's runs in one session.
"""

from __future__ import annotations

import pytest

from driftloop.core import bus
from tests.config_copies import copy_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200, method="thread")]

DATASET = "telco_s3"
BATCH_ROWS = 600


@pytest.fixture(scope="module")
def webhook():
    """A webhook receiver the deployment's alerts go to."""
    from tests.alert_sinks import WebhookReceiver

    hook = WebhookReceiver()
    yield hook
    hook.stop()


@pytest.fixture(scope="module")
def s3_loop(tmp_path_factory, s3_server, webhook):
    """A deployment of one dataset whose data zones are a fresh bucket of the test S3 server."""
    import yaml

    from tests.config_copies import SHIPPED_DIR
    from tests.integration.test_closed_loop import loop_environment

    root = tmp_path_factory.mktemp("loop-s3")
    raw = yaml.safe_load((SHIPPED_DIR / "telco_churn.yaml").read_text())
    fast = {**raw["training"], "models": raw["training"]["models"][:1], "folds": 2, "tune_iter": 0}
    copy_config(root / "configs", "telco_churn", DATASET, training={**fast, "reference_rows": 1000})
    bucket = s3_server.new_bucket()
    env = {
        **s3_server.env(),
        "DRIFTLOOP_DATA_URI": f"s3://{bucket}/zones",
        "DRIFTLOOP_DATASET": DATASET,
        "DRIFTLOOP_CONFIG_DIR": str(root / "configs"),
        "DRIFTLOOP_ALERT_WEBHOOK_URL": webhook.url,
    }
    with loop_environment(root, env) as found:
        yield {**found, "bucket": bucket, "data_uri": env["DRIFTLOOP_DATA_URI"]}


@pytest.fixture(scope="module")
def dags(s3_loop):
    from airflow.dag_processing.dagbag import DagBag

    from tests.integration.test_closed_loop import PROJECT_DIR

    bag = DagBag(dag_folder=str(PROJECT_DIR / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dags) == {bus.dag_id(DATASET, dag) for dag in bus.DAG_NAMES}
    return dict(bag.dags)


@pytest.fixture(scope="module")
def cfg(s3_loop):
    from driftloop.core.config import load_dataset_config

    return load_dataset_config(DATASET)


@pytest.fixture(scope="module")
def client(s3_loop):
    from driftloop.core.tracking import get_client

    return get_client()


@pytest.fixture(scope="module")
def loop(s3_loop, dags, cfg, client):
    """Drive the loop once: reference → v1 → clean batch → drifted batch + labels → v2 → the sensor again."""
    from driftloop_ops.loop import InProcessRunner, drive_closed_loop

    return drive_closed_loop(InProcessRunner(dags), cfg, client, batch_rows=BATCH_ROWS)


def keys(s3_server, s3_loop, zone: str) -> list[str]:
    """Object keys of one zone of the dataset, relative to it."""
    prefix = f"zones/{DATASET}/{zone}/"
    return [k.removeprefix(prefix) for k in s3_server.keys(s3_loop["bucket"], prefix)]


def test_the_loop_closes_with_its_data_zones_in_the_bucket(loop, client, cfg, s3_loop):
    assert loop.state("train_1") == "success", loop.steps["train_1"]
    assert loop.champion_after_v1 == "1"
    assert loop.tasks("clean_drift_sensor")["wait_for_drift"] == "skipped"
    assert loop.queued_after_clean == []
    assert loop.tasks("drift_drift_sensor")["trigger_training"] == "success", loop.steps
    assert loop.state("train_2") == "success", loop.steps["train_2"]
    assert loop.tasks("sensor_again")["wait_for_drift"] == "skipped"
    assert len(loop.queued_after_drift) == len(loop.queued_after_again) == 1
    name = cfg.registered_model_name
    v1, v2 = (client.get_model_version(name, v) for v in ("1", "2"))
    assert (v1.tags[bus.GATE_TAG], v2.tags[bus.TRIGGER_REASON_TAG]) == ("passed", "drift")
    snapshot_uri = client.get_run(v2.run_id).data.tags[bus.SNAPSHOT_URI_TAG]
    assert snapshot_uri.startswith(f"{s3_loop['data_uri']}/{DATASET}/snapshots/")


def test_every_zone_is_in_the_bucket_and_none_on_the_local_disk(loop, s3_loop, s3_server):
    assert keys(s3_server, s3_loop, "landing") == []  # every dropped file was taken in
    batches = keys(s3_server, s3_loop, "batches")
    assert {"reference.json", "batch_001.json", "batch_002.json"} <= set(batches), batches
    assert any(k.endswith(".parquet") for k in keys(s3_server, s3_loop, "snapshots"))
    assert {"batch_001.parquet", "batch_002.parquet"} <= set(keys(s3_server, s3_loop, "predictions"))
    assert keys(s3_server, s3_loop, "labels"), "the late labels were accepted into the bucket"
    assert keys(s3_server, s3_loop, "archive"), "the original files are archived in the bucket"
    # The alerts' claims live beside the zones (one per key sent), in the bucket too.
    assert s3_server.keys(s3_loop["bucket"], "zones/_alerts/sent/")
    home = s3_loop["home"]
    assert not (home / "data").exists(), sorted(str(p) for p in (home / "data").rglob("*"))[:20]


def test_predictions_in_the_bucket_trace_back_to_their_version_and_snapshot(loop, cfg, s3_loop):
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import read_parquet
    from driftloop.governance.lineage import trace_predictions, trace_snapshot

    path = StatePaths.for_dataset(cfg).predictions_dir / "batch_001.parquet"
    predictions = read_parquet(path)
    assert len(predictions) == BATCH_ROWS and predictions["score"].between(0, 1).all()
    traced = trace_predictions(cfg, f"{s3_loop['data_uri']}/{DATASET}/predictions/batch_001.parquet")
    assert traced["inference_run_id"] and traced["batch_id"] == "batch_001"
    [model] = traced["models"]
    assert model["model_version"] == "1" and model["lineage"]["snapshot"]["rows"] > 0
    snapshot = trace_snapshot(cfg, model["lineage"]["snapshot_hash"])
    assert "reference" in [b["batch_id"] for b in snapshot["batches"]]
    assert [v["model_version"] for v in snapshot["model_versions"]] == ["1"]


def test_alerts_arrive_once_per_event_with_claims_in_the_bucket(loop, webhook):
    alerts = [b["driftloop"] for b in webhook.bodies if b["driftloop"]["dataset"] == DATASET]
    keys_sent = [a["dedupe_key"] for a in alerts]
    assert len(keys_sent) == len(set(keys_sent)), keys_sent
    assert {"champion_moved", "drift_fired"} <= {a["kind"] for a in alerts}, keys_sent


def test_a_malformed_file_is_quarantined_in_the_bucket_and_reported(loop, dags, cfg, s3_loop, s3_server):
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import write_bytes_atomic
    from driftloop.governance.overview import describe_quarantine
    from driftloop_ops.loop import InProcessRunner, quarantine_report

    paths = StatePaths.for_dataset(cfg)
    write_bytes_atomic(paths.landing_dir / "broken.csv", b"customer_id;tenure\nX-1;not-a-number\n")
    runner, data_dag = InProcessRunner(dags), bus.dag_id(DATASET, bus.DATA_PIPELINE)
    _, states = runner.finish(data_dag, runner.start(data_dag))
    assert states["check_quarantine"] == "failed"
    assert "broken/reason.json" in keys(s3_server, s3_loop, "quarantine")
    whole = [line for line in quarantine_report(paths.quarantine_dir) if line.startswith("quarantined ")]
    assert [line.split(": ")[0] for line in whole] == [f"quarantined {paths.quarantine_dir / 'broken'}"]
    [item] = [q for q in describe_quarantine(paths) if q["whole_file"]]
    assert (item["batch_id"], item["file"]) == ("broken", "broken.csv")
