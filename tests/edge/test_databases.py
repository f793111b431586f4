"""The promises edge/store.py keeps on both databases (docs/architecture.md, "Databases"): one
writer across processes, one snapshot per read, aware UTC timestamps, Unicode-aware lower(),
and a NUL in a looked-up string finding nothing instead of failing. Each test runs on SQLite
and, in the PostgreSQL run, on PostgreSQL; a second Store on the same URL stands for another
process (its own engine, its own in-process lock)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, StatementError

from edge.models import Alert, Child, Room
from edge.store import Store


@pytest.fixture
def other(store: Store) -> Iterator[Store]:
    """Another process's view of the same database."""
    second = Store(store.url)
    yield second
    second.close()


def _alert(at: dt.datetime, kind: str = "test") -> Alert:
    return Alert(kind=kind, at=at, message="m")


def _count(store: Store) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(Alert)) or 0)


def test_a_second_writer_waits_for_the_first_then_sees_its_rows(store: Store, other: Store) -> None:
    now = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
    inside = threading.Event()
    release = threading.Event()
    seen: list[int] = []
    entered_at: list[float] = []

    def first() -> None:
        with store.transaction() as session:
            session.add(_alert(now))
            session.flush()
            inside.set()
            release.wait(10)

    def second() -> None:
        with other.transaction() as session:
            # A session begins at its first statement: that is where the writer lock is waited for.
            seen.append(int(session.scalar(select(func.count()).select_from(Alert)) or 0))
            entered_at.append(time.monotonic())
            session.add(_alert(now))

    a = threading.Thread(target=first)
    a.start()
    assert inside.wait(10)
    b = threading.Thread(target=second)
    b.start()
    time.sleep(0.5)
    assert entered_at == []  # still waiting for the first writer
    released_at = time.monotonic()
    release.set()
    a.join(10)
    b.join(10)
    assert len(entered_at) == 1
    assert entered_at[0] >= released_at
    assert seen == [1]  # the first writer's row, committed before the second began
    assert _count(store) == 2


def test_a_read_sees_one_snapshot_while_another_process_writes(store: Store, other: Store) -> None:
    now = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)
    with store.transaction() as session:
        session.add(_alert(now))
    with store.read() as session:
        before = session.scalar(select(func.count()).select_from(Alert))
        with other.transaction() as writing:
            writing.add(_alert(now))
        assert session.scalar(select(func.count()).select_from(Alert)) == before == 1
    assert _count(store) == 2


def test_timestamps_come_back_aware_utc_to_the_microsecond(store: Store) -> None:
    pacific = dt.timezone(dt.timedelta(hours=-8))
    at = dt.datetime(2026, 3, 8, 1, 59, 59, 123456, tzinfo=pacific)
    with store.transaction() as session:
        session.add(_alert(at, kind="tz"))
    with store.read() as session:
        back = session.scalars(select(Alert.at).where(Alert.kind == "tz")).one()
        # Compared in the database too: a bound aware time finds the row on both.
        assert session.scalars(select(Alert.kind).where(Alert.at == at.astimezone(dt.UTC))).one() == "tz"
    assert back == at
    assert back.tzinfo is dt.UTC
    naive = dt.datetime(2026, 3, 8, 1, 59)  # noqa: DTZ001 - the point of the test
    with store.transaction() as session:
        session.add(_alert(naive))
        with pytest.raises(StatementError, match="naive datetime"):
            session.flush()
        session.rollback()


def test_lower_folds_every_letter_on_both(store: Store) -> None:
    with store.transaction() as session:
        session.add(Room(id="R1", name="Élodie's ÅNGSTRÖM room", content_hash="x", changed_at=dt.datetime.now(dt.UTC)))
    with store.read() as session:
        assert session.scalar(select(func.lower(Room.name))) == "élodie's ångström room"
        found = session.scalars(select(Room.id).where(func.lower(Room.name).like("%ångström%"))).all()
    assert found == ["R1"]


def test_a_nul_in_a_looked_up_string_finds_nothing(store: Store) -> None:
    """PostgreSQL cannot take a NUL in a text, even to compare with; SQLite can. Both find nothing."""
    with store.read() as session:
        assert session.get(Child, "C1\x00") is None
        assert session.scalars(select(Room.id).where(func.lower(Room.name).like("%\x00%"))).all() == []


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_starts_with_no_rows_and_ids_from_one(store: Store, round_: int) -> None:
    """Twice: the PostgreSQL run empties the last test's database instead of copying a new one,
    so rows and sequences must not leak from one test into the next."""
    assert _count(store) == 0
    with store.transaction() as session:
        alert = _alert(dt.datetime(2026, 11, 30, 8, round_, tzinfo=dt.UTC))
        session.add(alert)
        session.flush()
        assert alert.id == 1


def test_postgres_storage_errors_are_the_door_s_storage_faults() -> None:
    """The server's disk full and a database taking no writes answer as SQLite's full or read-only
    file do (503 storage_full / storage_read_only; tests/faults/test_read_only_postgres.py drives
    the read-only one for real); a constraint stays an error."""
    from psycopg import errors

    from edge.disk import StorageFault, storage_fault

    wrapped = DBAPIError("INSERT …", {}, errors.DiskFull("could not extend file"))
    assert storage_fault(wrapped) is StorageFault.FULL
    assert storage_fault(errors.ReadOnlySqlTransaction("read-only")) is StorageFault.READ_ONLY
    assert storage_fault(errors.UniqueViolation("duplicate key")) is None
