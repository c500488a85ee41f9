"""The closed-loop story, written once and driven two ways.

:func:`drive_closed_loop` drops the simulator's files and runs the DAGs in the order the loop needs: reference
data → v1 champion → a clean batch (the sensor must not fire) → a drifted batch plus late labels → the sensor
fires → the drift retrain → the sensor once more (it must not fire again). A runner decides how a DAG runs:

* :class:`InProcessRunner` runs each DAG with ``dag.test()`` (real tasks, MLflow and data zones, no
  scheduler); runs that assets or the sensor's trigger would start are started by the driver in the same
  order.
* :class:`SchedulerRunner` triggers runs through the REST API and waits for the runs the scheduler starts from
  asset events and the sensor's ``TriggerDagRunOperator``.

The end-to-end test and the loop benchmark use the first, ``make demo``, the native topology test and the
container test the second. The loop runs one dataset's DAGs (``bus.dag_id(cfg.name, name)``); steps and
seconds are keyed by DAG name (``data_pipeline``), the actual DAG ids are in :attr:`LoopRecord.dag_ids`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from driftloop.core import bus

if TYPE_CHECKING:
    from driftloop.core.storage import StoragePath
    from driftloop_ops.airflow_api import AirflowClient

DATA, TRAINING, INFERENCE, MONITORING, SENSOR = (
    bus.DATA_PIPELINE,
    bus.TRAINING_PIPELINE,
    bus.INFERENCE_PIPELINE,
    bus.MONITORING_PIPELINE,
    bus.DRIFT_SENSOR,
)
LOOP_DAGS = (DATA, TRAINING, INFERENCE, MONITORING, SENSOR)
FAILED_TASK_STATES = ("failed", "upstream_failed", "up_for_retry")


class LoopStepFailed(RuntimeError):  # an outcome the demo reports, not a bug
    """A step of the loop failed, so the steps after it cannot happen; the message says why and where to
    look."""


def loop_dag_ids(dataset: str) -> list[str]:
    """DAG ids of the DAGs the closed loop runs for ``dataset`` (what a driver waits for before it starts)."""
    return [bus.dag_id(dataset, name) for name in LOOP_DAGS]


class LoopRunner(Protocol):
    """How the driver starts DAG runs and learns how they ended."""

    def run_ids(self, dag_id: str) -> set[str]:
        """Runs of ``dag_id`` that exist now."""

    def start(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a run of ``dag_id`` (as an operator would) and return its id."""

    def follow(self, dag_id: str, known: set[str], run_type: str) -> str:
        """The run of ``dag_id`` (not in ``known``) that an asset event or an operator started."""

    def finish(self, dag_id: str, run_id: str) -> tuple[str, dict[str, str]]:
        """Wait for the run and return ``(state, {task_id: state})``."""

    def triggered_runs(self, dag_id: str) -> list[tuple[str, dict[str, Any]]]:
        """``(run_id, conf)`` of the runs of ``dag_id`` created by a ``TriggerDagRunOperator``."""

    def describe_failure(self, dag_id: str, run_id: str, task_id: str) -> str:
        """Why ``task_id`` failed (its log tail) and where its full log is."""


