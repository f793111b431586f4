"""Attendance reports: hours per child and room, CSV rows, occupancy, end-of-day exceptions, the
audit search. Days are the center's (America/Los_Angeles in the test roster)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cloud_sync.roster_sync import RosterSyncService
from edge import reports
from edge.attendance import record_event
from edge.checkin import CheckinService
from edge.models import Action, ActorKind, Method, SubjectKind
from edge.pins import PinHasher
from edge.store import Store
from tests.conftest import FakeClock
from tests.door import PINS, STATION, apply, door_export, make_service
from tests.exports import child

ZONE = ZoneInfo("America/Los_Angeles")
DAY = dt.date(2026, 11, 30)
CLOSING = dt.time(18, 30)


def local(day: dt.date, hhmm: str) -> dt.datetime:
    return dt.datetime.combine(day, reports.parse_hhmm(hhmm), tzinfo=ZONE).astimezone(dt.UTC)


def event(store: Store, child_id: str, action: Action, at: dt.datetime) -> None:
    with store.transaction() as session:
        record_event(
            session,
            subject_kind=SubjectKind.CHILD,
            subject_id=child_id,
            action=action,
            method=Method.PIN,
            actor_kind=ActorKind.PAYER,
            actor_id="P1",
            station_id=STATION,
            occurred_at=at,
            clock_synced=True,
        )


def report(store: Store, start: dt.date, end: dt.date, now: dt.datetime) -> reports.AttendanceReport:
    with store.read() as session:
        return reports.attendance_report(session=session, start=start, end=end, zone=ZONE, now=now, closing=CLOSING)


@pytest.fixture
def roster(roster_sync: RosterSyncService) -> None:
    apply(roster_sync)


IN, OUT = Action.CHECK_IN, Action.CHECK_OUT


@pytest.mark.parametrize(
    ("events", "hours", "visits", "note"),
    [
        ([(IN, "08:00"), (OUT, "12:00"), (IN, "13:00"), (OUT, "17:30")], 8.5, 2, ""),
        ([(IN, "07:45"), (OUT, "16:15")], 8.5, 1, ""),
        ([(IN, "09:00")], 9.5, 1, "no check-out (counted to closing time)"),  # to 18:30
        ([(IN, "19:00")], 5.0, 1, "no check-out (counted to closing time)"),  # after closing: to midnight
        ([(OUT, "17:00")], 0.0, 0, "check-out with no check-in"),
        ([(IN, "08:00"), (IN, "10:00"), (OUT, "11:00")], 3.0, 2, ""),  # two check-ins in a row
    ],
)
def test_hours_of_a_past_day(
    store: Store, roster: None, events: list[tuple[Action, str]], hours: float, visits: int, note: str
) -> None:
    for action, hhmm in events:
        event(store, "C1", action, local(DAY, hhmm))
    (row,) = report(store, DAY, DAY, now=local(DAY + dt.timedelta(days=2), "09:00")).children
    assert (row.child_name, row.room_name) == ("Mai Nguyen", "Infants")
    assert (round(row.hours, 4), row.visits, row.note) == (hours, visits, note)


def test_today_an_open_visit_counts_to_now(store: Store, roster: None) -> None:
    event(store, "C1", IN, local(DAY, "08:00"))
    (row,) = report(store, DAY, DAY, now=local(DAY, "10:30")).children
    assert (row.hours, row.note) == (2.5, "still checked in (counted to now)")


def test_rooms_and_ranges(store: Store, roster: None) -> None:
    event(store, "C1", IN, local(DAY, "08:00"))
    event(store, "C1", OUT, local(DAY, "12:00"))
    event(store, "C2", IN, local(DAY, "09:00"))
    event(store, "C2", OUT, local(DAY, "10:00"))
    event(store, "C3", IN, local(DAY, "09:00"))
    event(store, "C3", OUT, local(DAY, "11:00"))
    event(store, "C1", IN, local(DAY + dt.timedelta(days=1), "08:00"))
    event(store, "C1", OUT, local(DAY + dt.timedelta(days=1), "09:00"))
    event(store, "C2", IN, local(DAY - dt.timedelta(days=1), "08:00"))  # outside the range
    result = report(store, DAY, DAY + dt.timedelta(days=1), now=local(DAY + dt.timedelta(days=3), "08:00"))
    assert [(r.day.day, r.room_name, r.children, r.hours) for r in result.rooms] == [
        (30, "Infants", 1, 4.0),
        (30, "Toddlers", 2, 3.0),
        (1, "Infants", 1, 1.0),
    ]
    assert result.total_hours == 8.0
    assert result.days == 2


def test_a_daylight_saving_day_has_25_hours(store: Store, roster: None) -> None:
    fall_back = dt.date(2026, 11, 1)
    start, end = reports.day_bounds(fall_back, ZONE)
    assert end - start == dt.timedelta(hours=25)
    event(store, "C1", IN, local(fall_back, "00:30"))
    event(store, "C1", OUT, local(fall_back, "03:30"))  # 01:xx happens twice: 4 real hours
    (row,) = report(store, fall_back, fall_back, now=local(DAY, "08:00")).children
    assert row.hours == 4.0


def test_ranges_that_cannot_be_reported(store: Store) -> None:
    with pytest.raises(reports.ReportError, match="ends before"):
        report(store, DAY, DAY - dt.timedelta(days=1), now=local(DAY, "08:00"))
    with pytest.raises(reports.ReportError, match="at most 366"):
        report(store, DAY - dt.timedelta(days=400), DAY, now=local(DAY, "08:00"))


def test_csv_rows_defuse_formulas(store: Store, roster_sync: RosterSyncService) -> None:
    page: dict[str, Any] = door_export()
    page["families"][0]["children"].append(child("C7", "=HYPERLINK(1)", last_name="+Evil"))
    apply(roster_sync, page)
    event(store, "C7", IN, local(DAY, "08:00"))
    event(store, "C7", OUT, local(DAY, "09:15"))
    rows = list(reports.child_csv_rows(report(store, DAY, DAY, now=local(DAY, "20:00"))))
    assert rows == [
        ["date", "child_id", "child", "room", "first_check_in", "last_check_out", "hours", "visits", "note"],
        ["2026-11-30", "C7", "'=HYPERLINK(1) +Evil", "Infants", "08:00", "09:15", "1.25", "1", ""],
    ]
    rooms = list(reports.room_csv_rows(report(store, DAY, DAY, now=local(DAY, "20:00"))))
    assert rooms == [["date", "room", "children", "child_hours"], ["2026-11-30", "Infants", "1", "1.25"]]


def test_occupancy_steps_through_the_day(store: Store, roster: None) -> None:
    event(store, "C2", IN, local(DAY - dt.timedelta(days=1), "17:00"))  # never checked out: in at midnight
    event(store, "C1", IN, local(DAY, "08:00"))
    event(store, "C3", IN, local(DAY, "08:30"))
    event(store, "C3", OUT, local(DAY, "12:00"))
    event(store, "C1", OUT, local(DAY, "16:00"))  # after "now": not drawn
    with store.read() as session:
        rooms = reports.occupancy(session=session, day=DAY, zone=ZONE, now=local(DAY, "13:00"))
    by_name = {room.room_name: room for room in rooms}
    infants, toddlers = by_name["Infants"], by_name["Toddlers"]
    assert [count for _at, count in infants.steps] == [0, 1]
    assert (infants.peak, infants.current) == (1, 1)
    assert [count for _at, count in toddlers.steps] == [1, 2, 1]
    assert (toddlers.peak, toddlers.current) == (2, 1)


def test_end_of_day_exceptions_today(store: Store, roster: None) -> None:
    event(store, "C2", IN, local(DAY - dt.timedelta(days=1), "08:00"))  # forgotten yesterday
    event(store, "C1", IN, local(DAY, "08:00"))
    event(store, "C3", OUT, local(DAY, "09:00"))  # never checked in
    with store.read() as session:
        before = reports.day_exceptions(session=session, day=DAY, zone=ZONE, now=local(DAY, "12:00"), closing=CLOSING)
        after = reports.day_exceptions(session=session, day=DAY, zone=ZONE, now=local(DAY, "18:45"), closing=CLOSING)
    assert not before.after_closing
    assert [e.child_id for e in before.still_in] == ["C2"]  # before closing, only an earlier day's
    assert after.after_closing
    assert [e.child_id for e in after.still_in] == ["C2", "C1"]
    assert [(e.child_id, e.at) for e in after.orphan_checkouts] == [("C3", local(DAY, "09:00"))]
    assert after.count == 3


def test_end_of_day_exceptions_of_a_past_day(store: Store, roster: None) -> None:
    event(store, "C1", IN, local(DAY, "08:00"))
    event(store, "C1", OUT, local(DAY + dt.timedelta(days=1), "08:00"))
    with store.read() as session:
        past = reports.day_exceptions(
            session=session, day=DAY, zone=ZONE, now=local(DAY + dt.timedelta(days=2), "08:00"), closing=CLOSING
        )
        next_day = reports.day_exceptions(
            session=session,
            day=DAY + dt.timedelta(days=1),
            zone=ZONE,
            now=local(DAY + dt.timedelta(days=2), "08:00"),
            closing=CLOSING,
        )
    assert [e.child_id for e in past.still_in] == ["C1"]
    assert [e.child_id for e in next_day.orphan_checkouts] == ["C1"]


def test_audit_search_by_child_person_and_day(
    store: Store, hasher: PinHasher, clock: FakeClock, roster_sync: RosterSyncService
) -> None:
    apply(roster_sync)
    service: CheckinService = make_service(store, hasher, clock)
    found = service.identify(STATION, "pin", PINS["P1"])
    assert not isinstance(found, type(None))
    service.act(found.ticket, ["C1"], "check_in")  # type: ignore[union-attr]
    clock.advance(days=1)
    service.staff_override("E1", "C2", "check_in", "forgot her PIN", "dashboard")
    service.staff_override("user:maria", "C3", "check_in", "paper sign-in", "dashboard", account_name="maria")
    today = clock().astimezone(ZONE).date()

    def search(**kw: Any) -> list[tuple[str | None, str | None, str | None]]:
        with store.read() as session:
            lines = reports.search_audit(session=session, zone=ZONE, **kw)
        return [(line.entry.child_id, line.actor_name, line.child_name) for line in lines]

    assert search(child="mai") == [("C1", "An Nguyen", "Mai Nguyen")]
    assert search(child="C2") == [("C2", "Lee Park", "Noah Smith")]
    assert search(person="lee park") == [("C2", "Lee Park", "Noah Smith")]
    assert search(person="maria") == [("C3", "maria (dashboard)", "Ava Smith")]
    assert search(person="P1") == [("C1", "An Nguyen", "Mai Nguyen")]
    assert [c for c, _a, _n in search(day=today)] == ["C3", "C2"]
    assert search(day=today, child="mai") == []
    assert search(child="%") == []  # LIKE wildcards are text
