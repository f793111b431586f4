"""The database: engine, per-connection pragmas, the single writer, and migrations.

One in-process lock serializes writes (DESIGN.md measured: SQLite's busy timeout arbitrating
many writers pushes p99 up 5-10x). Reads take no lock; WAL lets them run beside the writer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from edge import const

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, decide when a transaction begins (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={const.SQLITE_BUSY_TIMEOUT_MS}")
    # FULL: a check-in answered "done" survives a power cut. Measured nearly free (DESIGN.md).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front, so a writer in another process (the sync timer)
    # waits on busy_timeout instead of failing on a read->write upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    """Sessions for reading, and the one writer's transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._write_lock = threading.Lock()
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(write=True), expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def writer_busy(self) -> bool:
        """Whether a thread is inside ``transaction()`` now: a hint (it may change at once) for a
        caller choosing between running a short write where it is and handing it to a thread."""
        return self._write_lock.locked()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """The one writer: commit on success, roll back on any exception."""
        with self._write_lock, self._write() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()


def _alembic_config(url: str) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def current_revisions(store: Store) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def pending_migrations(store: Store) -> list[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(store.url))
    current = current_revisions(store)
    head = script.get_current_head()
    if head is None or head in current:
        return []
    pending = []
    for rev in script.walk_revisions(base="base", head="heads"):
        if rev.revision in current:
            break
        pending.append(rev.revision)
    return list(reversed(pending))


def backup_before_migration(store: Store) -> Path | None:
    """Copy the SQLite file aside before changing its schema; nothing to copy for a new one."""
    if not store.is_sqlite:
        return None
    db_path = store.engine.url.database
    if not db_path or db_path == ":memory:" or not Path(db_path).exists():
        return None
    src = Path(db_path)
    if not current_revisions(store):
        return None  # a new database: nothing in it to lose
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest = src.parent / "backups" / f"{src.stem}.pre-migration-{stamp}.db"
    dest.parent.mkdir(parents=True, exist_ok=True)
    raw = store.engine.raw_connection()
    try:
        # VACUUM INTO makes a consistent copy even with a WAL beside the file; it must run
        # outside a transaction, hence the driver's own connection.
        raw.driver_connection.execute("VACUUM INTO ?", (str(dest),))  # type: ignore[union-attr]
    finally:
        raw.close()
    return dest


def upgrade(store: Store) -> list[str]:
    """Bring the schema to head; returns the revisions applied (backed up first)."""
    from alembic import command

    pending = pending_migrations(store)
    if not pending:
        return []
    backup = backup_before_migration(store)
    if backup:
        log.info("database copied to %s before migrating", backup)
    cfg = _alembic_config(store.url)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    log.info("database migrated: %s", ", ".join(pending))
    return pending
