"""PIN pad lockout: 5 wrong PINs within a minute lock a station for 30 s, doubling; it survives a
restart; staff are alerted."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cloud_sync.roster_sync import RosterSyncService
from edge.checkin import CheckinService
from edge.events import EventBus
from edge.lockout import PinLockout
from edge.models import Alert, AuditEntry, StationLockout
from edge.outcomes import Identification, Refusal
from edge.pins import PinHasher
from edge.policy import RefusalReason
from edge.store import Store
from tests.conftest import FakeClock
from tests.door import PINS, STATION, apply, make_service

R = RefusalReason
WRONG = "0000"


@pytest.fixture
def events() -> EventBus:
    return EventBus()


@pytest.fixture
def service(
    store: Store, hasher: PinHasher, clock: FakeClock, roster_sync: RosterSyncService, events: EventBus
) -> CheckinService:
    apply(roster_sync)
    return make_service(store, hasher, clock, events)


def wrong(service: CheckinService, times: int, station: str = STATION) -> list[Refusal]:
    answers = []
    for _ in range(times):
        answer = service.identify(station, "pin", WRONG)
        assert isinstance(answer, Refusal)
        answers.append(answer)
    return answers


def test_five_wrong_pins_lock_the_station_for_30_s(
    service: CheckinService, store: Store, clock: FakeClock, events: EventBus
) -> None:
    answers = wrong(service, 5)
    assert [a.reason for a in answers] == [R.UNKNOWN_PIN] * 4 + [R.LOCKED]
    assert answers[-1].retry_after_s == 30
    # Even the right PIN waits now, and says how long is left.
    clock.advance(seconds=12)
    locked = service.identify(STATION, "pin", PINS["P1"])
    assert isinstance(locked, Refusal)
    assert (locked.reason, locked.retry_after_s) == (R.LOCKED, 18)
    clock.advance(seconds=18)
    assert isinstance(service.identify(STATION, "pin", PINS["P1"]), Identification)
    with store.read() as session:
        row = session.get(StationLockout, STATION)
        alert = session.scalars(select(Alert)).one()
        lockout_audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "lockout")).one()
    assert row is not None
    assert (row.lockouts, row.locked_until) == (1, clock())  # it ended exactly now
    assert (alert.kind, alert.station_id) == ("pin_lockout", STATION)
    assert "locked for 30 s after 5 wrong PINs" in alert.message
    assert (lockout_audit.reason, lockout_audit.station_id) == ("locked", STATION)
    alerts = [e for e in events.since(0) if e.kind == "alert"]
    assert [(e.station_id, e.data["kind"]) for e in alerts] == [(STATION, "pin_lockout")]


def test_each_further_lockout_doubles(service: CheckinService, clock: FakeClock) -> None:
    for expected in (30, 60, 120, 240):
        assert wrong(service, 5)[-1].retry_after_s == expected
        clock.advance(seconds=expected)


def test_the_doubling_stops_at_the_cap(
    store: Store, hasher: PinHasher, clock: FakeClock, roster_sync: RosterSyncService
) -> None:
    apply(roster_sync)
    events = EventBus()
    lockout = PinLockout(store, events, clock, base_s=30, max_s=100, monotonic=lambda: clock().timestamp())
    service = make_service(store, hasher, clock, events)
    service.lockout = lockout
    seen = []
    for _ in range(4):
        seen.append(wrong(service, 5)[-1].retry_after_s)
        clock.advance(seconds=100)
    assert seen == [30, 60, 100, 100]


def test_an_hour_without_a_lockout_starts_over(service: CheckinService, clock: FakeClock) -> None:
    assert wrong(service, 5)[-1].retry_after_s == 30
    clock.advance(seconds=30)
    assert wrong(service, 5)[-1].retry_after_s == 60
    clock.advance(seconds=60 + 3600)
    assert wrong(service, 5)[-1].retry_after_s == 30


def test_wrong_pins_spread_over_more_than_a_minute_do_not_lock(service: CheckinService, clock: FakeClock) -> None:
    for _ in range(12):
        (answer,) = wrong(service, 1)
        assert answer.reason is R.UNKNOWN_PIN
        clock.advance(seconds=16)  # never 5 within 60 s


def test_a_lockout_is_per_station(service: CheckinService) -> None:
    wrong(service, 5, "front-door")
    assert isinstance(service.identify("back-door", "pin", PINS["P1"]), Identification)


def test_the_lockout_survives_a_restart(
    service: CheckinService, store: Store, hasher: PinHasher, clock: FakeClock
) -> None:
    wrong(service, 5)
    clock.advance(seconds=10)
    restarted = make_service(store, hasher, clock)  # a new process: nothing in memory
    answer = restarted.identify(STATION, "pin", PINS["P1"])
    assert isinstance(answer, Refusal)
    assert (answer.reason, answer.retry_after_s) == (R.LOCKED, 20)
    clock.advance(seconds=20)
    assert isinstance(restarted.identify(STATION, "pin", PINS["P1"]), Identification)
    # ...and remembers the count: the next lockout doubles.
    assert wrong(restarted, 5)[-1].retry_after_s == 60


def test_attempts_while_locked_are_not_written(service: CheckinService, store: Store) -> None:
    wrong(service, 5)
    with store.read() as session:
        before = len(session.scalars(select(AuditEntry)).all())
    wrong(service, 20)
    with store.read() as session:
        assert len(session.scalars(select(AuditEntry)).all()) == before
