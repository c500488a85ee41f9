"""`make demo`'s per-run seconds come from Airflow's own start and end dates, not the driver's polling."""

from __future__ import annotations


class FakeApi:
    """The two REST calls SchedulerRunner.finish makes, answering like Airflow's /api/v2."""

    def wait_for_run(self, dag_id, run_id, timeout_s):
        return {
            "state": "success",
            "start_date": "2026-01-01T10:00:00.5Z",
            "end_date": "2026-01-01T10:01:03Z",
        }

    def task_states(self, dag_id, run_id):
        return {"t": "success"}


def test_the_loop_records_airflow_durations_not_wall_clock_of_the_driver():
    from driftloop_ops.loop import SchedulerRunner, _Driver, airflow_run_seconds

    assert airflow_run_seconds({"start_date": "2026-01-01T10:00:00Z", "end_date": None}) is None
    driver = _Driver(SchedulerRunner(FakeApi()), "telco_churn", log=lambda line: None)
    driver._finish(
        "data_1", "data_pipeline", "manual__1", started=0.0
    )  # started long ago on the monotonic clock
    assert driver.record.seconds["data_pipeline"] == 62.5
