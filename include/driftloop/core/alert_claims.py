"""Which alerts were sent: one claim file per dedupe key in the data location
(``<DRIFTLOOP_DATA_URI>/_alerts/sent/``), created exclusively, so on a local folder or on object storage
shared by workers on several hosts a retried task or a second caller never sends an alert twice."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from driftloop.core.settings import Settings
from driftloop.core.storage import StoragePath, create_exclusive, location


def sent_dir(settings: Settings) -> StoragePath:
    """Where the dedupe keys of sent alerts are kept (one file per key), beside the data zones: the one place
    every worker shares."""
    return location(settings.data_root_uri) / "_alerts" / "sent"


def _claim_path(dedupe_key: str, settings: Settings) -> StoragePath:
    return sent_dir(settings) / f"{hashlib.sha256(dedupe_key.encode()).hexdigest()[:40]}.json"


def was_sent(dedupe_key: str, settings: Settings) -> bool:
    """Whether an alert with ``dedupe_key`` was claimed (sent) before."""
    return _claim_path(dedupe_key, settings).exists()


def claim_alert(dedupe_key: str, record: dict[str, Any], settings: Settings) -> bool:
    """Record ``dedupe_key`` with the alert (``record``); False when it was recorded before (already sent)."""
    content = json.dumps({"sent_at": int(time.time()), **record}, default=str)
    return create_exclusive(_claim_path(dedupe_key, settings), content.encode())
