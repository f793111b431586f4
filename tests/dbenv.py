"""Which database the suite runs on, and environments for the subprocesses tests start.

``CHECKIN_EDGE_TEST_DB=postgresql`` asks for the PostgreSQL run; every test then has its own
database, named by ``CHECKIN_EDGE_DATABASE_URL`` (tests/conftest.py). A test that starts the hub
with a clean environment must keep that one variable, or its hub would open a SQLite file.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from edge.store import Store

TEST_DB_ENV = "CHECKIN_EDGE_TEST_DB"
DATABASE_URL_ENV = "CHECKIN_EDGE_DATABASE_URL"
POSTGRES = os.environ.get(TEST_DB_ENV, "sqlite").lower() in ("postgresql", "postgres", "pg")


def clean_env(prefixes: Iterable[str] = ("CHECKIN_EDGE_",)) -> dict[str, str]:
    """``os.environ`` without the variables starting with ``prefixes``, except this test's
    database URL, which the hub it starts must share with the test."""
    drop = tuple(prefixes)
    return {k: v for k, v in os.environ.items() if k == DATABASE_URL_ENV or not k.startswith(drop)}


def db_url(data_dir: Path) -> str:
    """The database a hub with ``data_dir`` and this test's environment opens (Config.db_url)."""
    return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{data_dir / 'checkin-edge.db'}"


def integrity_check(conn: Connection) -> str:
    """``"ok"``, or what is wrong with the database behind ``conn``, on either database.

    SQLite: ``PRAGMA integrity_check`` and ``foreign_key_check``. PostgreSQL enforces foreign
    keys itself; its ``amcheck`` checks every table's heap (``verify_heapam``) and every b-tree
    index against it (``bt_index_check``). The PostgreSQL run's template database has the
    extension (tests/conftest.py)."""
    if conn.dialect.name == "sqlite":
        verdict = str(conn.execute(text("PRAGMA integrity_check")).scalar())
        orphans = conn.execute(text("PRAGMA foreign_key_check")).all()
        return verdict if not orphans else f"{verdict}; rows with no parent: {orphans[:5]}"
    problems = conn.execute(
        text(
            "SELECT c.relname, v.msg FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, "
            "LATERAL verify_heapam(c.oid) v WHERE n.nspname = 'public' AND c.relkind = 'r'"
        )
    ).all()
    conn.execute(
        text(
            "SELECT bt_index_check(c.oid, true) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE am.amname = 'btree' AND n.nspname = 'public'"
        )
    ).all()  # raises on a broken index
    return "ok" if not problems else "; ".join(f"{table}: {msg}" for table, msg in problems[:5])


class DatabaseCopies:
    """Save this test's database and go back to it later (the roster before a killed sync), on
    either database: the SQLite file and its WAL copied aside; on PostgreSQL a copy made with
    ``CREATE DATABASE … TEMPLATE`` (``copy(source, dest)``, tests/postgres.py). Nothing may be
    writing to it meanwhile (PostgreSQL's copies disconnect whoever holds it)."""

    def __init__(self, url: str, folder: Path, copy: Callable[[str, str], None] | None) -> None:
        parsed = make_url(url)
        self._sqlite = Path(parsed.database or "") if parsed.get_backend_name() == "sqlite" else None
        self._database = parsed.database or ""
        self._folder = folder
        self._copy = copy
        self.saved: list[str] = []

    def _name(self, label: str) -> str:
        return f"{self._database}_{label}"

    def save(self, label: str) -> None:
        if self._sqlite is None:
            assert self._copy is not None
            self._copy(self._database, self._name(label))
        else:
            target = self._folder / label
            target.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-wal"):
                source = Path(f"{self._sqlite}{suffix}")
                if source.exists():
                    shutil.copy2(source, target / source.name)
        self.saved.append(self._name(label))

    def restore(self, label: str) -> None:
        if self._sqlite is None:
            assert self._copy is not None
            self._copy(self._name(label), self._database)
            return
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{self._sqlite}{suffix}").unlink(missing_ok=True)
        for saved in (self._folder / label).iterdir():
            shutil.copy2(saved, self._sqlite.parent / saved.name)


@contextmanager
def holding_the_writer(store: Store) -> Iterator[None]:
    """Another writer (a roster sync, say) holds the store's single writer while the block runs."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.transaction():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join(10)
