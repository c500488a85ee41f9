"""The governance loop under sequences of events: a Hypothesis state machine drives the real training keys,
gate orchestration, promotion, rollback, registry watch, audit log and alerts against a real MLflow store.

Only two things are faked, both below the code under test: fitting (PyCaret would cost seconds a step; the
fake logs a small real sklearn model and a holdout AUC chosen per snapshot) and the gate's measurements (the
fake judge compares those AUCs under the rule the real ``EvidenceState`` picks, and decides borderline
comparisons by a coin, as a bootstrap's seed would). The coin is why the "same evidence, same verdict"
invariant means something: only a promotion that keeps the verdict it recorded for an evidence state can hold
it.

Steps: labelled data landing (a new snapshot and label window), drift (a monitoring result of the champion)
with its retrain, a manual retrain of the same snapshot, two triggers at once, a fault injected at a side
effect and the retry, external alias moves (to passed or rejected versions), CLI moves, rollbacks with and
without ``--to`` (and their retries), and the registry watch. After every step the invariants below hold.

``DRIFTLOOP_LOOP_EXAMPLES`` and ``DRIFTLOOP_LOOP_STEPS`` make a longer run (README, "Testing"). The same
state machine runs a few sequences (``DRIFTLOOP_LOOP_S3_EXAMPLES``) with the data zones (snapshots, label
windows) in a bucket of the test S3 server.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from driftloop.core import bus

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EXAMPLES = int(os.environ.get("DRIFTLOOP_LOOP_EXAMPLES", "6"))
STEPS = int(os.environ.get("DRIFTLOOP_LOOP_STEPS", "12"))
S3_EXAMPLES = int(os.environ.get("DRIFTLOOP_LOOP_S3_EXAMPLES", "2"))
FLOOR = 0.6
QUALITIES = (0.55, 0.70, 0.71, 0.74, 0.80)  # 0.55 misses the floor; 0.70/0.71 are borderline to each other
BORDER = 0.02  # a comparison this close to its rule's bound is decided by the coin


class InjectedFault(RuntimeError):
    """A fault the test injects at a side effect (a crash, MLflow unreachable)."""


class MemoryChannel:
    """An alert channel that keeps what it is sent (the webhook receiver of a person's checks)."""

    name = "memory"

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, alert: Any) -> None:
        self.sent.append(alert)


@pytest.fixture(scope="module")
def loop_world(mlflow_uri, telco_frame):
    """The process-wide pieces every example shares: MLflow's store, a tiny real model, the patches."""
    from sklearn.linear_model import LogisticRegression

    from driftloop.core.config import load_dataset_config
    from driftloop.core.settings import Settings

    base = load_dataset_config("telco_churn", Settings.from_env({}))
    frame = telco_frame.head(400).reset_index(drop=True)
    tiny = LogisticRegression(max_iter=200).fit(frame[["tenure"]], frame["churn"] == "Yes")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
        mp.setenv("DRIFTLOOP_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/alerts-go-to-the-memory-channel")
        mp.delenv("DRIFTLOOP_CONFIG_OVERRIDES", raising=False)
        world = World(base, frame, tiny)
        mp.setattr("driftloop.training.train._fit_and_log", world.fake_fit_and_log)
        mp.setattr("driftloop.governance.gates.judge", world.fake_judge)
        for target in (
            "driftloop.core.registry.move_alias",
            "driftloop.core.registry.register_challenger",
            "driftloop.governance.model_card.publish_model_card",
        ):
            mp.setattr(target, world.faulty(target))
        yield world


