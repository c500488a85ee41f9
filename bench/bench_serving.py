"""Online serving: ``driftloop serve`` against ``mlflow models serve`` on the same PyCaret model version, one
run.

1. Trains a PyCaret champion (lr, 2 folds) in a throw-away SQLite MLflow store and registers the same model a
   second time as ``challenger``, so A/B routing and shadow scoring really run two models (same per-call
   cost).
2. Measures the cost of one predict call (1 to 16,000 rows) in this process, of the logged pipeline and of
   what the workers run (the numpy replay of its preprocessing, :mod:`driftloop.serving.replay`): the
   ceiling the served call implies for a closed loop of C clients is
   ``C / (calls per round x cost per call) x min(workers, calls)``: every request waits for its arm's call
   at least, two calls per round when the requests in flight hold both arms (A/B), one otherwise, and calls
   of different arms run side by side when there are workers for them.
3. Starts ``mlflow models serve`` (``--env-manager local``, one worker) and ``driftloop serve`` (one inference
   process per core, A/B 50 % + shadow + prediction log), both on 127.0.0.1, and drives each with closed-loop
   clients that honour ``Retry-After``: concurrency 1, 4 and 16 × 1-, 100- and 1,000-row requests,
   ``BENCH_SERVING_SECONDS`` each, the two servers one right after the other in every scenario. Prints
   throughput (answered requests), p50 and p99 of answered requests, refusals, the CPU the server's processes
   spent per answered request (Linux; for ours also the HTTP process alone), and the ratio to MLflow measured
   in the same run. A third server, ``driftloop serve`` with the default serving config (champion only: the
   same work per request as MLflow), runs the concurrency-1 cells (``driftloop_champion_only``).
4. A 60-second open-loop load on ``driftloop serve`` at the sustainable rate (``BENCH_SERVING_LOAD_SHARE``
   of the measured c16 single-row throughput), once the log backlog the saturated grid left is written (the
   rows the grid's log dropped, counted, and the wait are printed): zero 5xx, and the prediction log holds
   exactly one row per request sent.

Prints one figure per line (prefix ``serving_``); the servers' logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("BENCH_SERVING_SECONDS", "12"))
WARMUP_S = 2.0
LOAD_SECONDS = float(os.environ.get("BENCH_SERVING_LOAD_SECONDS", "60"))
LOAD_SHARE = float(os.environ.get("BENCH_SERVING_LOAD_SHARE", "0.6"))
MAX_IN_FLIGHT = 64
FAST = {
    "training": {"models": ["lr"], "folds": 2, "tune_iter": 0, "reference_rows": 1000},
    "serving": {"challenger_share": 0.5, "shadow": True},
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_models(cfg, settings) -> dict:
    """Train the champion, register its model again as challenger; returns the champion's resolved alias."""
    from driftloop.core import bus, registry
    from driftloop.core.tracking import get_client
    from driftloop.data import ingest, simulate, snapshots
    from driftloop.training import train

    simulate.simulate_reference(cfg, settings=settings)
    ingest.ingest_batches(cfg, settings)
    snapshot = snapshots.build_snapshot(cfg, settings)
    trained = train.train_model(
        cfg, snapshot["snapshot_uri"], trigger={"reason": "manual"}, settings=settings
    )
    registry.move_alias(
        cfg, bus.CHAMPION, trained["model_version"], settings
    )  # no gate: only speed is measured
    client = get_client(settings)
    champion = client.get_model_version(cfg.registered_model_name, trained["model_version"])
    twin = client.create_model_version(
        cfg.registered_model_name, source=champion.source, run_id=champion.run_id
    )
    registry.move_alias(cfg, bus.CHALLENGER, str(twin.version), settings)
    return registry.resolve_alias(cfg, bus.CHAMPION, settings)


COST_ROWS = (1, 4, 16, 100, 400, 1000, 4000, 16000)
GRID_ROWS = (1, 100, 1000)
GRID_CONCURRENCY = (1, 4, 16)
SINGLE = "driftloop_champion_only"  # the default serving config: no A/B, no shadow


