"""Capture what in-process task runs (``dag.test()``) log: every log record and every line written to stderr.

``dag.test()`` runs tasks in the test process, so their log records and stderr (where MLflow's progress bars
go, which Airflow's task logs show as ERROR lines) are the test process's own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

STAGE_LOGGERS = ("driftloop", "driftloop_airflow")


class _Tee:
    """Writes through to a stream and keeps a copy."""

    def __init__(self, stream) -> None:
        self.stream, self.parts = stream, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


class _ListHandler(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.INFO)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class CapturedOutput:
    """Log records (INFO and above) and stderr text captured so far."""

    records: list[logging.LogRecord] = field(default_factory=list)
    stderr_parts: list[str] = field(default_factory=list)
    stop_hooks: list = field(default_factory=list)

    def stop(self) -> None:
        """Stop capturing (idempotent)."""
        while self.stop_hooks:
            self.stop_hooks.pop()()

    def messages(self, logger_prefix: str = "driftloop") -> list[str]:
        """Messages of the records of loggers under ``logger_prefix``."""
        return [r.getMessage() for r in self.records if r.name.startswith(logger_prefix)]

    def at_least(self, level: int) -> list[str]:
        """``logger: message`` of every record at ``level`` or above."""
        return [f"{r.name}: {r.getMessage()}" for r in self.records if r.levelno >= level]

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_parts)


@contextmanager
def capture_task_output() -> Iterator[CapturedOutput]:
    """Capture log records of every logger (INFO and above for Driftloop's) and stderr until stopped."""
    captured = CapturedOutput()
    handler = _ListHandler(captured.records)
    root = logging.getLogger()
    root.addHandler(handler)
    levels = {name: logging.getLogger(name).level for name in STAGE_LOGGERS}
    for name in STAGE_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    tee = _Tee(sys.stderr)
    captured.stderr_parts = tee.parts
    saved_stderr, sys.stderr = sys.stderr, tee

    def restore() -> None:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if sys.stderr is tee:
            sys.stderr = saved_stderr

    captured.stop_hooks.append(restore)
    try:
        yield captured
    finally:
        captured.stop()
