"""A staged rollout under sequences of events: a Hypothesis state machine drives the real rollout (its
start, ``advance_rollout``, the promotion lock, the rollout and champion audit logs) against the session's
MLflow store.

Nothing in the rollout is faked. The served traffic is written straight into the prediction log, as the
service writes it for the stage's routing (shadow pairs, the challenger's sticky share, ``error`` rows), so a
step costs milliseconds instead of an HTTP round; the champion and the challenger are copies of one registered
model (their predictions are written by the test: the champion always right, the challenger always right or
always wrong, chosen per sequence), so the verdict each stage deserves is known without recomputing it.

Steps: the rollout begins (and is begun again: a retried promotion, a second approval), traffic is served
(some of it failing), labels land, ``advance_rollout`` runs (twice in a row: a retried task; two at once, or
one running to its end while another sits between its verdict and its action: racing tasks), a person moves
``champion`` by hand, and a rollout's completing champion move is made without its stage entry (the process
died between the two). After every step the invariants below hold, and the model of the rollout kept here
agrees with the registry.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from driftloop.core import bus

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

STAGES = ("shadow", 5, 25, 100)
ORDER = ["shadow", "5", "25", bus.ROLLOUT_COMPLETED]  # the stages a rollout enters, in order
MIN_ROWS, MIN_LABELLED = 40, 30  # 30: the labelled pairs a rollback on accuracy needs (MIN_TEST_PAIRS)
ROLLOUT_ACTOR = "ab_evaluation/sequence"
EXAMPLES = int(os.environ.get("DRIFTLOOP_ROLLOUT_EXAMPLES", "15"))
STEPS = int(os.environ.get("DRIFTLOOP_ROLLOUT_STEPS", "12"))
REACHED: Counter[tuple[str, str | None]] = Counter()  # (step, stage entered): what the sequences exercised
PERSON = "cli:on-call"


@dataclasses.dataclass
class Served:
    """One entity the test served: what the evidence of its stage counts."""

    entity: str
    epoch: int  # the stage it was served in (a counter of stages entered)
    champion: str  # the champion version of its experiment
    failed: bool  # the challenger failed it (an ``error`` row, no pair)
    truth: bool
    labelled: bool = False


@dataclasses.dataclass
class World:
    """What every sequence shares: the base config and one registered model to copy versions from."""

    base: Any
    source: str
    run_id: str
    tags: dict[str, str]


@pytest.fixture
def rollout_world(cfg, serve_env, telco_frame, good_model):
    from driftloop.core.tracking import get_client
    from tests.serving.helpers import register_model

    version, run_id = register_model(cfg, good_model, telco_frame)
    template = get_client().get_model_version(cfg.registered_model_name, version)
    staged = dataclasses.replace(
        cfg,
        rollout=dataclasses.replace(
            cfg.rollout, stages=STAGES, min_rows_per_stage=MIN_ROWS, min_labelled_per_stage=MIN_LABELLED
        ),
    )
    return World(staged, template.source, run_id, dict(template.tags))


class RolloutSequence(RuleBasedStateMachine):
    """One challenger's rollout against its champion, with a model of where it should stand."""

    world: World

    def __init__(self) -> None:
        super().__init__()
        from driftloop.core.settings import Settings
        from driftloop.core.tracking import get_client

        suffix = uuid.uuid4().hex[:8]
        self.cfg = dataclasses.replace(
            self.world.base, name=f"rollout_{suffix}", model_name=f"rollout-{suffix}"
        )
        self.settings = Settings.from_env()
        self.client = get_client(self.settings)
        self.name = self.cfg.registered_model_name
        self.client.create_registered_model(self.name)
        # v1 the champion, v2 the challenger, v3 a version a person may make champion meanwhile.
        self.champion_v, self.challenger_v, self.other_v = (self._copy_version() for _ in range(3))
        for version in (self.champion_v, self.challenger_v):
            self.client.set_model_version_tag(self.name, version, bus.GATE_TAG, bus.GATE_PASSED)
        from driftloop.governance.promotion import set_champion

        set_champion(
            self.cfg, self.champion_v, actor="setup", reason="the first champion", settings=self.settings
        )
        # The model: where the rollout should stand.
        self.stage: str | None = None
        self.epoch = 0
        self.champion = self.champion_v
        self.challenger_alias = False
        self.served: list[Served] = []
        self.bad = False
        self.person_completed = False  # a person made the challenger champion during its rollout
        self.trace: list[Any] = []  # what the tasks did (failure messages)

    def _copy_version(self) -> str:
        version = self.client.create_model_version(self.name, self.world.source, self.world.run_id)
        for key, value in self.world.tags.items():
            if key.startswith(bus.PREFIX):
                self.client.set_model_version_tag(self.name, version.version, key, value)
        return str(version.version)

    # --- reading the real state ---
    def _real_stage(self) -> str | None:
        from driftloop.governance.rollout_state import read_stage

        return read_stage(self.client, self.cfg, self.challenger_v).stage

    def _rollout_entries(self) -> list[dict[str, Any]]:
        from driftloop.governance import audit
        from driftloop.governance.rollout_state import rollout_entries

        return rollout_entries(audit.open_store(self.settings), self.name, self.challenger_v)

    def _champion_entries(self) -> list[dict[str, Any]]:
        from driftloop.governance import audit

        return audit.open_store(self.settings).entries(self.name)

    def _alias(self, alias: str) -> str | None:
        from driftloop.core.registry import resolve_alias

        found = resolve_alias(self.cfg, alias, self.settings)
        return found["model_version"] if found else None

    # --- the model's verdict ---
    def _expected(self) -> tuple[str, str | None, int]:
        """(action, stage entered, champion moves) that ``advance_rollout`` should make now."""
        active = self.stage is not None and self.stage not in bus.ROLLOUT_DONE
        if self.champion == self.challenger_v:  # champion moved (by a person, or by a try that died)
            return (bus.ROLLOUT_ADVANCE, bus.ROLLOUT_COMPLETED, 0) if active else ("none", None, 0)
        if self.stage == bus.ROLLOUT_COMPLETED and self.challenger_alias:  # a try died before its move
            return "none", None, 1
        if not active or not self.challenger_alias:
            return "none", None, 0
        return self._verdict_on_evidence()

    def _verdict_on_evidence(self) -> tuple[str, str | None, int]:
        """What the stage's rows (served since it began, under the current champion) deserve."""
        rows = [s for s in self.served if s.epoch == self.epoch and s.champion == self.champion]
        answered = [s for s in rows if not s.failed]
        failed = len(rows) - len(answered)
        labelled = sum(s.labelled for s in answered)
        if rows and failed / len(rows) > self.cfg.rollout.guardrails.max_error_share:
            return bus.ROLLOUT_ROLL_BACK, bus.ROLLOUT_ROLLED_BACK, 0
        if self.bad and labelled >= MIN_LABELLED:
            return bus.ROLLOUT_ROLL_BACK, bus.ROLLOUT_ROLLED_BACK, 0
        if len(answered) < MIN_ROWS or labelled < MIN_LABELLED:
            return bus.ROLLOUT_HOLD, None, 0
        following = ORDER[ORDER.index(self.stage) + 1]
        return bus.ROLLOUT_ADVANCE, following, int(following == bus.ROLLOUT_COMPLETED)

    def _apply(self, entered: str | None, moves: int) -> None:
        """The model after the rollout entered ``entered`` (None: nothing) and made ``moves``."""
        if moves:
            self.champion, self.challenger_alias = self.challenger_v, False  # a champion is no challenger
            REACHED["moved champion", None] += 1
        if entered is None:
            return
        if entered == bus.ROLLOUT_ROLLED_BACK:
            self.challenger_alias = False
        self.stage = entered
        self.epoch += 1

    @staticmethod
    def _moves(*results: dict[str, Any]) -> list[dict[str, Any]]:
        return [m for r in results for m in r.get("recorded_moves") or [] if m["actor"] == ROLLOUT_ACTOR]

    def _advance(self) -> dict[str, Any]:
        from driftloop.serving.online.rollout import advance_rollout

        return dict(advance_rollout(self.cfg, self.settings, actor=ROLLOUT_ACTOR))

    # --- events ---
    @initialize(bad=st.booleans())
    def the_gate_begins_the_rollout(self, bad: bool) -> None:
        """The gate passed a challenger always right (as good as the champion) or always wrong: its rollout
        begins."""
        self.bad = bad
        self.the_rollout_begins(again=False)

    @rule(again=st.booleans())
    def the_rollout_begins(self, again: bool) -> None:
        """The gate's promotion (or an approval) begins the rollout; ``again``: its retry, right away."""
        from driftloop.governance.rollout_state import begin_rollout

        for _ in range(2 if again else 1):
            entries = len(self._rollout_entries())
            entry = begin_rollout(
                self.cfg, self.challenger_v, actor="training_pipeline/sequence", reason="passed the gate",
                settings=self.settings,
            )  # fmt: skip
            if self.stage is None:
                assert entry is not None and entry["to_stage"] == ORDER[0], entry
                self._apply(ORDER[0], 0)
                self.challenger_alias = True
            else:  # begun before: a retry (or a second approval) changes nothing past the first stage
                assert entry is None and len(self._rollout_entries()) == entries, entry
                if self.stage == ORDER[0] and self.champion != self.challenger_v:
                    self.challenger_alias = True  # the alias a try that died before it would have set

    def _log_entry(
        self, role: str, arm: str, version: str, latency_ms: float | None, *, experiment: str,
        row: tuple[str, str, bool],
    ) -> Any:  # fmt: skip
        """One served row of ``arm`` as the service logs it: the champion right, the challenger as chosen."""
        from driftloop.serving.online.prediction_log import PRIMARY
        from driftloop.serving.online.prediction_log_store import LogEntry

        request, entity, truth = row
        said_yes = truth if arm == bus.CHAMPION or not self.bad else not truth
        return LogEntry(
            time.time(), request, role, [0], [entity], [arm], [version], experiment,
            [0.8 if said_yes else 0.2], ["Yes" if said_yes else "No"], None, latency_ms,
            {"tenure": [1]} if role == PRIMARY else {},
        )  # fmt: skip

    @precondition(lambda self: self.stage not in (None, *bus.ROLLOUT_DONE) and self.challenger_alias)
    @rule(
        entities=st.sampled_from((40, 20)),  # the simplest first: a stage's worth of rows, labelled
        failures=st.sampled_from((0, 0, 0, 2)),
        labelled=st.sampled_from((True, False)),
    )
    def traffic_is_served(self, entities: int, failures: int, labelled: bool) -> None:
        """The service's log rows of ``entities`` requests (one row each) under the stage's routing; the
        challenger fails ``failures`` of them; ``labelled``: their labels land right after."""
        from driftloop.serving.online.prediction_log import ERROR, PRIMARY, SHADOW, log_uri
        from driftloop.serving.online.prediction_log_store import ThreadSink
        from driftloop.serving.online.rollout import stage_routing
        from driftloop.serving.online.router import Routing, assign_challenger

        routing = stage_routing(self.stage, Routing())
        experiment = bus.ab_experiment_id(self.champion, self.challenger_v)
        first = len(self.served)
        ids = [f"E-{first + i:05d}" for i in range(entities)]
        to_challenger = assign_challenger(
            ids, routing.challenger_share, self.cfg.serving.salt, self.challenger_v
        )
        versions = {bus.CHAMPION: self.champion, bus.CHALLENGER: self.challenger_v}
        entries = []
        for i, (entity, challenger_answers) in enumerate(zip(ids, to_challenger, strict=True)):
            truth = (first + i) % 3 == 0
            failed = i < failures
            answering = bus.CHALLENGER if challenger_answers else bus.CHAMPION
            other = bus.CHAMPION if challenger_answers else bus.CHALLENGER
            request = f"{self.cfg.name}-{first + i}"

            entry = functools.partial(self._log_entry, experiment=experiment, row=(request, entity, truth))
            if failed:  # the challenger's part of a failed request: its error row (and the champion's answer)
                error = entry(ERROR, bus.CHALLENGER, self.challenger_v, None)
                entries.append(dataclasses.replace(error, scores=[0.0], predictions=[""]))
                if not challenger_answers:
                    entries.append(entry(PRIMARY, bus.CHAMPION, self.champion, 5.0))
            else:
                entries += [
                    entry(PRIMARY, answering, versions[answering], 5.0),
                    entry(SHADOW, other, versions[other], None),
                ]
            self.served.append(Served(entity, self.epoch, self.champion, failed, truth))
        sink = ThreadSink(log_uri(self.cfg, self.settings), self.name)
        sink.open()
        try:
            sink.write(entries)
        finally:
            sink.close()
        if labelled:
            self.labels_land()

    @precondition(lambda self: any(not s.labelled for s in self.served))
    @rule()
    def labels_land(self) -> None:
        """The true labels of everything served so far land and the data stage ingests them."""
        import pandas as pd

        from driftloop.core.state import StatePaths
        from driftloop.data.ingest import ingest_labels

        fresh = [s for s in self.served if not s.labelled]
        landing = StatePaths.for_dataset(self.cfg, self.settings).labels_landing_dir
        landing.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(
            {
                self.cfg.id_column: [s.entity for s in fresh],
                self.cfg.target: ["Yes" if s.truth else "No" for s in fresh],
            }
        )
        frame.to_csv(landing / f"labels_{len(self.served)}.csv", index=False)
        assert ingest_labels(self.cfg, self.settings)["quarantined"] == []
        for s in fresh:
            s.labelled = True

    def _an_hour_of_traffic(self) -> None:
        """A stage's worth of labelled traffic, when a rollout is serving."""
        if self.stage not in (None, *bus.ROLLOUT_DONE) and self.challenger_alias:
            self.traffic_is_served(MIN_ROWS, 0, True)

    @rule(served=st.sampled_from((True, False)), retried=st.booleans())
    def the_rollout_task_runs(self, served: bool, retried: bool) -> None:
        """``ab_evaluation``'s ``advance_rollout`` (``served``: after an hour of traffic whose labels are in);
        ``retried``: run again at once on the same evidence."""
        if served:
            self._an_hour_of_traffic()
        action, entered, moves = self._expected()
        result = self._advance()
        assert (result["action"], result.get("next_stage")) == (action, entered), (action, entered, result)
        assert len(result.get("rollout_entries") or []) == (1 if entered else 0), result
        assert len(self._moves(result)) == moves, (moves, result)
        REACHED["task", entered or result["action"]] += 1
        self.trace.append(("task", served, self.stage, result["action"], result.get("reason")))
        self._apply(entered, moves)
        if retried:
            before = (self._rollout_entries(), self._champion_entries(), self._real_stage())
            again = self._advance()
            assert not again.get("rollout_entries") and not again.get("recorded_moves"), again
            assert (self._rollout_entries(), self._champion_entries(), self._real_stage()) == before
            if action == bus.ROLLOUT_HOLD:  # the same evidence, the same verdict
                assert (again["action"], again["reason"], again["evidence"]) == (
                    result["action"], result["reason"], result["evidence"]
                )  # fmt: skip

    @rule(served=st.sampled_from((True, False)), interleaved=st.booleans())
    def two_rollout_tasks_race(self, served: bool, interleaved: bool) -> None:
        """Two ``advance_rollout`` at once: started together on two threads, or (``interleaved``) the second
        running to its end while the first sits between its decision (its verdict, or a move of ``champion``)
        and acting on it."""
        from driftloop.serving.online import rollout_evidence

        if served:
            self._an_hour_of_traffic()

        action, entered, moves = self._expected()
        results: list[dict[str, Any]] = []
        errors: list[BaseException] = []

        def run(barrier: threading.Barrier | None = None) -> None:
            try:
                if barrier is not None:
                    barrier.wait(30)
                results.append(self._advance())
            except BaseException as exc:
                errors.append(exc)

        if interleaved:  # where the first decided (a verdict, or to move champion), the second runs
            from driftloop.governance import promotion

            pending = [True]

            def then_let_the_other_run(real: Any) -> Any:
                def call(*args: Any, **kwargs: Any) -> Any:
                    if pending:
                        pending.clear()
                        other = threading.Thread(target=run)
                        other.start()
                        other.join()
                    return real(*args, **kwargs)

                return call

            with pytest.MonkeyPatch.context() as mp:
                for module, name in ((rollout_evidence, "judge_stage"), (promotion, "set_champion")):
                    mp.setattr(module, name, then_let_the_other_run(getattr(module, name)))
                run()
        else:
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=run, args=(barrier,)) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert not errors, errors
        entries = [e for r in results for e in r.get("rollout_entries") or []]
        assert [e["to_stage"] for e in entries] == ([entered] if entered else []), (action, entered, results)
        assert len(self._moves(*results)) == moves, (moves, results)
        REACHED["race", entered or ("move" if moves else action)] += 1
        self.trace.append(("race", served, self.stage, [(r["action"], r.get("reason")) for r in results]))
        self._apply(entered, moves)

    @precondition(lambda self: self.stage is not None)
    @rule(to=st.sampled_from(("champion", "challenger", "other")))
    def a_person_moves_champion(self, to: str) -> None:
        """A person moves ``champion`` by hand (the CLI; the MLflow UI's move is recorded the same way)."""
        from driftloop.governance.promotion import set_champion

        version = {"champion": self.champion_v, "challenger": self.challenger_v, "other": self.other_v}[to]
        set_champion(self.cfg, version, actor=PERSON, reason="by hand", settings=self.settings)
        if version == self.challenger_v:
            self.challenger_alias = False  # a champion is nobody's challenger
            if self.stage not in bus.ROLLOUT_DONE:
                self.person_completed = True
        self.champion = version

    @precondition(
        lambda self: self.stage == ORDER[-2] and self.challenger_alias and self.champion != self.challenger_v
    )
    @rule()
    def the_completing_task_dies_after_recording_completed(self) -> None:
        """The last share passed: the task recorded ``completed`` and died before moving ``champion``."""
        from driftloop.governance import audit
        from driftloop.governance.rollout_state import enter_stage

        store = audit.open_store(self.settings)
        with store.locked(self.name) as conn:
            enter_stage(
                self.cfg, self.client, store, conn, self.challenger_v, bus.ROLLOUT_COMPLETED,
                actor=ROLLOUT_ACTOR, reason="stage 25 passed", evidence={},
            )  # fmt: skip
        self._apply(bus.ROLLOUT_COMPLETED, 0)

    @precondition(
        lambda self: self.stage == ORDER[-2] and self.challenger_alias and self.champion != self.challenger_v
    )
    @rule()
    def the_completing_task_dies_after_moving_champion(self) -> None:
        """The last share passed: the task moved ``champion`` and died before recording ``completed`` (the
        order of the moves before the completion was recorded first; a person's move looks the same)."""
        from driftloop.governance.promotion import set_champion

        set_champion(
            self.cfg, self.challenger_v, actor=ROLLOUT_ACTOR, reason="rollout: stage 25 passed",
            settings=self.settings,
        )  # fmt: skip
        self.champion, self.challenger_alias = self.challenger_v, False

    # --- invariants ---
    @invariant()
    def the_stage_tag_is_the_last_stage_recorded(self) -> None:
        entries = self._rollout_entries()
        assert self._real_stage() == (entries[-1]["to_stage"] if entries else None), entries

    @invariant()
    def the_registry_matches_the_model(self) -> None:
        assert self._real_stage() == self.stage
        assert self._alias(bus.CHAMPION) == self.champion
        assert (self._alias(bus.CHALLENGER) == self.challenger_v) == self.challenger_alias

    @invariant()
    def stages_are_entered_once_in_order_and_never_left_once_done(self) -> None:
        entries = self._rollout_entries()
        stages = [e["to_stage"] for e in entries]
        assert len(stages) == len(set(stages)), stages
        previous = None
        for entry in entries:
            assert entry["from_stage"] == previous and previous not in bus.ROLLOUT_DONE, entries
            to = entry["to_stage"]
            if previous is None:
                assert to == ORDER[0], entries
            elif to == bus.ROLLOUT_COMPLETED and self.person_completed:
                pass  # a person made it champion: its rollout completes from any stage
            else:
                assert to in (ORDER[ORDER.index(previous) + 1], bus.ROLLOUT_ROLLED_BACK), entries
            previous = to

    @invariant()
    def the_rollout_moves_champion_once_and_only_to_complete(self) -> None:
        moves = [e for e in self._champion_entries() if e["actor"] == ROLLOUT_ACTOR]
        assert len(moves) <= 1, moves
        if moves:
            assert moves[0]["to_version"] == self.challenger_v, moves
            assert self.stage in (ORDER[-2], bus.ROLLOUT_COMPLETED), (self.stage, moves)
            stages = [e["to_stage"] for e in self._rollout_entries()]
            assert ORDER[-2] in stages and bus.ROLLOUT_ROLLED_BACK not in stages, stages

    @invariant()
    def a_rolled_back_challenger_serves_no_more(self) -> None:
        if self._real_stage() == bus.ROLLOUT_ROLLED_BACK:
            assert self._alias(bus.CHALLENGER) != self.challenger_v


