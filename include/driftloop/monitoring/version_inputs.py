"""What monitoring reads of the model version that scored a batch, once per training run: its facts (decision,
holdout metrics), its drift reference sample and its performance estimator."""

from __future__ import annotations

from typing import Any

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.errors import MonitoringError
from driftloop.core.tracking import read_run_frame
from driftloop.monitoring import live
from driftloop.monitoring.estimated import read_estimator
from driftloop.monitoring.live import VersionFacts

# Evidently's cost grows with rows; a seeded sample of this size gives stable drift scores on any batch size.
MAX_REFERENCE_ROWS = 50_000
SAMPLE_SEED = 42  # of the reference sample, when a training run logged more than MAX_REFERENCE_ROWS


class VersionInputs:
    """The training runs' inputs to monitoring, each read once per monitoring call.

    Args:
        cfg: Dataset config.
        client: MLflow client.
    """

    def __init__(self, cfg: DatasetConfig, client: Any) -> None:
        self.cfg, self.client = cfg, client
        self._cache: dict[tuple[str, str], Any] = {}

    def _once(self, kind: str, run_id: str, read: Any) -> Any:
        if (kind, run_id) not in self._cache:
            self._cache[kind, run_id] = read()
        return self._cache[kind, run_id]

    def facts(self, run_id: str) -> VersionFacts:
        """How the version decides and its holdout metrics."""
        facts: VersionFacts = self._once(
            "facts", run_id, lambda: live.read_version_facts(self.cfg, self.client, run_id)
        )
        return facts

    def reference(self, run_id: str) -> Any:
        """The drift reference logged by the training run (at most ``MAX_REFERENCE_ROWS`` rows, seeded).

        Raises:
            MonitoringError: The run has no reference, or it lacks a feature or output column.
        """
        return self._once("reference", run_id, lambda: self._load_reference(run_id))

    def estimator(self, run_id: str) -> Any | None:
        """The calibration map or loss curve of the version (None when it has none)."""
        task = self.facts(run_id).decision.task
        return self._once("estimator", run_id, lambda: read_estimator(self.client, run_id, task))

    def run_id_of(self, tags: dict[str, str]) -> str:
        """The training run of the version that scored a batch (its inference run's tags).

        Raises:
            MonitoringError: The tags name neither the run nor a version that exists.
        """
        if tags.get(bus.MODEL_RUN_ID_TAG):
            return tags[bus.MODEL_RUN_ID_TAG]
        version, name = tags.get(bus.MODEL_VERSION_TAG, ""), self.cfg.registered_model_name
        if not version:
            raise MonitoringError(
                f"inference run lacks {bus.MODEL_RUN_ID_TAG} and {bus.MODEL_VERSION_TAG} tags"
            )
        try:
            run_id: str = self.client.get_model_version(name, version).run_id
        except Exception as exc:
            raise MonitoringError(f"model {name} version {version} not found: {exc}") from exc
        return run_id

    def _load_reference(self, run_id: str) -> Any:
        cfg = self.cfg
        try:
            reference = read_run_frame(self.client, run_id, bus.REFERENCE_ARTIFACT)
        except Exception as exc:  # MLflow raises several types for a missing artifact or run
            raise MonitoringError(f"training run {run_id} has no {bus.REFERENCE_ARTIFACT}: {exc}") from exc
        columns = [*cfg.features, *self.facts(run_id).output_columns]
        missing = [col for col in columns if col not in reference.columns]
        if missing:
            raise MonitoringError(f"{bus.REFERENCE_ARTIFACT} of run {run_id} lacks columns {missing}")
        if len(reference) > MAX_REFERENCE_ROWS:
            reference = reference.sample(n=MAX_REFERENCE_ROWS, random_state=SAMPLE_SEED)
        return reference
