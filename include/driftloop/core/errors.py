"""One error taxonomy: verdicts (retrying cannot change them) versus faults (a retry may help).

A :class:`Verdict` is a decision about the data, the model or the configuration: a quarantined batch, a model
below the gate's floors, no champion to score with, no labelled data, a missing snapshot, a malformed config.
Rerunning the same task on the same inputs gives the same verdict, so orchestrators fail such tasks at once
(``driftloop_airflow.fail_fast`` turns them into ``AirflowFailException``). Everything else (a tracking server
that does not answer, a full disk) is a fault and is retried with backoff.
"""

from __future__ import annotations


class DriftloopError(Exception):
    """Base class of Driftloop's own errors."""


class Verdict(DriftloopError):
    """A deterministic decision: retrying the same task on the same inputs cannot change it."""


class ConfigError(Verdict, ValueError):
    """A dataset config, a contract or a setting is missing or malformed; the message names the
    file/variable."""


class BatchQuarantined(Verdict):
    """One or more landed files were quarantined; raised after the good files were processed."""


class GateRejected(Verdict):
    """A candidate model failed the promotion gate and nothing serves; the message names each check's
    numbers."""


class NoChampionError(Verdict):
    """No model version carries the alias a stage was asked to use."""


class NoLabelledData(Verdict):
    """There are no accepted labelled rows to build a training snapshot from."""


class TrainingDataError(Verdict):
    """The snapshot cannot train a model (labels missing, too few rows, one class); the message names the
    cause."""


class SnapshotNotFoundError(Verdict, FileNotFoundError):
    """No training snapshot exists, or the one asked for is missing."""


class MonitoringError(DriftloopError):
    """One scored batch cannot be monitored (missing artifact, file or column); the others still are."""


class StorageError(DriftloopError):
    """The data store (a folder or S3-compatible object storage) failed or refused the credentials: a fault,
    retried; the message names the URI and the store's answer."""
