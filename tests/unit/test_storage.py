"""The one atomic-write helper (core.storage.atomic_path) and its users."""

from __future__ import annotations

import pytest

from driftloop.core.storage import atomic_path, read_json, write_bytes_atomic, write_json


def test_atomic_path_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "sub" / "manifest.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text('{"version": 2, "trunc')
        raise RuntimeError("disk full")
    assert read_json(target) == {"version": 1}, "a failed write must leave the old content in place"
    assert [p.name for p in target.parent.iterdir()] == ["manifest.json"], "no temporary file left behind"

    write_bytes_atomic(target, b'{"version": 3}', fsync=True)
    assert read_json(target) == {"version": 3}
    assert [p.name for p in target.parent.iterdir()] == ["manifest.json"]


def test_the_temporary_file_is_hidden_while_it_is_written(tmp_path):
    target = tmp_path / "batch.csv"
    with atomic_path(target) as tmp:
        tmp.write_text("a\n1\n")
        assert tmp.parent == target.parent and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        assert not target.exists(), "the final name appears only at the end"
    assert target.read_text() == "a\n1\n"


def test_no_module_renames_temporary_files_by_itself():
    """Every atomic write goes through core.storage (one helper, not a copy per module)."""
    import re

    from driftloop.core.settings import PROJECT_DIR

    pattern = re.compile(r"os\.replace\(|\.tmp\b.*\.replace\(|tmp\w*\.rename\(")
    offenders = [
        f"{path.relative_to(PROJECT_DIR)}:{n}"
        for root in ("include", "plugins")
        for path in (PROJECT_DIR / root).rglob("*.py")
        if path.name != "storage.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == [], f"use driftloop.core.storage.atomic_path instead: {offenders}"
