"""The front door's rules: what `driftloop up` and `demo` do for each state of a running stack."""

from __future__ import annotations

import os

import pytest

from driftloop_ops.front_door import (
    StackInTheWay,
    StackSpec,
    StackState,
    decide,
    pid_is_service,
    read_state,
    write_state,
)

DEMO_MODE = {"DRIFTLOOP_DATA_SCHEDULE": "none", "DRIFTLOOP_SENSOR_SCHEDULE": "none"}
PORTS = {"mlflow": 5000, "airflow": 8080}
BOTH = {"mlflow": True, "airflow": True}
NONE = {"mlflow": False, "airflow": False}


def demo(*datasets: str) -> StackSpec:
    return StackSpec(datasets, DEMO_MODE)


def running(spec: StackSpec, mlflow_port: int = 5000, airflow_port: int = 8080) -> StackState:
    return StackState("/home/x/.driftloop", mlflow_port, airflow_port, spec, {"mlflow": 11, "airflow": 12})


def decide_for(state, alive, wanted, free=lambda port: True):
    return decide(state, alive, wanted, PORTS, free, "/home/x/.driftloop")


def test_nothing_running_starts_both_for_what_is_wanted():
    decision = decide_for(None, NONE, demo("hpc_jobs"))
    assert (decision.start_mlflow, decision.airflow, decision.spec) == (True, "start", demo("hpc_jobs"))


def test_the_same_demo_again_keeps_the_stack():
    decision = decide_for(running(demo("hpc_jobs")), BOTH, demo("hpc_jobs"))
    assert (decision.start_mlflow, decision.airflow) == (False, "keep")


def test_a_demo_of_another_dataset_restarts_airflow_with_the_union():
    decision = decide_for(running(demo("hpc_jobs")), BOTH, demo("ames_housing"))
    assert (decision.start_mlflow, decision.airflow) == (False, "restart")
    assert decision.spec == demo("hpc_jobs", "ames_housing")
    assert "hpc_jobs" in decision.message and "ames_housing" in decision.message


def test_a_demo_on_a_stack_that_serves_every_dataset_restarts_only_for_its_settings():
    decision = decide_for(running(StackSpec()), BOTH, demo("mlc_churn"))
    assert decision.airflow == "restart"
    assert decision.spec == StackSpec((), DEMO_MODE), "every dataset stays, with the demo's schedules off"
    assert decide_for(running(StackSpec((), DEMO_MODE)), BOTH, demo("mlc_churn")).airflow == "keep"


def test_up_after_a_demo_restarts_airflow_for_every_dataset_and_its_schedules():
    decision = decide_for(running(demo("hpc_jobs", "ames_housing")), BOTH, StackSpec())
    assert (decision.airflow, decision.spec) == ("restart", StackSpec())


def test_up_twice_keeps_the_stack():
    assert decide_for(running(StackSpec()), BOTH, StackSpec()).airflow == "keep"


def test_only_mlflow_running_starts_airflow():
    decision = decide_for(running(demo("hpc_jobs")), {"mlflow": True, "airflow": False}, demo("hpc_jobs"))
    assert (decision.start_mlflow, decision.airflow) == (False, "start")


@pytest.mark.parametrize("service", ["mlflow", "airflow"])
def test_a_port_held_by_another_program_is_one_line_naming_the_variable(service):
    taken = PORTS[service]
    with pytest.raises(StackInTheWay) as caught:
        decide_for(None, NONE, demo("hpc_jobs"), free=lambda port: port != taken)
    message = str(caught.value)
    assert "\n" not in message
    assert f"port {taken}" in message and f"DRIFTLOOP_{service.upper()}_PORT=" in message


def test_a_running_service_holding_its_own_port_is_not_in_the_way():
    decision = decide_for(running(demo("hpc_jobs")), BOTH, demo("hpc_jobs"), free=lambda port: False)
    assert decision.airflow == "keep"


def test_a_stack_on_other_ports_says_make_down():
    with pytest.raises(StackInTheWay) as caught:
        decide_for(running(demo("hpc_jobs"), airflow_port=8081), BOTH, demo("hpc_jobs"))
    assert "make down" in str(caught.value) and "8081" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unrecorded_running_airflow_restarts_for_what_is_wanted():
    """Pid files from an older version, no stack.json: what it serves is unknown, so it restarts."""
    decision = decide_for(None, BOTH, demo("hpc_jobs"))
    assert (decision.airflow, decision.spec) == ("restart", demo("hpc_jobs"))


def test_the_state_file_round_trips_and_a_foreign_file_reads_as_none(tmp_path):
    state = running(demo("hpc_jobs", "ames_housing"))
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    (tmp_path / "stack.json").write_text("{not json")
    assert read_state(tmp_path) is None
    assert read_state(tmp_path / "missing") is None


def test_a_reused_pid_is_not_the_service():
    assert pid_is_service(os.getpid(), "pytest") or pid_is_service(os.getpid(), "python")
    assert not pid_is_service(os.getpid(), "airflow-not-this-process")
    assert not pid_is_service(2**22 + 12345, "mlflow")


def test_a_second_demo_of_a_dataset_is_refused_at_once_naming_make_clean(data_store, telco_cfg):
    from driftloop.core.settings import Settings
    from driftloop.core.state import StatePaths
    from driftloop.core.storage import write_json
    from driftloop_ops.demo import refuse_a_second_run

    settings = Settings.from_env()
    refuse_a_second_run(telco_cfg, settings)  # a fresh home: the demo may run
    batches = StatePaths.for_dataset(telco_cfg, settings).batches_dir
    write_json(batches / "reference.json", {})
    with pytest.raises(StackInTheWay) as caught:
        refuse_a_second_run(telco_cfg, settings)
    message = str(caught.value)
    assert (
        "\n" not in message
        and "make clean" in message
        and "DRIFTLOOP_DATASET=telco_churn make demo" in message
        and "(batches reference)" in message
    )
    if data_store.startswith("s3://"):  # make clean deletes local state only: the message names the bucket's
        assert f"delete everything under {data_store}/telco_churn" in message
