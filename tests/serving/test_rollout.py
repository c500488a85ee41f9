"""Staged rollout: the verdict on a stage's evidence, the config, and whole rollouts through the real service
(a worse challenger rolled back in the first stage with evidence, an equal or better one made champion)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from driftloop.core import bus
from driftloop.core.serving_config import RolloutConfig, RolloutGuardrails
from driftloop.serving.online.rollout_evidence import StageEvidence, judge_stage, paired_difference

STAGES = RolloutConfig(stages=("shadow", 5, 25, 100), min_rows_per_stage=200, min_labelled_per_stage=100)


def evidence(**changes) -> StageEvidence:
    """A stage that has everything it needs to advance, changed by ``changes``."""
    base = StageEvidence(
        stage="shadow",
        challenger_rows=300,
        challenger_errors=0,
        challenger_p99_ms=20.0,
        champion_p99_ms=18.0,
        pairs=300,
        labelled_pairs=300,
        accuracy_diff=0.0,
        diff_low=-0.01,
        diff_high=0.01,
        estimated_diff=None,
    )
    return dataclasses.replace(base, **changes)


def test_a_stage_with_its_evidence_in_advances_to_the_next_share_then_completes():
    assert judge_stage(STAGES, evidence()).next_stage == "5"
    assert judge_stage(STAGES, evidence(stage="5")).next_stage == "25"
    last = judge_stage(STAGES, evidence(stage="25"))
    assert (last.action, last.next_stage) == (bus.ROLLOUT_ADVANCE, bus.ROLLOUT_COMPLETED)
    assert "becomes champion" in last.reason


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"challenger_rows": 199}, "199 of 200 challenger rows"),
        ({"labelled_pairs": 99}, "99 of 100 labelled pairs"),
        ({"diff_low": -0.021, "accuracy_diff": -0.005}, "non-inferiority not shown"),
    ],
)
def test_a_stage_holds_until_its_evidence_is_in_and_says_what_is_missing(changes, missing):
    verdict = judge_stage(STAGES, evidence(**changes))
    assert (verdict.action, verdict.next_stage) == (bus.ROLLOUT_HOLD, None)
    assert missing in verdict.reason


@pytest.mark.parametrize(
    ("changes", "broken"),
    [
        ({"challenger_errors": 4}, "error share 7.41% (4 of 54 rows) > 1.00%"),
        ({"challenger_p99_ms": 37.0}, "p99 latency 37 ms > 2 x the champion's 18 ms"),
        ({"accuracy_diff": -0.05, "diff_low": -0.08, "diff_high": -0.02}, "live accuracy credibly worse"),
        # Before labels: the estimate decides.
        ({"labelled_pairs": 10, "estimated_diff": -0.04}, "estimated accuracy -0.040"),
    ],
)
def test_a_broken_guardrail_rolls_back_at_once_even_before_the_stage_has_its_rows(changes, broken):
    verdict = judge_stage(STAGES, evidence(challenger_rows=50, **changes))
    assert (verdict.action, verdict.next_stage) == (bus.ROLLOUT_ROLL_BACK, bus.ROLLOUT_ROLLED_BACK)
    assert broken in verdict.reason


def test_guardrails_that_hold_roll_nothing_back():
    # Within limits, an absolute latency cap that is not exceeded, an estimate once labels decide.
    guarded = dataclasses.replace(STAGES, guardrails=RolloutGuardrails(max_p99_latency_ms=25.0))
    verdict = judge_stage(guarded, evidence(challenger_errors=3, challenger_p99_ms=24.0, estimated_diff=-0.2))
    assert verdict.action == bus.ROLLOUT_ADVANCE, verdict.reason
    too_slow = judge_stage(guarded, evidence(challenger_p99_ms=26.0))
    assert too_slow.action == bus.ROLLOUT_ROLL_BACK and "26 ms > 25 ms" in too_slow.reason
    # A few labelled pairs are not enough to call the challenger worse, whatever they say.
    few = judge_stage(STAGES, evidence(labelled_pairs=29, accuracy_diff=-0.3, diff_high=-0.1))
    assert few.action == bus.ROLLOUT_HOLD


def test_the_paired_bounds_match_a_textbook_one_sided_interval():
    from scipy import stats

    champion = [1, 1, 0, 1, 0, 1, 1, 1, 0, 1] * 10
    challenger = [1, 0, 0, 1, 0, 1, 0, 1, 0, 1] * 10
    diff, low, high = paired_difference(challenger, champion, 0.05)
    d = [a - b for a, b in zip(challenger, champion, strict=True)]
    half = stats.norm.ppf(0.95) * stats.tstd(d) / len(d) ** 0.5
    assert diff == pytest.approx(-0.2)
    assert (low, high) == (pytest.approx(-0.2 - half), pytest.approx(-0.2 + half))


def test_rollout_stages_are_validated_with_the_file_and_the_reason():
    import yaml

    from driftloop.core.config import parse_dataset_config
    from driftloop.core.errors import ConfigError
    from tests.config_copies import SHIPPED_DIR

    raw = yaml.safe_load((SHIPPED_DIR / "telco_churn.yaml").read_text())
    for stages, reason in [
        (["shadow", 25, 5, 100], "shares must increase"),
        ([5, "shadow", 100], "shadow can only be the first stage"),
        (["shadow", 5, 25], "the last stage must be 100"),
        (["canary", 100], "rollout.stages"),
    ]:
        with pytest.raises(ConfigError, match=reason):
            parse_dataset_config({**raw, "rollout": {"stages": stages}}, "x.yaml")
    ok = parse_dataset_config({**raw, "rollout": {"stages": ["shadow", 5, 100]}}, "x.yaml")
    assert ok.rollout.stages == ("shadow", 5, 100)
    assert parse_dataset_config(raw, "x.yaml").rollout.stages == ()  # off by default


@pytest.fixture
def staged(cfg):
    """The serving tests' config with a rollout of shadow, 5 %, 25 %, then champion."""
    return dataclasses.replace(
        cfg,
        rollout=RolloutConfig(
            stages=("shadow", 5, 25, 100), min_rows_per_stage=200, min_labelled_per_stage=100
        ),
    )


