"""Where one dataset's state lives under ``DRIFTLOOP_HOME``, and how locations travel between stages
(URIs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.core.settings import Settings

if TYPE_CHECKING:
    from driftloop.core.config import DatasetConfig


def uri_to_path(uri: str) -> Path:
    """Local path of a ``file://`` URI (plain paths are accepted too, for manifests written before URIs)."""
    from urllib.parse import unquote, urlparse

    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    return Path(uri)


def path_to_uri(path: str | Path) -> str:
    """``file://`` URI of a local path: how data locations travel between stages (manifests, tags, XCom)."""
    return Path(path).resolve().as_uri()


@dataclass(frozen=True)
class StatePaths:
    """Where one dataset's state lives under ``DRIFTLOOP_HOME``. Nothing is created until a stage writes."""

    root: Path

    @classmethod
    def for_dataset(cls, cfg: DatasetConfig, settings: Settings | None = None) -> StatePaths:
        """State paths for ``cfg`` under the settings' home folder."""
        settings = settings or Settings.from_env()
        return cls(root=settings.home_dir / "data" / cfg.name)

    @property
    def landing_dir(self) -> Path:
        """Incoming feature batches (CSV or parquet) are dropped here."""
        return self.root / "landing" / "batches"

    @property
    def labels_landing_dir(self) -> Path:
        """Late-arriving label files (id + target) are dropped here."""
        return self.root / "landing" / "labels"

    @property
    def archive_dir(self) -> Path:
        """Accepted original files, moved out of the landing zone, kept byte for byte."""
        return self.root / "archive"

    @property
    def quarantine_dir(self) -> Path:
        """Rejected files and rows, each with a machine-readable reason."""
        return self.root / "quarantine"

    @property
    def batches_dir(self) -> Path:
        """Accepted, validated batches as parquet plus a JSON manifest each."""
        return self.root / "batches"

    @property
    def labels_dir(self) -> Path:
        """Accepted label files as parquet."""
        return self.root / "labels"

    @property
    def snapshots_dir(self) -> Path:
        """Immutable content-addressed training snapshots."""
        return self.root / "snapshots"

    @property
    def predictions_dir(self) -> Path:
        """One predictions parquet per scored batch."""
        return self.root / "predictions"

    @property
    def reports_dir(self) -> Path:
        """Profiles, drift reports and other HTML artifacts before they are logged."""
        return self.root / "reports"