def per_call_cost_s(model, frame, cfg) -> dict[str, dict[int, float]]:
    """Median seconds of one call on each of ``COST_ROWS`` rows: the logged pipeline's ``predict_proba`` on a
    frame, and what the workers run (the numpy replay of the preprocessing on typed columns, when the model
    has one)."""
    from driftloop.serving.online.workers import build_frame
    from driftloop.serving.replay import compile_model

    replay = compile_model(model)
    costs: dict[str, dict[int, float]] = {"pipeline": {}, "served": {}}
    for rows in COST_ROWS:
        sample = frame[cfg.features].sample(n=rows, replace=True, random_state=rows).reset_index(drop=True)
        columns = {name: sample[name].to_numpy() for name in cfg.features}
        dtypes = {name: str(sample[name].dtype) for name in cfg.features}
        repeats = 15 if rows < 4000 else 5
        pipeline = median_call_s(lambda c=columns, d=dtypes: model.predict_proba(build_frame(c, d)), repeats)
        costs["pipeline"][rows] = pipeline
        costs["served"][rows] = (
            median_call_s(lambda c=columns: replay.predict_proba(c), repeats)
            if replay is not None
            else pipeline
        )
    return costs


def median_call_s(call, repeats: int) -> float:
    """Median seconds of ``call()`` over ``repeats`` calls after a first one."""
    call()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def bodies(cfg, frame, rows: int, count: int, with_ids: bool) -> list[bytes]:
    """``count`` different ``dataframe_split`` bodies of ``rows`` customers each."""
    import orjson

    columns = ([cfg.id_column] if with_ids else []) + list(cfg.features)
    out = []
    for i in range(count):
        part = frame.iloc[(i * rows) % (len(frame) - rows) :][:rows][columns]
        data = part.astype(object).where(part.notna(), None).values.tolist()
        out.append(orjson.dumps({"dataframe_split": {"columns": columns, "data": data}}))
    return out


def start_server(
    command: list[str], env: dict, url: str, ready_path: str, timeout_s: float = 300
) -> subprocess.Popen:
    import urllib.request

    process = subprocess.Popen(command, env=env, stdout=sys.stderr, stderr=sys.stderr, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command[:3]} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + ready_path, timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        time.sleep(0.5)
    stop_server(process)
    raise SystemExit(f"{command[:3]} did not become ready in {timeout_s:.0f} s")


def stop_server(process: subprocess.Popen, timeout_s: float = 60) -> None:
    """SIGTERM (graceful: the service drains and writes its log out), then SIGKILL the group if needed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return (
        ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")
    )


async def closed_loop(
    url: str, payloads: list[bytes], concurrency: int, seconds: float, server_pid: int | None = None
) -> dict:
    """``concurrency`` clients, each sending its next request as soon as the previous answer arrives; with
    ``server_pid``, also the CPU the server's processes spent per answered request while measured."""
    import aiohttp
    import process_cpu

    latencies, statuses = [], Counter()
    headers = {"Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout
    ) as session:

        async def client(k: int, until: float, record: bool) -> None:
            i = k
            while time.perf_counter() < until:
                start = time.perf_counter()
                async with session.post(url, data=payloads[i % len(payloads)], headers=headers) as response:
                    await response.read()
                if record:
                    statuses[response.status] += 1
                    if response.status == 200:
                        latencies.append(time.perf_counter() - start)
                if response.status == 503:  # a well-behaved client waits as told (capped at 1 s)
                    await asyncio.sleep(min(1.0, float(response.headers.get("Retry-After", "1"))))
                i += concurrency

        await asyncio.gather(*(client(k, time.perf_counter() + WARMUP_S, False) for k in range(concurrency)))
        pids = process_cpu.descendants(server_pid) if server_pid and process_cpu.available() else []
        cpu_before = process_cpu.cpu_seconds(pids)
        began = time.perf_counter()
        await asyncio.gather(*(client(k, began + seconds, True) for k in range(concurrency)))
        elapsed = time.perf_counter() - began
        cpu_after = process_cpu.cpu_seconds(pids)
    ok = statuses.get(200, 0)
    spent = {pid: cpu_after[pid] - cpu_before[pid] for pid in cpu_after if pid in cpu_before}
    return {
        "cpu_ms_per_request": 1000 * sum(spent.values()) / ok if spent and ok else None,
        "main_cpu_ms_per_request": 1000 * spent[server_pid] / ok if server_pid in spent and ok else None,
        "rps": ok / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "requests": sum(statuses.values()),
        "errors": sum(statuses.values()) - ok,
        "statuses": dict(statuses),
    }