def _rollout_history(cfg, version):
    from driftloop.governance import audit
    from driftloop.governance.rollout_state import rollout_entries

    return [
        (e["from_stage"], e["to_stage"])
        for e in rollout_entries(audit.open_store(), cfg.registered_model_name, version)
    ]


def test_a_worse_challenger_is_rolled_back_in_shadow_before_it_answers_anyone(
    staged, serve_env, telco_frame, good_model, flipped_model
):
    from driftloop.core.registry import resolve_alias
    from tests.serving.rollout_sim import simulate_rollout

    run = simulate_rollout(staged, good_model, flipped_model, telco_frame)
    assert [(r["stage"], r["action"]) for r in run.rounds] == [("shadow", bus.ROLLOUT_ROLL_BACK)], run.rounds
    assert "live accuracy credibly worse" in run.rounds[0]["reason"]
    assert (run.final_stage, run.champion_after, run.answered_by_challenger) == (
        bus.ROLLOUT_ROLLED_BACK,
        run.champion_version,
        0,
    )
    assert resolve_alias(staged, bus.CHALLENGER) is None  # the service stops scoring it
    assert _rollout_history(staged, run.challenger_version) == [
        (None, "shadow"),
        ("shadow", bus.ROLLOUT_ROLLED_BACK),
    ]


def test_a_worse_challenger_without_a_shadow_stage_is_rolled_back_within_its_first_share(
    staged, serve_env, telco_frame, good_model, flipped_model
):
    from tests.serving.rollout_sim import simulate_rollout

    canary = dataclasses.replace(staged, rollout=dataclasses.replace(staged.rollout, stages=(5, 25, 100)))
    run = simulate_rollout(canary, good_model, flipped_model, telco_frame, rows_per_round=400)
    assert [(r["stage"], r["action"]) for r in run.rounds] == [("5", bus.ROLLOUT_ROLL_BACK)], run.rounds
    # Sticky hashing sends about 5 % of the entities to it: the only traffic the worse model answered.
    assert 0 < run.answered_by_challenger < 0.12 * run.answered, run