class World:
    """Fakes of fitting and of the gate's measurements, and the faults armed by the state machine."""

    def __init__(self, base: Any, frame: Any, tiny: Any) -> None:
        self.base, self.frame, self.tiny = base, frame, tiny
        self.quality: dict[str, float] = {}  # snapshot hash -> holdout AUC its model reaches
        self.coin = 0
        self.fault: str | None = None  # the side effect that fails next
        self.race: tuple[str, Any] | None = None  # (where, what): another request run while one is there

    def interleave(self, where: str) -> None:
        """Run the racing request armed for ``where`` to its end, now, in a thread of its own (a second
        worker), while the first waits where it is: a deterministic interleaving of two racing tasks."""
        if self.race is None or self.race[0] != where:
            return
        other, self.race = self.race[1], None
        errors: list[BaseException] = []

        def run() -> None:
            try:
                other()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]

    def faulty(self, target: str) -> Any:
        """``target`` (a module attribute) wrapped so that it fails once when armed."""
        import importlib

        module, _, name = target.rpartition(".")
        real = getattr(importlib.import_module(module), name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.fault == name:
                self.fault = None
                raise InjectedFault(f"injected fault at {name}")
            return real(*args, **kwargs)

        return call

    def fake_fit_and_log(self, cfg: Any, client: Any, run_id: str, snapshot: dict, settings: Any) -> Any:
        import mlflow

        from tests.fakes import TELCO_DECISION

        mlflow.set_tags({**TELCO_DECISION.to_tags(), bus.BEST_MODEL_TAG: "LogisticRegression"})
        mlflow.log_metric("holdout_auc", self.quality[snapshot["snapshot_hash"]])
        info = mlflow.sklearn.log_model(
            self.tiny, name=bus.MODEL_ARTIFACT, serialization_format="cloudpickle"
        )
        return {}, str(info.model_uri)

    def version_quality(self, client: Any, name: str, version: str) -> float:
        run_id = client.get_model_version(name, version).run_id
        return float(client.get_run(run_id).data.metrics["holdout_auc"])

    def fake_judge(
        self, cfg: Any, candidate: str, champion: Any, client: Any, settings: Any = None, state: Any = None
    ) -> dict[str, Any]:
        from driftloop.governance.decision_checks import check_entry
        from driftloop.governance.verdict_evidence import read_evidence_state

        name = cfg.registered_model_name
        if state is None:
            state = read_evidence_state(
                cfg, client, champion["model_version"] if champion else None, settings
            )
        auc = self.version_quality(client, name, candidate)
        checks = [check_entry("floor.AUC", auc >= FLOOR, auc, FLOOR, f"AUC {auc:.4f} vs floor {FLOOR}")]
        rule = state.rule(cfg) if champion else None
        if champion is not None:
            other = self.version_quality(client, name, champion["model_version"])
            bound = 0.0 if rule == "superiority" else -cfg.gates.margin
            self.coin += 1
            ok = (self.coin % 2 == 0) if abs((auc - other) - bound) < BORDER else (auc - other) > bound
            detail = f"AUC {auc:.4f} vs champion {other:.4f} ({rule}, bound {bound:+.3f})"
            checks.append({**check_entry("beats_champion", ok, auc, other, detail), "rule": rule})
        failed = [c["name"] for c in checks if c["passed"] is False]
        self.interleave("judge")
        return {
            "passed": not failed,
            "candidate_version": str(candidate),
            "champion_version": champion["model_version"] if champion else None,
            "metrics": {"holdout_auc": auc},
            "checks": checks,
            "fairness": {},
            "failed": failed,
            "rule": rule,
            "evidence_state": {**state.to_dict(), "summary": state.describe()},
            "evidence_key": state.key(cfg, str(candidate)),
        }


class GovernanceLoop(RuleBasedStateMachine):
    """One dataset's loop, driven as Airflow and people would, with the invariants of issue 26."""

    world: World
    data_uri = ""  # DRIFTLOOP_DATA_URI of every example ("": the data zones under the example's home)

    def __init__(self) -> None:
        super().__init__()
        from driftloop.core.settings import Settings
        from driftloop.core.tracking import get_client

        self.home = tempfile.mkdtemp(prefix="driftloop-loop-")
        os.environ["DRIFTLOOP_HOME"] = self.home
        if self.data_uri:  # one bucket for every example: each has a dataset name of its own
            os.environ["DRIFTLOOP_DATA_URI"] = self.data_uri
        else:
            os.environ.pop("DRIFTLOOP_DATA_URI", None)
        self.settings = Settings.from_env()
        suffix = uuid.uuid4().hex[:8]
        base = self.world.base
        self.cfg = dataclasses.replace(
            base,
            name=f"loop_{suffix}",
            model_name=f"loop-{suffix}",
            gates=dataclasses.replace(base.gates, floors={"AUC": FLOOR}, behaviour=""),
        )
        self.client = get_client(self.settings)
        self.channel = MemoryChannel()
        self.snapshots: list[dict[str, Any]] = []
        self.verdicts: dict[str, bool] = {}  # evidence key -> verdict, from every promotion's result
        self.labels = 0
        self.runs = 0

    # --- what the DAG tasks and the CLI do, with their alerts -------------------------------------------
    def _alert(self, build: Any, result: Any) -> None:
        from driftloop.core import alerts

        found = build(self.cfg.name, self.cfg.registered_model_name, result, self.settings)
        alerts.dispatch_alerts(found, [self.channel], self.settings)

    def _train_and_promote(self, trigger: dict[str, Any]) -> None:
        from driftloop.core import alerts
        from driftloop.core.errors import GateRejected
        from driftloop.governance import promotion
        from driftloop.training.train import train_model

        trained = train_model(self.cfg, snapshot_uri=self.snapshots[-1]["snapshot_uri"], trigger=trigger)
        self.world.interleave("trained")
        try:
            result = promotion.promote_trained(self.cfg, trained, self.settings, actor=trigger["trigger_id"])
        except GateRejected:  # a first version that fails: nothing serves, the task fails fast
            return
        if result.get("evidence_key"):
            previous = self.verdicts.setdefault(result["evidence_key"], result["decision"] != "rejected")
            assert previous == (result["decision"] != "rejected"), ("verdict changed", result)
        self._alert(alerts.promotion_alerts, result)

    def _versions(self) -> list[Any]:
        return self.client.search_model_versions(f"name = '{self.cfg.registered_model_name}'")

    def _champion(self) -> str | None:
        from driftloop.core.registry import resolve_alias

        found = resolve_alias(self.cfg, bus.CHAMPION, self.settings)
        return found["model_version"] if found else None

    def _entries(self) -> list[dict[str, Any]]:
        from driftloop.governance.audit import open_store

        return open_store(self.settings).entries(self.cfg.registered_model_name)

    # --- events ------------------------------------------------------------------------------------------
    @rule(quality=st.sampled_from(QUALITIES))
    def labelled_data_lands(self, quality: float) -> None:
        """New labelled rows: a bigger snapshot, a new label window, the snapshot asset's retrain."""
        from tests.conftest import write_snapshot

        rows = 60 + 10 * len(self.snapshots)
        snapshot = write_snapshot(self.cfg, self.world.frame.head(rows))
        self.world.quality.setdefault(snapshot["snapshot_hash"], quality)
        self.snapshots.append(snapshot)
        self._land_label_window()
        self._train_and_promote(
            {"reason": "new_data", "trigger_id": f"asset_triggered__{len(self.snapshots)}"}
        )

    def _land_label_window(self) -> None:
        from driftloop.core.state import StatePaths
        from driftloop.core.storage import write_json

        self.labels += 1
        folder = StatePaths.for_dataset(self.cfg, self.settings).labels_dir
        manifest = {
            "batch_id": f"labels_{self.labels:03d}",
            "labels_uri": f"file:///labels_{self.labels}.parquet",
        }
        write_json(folder / f"labels_{self.labels:03d}.json", manifest)

    @precondition(lambda self: self.snapshots)
    @rule(share=st.sampled_from((0.1, 0.9)))
    def drift_is_measured(self, share: float) -> None:
        """A monitoring result of the champion; above the threshold, the sensor's retrain of the newest
        snapshot."""
        from driftloop.core.tracking import ensure_experiment

        champion = self._champion()
        if champion is None:
            return
        experiment = ensure_experiment(self.client, self.cfg.experiment_name("monitoring"))
        run = self.client.create_run(experiment, tags={bus.CHAMPION_VERSION_TAG: champion})
        self.client.log_metric(run.info.run_id, bus.DRIFT_SHARE, share)
        self.client.set_terminated(run.info.run_id, "FINISHED")
        if share >= self.cfg.monitoring.drift_share_threshold:
            trigger_id = f"drift__{run.info.run_id}"
            self._train_and_promote(
                {"reason": "drift", "trigger_id": trigger_id, "monitoring_run_id": run.info.run_id}
            )

    @precondition(lambda self: self.snapshots)
    @rule()
    def someone_retrains_by_hand(self) -> None:
        self.runs += 1
        self._train_and_promote({"reason": "manual", "trigger_id": f"manual__{self.runs}"})

    @precondition(lambda self: self.snapshots)
    @rule(where=st.sampled_from(("trained", "judge")))
    def two_triggers_at_once(self, where: str) -> None:
        """The snapshot asset and a manual run ask for the same training on two workers: the second runs to
        its end between the first's training and its promotion, or while the gate judges the first's version.
        (Two trainings cannot interleave in one process, where MLflow's fluent run is held by one at a time:
        ``tests/unit/test_training.py`` races two forked trainers.)"""
        self.runs += 1
        other = {"reason": "manual", "trigger_id": f"manual__race{self.runs}"}
        self.world.race = (where, lambda: self._train_and_promote(other))
        try:
            self._train_and_promote({"reason": "new_data", "trigger_id": f"asset_triggered__race{self.runs}"})
            self.world.interleave(where)  # the first never got there (nothing to fit): the second runs after
        finally:
            self.world.race = None

    @precondition(lambda self: self.snapshots)
    @rule(where=st.sampled_from(("move_alias", "publish_model_card", "register_challenger")))
    def a_fault_then_the_retry(self, where: str) -> None:
        """A side effect fails once (the process dies there); the task's retry runs the same call again."""
        from tests.conftest import write_snapshot

        snapshot = write_snapshot(self.cfg, self.world.frame.head(61 + 10 * len(self.snapshots)))
        self.world.quality.setdefault(snapshot["snapshot_hash"], QUALITIES[-1])
        self.snapshots.append(snapshot)
        self.world.fault = where
        self.runs += 1
        trigger = {"reason": "new_data", "trigger_id": f"asset_triggered__retry{self.runs}"}
        try:
            self._train_and_promote(trigger)
        except InjectedFault:
            self._train_and_promote(trigger)  # the task's retry
        finally:
            self.world.fault = None  # a side effect this sequence never reached

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data())
    def a_person_moves_champion_in_the_mlflow_ui(self, data: st.DataObject) -> None:
        versions = sorted(str(v.version) for v in self._versions())
        if versions:
            target = data.draw(st.sampled_from(versions))
            self.client.set_registered_model_alias(self.cfg.registered_model_name, bus.CHAMPION, target)

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data())
    def a_person_moves_champion_from_the_cli(self, data: st.DataObject) -> None:
        from driftloop.core import alerts
        from driftloop.governance import promotion

        versions = sorted(str(v.version) for v in self._versions())
        if versions:
            target = data.draw(st.sampled_from(versions))
            result = promotion.set_champion(
                self.cfg, target, actor="cli:tester", reason="by hand", settings=self.settings
            )
            self._alert(alerts.move_alerts, result)

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data(), override=st.booleans(), retried=st.booleans())
    def rollback(self, data: st.DataObject, override: bool, retried: bool) -> None:
        """``champion_rollback`` (a request id: its retry moves nothing) or the CLI, with or without
        ``--to``."""
        from driftloop.core import alerts
        from driftloop.governance.rollback import RollbackImpossible, RollbackRefused, rollback_champion

        versions = sorted(str(v.version) for v in self._versions())
        to = data.draw(st.sampled_from([None, *versions]))
        self.runs += 1
        request = f"manual__rollback{self.runs}" if retried else ""
        for attempt in range(2 if retried else 1):
            try:
                result = rollback_champion(
                    self.cfg,
                    actor="on-call",
                    reason="sequence test",
                    request_id=request,
                    to_version=to,
                    override=override,
                    settings=self.settings,
                )
            except (RollbackImpossible, RollbackRefused):
                return
            if attempt == 1:
                assert result["moved"] is False  # the retry of a request that went through
            self._alert(alerts.move_alerts, result)

    @rule()
    def the_registry_watch_runs(self) -> None:
        """What ``registry_watch`` does within a minute of a move: record it, announce what nobody
        announced."""
        from driftloop.core import alerts
        from driftloop.governance.move_watch import watch_champion

        self._alert(alerts.move_alerts, watch_champion(self.cfg, self.settings))
        self.every_move_alerted_once()

    # --- invariants --------------------------------------------------------------------------------------
    def every_move_alerted_once(self) -> None:
        entries = {e["id"]: e for e in self._entries()}
        counts: dict[int, int] = {}
        for alert in self.channel.sent:
            if alert.kind == "champion_moved":
                counts[alert.fields["audit_entry"]] = counts.get(alert.fields["audit_entry"], 0) + 1
        assert counts == dict.fromkeys(entries, 1), (counts, sorted(entries))

    @invariant()
    def one_version_per_training_key(self) -> None:
        keys = [v.tags.get(bus.TRAINING_KEY_TAG) for v in self._versions()]
        assert len(keys) == len(set(keys)), keys

    @invariant()
    def no_move_alerted_twice_and_each_alert_names_its_mover(self) -> None:
        entries = {e["id"]: e for e in self._entries()}
        seen: set[int] = set()
        for alert in (a for a in self.channel.sent if a.kind == "champion_moved"):
            entry_id = alert.fields["audit_entry"]
            assert entry_id in entries and entry_id not in seen, (entry_id, sorted(entries))
            assert alert.fields["actor"] == entries[entry_id]["actor"]
            seen.add(entry_id)

    @invariant()
    def the_audit_log_is_one_chain(self) -> None:
        entries = self._entries()
        for before, after in zip(entries, entries[1:], strict=False):
            assert after["from_version"] == before["to_version"], (before, after)

    @invariant()
    def champion_passed_its_gate_unless_an_override_is_audited(self) -> None:
        from driftloop.governance.audit import gate_passed

        champion, entries = self._champion(), self._entries()
        if champion is None or not entries or entries[-1]["to_version"] != champion:
            return  # a move nobody recorded yet (the watch records it within a minute)
        if gate_passed(self.client, self.cfg, champion) is not True:
            assert entries[-1]["override"] is True, entries[-1]

    @invariant()
    def every_judged_version_has_a_card_with_its_gate_table(self) -> None:
        for version in self._versions():
            if bus.GATE_TAG in version.tags:
                assert "## Gate verdict" in (version.description or ""), version.version
                assert "| floor.AUC |" in version.description, version.description[:500]

    def teardown(self) -> None:
        try:
            self.the_registry_watch_runs()
        finally:
            os.environ.pop("DRIFTLOOP_HOME", None)
            os.environ.pop("DRIFTLOOP_DATA_URI", None)


