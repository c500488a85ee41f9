"""The champion audit log: every move of ``champion``, by Driftloop or a person, append-only in the database.

The MLflow registry keeps no alias history (one row per name and alias, overwritten), so Driftloop keeps its
own: each entry says when, from which version to which, by whom or what, why, and whether the target had
passed the gate (a person moving ``champion`` to a rejected version is allowed, and flagged as an override).

* **Append-only in the database, not only in code:** SQLite (embedded mode) and PostgreSQL (production) both
  get triggers that reject UPDATE and DELETE; in production the tasks connect as a role with INSERT and SELECT
  only (``deploy/postgres-init.sh``).
* **Moves made outside Driftloop** (the MLflow UI or REST API) are found by :func:`reconcile_champion`, which
  compares the registry with the last entry; inference runs it before scoring and ``registry_watch`` every few
  minutes. MLflow webhooks could report a move sooner but deliver at most once, so they cannot be the record.
* **Serialised promotions:** :meth:`AuditStore.locked` holds a database lock (``BEGIN IMMEDIATE`` on SQLite,
  an advisory transaction lock on PostgreSQL) around read-decide-move-record, so two racing promotions end
  with one champion and a chain of entries in which every ``from_version`` is the previous ``to_version``.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from driftloop.core import bus
from driftloop.core.config import DatasetConfig
from driftloop.core.settings import Settings
from driftloop.governance.governance_results import AuditEntry

log = logging.getLogger(__name__)

TABLE = "champion_audit"
EXTERNAL_ACTOR = "external (MLflow UI or REST API; the registry does not record the user)"
COLUMNS = (
    "id",
    "recorded_at",
    "dataset",
    "model_name",
    "from_version",
    "to_version",
    "actor",
    "source",
    "reason",
    "gate_passed",
    "override",
    "evidence",
)

_SQLITE_DDL: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        id INTEGER PRIMARY KEY AUTOINCREMENT, recorded_at TEXT NOT NULL, dataset TEXT NOT NULL,
        model_name TEXT NOT NULL, from_version TEXT, to_version TEXT, actor TEXT NOT NULL,
        source TEXT NOT NULL, reason TEXT NOT NULL, gate_passed INTEGER, override INTEGER NOT NULL,
        evidence TEXT NOT NULL)""",
    f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'champion_audit is append-only'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'champion_audit is append-only'); END""",
)
# Stage changes of staged rollouts (driftloop.governance.rollout_state), append-only like the moves.
ROLLOUT_TABLE = "rollout_audit"
ROLLOUT_COLUMNS = (
    "id", "recorded_at", "dataset", "model_name", "version", "from_stage", "to_stage", "actor", "reason",
    "evidence",
)  # fmt: skip
_ROLLOUT_COLUMNS_SQL = (
    "recorded_at TEXT NOT NULL, dataset TEXT NOT NULL, model_name TEXT NOT NULL, version TEXT NOT NULL,"
    " from_stage TEXT, to_stage TEXT NOT NULL, actor TEXT NOT NULL, reason TEXT NOT NULL,"
    " evidence TEXT NOT NULL, UNIQUE (model_name, version, to_stage)"
)
_SQLITE_DDL += (
    f"CREATE TABLE IF NOT EXISTS {ROLLOUT_TABLE}"
    f" (id INTEGER PRIMARY KEY AUTOINCREMENT, {_ROLLOUT_COLUMNS_SQL})",
    f"""CREATE TRIGGER IF NOT EXISTS {ROLLOUT_TABLE}_no_update BEFORE UPDATE ON {ROLLOUT_TABLE}
        BEGIN SELECT RAISE(ABORT, 'rollout_audit is append-only'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS {ROLLOUT_TABLE}_no_delete BEFORE DELETE ON {ROLLOUT_TABLE}
        BEGIN SELECT RAISE(ABORT, 'rollout_audit is append-only'); END""",
)
POSTGRES_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        id BIGSERIAL PRIMARY KEY, recorded_at TEXT NOT NULL, dataset TEXT NOT NULL, model_name TEXT NOT NULL,
        from_version TEXT, to_version TEXT, actor TEXT NOT NULL, source TEXT NOT NULL, reason TEXT NOT NULL,
        gate_passed BOOLEAN, override BOOLEAN NOT NULL, evidence TEXT NOT NULL)""",
    f"""CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'champion_audit is append-only'; END; $$ LANGUAGE plpgsql""",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_change ON {TABLE}",
    f"""CREATE TRIGGER {TABLE}_no_change BEFORE UPDATE OR DELETE ON {TABLE}
        FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()""",
    f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}",
    f"""CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_append_only()""",
    f"CREATE TABLE IF NOT EXISTS {ROLLOUT_TABLE} (id BIGSERIAL PRIMARY KEY, {_ROLLOUT_COLUMNS_SQL})",
    f"DROP TRIGGER IF EXISTS {ROLLOUT_TABLE}_no_change ON {ROLLOUT_TABLE}",
    f"""CREATE TRIGGER {ROLLOUT_TABLE}_no_change BEFORE UPDATE OR DELETE ON {ROLLOUT_TABLE}
        FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()""",
)


