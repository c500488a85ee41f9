"""DriftSensor: waits until monitoring results in MLflow cross the dataset's drift or performance threshold."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue


class DriftSensor(BaseSensorOperator):
    """Poke MLflow for a monitoring result that crosses the configured thresholds.

    The decision itself (thresholds, cooldown, results already acted on) is ``driftloop.monitoring
    .find_drift_trigger``; this operator only schedules the checks. Use ``mode="reschedule"`` so no worker slot
    is held between pokes. When it fires, the trigger dict (reason, monitoring run id, numbers) is its XCom.
    """

    ui_color = "#f4a261"

    def poke(self, context: Any) -> PokeReturnValue:
        from driftloop.monitoring import find_drift_trigger
        from driftloop_airflow import load_config

        trigger = find_drift_trigger(load_config())
        if trigger is None:
            self.log.info("no unhandled monitoring result crosses the thresholds")
            return PokeReturnValue(is_done=False)
        self.log.info("drift trigger: %s", trigger.get("detail", trigger))
        return PokeReturnValue(is_done=True, xcom_value=trigger)
