"""Where one dataset's state lives under ``DRIFTLOOP_HOME``, and how locations travel between stages
(URIs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from driftloop.core.settings import Settings
from driftloop.core.storage import StoragePath, location, to_uri

if TYPE_CHECKING:
    from driftloop.core.config import DatasetConfig


def uri_to_path(uri: str) -> StoragePath:
    """The location of a data URI: ``file://`` or a plain path (local), or ``s3://...`` (object storage)."""
    return location(uri)


def path_to_uri(path: str | StoragePath) -> str:
    """URI of a location (``file://`` for a local path): how data locations travel between stages (manifests,
    tags, XCom)."""
    return to_uri(location(path) if isinstance(path, str) else path)


@dataclass(frozen=True)
class StatePaths:
    """Where one dataset's data zones live (a folder or an object-store prefix); nothing is created until a
    stage writes."""

    root: StoragePath

    @classmethod
    def for_dataset(cls, cfg: DatasetConfig, settings: Settings | None = None) -> StatePaths:
        """State paths for ``cfg`` under the data location (``DRIFTLOOP_DATA_URI``: a folder or ``s3://``)."""
        settings = settings or Settings.from_env()
        return cls(root=location(settings.data_root_uri) / cfg.name)

    @property
    def landing_dir(self) -> StoragePath:
        """Incoming feature batches (CSV or parquet) are dropped here."""
        return self.root / "landing" / "batches"

    @property
    def labels_landing_dir(self) -> StoragePath:
        """Late-arriving label files (id + target) are dropped here."""
        return self.root / "landing" / "labels"

    @property
    def archive_dir(self) -> StoragePath:
        """Accepted original files, moved out of the landing zone, kept byte for byte."""
        return self.root / "archive"

    @property
    def quarantine_dir(self) -> StoragePath:
        """Rejected files and rows, each with a machine-readable reason."""
        return self.root / "quarantine"

    @property
    def batches_dir(self) -> StoragePath:
        """Accepted, validated batches as parquet plus a JSON manifest each."""
        return self.root / "batches"

    @property
    def labels_dir(self) -> StoragePath:
        """Accepted label files as parquet."""
        return self.root / "labels"

    @property
    def snapshots_dir(self) -> StoragePath:
        """Immutable content-addressed training snapshots."""
        return self.root / "snapshots"

    @property
    def predictions_dir(self) -> StoragePath:
        """One predictions parquet per scored batch."""
        return self.root / "predictions"

    @property
    def reports_dir(self) -> StoragePath:
        """Profiles, drift reports and other HTML artifacts before they are logged."""
        return self.root / "reports"

    @property
    def scoring_parts_dir(self) -> StoragePath:
        """Parts of large batches scored by separate tasks, kept until they are combined into predictions."""
        return self.root / "scoring" / "parts"

    @property
    def monitoring_parts_dir(self) -> StoragePath:
        """Samples of the parts of scored batches, kept until their monitoring run is logged."""
        return self.root / "monitoring" / "parts"