async def open_loop(url: str, payloads: list[bytes], rate: float, seconds: float, prefix: str) -> dict:
    """Requests at a fixed rate (never more than MAX_IN_FLIGHT at once), each with request id
    ``<prefix><n>``."""
    import aiohttp

    latencies, statuses, tasks = [], Counter(), []
    skipped = 0
    semaphore = asyncio.Semaphore(MAX_IN_FLIGHT)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT), timeout=aiohttp.ClientTimeout(total=60)
    ) as session:

        async def send(n: int) -> None:
            async with semaphore:
                start = time.perf_counter()
                headers = {"Content-Type": "application/json", "X-Request-Id": f"{prefix}{n}"}
                try:
                    async with session.post(
                        url, data=payloads[n % len(payloads)], headers=headers
                    ) as response:
                        await response.read()
                        statuses[response.status] += 1
                except aiohttp.ClientError:
                    statuses["connection_error"] += 1
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) < began + seconds:
            due = began + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            if semaphore.locked():
                skipped += 1  # the client would exceed MAX_IN_FLIGHT: counted, not sent
            else:
                tasks.append(asyncio.create_task(send(n)))
            n += 1
        await asyncio.gather(*tasks)
    return {
        "sent": len(tasks),
        "skipped": skipped,
        "statuses": dict(statuses),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def count_logged(log_uri: str, model_name: str, prefix: str, since_s: float) -> int:
    """Primary rows logged since ``since_s`` whose request id starts with ``prefix``."""
    from driftloop.serving.online.prediction_log import PRIMARY, read_log

    log = read_log(log_uri, model_name, since_s=since_s, role=PRIMARY)  # not the grid's millions of rows
    return int(log["request_id"].str.startswith(prefix).sum())


def log_health(url: str) -> dict:
    """The service's prediction-log counters (``GET /version``): written, dropped and pending rows."""
    import urllib.request

    with urllib.request.urlopen(url + "/version", timeout=10) as response:
        return json.loads(response.read())["prediction_log"]


def wait_for_log_drain(url: str, timeout_s: float = 180) -> tuple[dict, float]:
    """Wait until the service's log queue is empty; returns its counters then and the seconds waited."""
    start = time.monotonic()
    while (health := log_health(url))["pending_rows"] and time.monotonic() - start < timeout_s:
        time.sleep(0.2)
    return health, time.monotonic() - start


def print_cells(results: dict[tuple, dict]) -> None:
    """Throughput, latency, errors and CPU per answered request of every (server, concurrency, rows) cell."""
    for (server, c, rows), r in sorted(results.items()):
        key = f"{server}.c{c}_rows{rows}"
        print(f"serving_rps.{key} {r['rps']:.1f}")
        print(f"serving_p50_ms.{key} {r['p50_ms']:.1f}")
        print(f"serving_p99_ms.{key} {r['p99_ms']:.1f}")
        print(f"serving_errors.{key} {r['errors']}")
        if r["cpu_ms_per_request"] is not None:  # all the server's processes, their native threads included
            print(f"serving_cpu_ms_per_request.{key} {r['cpu_ms_per_request']:.2f}")
        if server != "mlflow" and r["main_cpu_ms_per_request"] is not None:  # HTTP, parsing, routing
            print(f"serving_http_process_cpu_ms_per_request.{key} {r['main_cpu_ms_per_request']:.2f}")


def start_servers(servers: dict, env: dict, ours_env: dict, model_uri: str, with_baseline: bool) -> None:
    """Start ``mlflow models serve`` (with ``with_baseline``), ``driftloop serve`` with the bench's config and
    ``driftloop serve`` with the default serving config (champion only), each into ``servers`` as soon as it
    is up (so the caller stops whatever started): ``name -> (process, url, sends entity ids)``."""
    python_bin = Path(sys.executable).parent
    if with_baseline:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [str(python_bin / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
        command += ["-h", "127.0.0.1", "-p", str(port)]
        servers["mlflow"] = (start_server(command, env, url, "/ping"), url, False)
    ours = [str(python_bin / "driftloop"), "serve", "--log-level", "warning"]
    url = f"http://127.0.0.1:{ours_env['DRIFTLOOP_SERVE_PORT']}"
    servers["driftloop"] = (start_server(ours, ours_env, url, "/ready"), url, True)
    # The default serving config (champion only: no A/B, no shadow) does the same work per request as MLflow;
    # measured at concurrency 1, where a request's own path decides.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    single_config = json.dumps({**FAST, "serving": {"challenger_share": 0.0, "shadow": False}})
    single_env = {**ours_env, "DRIFTLOOP_SERVE_PORT": str(port), "DRIFTLOOP_CONFIG_OVERRIDES": single_config}
    servers[SINGLE] = (start_server(ours, single_env, url, "/ready"), url, True)


def print_ratios(results: dict[tuple, dict], scenarios: list[tuple[int, int]]) -> None:
    """Throughput of ours over MLflow's in every cell measured for both (the champion-only server's too)."""
    for server, key in (("driftloop", ""), (SINGLE, f"{SINGLE}.")):
        for c, rows in scenarios:
            if (server, c, rows) in results:
                ratio = results[(server, c, rows)]["rps"] / max(results[("mlflow", c, rows)]["rps"], 1e-9)
                print(f"serving_speedup_vs_mlflow.{key}c{c}_rows{rows} {ratio:.2f}")


def main() -> int:  # noqa: PLR0915 - one linear script, figure by figure
    reuse = os.environ.get("BENCH_SERVING_WORKDIR", "")  # development: keep the trained model between runs
    work = Path(reuse) if reuse else Path(tempfile.mkdtemp(prefix="driftloop-bench-serving-"))
    env = {
        **os.environ,
        "DRIFTLOOP_HOME": str(work / "home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "DRIFTLOOP_CONFIG_OVERRIDES": json.dumps(FAST),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }  # mlflow runs `uvicorn`
    os.environ.update(env)
    from driftloop.core.config import load_dataset_config
    from driftloop.core.registry import load_model
    from driftloop.core.settings import Settings
    from driftloop.data.sources import load_source_frame
    from driftloop.serving.online.prediction_log import log_uri

    settings = Settings.from_env()
    cfg = load_dataset_config("telco_churn", settings)
    print(f"serving_machine_load_1m.start {os.getloadavg()[0]:.2f}")  # other processes share the cores
    prepared = work / "champion.json"
    if reuse and prepared.is_file():
        champion = json.loads(prepared.read_text())
    else:
        champion = prepare_models(cfg, settings)
        prepared.write_text(json.dumps(champion))
    frame = load_source_frame(cfg)
    all_costs = per_call_cost_s(load_model(champion["model_uri"], settings), frame, cfg)
    print(
        "\n".join(
            f"serving_{kind}_call_ms.rows_{n} {s * 1000:.2f}"
            for kind in all_costs
            for n, s in all_costs[kind].items()
        )
    )
    costs = all_costs["served"]
    from driftloop.serving.online.service import worker_count

    workers = worker_count(
        Settings.from_env(
            {**os.environ, "DRIFTLOOP_SERVE_WORKERS": os.environ.get("DRIFTLOOP_SERVE_WORKERS", "0")}
        )
    )[0]
    print(f"serving_cores {os.cpu_count()}")
    print(f"serving_workers {workers}")

    ours_port = free_port()
    ours_url = f"http://127.0.0.1:{ours_port}"
    scenarios = [(c, rows) for rows in GRID_ROWS for c in GRID_CONCURRENCY]
    payloads = {
        (rows, ids): bodies(cfg, frame, rows, {1: 200, 100: 30}.get(rows, 8), ids)
        for rows in GRID_ROWS
        for ids in (False, True)
    }
    results: dict[tuple, dict] = {}

    only = os.environ.get("BENCH_SERVING_ONLY", "")  # development: "driftloop" skips the baseline
    ours_env = {
        **env,
        "DRIFTLOOP_SERVE_PORT": str(ours_port),
        "DRIFTLOOP_SERVE_HOST": "127.0.0.1",
        "DRIFTLOOP_SERVE_WORKERS": os.environ.get("DRIFTLOOP_SERVE_WORKERS", "0"),
    }
    # The servers run side by side (an idle server costs nothing) and every scenario measures one right after
    # the other, so all see the same machine: the other processes on these cores come and go.
    servers = {}
    try:
        start_servers(servers, env, ours_env, champion["model_uri"], with_baseline=only != "driftloop")
        for c, rows in scenarios:
            for name, (process, url, with_ids) in servers.items():
                if name == SINGLE and c != 1:
                    continue
                results[(name, c, rows)] = asyncio.run(
                    closed_loop(url + "/invocations", payloads[(rows, with_ids)], c, SECONDS, process.pid)
                )
        for name in ("mlflow", SINGLE):
            if name in servers:
                stop_server(servers.pop(name)[0])
        # The saturated 1,000-row cells leave a backlog in the log queue (rows beyond its bound were dropped
        # and counted); the open load measures the steady state, so it starts once the backlog is written.
        grid_log, drain_s = wait_for_log_drain(ours_url)
        c16 = results[("driftloop", 16, 1)]["rps"]
        rate = max(1.0, LOAD_SHARE * c16)
        prefix = f"load-{os.urandom(4).hex()}-"
        load_started_s = time.time()
        load = asyncio.run(
            open_loop(ours_url + "/invocations", payloads[(1, True)], rate, LOAD_SECONDS, prefix)
        )
        import urllib.request

        load_log = log_health(ours_url)
        with urllib.request.urlopen(ours_url + "/metrics", timeout=10) as response:
            (work / "metrics.txt").write_bytes(response.read())  # the service's own view, for the full log
    finally:
        for process, _, _ in servers.values():
            stop_server(process)  # ours stops gracefully: the prediction log is written out before it exits

    print_cells(results)
    if only != "driftloop":
        print_ratios(results, scenarios)
    for c, rows in scenarios:
        calls = 2 if c > 1 else 1  # with 50 % A/B, the requests in flight hold both arms: two calls per round
        # The batcher merges the requests in flight: each call scores about rows x c / calls rows.
        per_call = rows * c / calls
        size = next((n for n in COST_ROWS if n >= per_call), COST_ROWS[-1])
        ceiling = c / (calls * costs[size]) * min(workers, calls)  # calls of both arms on parallel workers
        measured = results[("driftloop", c, rows)]["rps"]
        print(f"serving_ceiling_rps.c{c}_rows{rows} {ceiling:.1f}")
        print(f"serving_share_of_ceiling.c{c}_rows{rows} {measured / ceiling:.2f}")
    print(f"serving_machine_load_1m.end {os.getloadavg()[0]:.2f}")
    five_xx = sum(v for k, v in load["statuses"].items() if str(k).startswith("5") or k == "connection_error")
    logged = count_logged(log_uri(cfg, settings), cfg.registered_model_name, prefix, load_started_s - 1)
    print(f"serving_log_written_rows.grid {grid_log['written_rows']}")
    print(f"serving_log_dropped_rows.grid {grid_log['dropped_rows']}")
    print(f"serving_log_drain_s.after_grid {drain_s:.1f}")
    print(f"serving_log_dropped_rows.load {load_log['dropped_rows'] - grid_log['dropped_rows']}")
    print(f"serving_load_rate_rps {rate:.1f}")
    print(f"serving_load_seconds {LOAD_SECONDS:.0f}")
    print(f"serving_load_sent {load['sent']}")
    print(f"serving_load_skipped {load['skipped']}")
    print(f"serving_load_5xx {five_xx}")
    print(f"serving_load_p50_ms {load['p50_ms']:.1f}")
    print(f"serving_load_p99_ms {load['p99_ms']:.1f}")
    answered = load["statuses"].get(200, 0)
    print(f"serving_load_answered {answered}")
    print(f"serving_load_logged_rows {logged}")
    print(f"serving_load_logged_equals_answered {int(logged == answered)}")
    print(f"serving_load_logged_equals_sent {int(logged == load['sent'])}")
    print(
        json.dumps({"statuses": load["statuses"], "scenarios": {str(k): v for k, v in results.items()}}),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
