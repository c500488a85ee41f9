"""The HTTP surface against a live service on 127.0.0.1: MLflow compatibility, the bad-request corpus, labels,
admin.

One service (one thread worker, a champion and a challenger) serves the whole module; it is stopped at the
end.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import httpx
import pytest

from driftloop.core import bus
from tests.serving.helpers import LiveServer, fit_pipeline, register_model, split_body

MAX_BODY_BYTES = 65_536
MAX_REQUEST_ROWS = 50
CANARY = "CANARY-7f3a9c"
TOKEN = "test-admin-token"


@pytest.fixture(scope="module")
def live(tmp_path_factory, mlflow_uri, telco_frame):
    """(server, cfg, champion version, challenger version) with module-wide environment."""
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.serving.online.app import create_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLOOP_HOME", str(tmp_path_factory.mktemp("serving-http")))
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        mp.setenv("DRIFTLOOP_SERVE_WORKERS", "-1")
        mp.setenv("DRIFTLOOP_SERVE_ADMIN_TOKEN", TOKEN)
        mp.setenv("DRIFTLOOP_SERVE_MAX_BODY_BYTES", str(MAX_BODY_BYTES))
        mp.setenv("DRIFTLOOP_SERVE_MAX_REQUEST_ROWS", str(MAX_REQUEST_ROWS))
        for name in ("DRIFTLOOP_DATASET", "DRIFTLOOP_CONFIG_DIR", "DRIFTLOOP_CONFIG_OVERRIDES"):
            mp.delenv(name, raising=False)
        suffix = uuid.uuid4().hex[:8]
        cfg = dataclasses.replace(
            load_dataset_config("telco_churn"),
            name=f"telco_churn_{suffix}",
            model_name=f"telco-churn-{suffix}",
        )
        champion, _ = register_model(cfg, fit_pipeline(cfg, telco_frame), telco_frame, bus.CHAMPION)
        challenger, _ = register_model(
            cfg, fit_pipeline(cfg, telco_frame, flip=True), telco_frame, bus.CHALLENGER
        )
        with LiveServer(create_app(cfg, Settings.from_env())) as server:
            yield server, cfg, champion, challenger


@pytest.fixture
def client(live):
    with httpx.Client(base_url=live[0].url, timeout=30) as http:
        yield http


@pytest.fixture
def rows(telco_frame):
    return telco_frame.iloc[3000:3010].reset_index(drop=True)


def test_mlflow_request_formats_get_mlflow_responses_with_arm_and_version(live, client, rows):
    """Bodies as MLflow clients build them; predictions equal what ``mlflow models serve`` computes
    (pyfunc)."""
    import mlflow.pyfunc
    from mlflow.models import convert_input_example_to_serving_input

    from driftloop.core.tracking import mlflow_scope

    _, cfg, champion, _ = live
    features = rows[cfg.features]
    bodies = [
        convert_input_example_to_serving_input(features),  # what MLflow's own tooling sends
        json.dumps({"dataframe_split": json.loads(features.to_json(orient="split"))}),  # with an "index"
        json.dumps({"dataframe_records": json.loads(features.to_json(orient="records"))}),
    ]
    with mlflow_scope():
        expected = mlflow.pyfunc.load_model(
            bus.model_version_uri(cfg.registered_model_name, champion)
        ).predict(features)
    for body in bodies:
        response = client.post("/invocations", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        payload = response.json()
        assert payload["predictions"] == [int(v) for v in expected]  # the shape and values of mlflow serve
        assert payload["labels"] == ["Yes" if v else "No" for v in expected]  # the version's class list
        assert set(payload) == {
            "predictions",
            "labels",
            "scores",
            "arms",
            "model_versions",
            "model_name",
            "request_id",
        }
        assert payload["arms"] == [bus.CHAMPION] * len(rows) and payload["model_versions"] == [
            champion
        ] * len(rows)
        assert response.headers["x-request-id"] == payload["request_id"]


def test_health_ready_version_ping_and_metrics(live, client):
    server, cfg, champion, challenger = live
    assert client.get("/health").json() == {"status": "ok", "ready": True}
    assert client.get("/ping").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["versions"] == {
        "champion": champion,
        "challenger": challenger,
    }
    version = client.get("/version").json()
    assert version["name"] == cfg.registered_model_name and version["routing"]["mode"] == "champion"
    assert version["aliases"][bus.CHAMPION] == f"models:/{cfg.registered_model_name}@champion"
    metrics = client.get("/metrics")
    assert "text/plain" in metrics.headers["content-type"]
    for name in (
        "driftloop_serving_requests_total",
        "driftloop_serving_request_latency_seconds_bucket",
        "driftloop_serving_batch_rows_bucket",
        "driftloop_serving_queue_depth",
        "driftloop_serving_log_dropped_rows_total",
        "driftloop_serving_model_version",
    ):
        assert name in metrics.text


def test_a_client_request_id_is_kept_when_safe_and_replaced_when_not(live, client, rows):
    _, cfg, _, _ = live
    body = split_body(cfg, rows.head(1))
    kept = client.post("/invocations", json=body, headers={"X-Request-Id": "order-42"})
    assert kept.json()["request_id"] == "order-42"
    replaced = client.post("/invocations", json=body, headers={"X-Request-Id": f"<b>{CANARY}</b>"})
    assert replaced.status_code == 200 and CANARY not in replaced.text


# ------------------------------------------------------------------------------------------------------------
# The bad-request corpus: every case is a 4xx with {"error_code", "message"}, never a 500, never the payload
# echoed.


def _record(cfg_features_row: dict, **changes) -> dict:
    return {**cfg_features_row, **changes}


@pytest.fixture
def good(rows, live):
    _, cfg, _, _ = live
    record = json.loads(rows[[cfg.id_column, *cfg.features]].head(1).to_json(orient="records"))[0]
    return record


JSON = {"Content-Type": "application/json"}


def _corpus(good: dict, cfg) -> dict[str, tuple]:
    """case → (method, path, headers, body bytes, expected status, text the message must contain)."""

    def records(*rows_: dict) -> bytes:
        return json.dumps({"dataframe_records": list(rows_)}).encode()

    valid = records(good)
    without_tenure = {k: v for k, v in good.items() if k != "tenure"}
    split = {"columns": list(good), "data": [list(good.values())]}
    admin = {"Authorization": f"Bearer {TOKEN}", **JSON}
    return {
        "text_plain": (
            "POST",
            "/invocations",
            {"Content-Type": "text/plain"},
            valid,
            415,
            "application/json",
        ),
        "no_content_type": ("POST", "/invocations", {}, valid, 415, "application/json"),
        "csv": (
            "POST",
            "/invocations",
            {"Content-Type": "text/csv"},
            b"tenure\n1\n",
            415,
            "application/json",
        ),
        "latin1_charset": (
            "POST",
            "/invocations",
            {"Content-Type": "application/json; charset=latin-1"},
            valid,
            415,
            "UTF-8",
        ),
        "malformed_json": (
            "POST",
            "/invocations",
            JSON,
            b'{"dataframe_records": [{"' + CANARY.encode(),
            400,
            "not valid JSON",
        ),
        "empty_body": ("POST", "/invocations", JSON, b"", 400, "not valid JSON"),
        "not_utf8": (
            "POST",
            "/invocations",
            JSON,
            b'{"dataframe_records": [{"contract": "\xff\xfe' + CANARY.encode() + b'"}]}',
            400,
            "not valid JSON",
        ),
        "nan_literal": (
            "POST",
            "/invocations",
            JSON,
            valid.replace(b'"tenure":', b'"tenure":NaN,"x":'),
            400,
            "not valid JSON",
        ),
        "deep_nesting": ("POST", "/invocations", JSON, b"[" * 5000 + b"]" * 5000, 400, "not valid JSON"),
        "top_level_array": ("POST", "/invocations", JSON, json.dumps([good]).encode(), 400, "JSON object"),
        "unknown_format": (
            "POST",
            "/invocations",
            JSON,
            json.dumps({"instances": [CANARY]}).encode(),
            400,
            "dataframe_split",
        ),
        "two_formats": (
            "POST",
            "/invocations",
            JSON,
            json.dumps({"dataframe_records": [good], "dataframe_split": split}).encode(),
            400,
            "exactly one key",
        ),
        "params_key": (
            "POST",
            "/invocations",
            JSON,
            json.dumps({"dataframe_records": [good], "params": {"x": CANARY}}).encode(),
            400,
            "no other key",
        ),
        "split_without_columns": (
            "POST",
            "/invocations",
            JSON,
            json.dumps({"dataframe_split": {"data": [[1]]}}).encode(),
            400,
            "'columns'",
        ),
        "split_ragged_row": (
            "POST",
            "/invocations",
            JSON,
            json.dumps(
                {"dataframe_split": {"columns": split["columns"], "data": [split["data"][0][:-1]]}}
            ).encode(),
            400,
            "row 0",
        ),
        "records_not_objects": (
            "POST",
            "/invocations",
            JSON,
            json.dumps({"dataframe_records": [CANARY]}).encode(),
            400,
            "list of objects",
        ),
        "no_rows": ("POST", "/invocations", JSON, records(), 422, "no rows"),
        "missing_column": ("POST", "/invocations", JSON, records(without_tenure), 422, "tenure"),
        "extra_column": (
            "POST",
            "/invocations",
            JSON,
            records(_record(good, **{f"<i>{CANARY}": 1})),
            422,
            "1 unexpected column",
        ),
        "duplicate_column": (
            "POST",
            "/invocations",
            JSON,
            json.dumps(
                {
                    "dataframe_split": {
                        "columns": [*split["columns"], "tenure"],
                        "data": [[*split["data"][0], 1]],
                    }
                }
            ).encode(),
            422,
            "more than once",
        ),
        "text_in_number": (
            "POST",
            "/invocations",
            JSON,
            records(_record(good, tenure=CANARY)),
            422,
            "'tenure'",
        ),
        "bool_in_number": (
            "POST",
            "/invocations",
            JSON,
            records(_record(good, tenure=True)),
            422,
            "a boolean",
        ),
        "fraction_in_integer": (
            "POST",
            "/invocations",
            JSON,
            records(_record(good, tenure=3.5)),
            422,
            "whole number",
        ),
        "null_not_nullable": (
            "POST",
            "/invocations",
            JSON,
            records(_record(good, tenure=None)),
            422,
            "not nullable",
        ),
        "out_of_range": (
            "POST",
            "/invocations",
            JSON,
            records(_record(good, monthly_charges=-7.25)),
            422,
            "monthly_charges",
        ),
        "huge_integer": (
            "POST",
            "/invocations",
            JSON,
            records(good).replace(
                f'"tenure": {good["tenure"]}'.encode(), b'"tenure": 100000000000000000000000000000'
            ),
            422,
            "'tenure'",
        ),
        "unknown_category": (
            "POST",
            "/invocations",
            JSON,
            records(_record(good, contract=CANARY)),
            422,
            "categories",
        ),
        "nested_value": (
            "POST",
            "/invocations",
            JSON,
            records(_record(good, payment_method={"x": CANARY})),
            422,
            "must be text",
        ),
        "id_too_long": (
            "POST",
            "/invocations",
            JSON,
            records(_record(good, **{cfg.id_column: CANARY * 20})),
            422,
            cfg.id_column,
        ),
        "too_many_rows": (
            "POST",
            "/invocations",
            JSON,
            records(*[good] * (MAX_REQUEST_ROWS + 1)),
            413,
            "limit",
        ),
        "body_too_large": (
            "POST",
            "/invocations",
            JSON,
            records(*[_record(good, pad=CANARY * 40)] * 300),
            413,
            str(MAX_BODY_BYTES),
        ),
        "wrong_method": ("GET", "/invocations", {}, b"", 405, ""),
        "unknown_path": ("POST", "/predict", JSON, valid, 404, ""),
        "labels_unknown_label": (
            "POST",
            "/labels",
            JSON,
            json.dumps({"labels": [{cfg.id_column: "C-1", cfg.target: CANARY}]}).encode(),
            422,
            "categories",
        ),
        "labels_missing_id": (
            "POST",
            "/labels",
            JSON,
            json.dumps({"labels": [{cfg.target: "Yes"}]}).encode(),
            422,
            cfg.id_column,
        ),
        "labels_text_plain": ("POST", "/labels", {"Content-Type": "text/plain"}, b"C-1,Yes", 415, ""),
        "admin_without_token": ("PUT", "/admin/routing", JSON, b'{"challenger_share": 0.5}', 401, "Bearer"),
        "admin_wrong_token": (
            "PUT",
            "/admin/routing",
            {"Authorization": f"Bearer {CANARY}", **JSON},
            b'{"challenger_share": 0.5}',
            401,
            "Bearer",
        ),
        "admin_share_out_of_range": (
            "PUT",
            "/admin/routing",
            admin,
            b'{"challenger_share": 1.5}',
            422,
            "[0, 1]",
        ),
        "admin_unknown_knob": (
            "PUT",
            "/admin/routing",
            admin,
            json.dumps({CANARY: 1}).encode(),
            422,
            "shadow",
        ),
    }


CASES = sorted(
    _corpus(
        {"tenure": 1, "customer_id": "x"},
        dataclasses.make_dataclass("C", [("id_column", str, "customer_id"), ("target", str, "churn")])(),
    )
)


@pytest.mark.parametrize("case", CASES)
def test_bad_request_corpus(live, client, good, case):
    _, cfg, _, _ = live
    method, path, headers, body, status, expected_text = _corpus(good, cfg)[case]
    response = client.request(method, path, headers=headers, content=body)
    assert response.status_code == status, (case, response.status_code, response.text)
    assert 400 <= response.status_code < 500
    assert CANARY not in response.text, f"{case}: the payload was echoed"
    if response.status_code != 405:
        payload = response.json()
        assert set(payload) >= {"error_code", "message"} and expected_text in payload["message"], payload


def test_corpus_is_big_enough():
    assert len(CASES) >= 20


def test_an_oversized_chunked_body_is_refused_while_reading(live, client, good):
    def chunks():
        yield b'{"dataframe_records": ['
        for _ in range(400):
            yield json.dumps({**good, "pad": CANARY * 10}).encode() + b","
        yield b"{}]}"

    response = client.post("/invocations", content=chunks(), headers=JSON)
    assert response.status_code == 413 and CANARY not in response.text
    assert "content-length" not in {k.lower() for k in response.request.headers}


def test_invocations_take_the_fast_path_and_a_bug_there_is_a_500_with_the_usual_body(live, client, rows):
    """``POST /invocations`` skips FastAPI's layers (:class:`InvocationsFastPath`); an unexpected error there
    must still answer a JSON 500 (never a dropped connection), and the next request is served again."""
    from driftloop.serving.online.app import InvocationsFastPath

    server, cfg, _, _ = live
    assert isinstance(server.app, InvocationsFastPath)
    schema = server.service.schema

    class Broken:
        def __getattr__(self, name):
            return getattr(schema, name)

        def parse(self, body):
            raise ZeroDivisionError("a bug")

    server.service.schema = Broken()
    try:
        response = client.post("/invocations", json=split_body(cfg, rows), headers={"X-Request-Id": "bug-1"})
    finally:
        server.service.schema = schema
    assert response.status_code == 500, response.text
    assert response.json() == {"error_code": "INTERNAL_ERROR", "message": "internal error"}
    assert response.headers["content-type"] == "application/json"
    answered = client.post("/invocations", json=split_body(cfg, rows), headers={"X-Request-Id": "ok-1"})
    assert answered.status_code == 200 and answered.headers["x-request-id"] == "ok-1"
    assert answered.json()["request_id"] == "ok-1" and len(answered.json()["predictions"]) == len(rows)


def test_the_service_still_answers_after_the_corpus(live, client, rows):
    _, cfg, _, _ = live
    assert client.post("/invocations", json=split_body(cfg, rows)).status_code == 200


# ------------------------------------------------------------------------------------------------------------


def test_labels_land_atomically_and_pass_the_data_contract(live, client):
    from driftloop.core.state import StatePaths
    from driftloop.data.ingest import ingest_labels

    _, cfg, _, _ = live
    bad = client.post(
        "/labels", json={"labels": [{cfg.id_column: "TC-1", "request_id": "x", cfg.target: "No"}]}
    )
    assert bad.status_code == 422  # an id column and a request id at once is ambiguous
    body = {
        "labels": [
            {cfg.id_column: "TC-100001", cfg.target: "Yes"},
            {cfg.id_column: "TC-100002", cfg.target: "No"},
        ]
    }
    first = client.post("/labels", json=body)
    assert first.status_code == 202 and first.json()["accepted"] == 2
    again = client.post("/labels", json=body)  # a client retry writes nothing new (it would be a replay)
    assert again.json() == {**first.json(), "duplicate": True}
    landing = StatePaths.for_dataset(cfg).labels_landing_dir
    assert [p.name for p in landing.iterdir()] == [first.json()["file"]]  # no temporary file left behind
    result = ingest_labels(cfg)
    assert result["quarantined"] == [] and len(result["accepted"]) == 1, result


def test_routing_changes_at_run_time_through_the_admin_endpoint(live, client, telco_frame):
    server, cfg, champion, challenger = live
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/admin/routing", headers=auth).json()["mode"] == "champion"
    try:
        updated = client.put("/admin/routing", json={"challenger_share": 0.5, "shadow": True}, headers=auth)
        assert updated.json() == {"mode": "ab+shadow", "challenger_share": 0.5, "shadow": True}
        assert client.get("/version").json()["routing"]["mode"] == "ab+shadow"
        payload = client.post("/invocations", json=split_body(cfg, telco_frame.iloc[3000:3040])).json()
        assert set(payload["arms"]) == {bus.CHAMPION, bus.CHALLENGER}
        assert all(
            v == (champion if a == bus.CHAMPION else challenger)
            for a, v in zip(payload["arms"], payload["model_versions"], strict=True)
        )
    finally:
        client.put("/admin/routing", json={"mode": "champion"}, headers=auth)
    assert client.get("/admin/routing", headers=auth).json()["mode"] == "champion"
