"""Data starts the loop when it lands, on the real embedded stack (what `make up` starts) with the default
settings (``DRIFTLOOP_DATA_SCHEDULE=on_arrival``, a look every 5 s): nothing runs while nothing lands, an
upload in progress is not an arrival, a batch starts ``data_pipeline`` within 15 s, and once.

``bench/bench_arrival.py`` measures the same on more files and a longer idle period.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from driftloop.core import bus

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1200, method="thread")]

DATASET = "telco_churn"
WITHIN_S = 15.0  # issue 27: a batch waits seconds, not the old cron's 10 minutes
IDLE_S = 30.0  # six looks at the default poll


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The embedded stack under a temporary home on free ports, with the default data schedule."""
    from driftloop_ops.airflow_api import AirflowClient, read_generated_password
    from driftloop_ops.embedded import temporary_stack

    names = ("DRIFTLOOP_DATA_SCHEDULE", "DRIFTLOOP_LANDING_POKE_S", "DRIFTLOOP_CONFIG_OVERRIDES")
    saved = {k: os.environ.pop(k) for k in names if k in os.environ}
    extra = {"DRIFTLOOP_DATASETS": DATASET, "DRIFTLOOP_PROFILE_MAX_ROWS": "0"}
    try:
        with temporary_stack(tmp_path_factory.mktemp("arrival-stack"), extra) as layout:
            api = AirflowClient(layout.airflow_url, "admin", read_generated_password(layout.password_file))
            yield layout, api
    finally:
        os.environ.update(saved)


def watch_started(triggerer_log: Path) -> bool:
    return triggerer_log.exists() and f"landing watch of {DATASET}: listing" in triggerer_log.read_text()


def test_a_landed_batch_starts_data_pipeline_within_15_s_once_and_nothing_runs_while_nothing_lands(stack):
    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings
    from driftloop.core.state import StatePaths
    from driftloop.data import simulate
    from driftloop_ops.airflow_api import wait_until

    layout, api = stack
    settings = Settings.from_env()
    cfg = load_dataset_config(DATASET, settings)
    data = bus.dag_id(DATASET, bus.DATA_PIPELINE)
    api.wait_for_dags([data], timeout_s=300)  # and unpause it, as an operator does
    wait_until(lambda: watch_started(layout.airflow_home / "triggerer.log"), 240, "the landing watch", 1.0)

    time.sleep(IDLE_S)
    assert api.run_ids(data) == set(), "data_pipeline ran while nothing landed"

    landing = StatePaths.for_dataset(cfg, settings).landing_dir
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "batch_009.csv.part").write_bytes(b"customer_id,tenure\n")  # an upload in progress
    simulate.simulate_batch(cfg, 1, rows=200, settings=settings)  # a hidden name renamed into place
    landed = time.time()
    run = api.wait_new_run(data, set(), run_type="asset_triggered", timeout_s=120)
    run_id = run["dag_run_id"]
    started = wait_until(lambda: api.dag_run(data, run_id).get("start_date"), 120, "the run's start", 0.2)
    latency_s = _epoch(started) - landed
    assert latency_s <= WITHIN_S, f"data_pipeline started {latency_s:.1f} s after the batch landed"
    api.wait_for_run(data, run_id, timeout_s=600, ok=("success",))

    time.sleep(3 * settings.landing_poll_s)  # the .part file is still there, batch_001 was ingested
    assert api.run_ids(data) == {run_id}, "a file was announced twice"
    assert sorted(p.name for p in landing.iterdir()) == ["batch_009.csv.part"]


def _epoch(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
