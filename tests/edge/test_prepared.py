"""Prepared statements (the door's shortcut past SQLAlchemy's execution) read and write exactly
what SQLAlchemy itself would: the same values, of the same types, row for row."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, select, text, update

from cloud_sync.roster_sync import RosterSyncService
from edge import audit, facts
from edge.checkin import CheckinService
from edge.models import AuditEntry
from edge.pins import PinHasher
from edge.policy import RefusalReason
from edge.prepared import Prepared
from edge.store import Store
from tests.conftest import FakeClock
from tests.door import PINS, apply, make_service


@pytest.fixture
def service(store: Store, hasher: PinHasher, clock: FakeClock, roster_sync: RosterSyncService) -> CheckinService:
    apply(roster_sync)
    return make_service(store, hasher, clock)


def _as_sqlalchemy_reads(prepared: Prepared, store: Store, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with store.reading() as conn:
        return [tuple(row) for row in conn.execute(prepared.statement, params)]  # type: ignore[call-overload]


def test_each_door_read_returns_what_sqlalchemy_returns(service: CheckinService, store: Store) -> None:
    found = service.identify("front-door", "pin", PINS["P1"])
    service.act(found.ticket, ["C1"], "check_in")  # type: ignore[union-attr]  # a presence row and its event
    service.act(service.identify("front-door", "pin", PINS["E1"]).ticket, [], "clock_in")  # type: ignore[union-attr]
    cases: list[tuple[Prepared, dict[str, Any]]] = [
        (facts._PIN_HOLDERS, {"digest": service.hasher.digest(PINS["P1"])}),
        (facts._PIN_HOLDERS, {"digest": service.hasher.digest(PINS["E1"])}),  # a teacher: role NULL
        (facts._PERSON, {"id": "P1"}),
        (facts._TEACHER, {"id": "E1"}),
        (facts._CHILDREN_OF_PERSON, {"person": "P1"}),
        (facts._CHILDREN_BY_ID, {"id": "C1", "person": "P1"}),
        (facts._CHILDREN_BY_ID, {"id": "C2", "person": ""}),  # no link, no presence: NULLs
        (facts._STAFF_PRESENCE, {"id": "E1"}),
    ]
    for prepared, params in cases:
        expected = _as_sqlalchemy_reads(prepared, store, params)
        with store.reading() as conn:
            got = [tuple(row) for row in prepared.rows(conn, params)]
        assert expected, f"nothing to compare for {params}"
        assert got == expected
        assert [[type(v) for v in row] for row in got] == [[type(v) for v in row] for row in expected]
    # A datetime comes back aware, in UTC, as SQLAlchemy's column type makes it.
    with store.reading() as conn:
        since = facts._STAFF_PRESENCE.first(conn, {"id": "E1"}).since
    assert since.tzinfo is not None


def test_an_insert_stores_what_sqlalchemy_stores(store: Store) -> None:
    at = dt.datetime(2026, 11, 30, 15, 42, 7, 123456, tzinfo=dt.UTC)
    rows = [
        audit.audit_row(at=at, action="check_in", station_id="front-door", method="pin", reason=None, rule="r"),
        audit.audit_row(
            at=at,
            action="check_out",
            station_id=None,
            method=None,
            reason=RefusalReason.RESTRICTED,
            rule="no",
            detail={"role": "payer", "é": [1, 2]},
        ),
    ]
    with store.writing() as conn:
        Prepared(insert(AuditEntry.__table__)).run(conn, rows)
        conn.execute(insert(AuditEntry.__table__), rows)
    with store.read() as session:
        stored = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        # As the database holds them, too: SQL NULL and JSON null read back alike through the ORM.
        held = [tuple(row)[1:] for row in session.execute(text("SELECT * FROM audit_log ORDER BY id"))]
    assert held[:2] == held[2:]
    columns = [c.key for c in AuditEntry.__table__.columns if c.key != "id"]
    prepared_rows, sqlalchemy_rows = stored[:2], stored[2:]
    for mine, theirs in zip(prepared_rows, sqlalchemy_rows, strict=True):
        assert {c: getattr(mine, c) for c in columns} == {c: getattr(theirs, c) for c in columns}
    assert prepared_rows[0].at == at
    assert prepared_rows[1].detail == {"role": "payer", "é": [1, 2]}


def test_an_expanding_in_is_not_prepared(store: Store) -> None:
    if not store.is_sqlite:
        pytest.skip("the shortcut is SQLite's: other databases run the statement through SQLAlchemy")
    children = facts.CHILDREN
    prepared = Prepared(select(children.c.id).where(children.c.id.in_(bindparam("ids", expanding=True))))
    with pytest.raises(ValueError, match="rendered anew"), store.reading() as conn:
        prepared.rows(conn, {"ids": ["C1"]})


def test_an_update_says_how_many_rows_it_touched(store: Store) -> None:
    """The phones' flush updates a phone's row, and inserts it when the update touched none."""
    table = AuditEntry.__table__
    row = audit.audit_row(at=dt.datetime.now(dt.UTC), action="a", station_id="s", method=None, reason=None, rule="r")
    rename = Prepared(update(table).where(table.c.station_id == bindparam("was")))
    with store.writing() as conn:
        Prepared(insert(table)).run(conn, [row, row])
        assert rename.run(conn, {"was": "s", "station_id": "t"}) == 2
        assert rename.run(conn, {"was": "s", "station_id": "u"}) == 0