def test_an_equal_challenger_goes_through_every_stage_and_becomes_champion_once(
    staged, serve_env, telco_frame, good_model
):
    from driftloop.core.alerts import rollout_alerts
    from driftloop.governance import audit
    from driftloop.serving.online.rollout import advance_rollout
    from tests.serving.rollout_sim import simulate_rollout

    run = simulate_rollout(staged, good_model, good_model, telco_frame)
    assert [(r["stage"], r["next_stage"]) for r in run.rounds] == [
        ("shadow", "5"),
        ("5", "25"),
        ("25", bus.ROLLOUT_COMPLETED),
    ], run.rounds
    assert (run.final_stage, run.champion_after) == (bus.ROLLOUT_COMPLETED, run.challenger_version)
    # The share stages really routed traffic to it: 5 % then 25 % of the entities.
    shares = [r["answered_by_challenger"] / 300 for r in run.rounds]
    assert shares[0] == 0 and 0 < shares[1] < 0.12 and 0.12 < shares[2] < 0.4, shares
    moves = [
        e
        for e in audit.open_store().entries(staged.registered_model_name)
        if e["to_version"] == run.challenger_version
    ]
    assert [(m["from_version"], m["actor"]) for m in moves] == [(run.champion_version, "simulation")]
    assert _rollout_history(staged, run.challenger_version) == [
        (None, "shadow"), ("shadow", "5"), ("5", "25"), ("25", bus.ROLLOUT_COMPLETED)
    ]  # fmt: skip
    # Asked again with nothing new: nothing moves, nothing is recorded or alerted twice.
    again = advance_rollout(staged, actor="simulation")
    assert again["action"] == "none" and not again.get("rollout_entries")
    from driftloop.core.settings import Settings

    assert rollout_alerts(staged.name, staged.registered_model_name, again, Settings.from_env()) == []
    assert len(_rollout_history(staged, run.challenger_version)) == 4


def test_a_better_challenger_reaches_all_traffic(staged, serve_env, telco_frame, good_model, flipped_model):
    from tests.serving.rollout_sim import simulate_rollout

    run = simulate_rollout(staged, flipped_model, good_model, telco_frame)
    assert run.rounds[-1]["next_stage"] == bus.ROLLOUT_COMPLETED and len(run.rounds) == 3, run.rounds
    assert run.champion_after == run.challenger_version


def test_a_slower_challenger_passes_shadow_and_is_rolled_back_in_its_first_share(
    staged, serve_env, telco_frame, good_model
):
    from tests.serving.helpers import SlowModel
    from tests.serving.rollout_sim import simulate_rollout

    # One customer per request, so the challenger answers some requests alone; nobody waits for a shadow. The
    # absolute limit decides whatever the load does to the champion's p99 (the ratio is tested on its own).
    guarded = dataclasses.replace(
        staged,
        rollout=dataclasses.replace(staged.rollout, guardrails=RolloutGuardrails(max_p99_latency_ms=100)),
    )
    run = simulate_rollout(guarded, good_model, SlowModel(good_model, 0.15), telco_frame, request_rows=1)
    assert [(r["stage"], r["action"]) for r in run.rounds] == [
        ("shadow", bus.ROLLOUT_ADVANCE),
        ("5", bus.ROLLOUT_ROLL_BACK),
    ], run.rounds
    assert "p99 latency" in run.rounds[-1]["reason"] and run.champion_after == run.champion_version