def run_sequences(world: World, examples: int, data_uri: str = "") -> None:
    """Run ``examples`` sequences of ``STEPS`` steps (a fixed seed) with the data zones at ``data_uri``."""
    GovernanceLoop.world = world
    GovernanceLoop.data_uri = data_uri
    run = settings(
        max_examples=examples,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=True,  # a fixed seed in CI; DRIFTLOOP_LOOP_EXAMPLES explores further
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    GovernanceLoop.TestCase.settings = run
    try:
        GovernanceLoop.TestCase().runTest()
    finally:
        GovernanceLoop.data_uri = ""


@pytest.mark.timeout(1800)
def test_the_governance_loop_holds_its_invariants_under_any_sequence(loop_world):
    run_sequences(loop_world, EXAMPLES)


@pytest.mark.timeout(1800)
def test_the_governance_loop_holds_its_invariants_with_its_data_zones_on_object_storage(
    loop_world, s3_server, monkeypatch
):
    """The same sequences with snapshots and label windows in a bucket of the test S3 server (fewer of them:
    ``DRIFTLOOP_LOOP_S3_EXAMPLES``)."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    bucket = s3_server.new_bucket()
    run_sequences(loop_world, S3_EXAMPLES, f"s3://{bucket}/zones")
    keys = s3_server.keys(bucket, "zones/")
    assert any("/snapshots/" in key for key in keys) and any("/labels/" in key for key in keys), keys[:20]
