"""The audit log on PostgreSQL: append-only by the database itself (a trigger) and by rights (an insert-only
role).

Needs only this machine's PostgreSQL; skips locally without it and fails under CI=true (see conftest).
"""

from __future__ import annotations

import secrets
import uuid

import pytest

from tests.topology.conftest import require_services
from tests.topology.harness import _pg_admin, pg_url

pytestmark = [pytest.mark.topology]


@pytest.fixture
def audit_db():
    """A fresh database owned by a role that owns the table, and a writer role with INSERT and SELECT only."""
    require_services()
    run = uuid.uuid4().hex[:8]
    db, owner, writer = f"dl_audit_{run}", f"dl_audit_owner_{run}", f"dl_audit_writer_{run}"
    owner_pw, writer_pw = secrets.token_hex(12), secrets.token_hex(12)
    _pg_admin(f"CREATE ROLE {owner} LOGIN PASSWORD '{owner_pw}'")
    _pg_admin(f"CREATE ROLE {writer} LOGIN PASSWORD '{writer_pw}'")
    _pg_admin(f'CREATE DATABASE "{db}" OWNER {owner}')
    base = pg_url(db, "postgresql+psycopg2")
    host_part = base.split("@", 1)[1]
    try:
        yield {
            "owner": f"postgresql+psycopg2://{owner}:{owner_pw}@{host_part}",
            "writer": f"postgresql+psycopg2://{writer}:{writer_pw}@{host_part}",
            "writer_role": writer,
        }
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        _pg_admin(f"DROP ROLE IF EXISTS {writer}")
        _pg_admin(f"DROP ROLE IF EXISTS {owner}")


def test_the_writer_can_append_and_read_but_never_change_history(audit_db):
    import sqlalchemy

    from driftloop.governance.audit import AuditStore

    AuditStore(audit_db["owner"]).ensure_schema(writer_role=audit_db["writer_role"])
    writer = AuditStore(audit_db["writer"])
    writer.append(
        {
            "dataset": "d",
            "model_name": "m",
            "to_version": "1",
            "actor": "t",
            "source": "driftloop",
            "reason": "first",
        }
    )
    with writer.locked("m") as conn:  # the advisory lock works for the writer too
        writer.append(
            {
                "dataset": "d",
                "model_name": "m",
                "from_version": "1",
                "to_version": "2",
                "actor": "t",
                "source": "driftloop",
                "reason": "second",
            },
            conn,
        )
    assert [e["to_version"] for e in writer.entries("m")] == ["1", "2"]
    for statement in (
        "UPDATE champion_audit SET reason = 'x'",
        "DELETE FROM champion_audit",
        "TRUNCATE champion_audit",
    ):
        with (
            pytest.raises(sqlalchemy.exc.ProgrammingError, match="permission denied"),
            writer.engine.begin() as conn,
        ):
            conn.execute(sqlalchemy.text(statement))
    # Even the owner, who may, cannot: the trigger refuses.
    owner = AuditStore(audit_db["owner"])
    for statement in (
        "UPDATE champion_audit SET reason = 'x'",
        "DELETE FROM champion_audit",
        "TRUNCATE champion_audit",
    ):
        with pytest.raises(sqlalchemy.exc.InternalError, match="append-only"), owner.engine.begin() as conn:
            conn.execute(sqlalchemy.text(statement))
    assert [e["reason"] for e in writer.entries("m")] == ["first", "second"]
