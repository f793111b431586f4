"""Shared fixtures: a migrated database per test, the PIN hasher, an advanceable clock.

The database is a SQLite file under tmp_path (the appliance's own), or, in the PostgreSQL run
(``CHECKIN_EDGE_TEST_DB=postgresql``, which ``scripts/test --postgres`` sets), a database of its
own on a throwaway cluster, named by ``CHECKIN_EDGE_DATABASE_URL`` so that every config the test
builds, and every hub subprocess it starts, uses it (tests/dbenv.py keeps it in their env).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from cloud_sync.roster_sync import RosterSyncService
from edge.config import Config, load_config
from edge.pins import PinHasher
from edge.store import Store, upgrade
from tests.dbenv import DATABASE_URL_ENV, POSTGRES, DatabaseCopies

if POSTGRES or TYPE_CHECKING:
    from tests.postgres import TEMPLATE, PerTestDatabases, throwaway_cluster


class FakeClock:
    """An advanceable UTC clock for code that takes ``clock=``."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: about SQLite itself; skipped in the PostgreSQL run")
    config.addinivalue_line("markers", "empty_database: starts from a database with no schema (PostgreSQL run)")
    config.addinivalue_line("markers", "postgres_only: about PostgreSQL itself; skipped in the SQLite run")


def pytest_report_header() -> str:
    return f"database: {'PostgreSQL (throwaway cluster)' if POSTGRES else 'SQLite'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A test about SQLite itself (its files, pragmas, WAL) runs on SQLite only, one about
    # PostgreSQL in its run only; the other database keeps each promise in a test of its own
    # (docs/architecture.md, Databases, lists them).
    marker, reason = (
        ("sqlite_only", "about SQLite itself; the PostgreSQL run covers the promise elsewhere")
        if POSTGRES
        else ("postgres_only", "about PostgreSQL itself: scripts/test --postgres runs it")
    )
    for item in items:
        if item.get_closest_marker(marker):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _postgres() -> Iterator[PerTestDatabases | None]:
    """The PostgreSQL run's cluster and its migrated template. Until a test's own database is
    named, ``CHECKIN_EDGE_DATABASE_URL`` names a shared one, so that a module's or the
    session's fixtures (which start before any test's) use PostgreSQL too."""
    if not POSTGRES:
        yield None
        return
    with throwaway_cluster() as cluster:
        template = Store(cluster.create_database(TEMPLATE, "template0"))
        upgrade(template)
        with template.transaction() as session:  # for tests.dbenv.integrity_check
            session.execute(text("CREATE EXTENSION IF NOT EXISTS amcheck"))
        template.close()
        shared = cluster.create_database("shared")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(DATABASE_URL_ENV, shared)
            yield PerTestDatabases(cluster)


@pytest.fixture(autouse=True)
def _database(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, _postgres: PerTestDatabases | None
) -> Iterator[None]:
    if _postgres is None:
        monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
        yield
        return
    empty = request.node.get_closest_marker("empty_database") is not None
    name = _postgres.take_empty() if empty else _postgres.take()
    monkeypatch.setenv(DATABASE_URL_ENV, _postgres.cluster.url(name))
    yield
    _postgres.release(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2026, 11, 29, 18, 0, tzinfo=dt.UTC))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def config(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    return load_config(None, data_dir=data_dir, center_id="demo-center")


@pytest.fixture
def db_url(config: Config) -> str:
    """This test's database (what ``serve`` with this data_dir and environment opens)."""
    return config.db_url


@pytest.fixture
def database_copies(db_url: str, tmp_path: Path, _postgres: PerTestDatabases | None) -> Iterator[DatabaseCopies]:
    """Save this test's database and go back to it later (tests.dbenv.DatabaseCopies)."""
    copy = _postgres.cluster.copy_database if _postgres else None
    copies = DatabaseCopies(db_url, tmp_path / "database-copies", copy)
    yield copies
    if _postgres is not None:
        for name in copies.saved:
            _postgres.cluster.drop_database(name)


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    s = Store(config.db_url)
    upgrade(s)
    yield s
    s.close()


@pytest.fixture
def hasher(data_dir: Path) -> PinHasher:
    return PinHasher.from_data_dir(data_dir)


@pytest.fixture
def roster_sync(store: Store, hasher: PinHasher, clock: FakeClock) -> RosterSyncService:
    return RosterSyncService(store, hasher, clock)