class AuditStore:
    """The audit table behind a SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg2://...``)."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.url = url
        self.postgres = url.startswith("postgresql")
        connect_args = {} if self.postgres else {"timeout": 60, "isolation_level": None}
        self.engine = create_engine(url, connect_args=connect_args, poolclass=_null_pool())

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> AuditStore:
        """The store named by ``DRIFTLOOP_AUDIT_DB_URI`` (default: SQLite under ``DRIFTLOOP_HOME``)."""
        return cls(cls.url_for(settings or Settings.from_env()))

    @staticmethod
    def url_for(settings: Settings) -> str:
        """The database URL of the configured store (the SQLite file's folder made when it is the default)."""
        if settings.audit_db_uri:
            return settings.audit_db_uri
        path = settings.home_dir / "audit" / "audit.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"

    def ensure_schema(self, writer_role: str = "") -> None:
        """Create the table and its append-only triggers when missing (as the table's owner in production).

        Args:
            writer_role: PostgreSQL role the pipelines connect as; it gets INSERT and SELECT only, so even
                with the triggers dropped it could not rewrite history.
        """
        from sqlalchemy import text

        with self.engine.begin() as conn:
            for statement in POSTGRES_DDL if self.postgres else _SQLITE_DDL:
                conn.execute(text(statement))
            if self.postgres and writer_role:
                if not writer_role.replace("_", "").isalnum():
                    raise ValueError(f"not a role name: {writer_role!r}")
                conn.execute(text(f"REVOKE ALL ON {TABLE} FROM {writer_role}"))
                conn.execute(text(f"GRANT SELECT, INSERT ON {TABLE} TO {writer_role}"))
                conn.execute(text(f"GRANT USAGE ON SEQUENCE {TABLE}_id_seq TO {writer_role}"))
                conn.execute(text(f"REVOKE ALL ON {ROLLOUT_TABLE} FROM {writer_role}"))
                conn.execute(text(f"GRANT SELECT, INSERT ON {ROLLOUT_TABLE} TO {writer_role}"))
                conn.execute(text(f"GRANT USAGE ON SEQUENCE {ROLLOUT_TABLE}_id_seq TO {writer_role}"))

    @contextmanager
    def locked(self, model_name: str) -> Iterator[Any]:
        """A connection holding the promotion lock of ``model_name`` for the block (one transaction)."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            if self.postgres:
                conn.execute(text("BEGIN"))
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(model_name.encode())}
                )
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")

    def append(self, entry: dict[str, Any], conn: Any = None) -> AuditEntry:
        """Insert one entry (inside ``conn``'s transaction when given); returns it with ``id`` and
        ``recorded_at``."""
        from sqlalchemy import text

        row = {
            "recorded_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "from_version": None,
            "to_version": None,
            "gate_passed": None,
            "override": False,
            "evidence": {},
            **entry,
        }
        values = {**row, "evidence": json.dumps(row["evidence"], sort_keys=True, default=str)}
        columns = [c for c in COLUMNS if c != "id"]
        statement = text(
            f"INSERT INTO {TABLE} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
            " RETURNING id"
        )
        if conn is None:
            with self.engine.begin() as own:
                row["id"] = own.execute(statement, {c: values[c] for c in columns}).scalar_one()
        else:
            row["id"] = conn.execute(statement, {c: values[c] for c in columns}).scalar_one()
        return cast(AuditEntry, row)  # every column: the defaults above and the caller's

    def entries(self, model_name: str, conn: Any = None) -> list[AuditEntry]:
        """Every entry of ``model_name``, oldest first."""
        from sqlalchemy import text

        query = text(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE model_name = :name ORDER BY id")
        if conn is None:
            with self.engine.connect() as own:
                rows = own.execute(query, {"name": model_name}).mappings().all()
        else:
            rows = conn.execute(query, {"name": model_name}).mappings().all()
        return [  # the table's columns (the schema is ours), with JSON and the booleans decoded
            cast(
                AuditEntry,
                {
                    **dict(r),
                    "evidence": json.loads(r["evidence"]),
                    "override": bool(r["override"]),
                    "gate_passed": None if r["gate_passed"] is None else bool(r["gate_passed"]),
                },
            )
            for r in rows
        ]


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool  # short-lived task processes: no pooled connection may outlive a fork


def open_store(settings: Settings | None = None) -> AuditStore:
    """The configured store with its schema in place."""
    store = AuditStore.from_settings(settings)
    if not store.postgres:  # in production the schema belongs to the owner role (deploy/postgres-init.sh)
        store.ensure_schema()
    return store


def gate_passed(client: Any, cfg: DatasetConfig, version: str | None) -> bool | None:
    """Whether ``version`` passed the gate (None: never judged, or no version)."""
    if version is None:
        return None
    verdict = client.get_model_version(cfg.registered_model_name, version).tags.get(bus.GATE_TAG)
    return None if verdict is None else verdict == bus.GATE_PASSED


def _intent(client: Any, cfg: DatasetConfig, version: str | None) -> dict[str, Any] | None:
    """The move intent a Driftloop process left on ``version`` (``bus.PROMOTION_INTENT_TAG``), if any."""
    if version is None:
        return None
    raw = client.get_model_version(cfg.registered_model_name, version).tags.get(bus.PROMOTION_INTENT_TAG)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def reconcile_champion(
    cfg: DatasetConfig, settings: Settings | None = None, store: AuditStore | None = None, conn: Any = None
) -> AuditEntry | None:
    """Record a move of ``champion`` that no Driftloop process recorded (the MLflow UI or API).

    A move that a Driftloop process made but could not record (it died between moving the alias and committing
    its entry) is recognised by the intent it left on the version and recorded under its own actor and reason.

    Returns:
        The entry appended, or None when the registry matches the last entry.
    """
    from driftloop.core.registry import resolve_alias
    from driftloop.core.tracking import get_client

    store = store or open_store(settings)
    name = cfg.registered_model_name
    current = resolve_alias(cfg, bus.CHAMPION, settings)
    current_version = current["model_version"] if current else None
    history = store.entries(name, conn)
    recorded = history[-1]["to_version"] if history else None
    if current_version == recorded:
        log.info(
            "registry matches the audit log: champion is v%s (%d entries)", current_version, len(history)
        )
        return None
    client = get_client(settings)
    passed = gate_passed(client, cfg, current_version)
    intent = _intent(client, cfg, current_version)
    if intent is not None and intent.get("from_version") == recorded:
        return store.append(  # a Driftloop move whose process died before its entry was committed
            {
                "dataset": cfg.name,
                "model_name": name,
                "from_version": recorded,
                "to_version": current_version,
                "actor": str(intent.get("actor", "driftloop")),
                "source": "driftloop",
                "reason": str(intent.get("reason", "")),
                "gate_passed": passed,
                "override": passed is False or bool(intent.get("evidence", {}).get("override")),
                "evidence": {
                    **intent.get("evidence", {}),
                    "recorded_by": "reconcile (the move's own entry was lost)",
                },
            },
            conn,
        )
    reason = (
        "champion alias moved outside Driftloop"
        if current_version
        else "champion alias deleted outside Driftloop"
    )
    log.info(
        "champion moved outside Driftloop: v%s -> v%s, gate passed: %s%s; recorded in the audit log",
        recorded, current_version, passed, " (OVERRIDE)" if passed is False else "",
    )  # fmt: skip
    return store.append(
        {
            "dataset": cfg.name,
            "model_name": name,
            "from_version": recorded,
            "to_version": current_version,
            "actor": EXTERNAL_ACTOR,
            "source": "external",
            "reason": reason,
            "gate_passed": passed,
            "override": passed is False,
        },
        conn,
    )