def test_requests_the_challenger_fails_are_logged_as_its_error_rows(cfg, serve_env, telco_frame, good_model):
    import httpx

    from driftloop.core.settings import Settings
    from driftloop.serving.online.app import create_app
    from driftloop.serving.online.prediction_log import ERROR, log_uri, read_log
    from driftloop.serving.online.rollout_evidence import gather_evidence
    from tests.serving.helpers import POISON_CHARGES, LiveServer, PoisonModel, register_model, split_body

    register_model(cfg, good_model, telco_frame, alias=bus.CHAMPION)
    challenger, _ = register_model(cfg, PoisonModel(good_model), telco_frame, alias=bus.CHALLENGER)
    rows = telco_frame.iloc[3000:3010].copy()
    poisoned = rows.assign(monthly_charges=POISON_CHARGES).iloc[:3]
    with (
        LiveServer(create_app(cfg, Settings.from_env())) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        server.service.set_routing({"challenger_share": 1.0})
        assert client.post("/invocations", json=split_body(cfg, rows)).status_code == 200
        failed = client.post("/invocations", json=split_body(cfg, poisoned))
        assert failed.status_code == 422 and failed.json()["error_code"] == "MODEL_ERROR"
        server.service.log.close()
    log_df = read_log(log_uri(cfg, Settings.from_env()), cfg.registered_model_name)
    errors = log_df[log_df["role"] == ERROR]
    assert (len(errors), set(errors["arm"]), set(errors["model_version"])) == (
        3,
        {bus.CHALLENGER},
        {challenger},
    )
    from driftloop.core.task_types import read_decision

    evidence = gather_evidence(
        "25", log_df, telco_frame.set_index(cfg.id_column)[cfg.target].iloc[:0], read_decision(cfg, {}), 0.01
    )
    assert (evidence.challenger_rows, evidence.challenger_errors) == (10, 3)
    assert evidence.error_share == pytest.approx(3 / 13)


def test_a_running_rollout_follows_the_plan_it_began_with(staged, serve_env, telco_frame, good_model):
    from driftloop.governance.rollout_state import begin_rollout
    from driftloop.serving.online.rollout import advance_rollout
    from tests.serving.helpers import register_model
    from tests.serving.rollout_sim import log_shadow_pairs

    champion, _ = register_model(staged, good_model, telco_frame, alias=bus.CHAMPION)
    challenger, _ = register_model(staged, good_model, telco_frame)
    begin_rollout(staged, challenger, actor="test", reason="passed the gate")
    log_shadow_pairs(staged, champion, challenger, challenger_right=True, pairs=250)
    # The config is edited while the rollout runs (no shadow, far more rows): the rollout keeps its plan.
    edited = dataclasses.replace(
        staged, rollout=dataclasses.replace(staged.rollout, stages=(50, 100), min_rows_per_stage=100_000)
    )
    result = advance_rollout(edited, actor="test")
    assert (result["stage"], result["next_stage"]) == ("shadow", "5"), result["reason"]


def test_the_rollout_command_begins_shows_and_stops_a_rollout_audited_and_alerted(
    staged, serve_env, telco_frame, good_model, capsys
):
    from driftloop import cli
    from driftloop.core.registry import resolve_alias
    from driftloop.core.tracking import get_client
    from tests.alert_sinks import WebhookReceiver
    from tests.serving.helpers import register_model

    register_model(staged, good_model, telco_frame, alias=bus.CHAMPION)
    challenger, _ = register_model(staged, good_model, telco_frame)
    # The shipped config, pointed at this test's model, with a rollout section: as an operator's override.
    overrides = {
        "model_name": staged.registered_model_name,
        "rollout": {"stages": ["shadow", 5, 25, 100], "min_rows_per_stage": 200},
    }
    serve_env.setenv("DRIFTLOOP_CONFIG_OVERRIDES", json.dumps(overrides))
    hook = WebhookReceiver()
    serve_env.setenv("DRIFTLOOP_ALERT_WEBHOOK_URL", hook.url)
    argv = ["--dataset", "telco_churn", "rollout"]
    try:
        assert cli.main([*argv, "begin", "--version", challenger]) == 1  # never judged by the gate
        assert "only a version that passed the gate or was approved" in capsys.readouterr().err
        name = staged.registered_model_name
        get_client().set_model_version_tag(name, challenger, bus.GATE_TAG, bus.GATE_PASSED)
        assert cli.main([*argv, "begin", "--version", challenger, "--reason", "canary it"]) == 0
        assert resolve_alias(staged, bus.CHALLENGER)["model_version"] == challenger
        capsys.readouterr()
        assert cli.main([*argv, "status"]) == 0
        status = capsys.readouterr().out
        assert "shadow" in status and "0 of 200 challenger rows" in status, status
        assert cli.main([*argv, "stop", "--reason", "customer complaints"]) == 0
        assert resolve_alias(staged, bus.CHALLENGER) is None
        assert hook.kinds() == ["rollout_stage_changed", "rollout_stage_changed"]
        stopped = hook.bodies[1]["driftloop"]["fields"]
        assert stopped["to_stage"] == bus.ROLLOUT_ROLLED_BACK and stopped["actor"].startswith("cli:")
        assert stopped["reason"] == "stopped by hand: customer complaints"
    finally:
        hook.stop()