def test_a_rollout_holds_its_invariants_under_any_sequence_of_events(rollout_world):
    RolloutSequence.world = rollout_world
    RolloutSequence.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=True,  # a fixed seed in CI; DRIFTLOOP_ROLLOUT_EXAMPLES explores further
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    REACHED.clear()
    RolloutSequence.TestCase().runTest()
    # The tasks advanced stages and rolled back, and raced a transition (the named sequences below reach the
    # completion every time).
    assert {bus.ROLLOUT_ROLLED_BACK, ORDER[1]} <= {stage for _, stage in REACHED}, REACHED
    assert any(step == "race" and stage not in ("none", "hold") for step, stage in REACHED), REACHED


def _task(**kw: bool) -> Any:
    return lambda m: m.the_rollout_task_runs(served=kw.get("served", True), retried=kw.get("retried", False))


def _race(interleaved: bool, served: bool = True) -> Any:
    return lambda m: m.two_rollout_tasks_race(served=served, interleaved=interleaved)


SEQUENCES: dict[str, tuple[bool, list[Any]]] = {  # name: (a worse challenger, steps)
    # The last share passes while two evaluations race: champion moves once.
    "race_at_completion_interleaved": (False, [_task(), _task(), _race(True)]),
    "race_at_completion_on_threads": (False, [_task(), _task(), _race(False)]),
    # A task recorded completed and died before its move: two retries race to make the move.
    "retries_race_to_the_move": (
        False,
        [
            _task(),
            _task(),
            lambda m: m.the_completing_task_dies_after_recording_completed(),
            _race(True, False),
        ],
    ),
    "retries_race_to_the_move_on_threads": (
        False,
        [
            _task(),
            _task(),
            lambda m: m.the_completing_task_dies_after_recording_completed(),
            _race(False, False),
        ],
    ),
    # A task moved champion and died before recording completed: its retry records it, moving nothing.
    "retry_after_the_move": (
        False,
        [_task(), _task(), lambda m: m.the_completing_task_dies_after_moving_champion(), _task(retried=True)],
    ),
    # A person promotes the challenger mid-rollout; the rollout is begun again (a second approval).
    "a_person_promotes_it_by_hand": (
        False,
        [
            _task(),
            lambda m: m.a_person_moves_champion(to="challenger"),
            _task(served=False),
            lambda m: m.the_rollout_begins(again=False),
        ],
    ),  # fmt: skip
    # A worse challenger is rolled back in shadow; the retried promotion does not bring it back.
    "rolled_back_then_begun_again": (True, [_race(True), lambda m: m.the_rollout_begins(again=True)]),
}


@pytest.mark.parametrize(("bad", "steps"), list(SEQUENCES.values()), ids=list(SEQUENCES))
def test_named_sequences_hold_the_same_invariants(rollout_world, bad, steps):
    """Sequences the generated ones reach rarely in a few steps, through the same state machine."""
    RolloutSequence.world = rollout_world
    machine = RolloutSequence()
    machine.the_gate_begins_the_rollout(bad=bad)
    for step in steps:
        step(machine)
        machine.the_stage_tag_is_the_last_stage_recorded()
        machine.the_registry_matches_the_model()
        machine.stages_are_entered_once_in_order_and_never_left_once_done()
        machine.the_rollout_moves_champion_once_and_only_to_complete()
        machine.a_rolled_back_challenger_serves_no_more()
    assert machine.stage in bus.ROLLOUT_DONE, machine.trace  # each sequence ends its rollout
