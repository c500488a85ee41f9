"""CPU time of a process and its descendants, from Linux's ``/proc`` (for ``bench_serving.py``).

A server's CPU per answered request says where a benchmark's time goes when every process shares the same
cores: the HTTP process, the inference workers and the log process for ``driftloop serve``, the one process
(and its native threads) for ``mlflow models serve``.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def available() -> bool:
    """Whether ``/proc`` can be read (Linux)."""
    return (PROC / "self" / "stat").is_file()


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis.
    return (PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children of children included)."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat_fields(int(entry.name))[1])
            except (OSError, IndexError, ValueError):  # the process exited meanwhile
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of ``pids`` still running (its threads included)."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for pid in pids:
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return seconds
