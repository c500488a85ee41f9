"""The batcher, routing and hot swap against a live service: results, 503s, isolation, arms, shadow, reloads.

Models that sleep per call (like a PyCaret pipeline's flat cost) make requests queue up, so batches really
form. Load is bounded: a few dozen requests per test, each with a timeout.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from driftloop.core import bus
from tests.serving.helpers import POISON_CHARGES, LiveServer, SlowModel, register_model, split_body


@contextlib.contextmanager
def serving(cfg, **serving_options):
    """A live service of ``cfg`` (with ``serving_options`` in its ``serving`` section) and an HTTP client."""
    from driftloop.core.settings import Settings
    from driftloop.serving.online.app import create_app

    cfg = dataclasses.replace(cfg, serving=dataclasses.replace(cfg.serving, **serving_options))
    with (
        LiveServer(create_app(cfg, Settings.from_env())) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield server, client


def post_all(client, bodies, concurrency=16):
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda body: client.post("/invocations", json=body), bodies))


def metric(server, name, labels=None):
    return server.service.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def test_batched_results_equal_unbatched_results(cfg, serve_env, telco_frame, good_model):
    register_model(cfg, SlowModel(good_model, 0.05), telco_frame, bus.CHAMPION)
    frame = telco_frame.iloc[3000:3120].reset_index(drop=True)
    bodies = [split_body(cfg, frame.iloc[i : i + 1 + i % 4]) for i in range(0, 120, 4)]  # 1..4 rows each
    with serving(cfg) as (server, client):
        batched = post_all(client, bodies)
        calls_batched = metric(
            server, "driftloop_serving_batch_rows_count", {"arm": "champion", "role": "primary"}
        )
        alone = [client.post("/invocations", json=body) for body in bodies]
    assert all(r.status_code == 200 for r in batched + alone)
    assert calls_batched < len(bodies) / 2, "requests were not batched"
    for together, single in zip(batched, alone, strict=True):
        assert together.json()["predictions"] == single.json()["predictions"]
        # Equal up to the rounding of a matrix product whose shape differs (BLAS sums in another order):
        # 1e-17.
        assert together.json()["scores"] == pytest.approx(single.json()["scores"], abs=1e-12, rel=0)


def test_overload_is_refused_with_503_and_retry_after_never_a_timeout(
    cfg, serve_env, telco_frame, good_model
):
    serve_env.setenv("DRIFTLOOP_SERVE_LATENCY_BUDGET_MS", "150")
    register_model(cfg, SlowModel(good_model, 0.3), telco_frame, bus.CHAMPION)
    body = split_body(cfg, telco_frame.iloc[3000:3001])
    with serving(cfg) as (server, client):
        assert client.post("/invocations", json=body).status_code == 200  # measures the cycle (0.3 s)
        responses = post_all(client, [body] * 24, concurrency=24)
        statuses = sorted(r.status_code for r in responses)
        refused = [r for r in responses if r.status_code == 503]
        assert set(statuses) == {200, 503}, statuses  # never a timeout, never a 500
        for response in refused:
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert metric(server, "driftloop_serving_rejected_total", {"reason": "over_budget"}) == len(refused)
        time.sleep(0.5)
        assert client.post("/invocations", json=body).status_code == 200  # served again once the queue drains


def test_a_failing_request_is_isolated_and_the_rest_of_its_batch_succeeds(
    cfg, serve_env, telco_frame, good_model
):
    register_model(cfg, SlowModel(good_model, 0.2), telco_frame, bus.CHAMPION)
    frame = telco_frame.iloc[3000:3012].reset_index(drop=True)
    bodies = [split_body(cfg, frame.iloc[i : i + 1]) for i in range(12)]
    poisoned = bodies[7]["dataframe_split"]
    poisoned["data"][0][poisoned["columns"].index("monthly_charges")] = POISON_CHARGES
    with serving(cfg) as (server, client), ThreadPoolExecutor(12) as pool:
        blocker = pool.submit(client.post, "/invocations", json=bodies[0])
        time.sleep(0.05)  # the worker is busy: the next eleven queue up and form one batch
        responses = list(pool.map(lambda body: client.post("/invocations", json=body), bodies[1:]))
        assert blocker.result().status_code == 200
        labels = {"arm": "champion", "role": "primary"}
        big_calls = metric(server, "driftloop_serving_batch_rows_count", labels) - metric(
            server, "driftloop_serving_batch_rows_bucket", {**labels, "le": "8.0"}
        )
        isolated = metric(server, "driftloop_serving_isolated_failures_total")
    statuses = [r.status_code for r in responses]
    assert statuses[6] == 422 and responses[6].json()["error_code"] == "MODEL_ERROR"
    assert statuses[:6] + statuses[7:] == [200] * 10
    assert isolated == 1
    assert big_calls >= 1, "the poisoned request was not scored inside a batch"


def test_assignment_is_sticky_split_within_binomial_tolerance_and_reshuffled_per_challenger():
    from driftloop.serving.online.router import assign_challenger

    ids = [f"C-{i:06d}" for i in range(20_000)]
    share = 0.3
    first = assign_challenger(ids, share, "salt", "7")
    tolerance = 4 * (share * (1 - share) / len(ids)) ** 0.5
    assert abs(sum(first) / len(ids) - share) < tolerance
    assert assign_challenger(ids, share, "salt", "7") == first  # sticky: same salt and challenger, same arm
    other = assign_challenger(ids, share, "salt", "8")  # a new challenger reshuffles the entities
    assert abs(sum(other) / len(ids) - share) < tolerance
    overlap = sum(a and b for a, b in zip(first, other, strict=True)) / len(ids)
    assert abs(overlap - share * share) < 4 * (share**2 * (1 - share**2) / len(ids)) ** 0.5  # independent


def test_ab_split_is_sticky_and_shadow_scores_are_logged_but_never_returned(
    cfg, serve_env, telco_frame, good_model, flipped_model
):
    from driftloop.core.settings import Settings
    from driftloop.serving.online.prediction_log import log_uri, read_log
    from driftloop.serving.online.prediction_log_store import NO_FEATURES

    champion, _ = register_model(cfg, good_model, telco_frame, bus.CHAMPION)
    challenger, _ = register_model(cfg, flipped_model, telco_frame, bus.CHALLENGER)
    frame = telco_frame.iloc[0:1500].reset_index(drop=True)
    bodies = [split_body(cfg, frame.iloc[i : i + 50]) for i in range(0, 1500, 50)]
    with serving(cfg, challenger_share=0.3, shadow=True) as (server, client):
        first = post_all(client, bodies, concurrency=8)
        again = post_all(client, bodies, concurrency=8)
        server.service.log.close()  # flush the log (the app's shutdown does it too)
    arms = [arm for response in first for arm in response.json()["arms"]]
    share = arms.count(bus.CHALLENGER) / len(arms)
    assert abs(share - 0.3) < 4 * (0.3 * 0.7 / len(arms)) ** 0.5, share
    assert [r.json()["arms"] for r in again] == [r.json()["arms"] for r in first]  # sticky per entity
    for response in first + again:
        payload = response.json()
        assert all(
            v == (champion if a == bus.CHAMPION else challenger)
            for a, v in zip(payload["arms"], payload["model_versions"], strict=True)
        )
    log = read_log(log_uri(cfg, Settings.from_env()), cfg.registered_model_name)
    primary, shadow = log[log["role"] == "primary"], log[log["role"] == "shadow"]
    assert len(primary) == 2 * len(frame)
    assert len(shadow) > 0 and set(shadow["experiment"]) == {f"v{champion}-vs-v{challenger}"}
    pairs = primary.merge(shadow, on=["request_id", "row_index"], suffixes=("", "_shadow"))
    assert (pairs["arm"] != pairs["arm_shadow"]).all()  # the shadow is always the other model
    # The inputs are logged once, on the primary row each shadow row pairs with.
    assert (shadow["features"] == NO_FEATURES).all()
    sent = frame.set_index(cfg.id_column)
    for row in pairs.itertuples():
        logged = orjson.loads(row.features)
        expected = sent.loc[row.entity_id, ["tenure", "contract"]]
        assert (logged["tenure"], logged["contract"]) == tuple(expected)
    returned = {
        (r.json()["request_id"], i): s for r in first + again for i, s in enumerate(r.json()["scores"])
    }
    assert all(returned[(row.request_id, row.row_index)] != row.score_shadow for row in pairs.itertuples())


def test_shadow_mode_answers_with_the_champion_only(cfg, serve_env, telco_frame, good_model, flipped_model):
    champion, _ = register_model(cfg, good_model, telco_frame, bus.CHAMPION)
    register_model(cfg, flipped_model, telco_frame, bus.CHALLENGER)
    bodies = [split_body(cfg, telco_frame.iloc[i : i + 5]) for i in range(0, 200, 5)]
    with serving(cfg, shadow=True) as (server, client):
        responses = post_all(client, bodies, concurrency=4)
        deadline = time.monotonic() + 10
        while (
            metric(server, "driftloop_serving_rows_total", {"arm": "challenger", "role": "shadow"}) < 200
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)  # shadow calls run when no request waits
        shadow_rows = metric(server, "driftloop_serving_rows_total", {"arm": "challenger", "role": "shadow"})
        assert client.get("/version").json()["effective_routing"]["mode"] == "shadow"
    assert all(r.json()["model_versions"] == [champion] * 5 for r in responses)
    assert shadow_rows == 200


@pytest.mark.slow
def test_hot_reload_on_an_alias_move_fails_no_request(cfg, serve_env, telco_frame, good_model, flipped_model):
    """Two inference processes; the champion alias moves while requests flow; none fails, v2 takes over."""
    import threading

    from driftloop.core.tracking import get_client

    serve_env.setenv("DRIFTLOOP_SERVE_WORKERS", "2")
    v1, _ = register_model(cfg, good_model, telco_frame, bus.CHAMPION)
    v2, _ = register_model(cfg, flipped_model, telco_frame)
    bodies = [split_body(cfg, telco_frame.iloc[i : i + 3]) for i in range(0, 300, 3)]
    results, stop = [], threading.Event()
    with serving(cfg) as (server, client):
        assert server.service.worker_kind == "process" and len(server.service.pool.workers) == 2

        def load() -> None:
            i = 0
            while not stop.is_set() and len(results) < 2000:
                response = client.post("/invocations", json=bodies[i % len(bodies)])
                results.append((response.status_code, response.json().get("model_versions", [None])[0]))
                i += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        get_client().set_registered_model_alias(cfg.registered_model_name, bus.CHAMPION, v2)  # as in the UI
        deadline = time.monotonic() + 60
        while client.get("/version").json()["versions"][bus.CHAMPION] != v2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert (
            metric(server, "driftloop_serving_model_swaps_total", {"alias": "champion"}) == 2
        )  # load + swap
    statuses = {status for status, _ in results}
    assert statuses == {200}, f"failed requests during the swap: {statuses}"
    versions = [version for _, version in results]
    assert versions[0] == v1 and versions[-1] == v2 and set(versions) == {v1, v2}
    assert versions.index(v2) > 0 and v1 not in versions[-20:]


def _native_threads_after_import(queue) -> None:
    from driftloop.serving.online.workers import limit_native_threads

    limit_native_threads()  # first, as worker_main does, before the model's libraries load
    import sklearn.linear_model  # noqa: F401 - loads OpenMP and OpenBLAS
    from threadpoolctl import threadpool_info

    queue.put(sorted({(info["user_api"], info["num_threads"]) for info in threadpool_info()}))


def test_an_inference_worker_loads_its_native_libraries_with_one_thread():
    """Regression: libraries loaded after ``threadpool_limits`` kept a thread per core and spun against the
    other workers (an inference worker burnt 50 ms of CPU per 1,000-row call instead of 20)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_native_threads_after_import, args=(queue,))
    process.start()
    try:
        pools = queue.get(timeout=120)
    finally:
        process.join(30)
    assert pools and {threads for _, threads in pools} == {1}, pools
