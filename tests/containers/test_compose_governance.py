"""Approval and staged rollouts in compose, the way an operator runs them on the production stack.

The stack of docker-compose.yaml (Celery workers, Postgres audit log, the serving container, alerts through
Airflow's HTTP and SMTP connections to the `alert-sink` service) with telco_churn under the manual policy
and a rollout of ``[shadow, 100]`` (``DRIFTLOOP_CONFIG_OVERRIDES``, as a deployment sets them):

1. reference data lands in the bucket → data_pipeline (started by the arrival, as in production) →
   training: v1 waits in ``await_approval``, holding no worker slot; the admin approves through Airflow's HITL
   REST API and v1 is champion (nothing to roll out against), audited as ``airflow:<admin>``;
2. a second training (another seed): v2 waits, is approved, and enters the rollout in shadow as
   ``challenger``; the serving container scores every row with both and answers with v1; labels land by
   ``POST /labels`` and data_pipeline, started by their arrival, accepts them; ``ab_evaluation`` completes
   the rollout: v2 is champion;
3. ``driftloop rollout begin --version 1`` in a worker (a person's command): v1 in shadow, labels that agree
   with v2 wherever the two differ; ``ab_evaluation`` rolls v1 back and champion stays v2.

Every stage change and move is in the audit tables and reaches the alert sink once. The gate's margin is
wide (non-inferiority by 0.5 AUC): this tests the approval and rollout paths, not the gate.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from driftloop.core import bus
from driftloop_ops.airflow_api import AirflowClient
from tests.constants import AIRFLOW_HITL_SETTLE_S, FAST_OVERRIDES
from tests.containers.harness import FIGURES, MlflowRest, wait_for

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(2400)]

DATASET = "telco_churn"
DATA, TRAINING, AB = (
    bus.dag_id(DATASET, d) for d in (bus.DATA_PIPELINE, bus.TRAINING_PIPELINE, bus.AB_EVALUATION)
)
ROWS_PER_STAGE = 400
OVERRIDES = {
    **FAST_OVERRIDES,
    "gates": {"policy": "manual", "rule": "non_inferiority", "margin": 0.5},
    "rollout": {"stages": ["shadow", 100], "min_rows_per_stage": 300, "min_labelled_per_stage": 300},
}
STACK_ENV = {
    "DRIFTLOOP_DATASETS": DATASET,
    "DRIFTLOOP_TEST_DATA_SCHEDULE": "on_arrival",  # as in production: data_pipeline starts when a file lands
    "DRIFTLOOP_CONFIG_OVERRIDES": json.dumps(OVERRIDES, separators=(",", ":")),
}


@pytest.fixture(scope="module")
def airflow(stack) -> AirflowClient:
    client = AirflowClient(
        stack.airflow_url,
        username=stack.env["AIRFLOW_ADMIN_USERNAME"],
        password=stack.env["AIRFLOW_ADMIN_PASSWORD"],
        poll_s=2,
    )
    client.wait_for_dags([DATA, TRAINING, AB], timeout_s=300)
    return client


@pytest.fixture(scope="module")
def mlflow(stack) -> MlflowRest:
    return MlflowRest(
        stack.mlflow_url, stack.env["MLFLOW_ADMIN_USERNAME"], stack.env["MLFLOW_ADMIN_PASSWORD"]
    )


@pytest.fixture(scope="module")
def telco():
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    return load_dataset_config(DATASET, Settings.from_env({}))


@pytest.fixture(scope="module")
def source_rows(telco):
    from driftloop.data.sources import load_source_frame

    return load_source_frame(telco)[[telco.id_column, *telco.features]]


def psql(stack, database: str, query: str) -> list[list[str]]:
    out = stack.exec("postgres", "psql", "-U", "postgres", "-d", database, "-tAF", "\t", "-c", query)
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def webhook_alerts(stack) -> list[dict]:
    return [a["body"]["driftloop"] for a in stack.received_alerts() if a["channel"] == "webhook"]


def hitl_path(run_id: str) -> str:
    return f"/dags/{TRAINING}/dagRuns/{run_id}/taskInstances/await_approval/-1/hitlDetails"


def approve(airflow: AirflowClient, run_id: str, comment: str) -> dict:
    """Wait for the run's approval task, check it holds no worker slot, approve it as the admin."""
    airflow.wait_task_state(TRAINING, run_id, "await_approval", ("awaiting_input",), timeout_s=900)
    time.sleep(AIRFLOW_HITL_SETTLE_S)  # as a person reading does (Airflow's race: tests/constants.py)
    pool = airflow.call("GET", "/pools/default_pool")
    assert pool["running_slots"] == 0, pool  # the waiting approval holds no worker slot
    detail = airflow.call("GET", hitl_path(run_id))
    assert detail["options"] == ["Approve", "Reject"] and "### Checks" in detail["body"], detail
    answer = airflow.call(
        "PATCH", hitl_path(run_id), json={"chosen_options": ["Approve"], "params_input": {"comment": comment}}
    )
    airflow.wait_for_run(TRAINING, run_id, timeout_s=600, ok=("success",))
    return answer


