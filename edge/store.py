"""The database: engine, per-connection pragmas, the single writer, and migrations.

One in-process lock serializes writes (DESIGN.md measured: SQLite's busy timeout arbitrating
many writers pushes p99 up 5-10x). Reads take no lock; WAL lets them run beside the writer.

SQLite is the appliance's database; PostgreSQL is the second one the whole suite also runs on
(docs/architecture.md, "Databases"). The same promises hold on both:

- one writer at a time, across processes too: SQLite's ``BEGIN IMMEDIATE``; on PostgreSQL a
  transaction-scoped advisory lock taken first in every write transaction, which then runs
  READ COMMITTED, so each statement sees what the writer before it committed;
- a read transaction sees one snapshot: SQLite's WAL read transaction; REPEATABLE READ on
  PostgreSQL (read-only transactions there never fail to serialize).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

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
    # SQLite's own lower() folds ASCII only; PostgreSQL's folds every letter. Searches compare
    # lower(name) with the lowered words, so "élodie" finds "Élodie" on both.
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front, so a writer in another process (the sync timer)
    # waits on busy_timeout instead of failing on a read->write upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


# Any fixed number: the one advisory lock that stands for "the writer" on a PostgreSQL database.
PG_WRITER_LOCK_KEY = 0x636B6564  # "cked"


def _postgres_begin(conn: Any) -> None:
    # The write transaction's first statement waits for the writer lock, as BEGIN IMMEDIATE
    # does; the lock goes with the transaction's commit or rollback.
    if conn.get_execution_options().get("write"):
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITER_LOCK_KEY})")


def _nul_free(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) and "\x00" in value else value


def _postgres_no_nul(
    _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool
) -> tuple[str, Any]:
    # PostgreSQL's text cannot hold NUL, not even to compare with; SQLite's can. A lookup by a
    # NUL-bearing string then finds nothing on both (no stored value has the U+FFFD it becomes),
    # where PostgreSQL would fail the request. Ids are refused at the API before they get here.
    rows = parameters if executemany else [parameters]
    if not any(_has_nul(row) for row in rows):
        return statement, parameters
    cleaned = [_clean_row(row) for row in rows]
    return statement, cleaned if executemany else cleaned[0]


def _has_nul(row: Any) -> bool:
    values = row.values() if isinstance(row, dict) else row or ()
    return any(isinstance(v, str) and "\x00" in v for v in values)


def _clean_row(row: Any) -> Any:
    if isinstance(row, dict):
        return {k: _nul_free(v) for k, v in row.items()}
    return type(row)(_nul_free(v) for v in row)


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED")
    if parsed.get_backend_name() == "postgresql":
        event.listen(engine, "begin", _postgres_begin)
        event.listen(engine, "before_cursor_execute", _postgres_no_nul, retval=True)
    return engine


class Store:
    """Sessions for reading, and the one writer's transaction.

    ``reading()`` and ``writing()`` give the transaction's connection without an ORM session: the
    door's reads and writes are Core statements, and a session costs them more than the
    statements do (docs/door.md, "Where the time goes"). On SQLite the writer, and one reader at
    a time, keep their connection open from one transaction to the next. PostgreSQL's go through
    the pool, which checks each connection is alive (a server restarts, or ends sessions).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._write_lock = threading.Lock()
        self._reads = (
            self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="REPEATABLE READ")
        )
        self._pg_writes = self.engine.execution_options(write=True)
        # SQLite keeps a connection open for the writer, and one for reads (docs/door.md).
        self._writer = _Kept(self.engine, write=True) if self.is_sqlite else None
        self._reader = _Kept(self.engine) if self.is_sqlite else None
        self._reader_lock = threading.Lock()

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
        with self.writing() as conn, _session(conn) as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """``transaction()`` without an ORM session: for writes that are Core statements alone."""
        with self._write_lock:
            if self._writer is None:
                with self._pg_writes.connect() as conn, conn.begin():
                    yield conn
                return
            with self._writer.transaction() as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.reading() as conn, _session(conn) as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """``read()`` without an ORM session: one snapshot for Core statements alone."""
        # The kept reader goes to whichever read finds it free: the door's identify, on the
        # event loop, nearly always does. The others take a connection from the pool.
        if self._reader is not None and self._reader_lock.acquire(blocking=False):
            try:
                with self._reader.transaction() as conn:
                    yield conn
            finally:
                self._reader_lock.release()
            return
        with self._reads.connect() as conn, conn.begin():
            yield conn

    def close(self) -> None:
        """Closes every connection, kept or pooled (it opens new ones if used again)."""
        for kept, lock in ((self._writer, self._write_lock), (self._reader, self._reader_lock)):
            if kept is not None:
                with lock:
                    kept.close()
        self.engine.dispose()


class _Kept:
    """A connection kept open from one transaction to the next, for one user at a time (the
    caller holds a lock): no pool checkout, and SQLite's compiled statements stay cached."""

    def __init__(self, engine: Engine, **options: Any) -> None:
        self.engine, self.options = engine, options
        self._conn: Connection | None = None

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        if self._conn is None:
            self._conn = self.engine.connect().execution_options(**self.options)
        conn = self._conn
        try:
            with conn.begin():
                yield conn
        except BaseException:
            # A failed transaction may leave its connection mid-transaction (a commit refused by
            # a full disk, say): the pool rolls its connections back on return, a kept one is
            # not returned. So it is closed, and the next transaction opens another.
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.invalidate()
            conn.close()


@contextmanager
def _session(conn: Connection) -> Iterator[Session]:
    # Joins the connection's transaction: its commit flushes; the connection then commits (or, on
    # an exception, rolls back).
    with Session(bind=conn, expire_on_commit=False) as session, session.begin():
        yield session


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
    """Copy the SQLite file aside before changing its schema; nothing to copy for a new one.

    Not on PostgreSQL: the server's own tools copy it (``pg_dump``, before ``db upgrade``); each
    upgrade runs in one transaction there (DDL is transactional), so a failed one changes nothing."""
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


_REVISION_LINE = re.compile(r'^(down_revision|revision) = (?:"([^"]+)"|None)$', re.MULTILINE)


def head_revision() -> str | None:
    """The newest migration, read from the files: the revision no other one builds on."""
    revisions: set[str] = set()
    bases: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, value in _REVISION_LINE.findall(path.read_text()):
            (revisions if name == "revision" else bases).add(value)
    heads = revisions - bases
    return heads.pop() if len(heads) == 1 else None


def at_head(store: Store) -> bool:
    """Whether the database's schema is the newest, asked without loading Alembic."""
    head = head_revision()
    if head is None:
        return False
    try:
        with store.engine.connect() as conn:
            versions = {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}
    except DBAPIError:  # no alembic_version table: a new database
        return False
    return versions == {head}


def upgrade(store: Store) -> list[str]:
    """Bring the schema to head; returns the revisions applied (backed up first)."""
    # Serve checks this at every start: Alembic (~10 MB resident) is loaded only to migrate.
    if at_head(store):
        return []
    from alembic import command

    pending = pending_migrations(store)
    if not pending:
        return []
    backup = backup_before_migration(store)
    if backup:
        log.info("database copied to %s before migrating", backup)
    elif not store.is_sqlite:
        log.info("no pre-migration copy of a %s database: take one with its own tools", store.engine.dialect.name)
    cfg = _alembic_config(store.url)
    # On PostgreSQL the writer lock also keeps two processes (serve, the sync timer) from
    # migrating at once; SQLite's own write lock does that there.
    engine = store.engine if store.is_sqlite else store.engine.execution_options(write=True)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    log.info("database migrated: %s", ", ".join(pending))
    return pending