class InProcessRunner:
    """Runs DAGs with ``dag.test()`` in this process (Airflow's metadata DB must be migrated)."""

    def __init__(self, dags: dict[str, Any]) -> None:
        self.dags = dags
        self.results: dict[str, tuple[str, dict[str, str]]] = {}
        self.errors: dict[tuple[str, str], str] = {}
        self.durations: dict[str, float] = {}  # run id -> seconds from Airflow's start and end dates

    def run_ids(self, dag_id: str) -> set[str]:
        from airflow.models import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            return {r.run_id for r in session.query(DagRun).filter(DagRun.dag_id == dag_id)}

    def start(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        dag_run = self.dags[dag_id].test(run_conf=conf) if conf else self.dags[dag_id].test()
        states = {
            ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()
        }
        self.results[dag_run.run_id] = (str(getattr(dag_run.state, "value", dag_run.state)), states)
        if dag_run.start_date and dag_run.end_date:
            self.durations[dag_run.run_id] = (dag_run.end_date - dag_run.start_date).total_seconds()
        run_id: str = dag_run.run_id
        return run_id

    def describe_failure(self, dag_id: str, run_id: str, task_id: str) -> str:
        from airflow.configuration import conf

        logs = conf.get("logging", "base_log_folder", fallback="$AIRFLOW_HOME/logs")
        where = f"{logs}/dag_id={dag_id}/run_id={run_id}/task_id={task_id}/"
        return f"log: {where} (and this process's output above)"

    def follow(self, dag_id: str, known: set[str], run_type: str) -> str:
        conf = None
        if run_type == "operator_triggered":
            queued = [(r, c) for r, c in self.triggered_runs(dag_id) if r not in known]
            if not queued:
                raise RuntimeError(f"no operator-triggered run of {dag_id} to follow")
            conf = queued[0][1]
        return self.start(dag_id, conf)

    def finish(self, dag_id: str, run_id: str) -> tuple[str, dict[str, str]]:
        return self.results[run_id]

    def triggered_runs(self, dag_id: str) -> list[tuple[str, dict[str, Any]]]:
        from airflow.models import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            runs = session.query(DagRun).filter(
                DagRun.dag_id == dag_id, DagRun.run_type == "operator_triggered"
            )
            return [(r.run_id, dict(r.conf or {})) for r in runs]


def airflow_run_seconds(run: dict[str, Any]) -> float | None:
    """A DAG run's duration from Airflow's own ``start_date`` and ``end_date`` (REST API run), None without
    both."""
    from datetime import datetime

    start, end = run.get("start_date"), run.get("end_date")
    if not (start and end):
        return None
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


class SchedulerRunner:
    """Drives a running Airflow (embedded, native topology or containers) through its REST API."""

    def __init__(self, api: AirflowClient, timeout_s: float = 900) -> None:
        self.api = api
        self.timeout_s = timeout_s
        self.durations: dict[str, float] = {}  # run id -> seconds from Airflow's own start and end dates

    def run_ids(self, dag_id: str) -> set[str]:
        return self.api.run_ids(dag_id)

    def start(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        return self.api.trigger(dag_id, conf)

    def follow(self, dag_id: str, known: set[str], run_type: str) -> str:
        run = self.api.wait_new_run(dag_id, known, run_type=run_type, timeout_s=self.timeout_s)
        run_id: str = run["dag_run_id"]
        return run_id

    def finish(self, dag_id: str, run_id: str) -> tuple[str, dict[str, str]]:
        run = self.api.wait_for_run(dag_id, run_id, timeout_s=self.timeout_s)
        seconds = airflow_run_seconds(run)
        if seconds is not None:
            self.durations[run_id] = seconds
        return run["state"], self.api.task_states(dag_id, run_id)

    def triggered_runs(self, dag_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (r["dag_run_id"], r.get("conf") or {})
            for r in self.api.runs(dag_id)
            if r["run_type"] == "operator_triggered"
        ]

    def describe_failure(self, dag_id: str, run_id: str, task_id: str) -> str:
        ti = self.api.task_instance(dag_id, run_id, task_id)
        tail = (
            self.api.task_log(dag_id, run_id, task_id, ti.get("try_number") or 1).strip().splitlines()[-12:]
        )
        url = f"{self.api.base_url.removesuffix('/api/v2')}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}"
        return "\n".join([f"log: {url}", *(f"    {line[:300]}" for line in tail)])


class InProcessSimulator:
    """Drops the simulator's files from this process (it reaches the landing zone: a folder or a bucket)."""

    def __init__(self, cfg: Any, settings: Any = None) -> None:
        self.cfg, self.settings = cfg, settings

    def reference(self) -> None:
        """The labelled reference period."""
        from driftloop.data import simulate

        simulate.simulate_reference(self.cfg, settings=self.settings)

    def batch(self, index: int, rows: int, drift_preset: str | None = None) -> None:
        """Scoring batch ``index``, optionally drifted."""
        from driftloop.data import simulate

        drift = {"preset": drift_preset} if drift_preset else None
        simulate.simulate_batch(self.cfg, index, rows=rows, drift=drift, settings=self.settings)

    def labels(self, index: int) -> None:
        """The late labels of batch ``index``."""
        from driftloop.data import simulate

        simulate.simulate_labels(self.cfg, index, settings=self.settings)


class CommandSimulator:
    """Drops the simulator's files by running ``driftloop simulate`` where the landing zone is (a
    container)."""

    def __init__(self, run: Any) -> None:
        self.run = run  # called with the CLI arguments after "driftloop simulate"

    def reference(self) -> None:
        """The labelled reference period."""
        self.run("reference")

    def batch(self, index: int, rows: int, drift_preset: str | None = None) -> None:
        """Scoring batch ``index``, optionally drifted."""
        self.run(
            "batch",
            "--index",
            str(index),
            "--rows",
            str(rows),
            *(["--drift-preset", drift_preset] if drift_preset else []),
        )

    def labels(self, index: int) -> None:
        """The late labels of batch ``index``."""
        self.run("labels", "--index", str(index))


@dataclass
class LoopRecord:
    """What each step of the loop produced: per step its DAG run, run id and DAG id; seconds per DAG name."""

    steps: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)
    dag_ids: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    champion_after_v1: str | None = None
    queued_after_clean: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    queued_after_drift: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    queued_after_again: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def state(self, step: str) -> str:
        """Final state of a step's DAG run."""
        return self.steps[step][0]

    def tasks(self, step: str) -> dict[str, str]:
        """Task states of a step's DAG run."""
        return self.steps[step][1]


def quarantine_report(quarantine_dir: str | StoragePath, since: float = 0.0) -> list[str]:
    """One line per file quarantined since ``since`` (epoch seconds): where it is and why.

    A whole file has a ``reason.json``; a file with rejected rows has ``rows.csv`` (reasons per row). The
    quarantine zone is a folder or an object-store prefix (``quarantine_dir`` a location or its URI); a store
    that cannot be read gives one line saying so (the report explains a failure, it never hides it).
    """
    from driftloop.core.errors import StorageError
    from driftloop.core.storage import location, store_errors

    folder = location(quarantine_dir)
    try:
        with store_errors(str(folder)):
            return _quarantined_since(folder, since)
    except StorageError as exc:
        return [f"quarantine at {folder} not readable: {exc}"[:400]]


def _quarantined_since(folder: StoragePath, since: float) -> list[str]:
    from driftloop.core.storage import list_files, read_json

    lines = []
    reasons = sorted(list_files(folder, "**/reason.json"), key=str)
    for reason_path in reasons:
        if reason_path.stat().st_mtime >= since:
            reason = read_json(reason_path)
            code, message = reason.get("reason_code", "?"), reason.get("message", "")
            lines.append(f"quarantined {reason_path.parent}: {code}: {message}"[:400])
    whole = {str(p.parent) for p in reasons}
    for rows_path in sorted(list_files(folder, "**/rows.parquet"), key=str):
        if rows_path.stat().st_mtime >= since and str(rows_path.parent) not in whole:
            lines.append(f"rows quarantined: {rows_path.parent} (rows.csv lists each row's _reason)")
    return lines


class _Driver:
    """Runs one dataset's DAGs by DAG name; the runner sees their DAG ids; stops at the first failed step."""

    def __init__(self, runner: LoopRunner, dataset: str, log: Any, quarantine_dir: Any = None) -> None:
        self.runner, self.dataset, self.log = runner, dataset, log
        self.quarantine_dir = quarantine_dir
        self.started_at = time.time()
        self.record = LoopRecord()

    def fail(self, step: str, why: str, where: list[str]) -> None:
        """Stop the loop: what failed, why and where to look (the steps after it cannot happen)."""
        quarantined = quarantine_report(self.quarantine_dir, self.started_at) if self.quarantine_dir else []
        lines = [f"loop stopped at step {step}: {why}", *where, *quarantined]
        raise LoopStepFailed("\n".join(lines))

    def check(self, step: str, dag_id: str, run_id: str) -> None:
        state, tasks = self.record.steps[step]
        if state == "success":
            return
        failed = [t for t, s in tasks.items() if s in FAILED_TASK_STATES] or sorted(tasks)
        where = []
        for task_id in failed[:3]:
            describe = getattr(self.runner, "describe_failure", None)
            detail = describe(dag_id, run_id, task_id) if describe else ""
            where.append(f"  task {task_id}: {tasks.get(task_id)}; {detail}")
        self.fail(step, f"{dag_id} run {run_id} ended {state} (failed: {', '.join(failed)})", where)

    def dag_id(self, name: str) -> str:
        return bus.dag_id(self.dataset, name)

    def run_ids(self, name: str) -> set[str]:
        return self.runner.run_ids(self.dag_id(name))

    def triggered_runs(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        return self.runner.triggered_runs(self.dag_id(name))

    def _finish(self, step: str, name: str, run_id: str, started: float) -> None:
        dag_id = self.dag_id(name)
        self.record.steps[step] = self.runner.finish(dag_id, run_id)
        self.record.run_ids[step] = run_id
        self.record.dag_ids[step] = dag_id
        # Airflow's own start and end dates when the runner has them (not the driver's polling).
        seconds = getattr(self.runner, "durations", {}).get(run_id, time.monotonic() - started)
        self.record.seconds[name] = self.record.seconds.get(name, 0.0) + seconds
        self.log(f"  {dag_id:<36} {self.record.state(step):<8} {seconds:6.1f} s  ({run_id})")
        self.check(step, dag_id, run_id)

    def start(self, step: str, name: str, conf: dict[str, Any] | None = None) -> None:
        started = time.monotonic()
        self._finish(step, name, self.runner.start(self.dag_id(name), conf), started)

    def follow(self, step: str, name: str, known: set[str], run_type: str = "asset_triggered") -> None:
        started = time.monotonic()
        self._finish(step, name, self.runner.follow(self.dag_id(name), known, run_type), started)

    def batch(self, prefix: str) -> None:
        """data → (asset) inference → (asset) monitoring → the drift sensor."""
        known = {name: self.run_ids(name) for name in (INFERENCE, MONITORING)}
        self.start(f"{prefix}_{DATA}", DATA)
        self.follow(f"{prefix}_{INFERENCE}", INFERENCE, known[INFERENCE])
        self.follow(f"{prefix}_{MONITORING}", MONITORING, known[MONITORING])
        self.start(f"{prefix}_{SENSOR}", SENSOR)


def _champion(driver: _Driver, client: Any, cfg: Any) -> str:
    """The champion's version after the first training, or stop the loop with the gate's word on why not."""
    try:
        return str(client.get_model_version_by_alias(cfg.registered_model_name, bus.CHAMPION).version)
    except Exception as exc:  # MLflow raises RestException / MlflowException variants
        driver.fail(
            "train_1",
            f"no {bus.CHAMPION} of {cfg.registered_model_name} after the first training ({exc})"[:400],
            [
                f"  the gate's reasons: the {bus.GATE_TAG} tag and the model card of the newest version in "
                "MLflow"
            ],
        )
        raise


def drive_closed_loop(
    runner: LoopRunner,
    cfg: Any,
    client: Any,
    settings: Any = None,
    batch_rows: int = 800,
    clean_batch: bool = True,
    sensor_again: bool = True,
    log: Any = None,
    simulator: Any = None,
) -> LoopRecord:
    """Reference → v1 → [clean batch (no fire)] → drifted batch + late labels (the clean batch's, or else the
    drifted one's) → the sensor fires → v2.

    Args:
        runner: :class:`InProcessRunner` or :class:`SchedulerRunner`.
        cfg: Dataset config; the loop runs this dataset's DAGs.
        client: An ``MlflowClient`` of the tracking server the DAGs use.
        settings: Process settings for the simulator (where the landing zone is).
        batch_rows: Rows per simulated batch.
        clean_batch: Include the clean batch on which the sensor must stay quiet.
        sensor_again: Run the sensor once more after the retrain (it must not fire for the same result).
        log: Called with one line per finished DAG run (default: silent).
        simulator: Where files are dropped: :class:`InProcessSimulator` (default) or
            :class:`CommandSimulator`.

    Returns:
        The :class:`LoopRecord`; ``seconds`` holds seconds per DAG name (summed over its runs) and ``total``.

    Raises:
        LoopStepFailed: A DAG run did not succeed, or no champion came out of the first training; the message
            names the failed tasks, their log tails and where the full logs are, and files quarantined
            meanwhile.
    """
    from driftloop.core.state import StatePaths

    simulator = simulator or InProcessSimulator(cfg, settings)
    quarantine_dir = StatePaths.for_dataset(cfg, settings).quarantine_dir
    driver = _Driver(runner, cfg.name, log or (lambda line: None), quarantine_dir)
    record = driver.record
    started = time.monotonic()
    simulator.reference()
    known_training = driver.run_ids(TRAINING)
    driver.start("data_1", DATA)
    driver.follow("train_1", TRAINING, known_training)
    record.champion_after_v1 = _champion(driver, client, cfg)

    if clean_batch:
        simulator.batch(1, batch_rows)
        driver.batch("clean")
        record.queued_after_clean = driver.triggered_runs(TRAINING)

    drifted_index = 2 if clean_batch else 1
    simulator.batch(drifted_index, batch_rows, "strong")
    # New labelled rows come with the drift: the clean batch's labels, or else the drifted batch's own.
    # Without them the sensor rightly waits (a retrain on v1's snapshot would reproduce v1).
    simulator.labels(1)
    known_training = driver.run_ids(TRAINING)
    driver.batch("drift")
    record.queued_after_drift = driver.triggered_runs(TRAINING)
    if record.tasks(f"drift_{SENSOR}").get("trigger_training") == "success":
        driver.follow("train_2", TRAINING, known_training, run_type="operator_triggered")
    if sensor_again:
        driver.start("sensor_again", SENSOR)
        record.queued_after_again = driver.triggered_runs(TRAINING)
    record.seconds["total"] = time.monotonic() - started
    return record