def serve_until(stack, versions: dict[str, str]) -> None:
    """Wait until the serving container has ``versions`` (alias → version) loaded and warm."""

    def loaded() -> bool:
        ready = requests.get(f"{stack.serving_url}/ready", timeout=10)
        return ready.status_code == 200 and ready.json().get("versions") == versions

    wait_for(loaded, 300, f"the serving container to load {versions}", 2)


def serve_rows(stack, telco, rows) -> list[str]:
    """Score ``rows`` in requests of 50; returns the request ids."""
    request_ids = []
    for start in range(0, len(rows), 50):
        part = rows.iloc[start : start + 50]
        body = {"dataframe_split": json.loads(part.to_json(orient="split", index=False))}
        answer = requests.post(f"{stack.serving_url}/invocations", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        request_ids.append(answer.json()["request_id"])
    return request_ids


def served_predictions(stack, request_ids: list[str], expected_rows: int) -> dict[str, dict[int, str]]:
    """Each version's logged prediction per (request, row) position, once both arms logged every row."""
    quoted = ",".join(f"'{r}'" for r in request_ids)
    query = (
        "select model_version, request_id, row_index, prediction from prediction_log"
        f" where request_id in ({quoted}) and role in ('primary', 'shadow')"
    )

    def logged() -> list[list[str]] | None:
        rows = psql(stack, "driftloop_serving", query)
        return rows if len(rows) >= 2 * expected_rows else None

    rows = wait_for(logged, 120, f"{2 * expected_rows} logged predictions (both arms)", 2)
    order = {r: i for i, r in enumerate(request_ids)}
    by_version: dict[str, dict[int, str]] = {}
    for version, request_id, row_index, prediction in rows:
        by_version.setdefault(version, {})[order[request_id] * 50 + int(row_index)] = prediction
    return by_version


ARRIVALS_S: list[float] = []  # a file landing → the data_pipeline run it started, queued


def follow_arrival(airflow, known: set[str], landed_s: float) -> None:
    """The data_pipeline run the landing watch started for a file that landed at ``landed_s`` (epoch s): it
    must succeed; the wait from landing to its queueing is a figure."""
    from datetime import datetime

    run = airflow.wait_new_run(DATA, known, run_type="asset_triggered", timeout_s=300)
    ARRIVALS_S.append(datetime.fromisoformat(run["queued_at"]).timestamp() - landed_s)
    FIGURES["governance: file landed in the bucket → data_pipeline queued"] = ", ".join(
        f"{s:.1f} s" for s in ARRIVALS_S
    )
    airflow.wait_for_run(DATA, run["dag_run_id"], timeout_s=600, ok=("success",))


def land_labels(stack, airflow, telco, rows, labels: dict[int, str]) -> None:
    """``POST /labels`` for ``rows`` (by position): the labels land in the bucket and data_pipeline, started
    by their arrival, accepts them."""
    body = {
        "labels": [
            {telco.id_column: str(rows.iloc[i][telco.id_column]), telco.target: label}
            for i, label in sorted(labels.items())
        ]
    }
    known = airflow.run_ids(DATA)
    answer = requests.post(f"{stack.serving_url}/labels", json=body, timeout=60)
    assert answer.status_code == 202, answer.text
    follow_arrival(airflow, known, time.time())  # 202: the file is in the landing zone


def with_ids(rows, prefix: str):
    """``rows`` under entity ids of their own (the rollout's evidence is by entity)."""
    rows = rows.reset_index(drop=True).copy()
    rows.iloc[:, 0] = [f"{prefix}-{i:05d}" for i in range(len(rows))]
    return rows


def serve_stage(stack, airflow, telco, rows, champion: str, challenger: str) -> dict:
    """One stage's evidence and verdict: ``rows`` served (champion answers, both log), labels that agree with
    v2 wherever the two differ, landed by ``POST /labels``, then ``ab_evaluation``."""
    serve_until(stack, {bus.CHAMPION: champion, bus.CHALLENGER: challenger})
    rows = with_ids(rows, f"ROLL{challenger}")
    predicted = served_predictions(stack, serve_rows(stack, telco, rows), len(rows))
    land_labels(stack, airflow, telco, rows, predicted["2"])
    ab_run = airflow.trigger(AB)
    airflow.wait_for_run(AB, ab_run, timeout_s=600, ok=("success",))
    disagreements = sum(predicted["1"][i] != predicted["2"][i] for i in predicted["2"])
    return {"ab_run": ab_run, "predicted": predicted, "disagreements": disagreements}


def rollout_rows(stack, version: str) -> list[tuple[str, str, str]]:
    return [
        (r[0], r[1], r[2])
        for r in psql(
            stack,
            "driftloop_audit",
            "select coalesce(from_stage, '-'), to_stage, actor from rollout_audit"
            f" where version = '{version}' order by id",
        )
    ]


def champion_rows(stack) -> list[tuple[str, str, str]]:
    return [
        (r[0], r[1], r[2])
        for r in psql(
            stack,
            "driftloop_audit",
            "select coalesce(from_version, '-'), to_version, actor from champion_audit order by id",
        )
    ]


# ------------------------------------------------------------------------------------------------ the flows
@pytest.fixture(scope="module")
def first_champion(stack, airflow, mlflow, telco):
    """v1 trained from the reference data and approved by the admin."""
    started = time.monotonic()
    known, known_data = airflow.run_ids(TRAINING), airflow.run_ids(DATA)
    stack.exec("airflow-worker", "driftloop", "simulate", "reference")
    follow_arrival(airflow, known_data, time.time())  # nobody triggers data_pipeline: the files landed
    run = airflow.wait_new_run(TRAINING, known, timeout_s=300)
    answer = approve(airflow, run["dag_run_id"], "first model, compose")
    FIGURES["governance: reference → v1 approved and champion"] = f"{time.monotonic() - started:.0f} s"
    return answer


def test_an_approval_in_airflow_makes_the_first_version_champion_in_the_admins_name(
    first_champion, stack, mlflow, telco
):
    admin = stack.env["AIRFLOW_ADMIN_USERNAME"]
    assert first_champion["responded_by"]["name"] == admin, first_champion
    assert mlflow.alias(telco.registered_model_name, bus.CHAMPION) == "1"
    assert champion_rows(stack) == [("-", "1", f"airflow:{admin}")]
    assert rollout_rows(stack, "1") == []  # a first version has nothing to roll out against
    moved = [a for a in webhook_alerts(stack) if a["kind"] == "champion_moved"]
    assert [(a["fields"]["to_version"], a["fields"]["actor"]) for a in moved] == [("1", f"airflow:{admin}")]


@pytest.fixture(scope="module")
def completed(first_champion, stack, airflow, mlflow, telco, source_rows):
    """v2 approved into the rollout, served in shadow, labelled as it predicts, and completed by
    ab_evaluation."""
    started = time.monotonic()
    run_id = airflow.trigger(TRAINING, {"reason": "compose-rollout", "seed": 2})
    approve(airflow, run_id, "roll it out")
    name = telco.registered_model_name
    assert mlflow.alias(name, bus.CHALLENGER) == "2" and mlflow.alias(name, bus.CHAMPION) == "1"
    result = serve_stage(stack, airflow, telco, source_rows.sample(ROWS_PER_STAGE, random_state=21), "1", "2")
    FIGURES["governance: v2 approved → shadow → champion"] = f"{time.monotonic() - started:.0f} s"
    return result


def test_an_approved_version_rolls_out_in_shadow_and_completes_as_champion(completed, stack, mlflow, telco):
    admin = stack.env["AIRFLOW_ADMIN_USERNAME"]
    name = telco.registered_model_name
    assert mlflow.alias(name, bus.CHAMPION) == "2"
    tags = next(v for v in mlflow.versions(name) if v["version"] == "2")["tags"]
    assert tags[bus.ROLLOUT_STAGE_TAG] == bus.ROLLOUT_COMPLETED, tags
    stages = rollout_rows(stack, "2")
    assert [(s[0], s[1]) for s in stages] == [("-", "shadow"), ("shadow", bus.ROLLOUT_COMPLETED)], stages
    assert stages[0][2] == f"airflow:{admin}"  # the approval began it
    moves = champion_rows(stack)
    assert [(m[0], m[1]) for m in moves] == [("-", "1"), ("1", "2")], moves
    # In shadow the champion answered every request: the challenger answered none.
    answered = psql(
        stack,
        "driftloop_serving",
        "select model_version, count(*) from prediction_log where role = 'primary' group by model_version",
    )
    assert dict((v, int(n)) for v, n in answered) == {"1": ROWS_PER_STAGE}, answered
    alerts = webhook_alerts(stack)
    changes = [a["fields"] for a in alerts if a["kind"] == "rollout_stage_changed"]
    stage_changes = [(f["version"], f["to_stage"]) for f in changes]
    assert stage_changes == [("2", "shadow"), ("2", bus.ROLLOUT_COMPLETED)], stage_changes
    moved = [a["fields"]["to_version"] for a in alerts if a["kind"] == "champion_moved"]
    assert moved == ["1", "2"], moved
    keys = [a["dedupe_key"] for a in alerts]
    assert len(keys) == len(set(keys)), keys


@pytest.fixture(scope="module")
def rolled_back(completed, stack, airflow, mlflow, telco, source_rows):
    """v1 rolled out again by a person's command, labelled as v2 predicts: ab_evaluation rolls it back."""
    started = time.monotonic()
    stack.exec(
        "airflow-worker", "driftloop", "rollout", "begin", "--dataset", DATASET, "--version", "1",
        "--reason", "compose: v1 again",
    )  # fmt: skip
    result = serve_stage(stack, airflow, telco, source_rows.sample(ROWS_PER_STAGE, random_state=22), "2", "1")
    FIGURES["governance: v1 begun by command → rolled back"] = f"{time.monotonic() - started:.0f} s"
    disagreements = result["disagreements"]
    FIGURES["governance: rows where v1 and v2 disagree (complete, rollback)"] = (
        f"{completed['disagreements']}, {disagreements} of {ROWS_PER_STAGE}"
    )
    return result


def test_a_challenger_credibly_worse_on_live_labels_is_rolled_back_and_champion_stays(
    rolled_back, stack, airflow, mlflow, telco
):
    name = telco.registered_model_name
    # The paired test needs a few rows where the two differ to call v1 worse (3 at alpha 0.05).
    assert rolled_back["disagreements"] >= 3, rolled_back
    tags = next(v for v in mlflow.versions(name) if v["version"] == "1")["tags"]
    assert tags[bus.ROLLOUT_STAGE_TAG] == bus.ROLLOUT_ROLLED_BACK, (
        tags,
        airflow.describe_run(AB, rolled_back["ab_run"]),
    )
    assert mlflow.alias(name, bus.CHAMPION) == "2"
    stages = rollout_rows(stack, "1")
    assert [(s[0], s[1]) for s in stages] == [("-", "shadow"), ("shadow", bus.ROLLOUT_ROLLED_BACK)], stages
    assert stages[0][2].startswith("cli:"), stages  # the person's command began it
    assert [(m[0], m[1]) for m in champion_rows(stack)] == [("-", "1"), ("1", "2")]  # no move
    alerts = webhook_alerts(stack)
    rolled = [a for a in alerts if a["kind"] == "rollout_stage_changed" and a["fields"]["version"] == "1"]
    assert [a["fields"]["to_stage"] for a in rolled] == ["shadow", bus.ROLLOUT_ROLLED_BACK], rolled
    assert "credibly worse" in rolled[-1]["fields"]["reason"], rolled[-1]
    keys = [a["dedupe_key"] for a in alerts]
    assert len(keys) == len(set(keys)), keys
    # The Airflow tasks' alerts also went out by email through the SMTP connection (the command's by webhook).
    mails = [a for a in stack.received_alerts() if a["channel"] == "smtp"]
    assert any("rolled_back" in m["subject"] for m in mails), [m["subject"] for m in mails]
