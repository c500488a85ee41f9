"""Arrivals: the files waiting in a dataset's landing zones, each with a dedupe key, and which are new.

The landing watch (``LandingTrigger`` of the Airflow plugin, run by Airflow's triggerer) calls
:func:`landed_files` every ``DRIFTLOOP_LANDING_POKE_S`` seconds and :func:`new_arrivals` with the keys it
announced before; each new file starts ``data_pipeline`` once. Nothing here imports Airflow.

**What counts as landed** is what ingestion picks up: a visible file in ``landing/batches/`` or
``landing/labels/`` (hidden names and uploads in progress such as ``*.tmp`` or ``*.part`` are skipped). Object
stores show an object only once its upload is complete; on a folder an uploader writes under a hidden or
``.tmp`` name and renames (as ``POST /labels`` and the simulator do).

**The dedupe key** is ``<zone>/<name>|<size>|<modified>|<etag>`` (no etag on a folder). A file is announced
once while it stays as it is:

* ingestion moves every file it reads out of landing (to the archive or the quarantine), so its key leaves
  the announced set at the next look and a later upload under the same name is announced again (ingestion
  then records it as a replay when the bytes are the same);
* a file still in landing after its run (the run failed on a fault and spent its retries) is not announced
  again, so a broken file never starts runs forever; the next arrival's run, a manual run, or changing the
  file (a new size or time: a new key) picks it up again;
* a file rewritten in place gets a new key and is announced again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.core.state import StatePaths
from driftloop.core.storage import StoragePath, list_files, store_errors, to_uri
from driftloop.data.ingest import IN_PROGRESS_SUFFIXES

BATCHES_ZONE, LABELS_ZONE = "batches", "labels"
# Files named in one event at most (the count says how many there were): events are kept in Airflow's DB.
MAX_FILES_PER_EVENT = 20


@dataclass(frozen=True)
class LandedFile:
    """One file waiting in a landing zone.

    Attributes:
        zone: ``batches`` (feature batches) or ``labels`` (late labels).
        name: File name in the zone.
        uri: Where it is (``file://...`` or ``s3://...``).
        size: Bytes.
        modified: UTC time of its last modification (ISO 8601; an object's ``LastModified``).
        etag: The object's ETag on object storage; empty on a folder.
    """

    zone: str
    name: str
    uri: str
    size: int
    modified: str
    etag: str = ""

    @property
    def dedupe_key(self) -> str:
        """``<zone>/<name>|<size>|<modified>|<etag>``: the same while the file stays as it is."""
        return f"{self.zone}/{self.name}|{self.size}|{self.modified}|{self.etag}"


class ArrivalFile(TypedDict):
    """One new file in an arrival event (JSON: Airflow keeps it with the asset event)."""

    zone: str
    name: str
    uri: str
    size: int
    modified: str
    etag: str
    dedupe_key: str


class ArrivalEvent(TypedDict):
    """The payload of one arrival event: the new files (at most :data:`MAX_FILES_PER_EVENT`) and their
    keys."""

    status: str
    dataset: str
    count: int
    files: list[ArrivalFile]
    dedupe_key: str


def _is_landed(path: StoragePath) -> bool:
    return not path.name.lower().endswith(IN_PROGRESS_SUFFIXES)


def _describe(zone: str, path: StoragePath) -> LandedFile | None:
    """The size, time and ETag of ``path``; None when it left between the listing and this look."""
    try:
        if isinstance(path, Path):
            stat = path.stat()
            modified = datetime.fromtimestamp(stat.st_mtime_ns / 1e9, UTC)
            return LandedFile(zone, path.name, to_uri(path), stat.st_size, modified.isoformat())
        with store_errors(str(path)):
            info = path.fs.info(path.path)
    except FileNotFoundError:
        return None
    stamp = info.get("LastModified") or info.get("mtime") or info.get("last_modified")
    modified_text = stamp.astimezone(UTC).isoformat() if isinstance(stamp, datetime) else str(stamp or "")
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    return LandedFile(zone, path.name, to_uri(path), int(info.get("size") or 0), modified_text, etag)


def landed_files(cfg: DatasetConfig, settings: Settings | None = None) -> list[LandedFile]:
    """Every file waiting in ``cfg``'s landing zones (feature batches, then labels, each by name).

    Args:
        cfg: The dataset config (its name places its zones under ``DRIFTLOOP_DATA_URI``).
        settings: Process settings; read from the environment when None.

    Raises:
        StorageError: The object store cannot be reached or refuses the credentials (the watch retries).
    """
    paths = StatePaths.for_dataset(cfg, settings or Settings.from_env())
    found = []
    for zone, folder in ((BATCHES_ZONE, paths.landing_dir), (LABELS_ZONE, paths.labels_landing_dir)):
        for path in list_files(folder):
            landed = _describe(zone, path) if _is_landed(path) else None
            if landed is not None:
                found.append(landed)
    return found


@dataclass(frozen=True)
class Arrivals:
    """The outcome of one look at the landing zones: the files to announce, and the keys to remember.

    Attributes:
        new: Files whose key was not announced before, in zone then name order.
        announced: Keys of every file in landing now (announced before or now); a key whose file left
            landing is forgotten, so the same name landing again later is new.
    """

    new: list[LandedFile]
    announced: frozenset[str]

    def event(self, dataset: str) -> ArrivalEvent:
        """The payload announcing :attr:`new`: the first :data:`MAX_FILES_PER_EVENT` files with their keys,
        the count, and a key of the event itself (a hash of every new file's key, the same wherever it is
        computed)."""
        keys = sorted(f.dedupe_key for f in self.new)
        files = [
            ArrivalFile(
                zone=f.zone,
                name=f.name,
                uri=f.uri,
                size=f.size,
                modified=f.modified,
                etag=f.etag,
                dedupe_key=f.dedupe_key,
            )
            for f in self.new[:MAX_FILES_PER_EVENT]
        ]
        return ArrivalEvent(
            status="landed",
            dataset=dataset,
            count=len(self.new),
            files=files,
            dedupe_key=hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16],
        )

    def describe(self) -> str:
        """The new files for a log line: ``2 new file(s): batches/b1.csv, labels/l1.csv``."""
        names = ", ".join(f"{f.zone}/{f.name}" for f in self.new[:5])
        more = f" and {len(self.new) - 5} more" if len(self.new) > 5 else ""
        return f"{len(self.new)} new file(s): {names}{more}"


def new_arrivals(landed: Iterable[LandedFile], announced: Iterable[str]) -> Arrivals:
    """The files of ``landed`` not announced yet, and the keys to remember once they are.

    Args:
        landed: This look's files (:func:`landed_files`).
        announced: Keys announced before (the previous look's :attr:`Arrivals.announced`).
    """
    before = set(announced)
    files = list(landed)
    return Arrivals(
        new=[f for f in files if f.dedupe_key not in before],
        announced=frozenset(f.dedupe_key for f in files),
    )
