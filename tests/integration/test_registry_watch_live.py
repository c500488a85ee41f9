"""The registry watch on the real embedded stack (what `make up` starts), with its defaults: a move of
``champion`` made through MLflow's REST API, as the MLflow UI makes it, is recorded and reaches the alert
webhook within 60 s, once.

Nothing is unpaused by the test: Airflow creates DAGs paused here as in compose, and ``registry_watch`` must
be created unpaused. No watch setting is given (``@continuous``, a check every 15 s); only the webhook is set.
"""

from __future__ import annotations

import os
import time

import pytest

from driftloop.core import bus

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1200, method="thread")]

DATASET = "telco_churn"
WITHIN_S = 60.0  # issue 26: recorded and alerted within 60 s
QUIET_S = 40.0  # more than two checks at the default poll: a duplicate would have come by then


@pytest.fixture(scope="module")
def hook():
    from tests.alert_sinks import WebhookReceiver

    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hook):
    """The embedded stack under a temporary home on free ports, its alerts going to ``hook``."""
    from driftloop_ops.airflow_api import AirflowClient, read_generated_password
    from driftloop_ops.embedded import temporary_stack

    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DRIFTLOOP_WATCH_")}
    extra = {"DRIFTLOOP_DATASETS": DATASET, "DRIFTLOOP_ALERT_WEBHOOK_URL": hook.url}
    try:
        with temporary_stack(tmp_path_factory.mktemp("watch-stack"), extra) as layout:
            api = AirflowClient(layout.airflow_url, "admin", read_generated_password(layout.password_file))
            yield layout, api
    finally:
        os.environ.update(saved)


def set_alias_through_rest(mlflow_url: str, model: str, version: str) -> None:
    """What the MLflow UI sends when a person moves an alias."""
    import requests

    response = requests.post(
        f"{mlflow_url}/api/2.0/mlflow/registered-models/alias",
        json={"name": model, "alias": bus.CHAMPION, "version": version},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def wait_for_alerts(hook, count: int, timeout_s: float) -> float:
    """Seconds until ``hook`` holds ``count`` bodies (fails after ``timeout_s``)."""
    started = time.monotonic()
    while len(hook.bodies) < count:
        assert time.monotonic() - started < timeout_s, f"{len(hook.bodies)} alert(s) after {timeout_s:.0f} s"
        time.sleep(0.2)
    return time.monotonic() - started


def test_a_move_through_mlflows_rest_api_is_alerted_within_60_s_once(stack, hook):
    from driftloop.core.config import load_dataset_config
    from driftloop.core.tracking import ensure_experiment, get_client
    from driftloop.governance.audit import EXTERNAL_ACTOR, open_store

    layout, api = stack
    watch, rollback = bus.dag_id(DATASET, bus.REGISTRY_WATCH), bus.dag_id(DATASET, bus.CHAMPION_ROLLBACK)
    data = bus.dag_id(DATASET, bus.DATA_PIPELINE)
    api.wait_for_dags([watch, rollback, data], timeout_s=300, unpause=False)
    paused = {d: api.call("GET", f"/dags/{d}")["is_paused"] for d in (watch, rollback, data)}
    assert paused == {watch: False, rollback: False, data: True}  # the stack's default is paused at creation

    # The watch is waiting in the triggerer before anything moves.
    run = api.wait_new_run(watch, set(), timeout_s=180)
    api.wait_task_state(watch, run["dag_run_id"], "wait_for_move", ("deferred",), timeout_s=180)

    cfg = load_dataset_config(DATASET)
    client = get_client()
    model = cfg.registered_model_name
    client.create_registered_model(model)
    experiment = ensure_experiment(client, cfg.experiment_name("training"))
    for _ in range(2):
        run_info = client.create_run(experiment).info
        client.set_terminated(run_info.run_id)
        client.create_model_version(
            model, f"{run_info.artifact_uri}/{bus.MODEL_ARTIFACT}", run_id=run_info.run_id
        )

    seconds = {}
    for count, version in enumerate(("1", "2"), start=1):
        set_alias_through_rest(layout.mlflow_url, model, version)
        seconds[version] = wait_for_alerts(hook, count, timeout_s=WITHIN_S)
    time.sleep(QUIET_S)
    print(f"registry_watch: move to alert {seconds['1']:.1f} s (first), {seconds['2']:.1f} s (second)")

    assert hook.kinds() == ["champion_moved", "champion_moved"]
    moves = [
        (b["driftloop"]["fields"]["from_version"], b["driftloop"]["fields"]["to_version"])
        for b in hook.bodies
    ]
    assert moves == [(None, "1"), ("1", "2")]
    assert {b["driftloop"]["fields"]["actor"] for b in hook.bodies} == {EXTERNAL_ACTOR}
    history = open_store().entries(model)
    assert [(e["from_version"], e["to_version"], e["source"]) for e in history] == [
        (None, "1", "external"),
        ("1", "2", "external"),
    ]
    assert all(s <= WITHIN_S for s in seconds.values()), seconds
    failed = [r["dag_run_id"] for r in api.runs(watch) if r["state"] == "failed"]
    assert failed == [], [api.describe_run(watch, r) for r in failed]
