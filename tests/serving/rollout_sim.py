"""A staged rollout driven through the real service: traffic, labels, ``advance_rollout`` after each round.

Used by ``tests/serving/test_rollout.py`` (assertions) and ``bench/bench_rollout.py`` (figures): the champion
and the challenger are registered, the challenger's rollout begins as the gate would begin it, then each round
sends ``rows_per_round`` customers through ``POST /invocations`` in requests of ``request_rows``, posts their
true labels through ``POST /labels``, ingests them as ``data_pipeline`` does, waits for the prediction log and
runs ``ab_evaluation``'s ``advance_rollout``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from driftloop.core import bus
from tests.serving.helpers import LiveServer, register_model, split_body


@dataclass
class RolloutRun:
    """What a simulated rollout did, round by round."""

    champion_version: str
    challenger_version: str
    rounds: list[dict[str, Any]] = field(default_factory=list)  # stage, action, reason, answered rows
    answered_by_challenger: int = 0  # rows whose answer came from the challenger (its exposure)
    answered: int = 0
    final_stage: str | None = None
    champion_after: str | None = None


def _wait_for_log(service: Any, expected_rows: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if service.log.written_rows >= expected_rows and service.log.pending_rows == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"the prediction log wrote {service.log.written_rows} of {expected_rows} rows")


def _land_labels(cfg: Any, client: httpx.Client, rows: Any) -> None:
    from driftloop.data.ingest import ingest_labels

    body = {"labels": rows[[cfg.id_column, cfg.target]].astype(str).to_dict(orient="records")}
    response = client.post("/labels", json=body)
    assert response.status_code == 202, response.text
    assert ingest_labels(cfg)["quarantined"] == []


def simulate_rollout(
    cfg: Any,
    champion_model: Any,
    challenger_model: Any,
    frame: Any,
    *,
    max_rounds: int = 8,
    rows_per_round: int = 300,
    request_rows: int = 20,
    first_row: int = 3000,
) -> RolloutRun:
    """Roll ``challenger_model`` out against ``champion_model`` (see the module docstring)."""
    from driftloop.core.registry import resolve_alias
    from driftloop.core.settings import Settings
    from driftloop.core.tracking import get_client
    from driftloop.governance.rollout_state import begin_rollout, read_stage
    from driftloop.serving.online.app import create_app
    from driftloop.serving.online.rollout import advance_rollout

    champion_v, _ = register_model(cfg, champion_model, frame, alias=bus.CHAMPION)
    challenger_v, _ = register_model(cfg, challenger_model, frame)
    get_client().set_model_version_tag(cfg.registered_model_name, challenger_v, bus.GATE_TAG, bus.GATE_PASSED)
    begin_rollout(cfg, challenger_v, actor="simulation", reason="passed the gate")
    run = RolloutRun(champion_v, challenger_v)
    settings = Settings.from_env()
    with (
        LiveServer(create_app(cfg, settings)) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        service = server.service
        for number in range(max_rounds):
            server.run_coroutine(service.models.refresh())  # the poll, now: routing follows the stage
            start = first_row + number * rows_per_round
            rows = frame.iloc[start : start + rows_per_round]
            before = service.log.written_rows
            for offset in range(0, len(rows), request_rows):
                body = split_body(cfg, rows.iloc[offset : offset + request_rows])
                response = client.post("/invocations", json=body)
                assert response.status_code == 200, response.text
            _wait_for_log(service, before + 2 * len(rows))  # every stage scores each row with both models
            _land_labels(cfg, client, rows)
            stage_before = read_stage(get_client(), cfg, challenger_v).stage
            result = advance_rollout(cfg, settings, actor="simulation")
            answered = _answered_by_challenger(cfg, settings, challenger_v, rows)
            run.answered_by_challenger += answered
            run.answered += len(rows)
            run.rounds.append(
                {
                    "round": number,
                    "stage": stage_before,
                    "action": result["action"],
                    "next_stage": result.get("next_stage"),
                    "reason": result["reason"],
                    "answered_by_challenger": answered,
                    "rollout_entries": len(result.get("rollout_entries") or []),
                }
            )
            if result["action"] == "none" or result.get("next_stage") in bus.ROLLOUT_DONE:
                break
    run.final_stage = read_stage(get_client(), cfg, challenger_v).stage
    champion = resolve_alias(cfg, bus.CHAMPION)
    run.champion_after = champion["model_version"] if champion else None
    return run


def _answered_by_challenger(cfg: Any, settings: Any, version: str, rows: Any) -> int:
    """Rows of this round the challenger answered (primary rows of its version), from the prediction log."""
    from driftloop.serving.online.prediction_log import PRIMARY, log_uri, read_log

    log_df = read_log(log_uri(cfg, settings), cfg.registered_model_name, role=PRIMARY)
    ids = set(rows[cfg.id_column].astype(str))
    mine = log_df[(log_df["model_version"] == version) & log_df["entity_id"].isin(ids)]
    return int(len(mine))


def log_shadow_pairs(
    cfg: Any, champion: str, challenger: str, challenger_right: bool, pairs: int = 120
) -> None:
    """Write ``pairs`` served rows logged now (champion answers, the challenger in the shadow, right on every
    row or wrong on every row) straight into the prediction log, and land and ingest their labels."""
    import pandas as pd

    from driftloop.core.settings import Settings
    from driftloop.core.state import StatePaths
    from driftloop.data.ingest import ingest_labels
    from driftloop.serving.online.prediction_log import LogEntry, PredictionLogWriter, log_uri

    writer = PredictionLogWriter(log_uri(cfg, Settings.from_env()), cfg.registered_model_name, 10 * pairs)
    writer.start()
    experiment, now = bus.ab_experiment_id(champion, challenger), time.time()
    truth = ["Yes" if i % 3 == 0 else "No" for i in range(pairs)]
    for i, label in enumerate(truth):
        wrong = "No" if label == "Yes" else "Yes"
        for role, arm, version, said in (
            ("primary", bus.CHAMPION, champion, label),
            ("shadow", bus.CHALLENGER, challenger, label if challenger_right else wrong),
        ):
            writer.submit(
                LogEntry(now + i * 1e-3, f"req-{i}", role, [0], [f"E-{i:05d}"], [arm], [version], experiment,
                         [0.8 if said == "Yes" else 0.2], [said], None, 5.0 if role == "primary" else None,
                         {"tenure": [1]} if role == "primary" else {})
            )  # fmt: skip
    writer.close()
    landing = StatePaths.for_dataset(cfg).labels_landing_dir
    landing.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({cfg.id_column: [f"E-{i:05d}" for i in range(pairs)], cfg.target: truth}).to_csv(
        landing / f"labels-{uuid.uuid4().hex[:6]}.csv", index=False
    )
    assert ingest_labels(cfg)["quarantined"] == []
