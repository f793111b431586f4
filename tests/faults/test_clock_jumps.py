"""The wall clock jumping while the hub runs: back one hour, forward one day.

The wall clock (a ``FakeClock``) and the monotonic clock (``Mono``) are driven apart on purpose:
a jump moves only the wall clock, real time passing moves both. Schedule, tickets, lockouts and
the attendance events' ``clock_synced`` flag must each behave (docs/architecture.md, "Faults").
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cloud_sync.roster_sync import RosterSyncService
from cloud_sync.schedule import SyncLoop, SyncSchedule
from edge.checkin import CheckinService
from edge.clock import ClockCheck
from edge.events import EventBus
from edge.lockout import PinLockout
from edge.models import ActorKind, AttendanceEvent, Method, OutboxEntry
from edge.outcomes import Identification, Refusal
from edge.pins import PinHasher
from edge.policy import Actor, RefusalReason
from edge.store import Store
from edge.tickets import TicketStore
from tests.conftest import FakeClock
from tests.door import PINS, STATION, apply

WRONG = "0000"
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


class Mono:
    """A monotonic clock the test moves: only real time passing moves it, never a jump."""

    def __init__(self) -> None:
        self.t = 10_000.0

    def __call__(self) -> float:
        return self.t


class Clocks:
    def __init__(self, wall: FakeClock, mono: Mono) -> None:
        self.wall, self.mono = wall, mono

    def elapse(self, seconds: float) -> None:
        """Real time passes: both clocks move."""
        self.wall.advance(seconds=seconds)
        self.mono.t += seconds

    def jump(self, delta: dt.timedelta) -> None:
        """Somebody sets the wall clock: the monotonic one does not move."""
        self.wall.now += delta


@pytest.fixture
def clocks(clock: FakeClock) -> Clocks:
    return Clocks(clock, Mono())


@pytest.fixture
def service(store: Store, hasher: PinHasher, roster_sync: RosterSyncService, clocks: Clocks) -> CheckinService:
    apply(roster_sync)
    bus = EventBus()
    clock_check = ClockCheck(clock=clocks.wall, timesync_flag=None, monotonic=clocks.mono)
    clock_check.note_cloud_date(clocks.wall())  # the cloud agrees: known good to start with
    return CheckinService(
        store,
        hasher,
        bus,
        clock_check,
        clock=clocks.wall,
        tickets=TicketStore(now=clocks.mono),
        lockout=PinLockout(store, bus, clocks.wall, monotonic=clocks.mono),
    )


def identify(service: CheckinService, who: str = "P1") -> Identification:
    found = service.identify(STATION, "pin", PINS[who])
    assert isinstance(found, Identification), found
    return found


def wrong(service: CheckinService, times: int) -> Refusal:
    for _ in range(times):
        answer = service.identify(STATION, "pin", WRONG)
        assert isinstance(answer, Refusal)
    return answer


# -- tickets -----------------------------------------------------------------------------------


def test_a_ticket_lives_120_real_seconds_whatever_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ticket store's own default clock: patched ``time`` functions stand for the system's."""
    mono = Mono()
    wall = [time.time()]
    with monkeypatch.context() as patched:
        patched.setattr(time, "monotonic", mono)
        patched.setattr(time, "time", lambda: wall[0])
        tickets = TicketStore()
        ticket = tickets.issue(STATION, Actor(ActorKind.PAYER, "P1", "An Nguyen"), Method.PIN)
        wall[0] += DAY.total_seconds()  # forward a day, a second after the PIN
        mono.t += 1
        assert tickets.get(ticket.token) is ticket, "a jump forward must not send a parent back to the PIN pad"
        wall[0] -= DAY.total_seconds() + HOUR.total_seconds()  # and back an hour before where it was
        mono.t += 120
        assert tickets.get(ticket.token) is None, "a jump back must not keep a ticket alive"


def test_a_ticket_used_after_the_clock_went_back_is_refused_in_time(service: CheckinService, clocks: Clocks) -> None:
    found = identify(service)
    clocks.jump(-HOUR)
    clocks.elapse(121)
    answer = service.act(found.ticket, ["C1"], "check_in")
    assert isinstance(answer, Refusal)
    assert answer.reason is RefusalReason.BAD_TICKET


# -- lockouts ----------------------------------------------------------------------------------


def test_a_lockout_is_not_stretched_by_the_clock_going_back(service: CheckinService, clocks: Clocks) -> None:
    assert wrong(service, 5).retry_after_s == 30
    clocks.jump(-HOUR)
    assert service.lockout.retry_after(STATION) == 30, "not an hour and 30 s"
    clocks.elapse(30)
    assert isinstance(service.identify(STATION, "pin", PINS["P1"]), Identification)


def test_a_lockout_does_not_vanish_when_the_clock_jumps_forward(service: CheckinService, clocks: Clocks) -> None:
    wrong(service, 5)
    clocks.jump(DAY)
    answer = service.identify(STATION, "pin", PINS["P1"])
    assert isinstance(answer, Refusal)
    assert answer.reason is RefusalReason.LOCKED
    assert answer.retry_after_s == 30
    clocks.elapse(30)
    assert isinstance(service.identify(STATION, "pin", PINS["P1"]), Identification)


def test_a_lockout_read_back_after_a_restart_is_never_longer_than_itself(
    service: CheckinService, store: Store, clocks: Clocks
) -> None:
    wrong(service, 5)
    clocks.jump(-HOUR)  # ...and the hub restarts: only the stored wall-clock end is left
    restarted = PinLockout(store, EventBus(), clocks.wall, monotonic=Mono())
    left = restarted.retry_after(STATION)
    assert left is not None
    assert left <= 30


def test_wrong_pins_an_hour_apart_do_not_add_up_after_the_clock_went_back(
    service: CheckinService, clocks: Clocks
) -> None:
    wrong(service, 4)
    clocks.jump(-HOUR)
    clocks.elapse(61)  # more than the 60 s window, in real time
    assert wrong(service, 1).reason is RefusalReason.UNKNOWN_PIN


# -- attendance events: flagged while the clock is not known good ------------------------------


def _check(service: CheckinService, action: str) -> AttendanceEvent:
    found = identify(service)
    recorded = service.act(found.ticket, ["C1"], action)
    assert not isinstance(recorded, Refusal), recorded
    with service.store.read() as session:
        event = session.get_one(AttendanceEvent, recorded[0].event_id)
        outbox = session.scalars(select(OutboxEntry).where(OutboxEntry.event_id == event.id)).one()
    assert outbox.payload["clock_synced"] is event.clock_synced  # what the cloud is told
    return event


@pytest.mark.parametrize("jump", [-HOUR, DAY], ids=["back-an-hour", "forward-a-day"])
def test_events_after_a_jump_are_flagged_until_the_clock_is_confirmed(
    service: CheckinService, clocks: Clocks, jump: dt.timedelta
) -> None:
    assert _check(service, "check_in").clock_synced is True
    clocks.elapse(5)
    clocks.jump(jump)
    clocks.elapse(5)
    flagged = _check(service, "check_out")
    assert flagged.clock_synced is False, "an event stamped by a clock that just jumped is not known good"
    clocks.elapse(20)  # past the verdict's cache: still not confirmed by anything
    assert _check(service, "check_in").clock_synced is False
    # The cloud's Date, heard after the jump, within the allowed drift: known good again.
    service.clock_check.note_cloud_date(clocks.wall())
    assert _check(service, "check_out").clock_synced is True


def test_a_step_confirmed_by_ntp_is_trusted_again(tmp_path: Path, clocks: Clocks) -> None:
    flag = tmp_path / "timesync" / "synchronized"
    flag.parent.mkdir()
    check = ClockCheck(clock=clocks.wall, timesync_flag=flag, monotonic=clocks.mono, cache_s=0)
    clocks.wall.now = dt.datetime.now(dt.UTC)
    flag.touch()
    assert check.synced()
    clocks.jump(-HOUR)
    assert not check.synced()
    # timesyncd touches its flag on every synchronization: after the step, the clock is right.
    stamp = clocks.wall().timestamp() + 1
    os.utime(flag, (stamp, stamp))
    assert check.synced()


# -- the roster schedule -----------------------------------------------------------------------


class LoopRun:
    """``SyncLoop.run`` in a thread on the fake clocks, recording each pull's wall time."""

    def __init__(self, clocks: Clocks, start: dt.datetime) -> None:
        self.clocks = clocks
        clocks.wall.now = start
        self.pulls: list[tuple[str, dt.datetime]] = []
        self.jump_during_pull: dt.timedelta | None = None  # the wall clock set while a pull runs
        self.stop = threading.Event()
        self.changed = threading.Condition()
        schedule = SyncSchedule.from_config()
        self.loop = SyncLoop(
            schedule, self._pull, clocks.wall, clocks.wall, self.stop, poll_s=0.01, monotonic=clocks.mono
        )
        self.thread = threading.Thread(target=self.loop.run, daemon=True)

    def _pull(self, trigger: str) -> None:
        with self.changed:
            self.pulls.append((trigger, self.clocks.wall()))
            if self.jump_during_pull is not None:
                self.clocks.jump(self.jump_during_pull)
                self.jump_during_pull = None
            self.changed.notify_all()

    def wait_for(self, count: int, timeout_s: float = 5.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.pulls) >= count, timeout_s), self.pulls

    def settle(self) -> None:
        time.sleep(0.15)  # many polls of the loop: whatever it would do, it has done


def _pacific(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, second, tzinfo=ZoneInfo("America/Los_Angeles")).astimezone(dt.UTC)


def test_the_schedule_neither_pulls_twice_nor_skips_when_the_clock_jumps(clocks: Clocks) -> None:
    schedule = SyncSchedule.from_config()
    first = schedule.next_runs(_pacific(1, 0), 1)[0]
    run = LoopRun(clocks, first - dt.timedelta(seconds=30))
    run.thread.start()
    try:
        run.settle()
        assert run.pulls == []
        # The slot arrives; while it is being pulled the clock is set back an hour, and then real
        # time brings the wall clock past the slot again.
        run.jump_during_pull = -HOUR
        clocks.elapse(35)
        run.wait_for(1)
        assert run.pulls[0] == ("schedule", first + dt.timedelta(seconds=5))
        run.settle()
        clocks.elapse(HOUR.total_seconds())
        run.settle()
        assert len(run.pulls) == 1, f"the {first} slot was pulled twice: {run.pulls}"
        # Forward a day: the next slot is overdue, pulled once (not once per slot jumped over).
        clocks.jump(DAY)
        run.wait_for(2)
        run.settle()
        assert len(run.pulls) == 2, run.pulls
        # ...and the schedule goes on from the new time: the next slot after it is pulled.
        following = schedule.next_runs(clocks.wall(), 1)[0]
        clocks.elapse((following - clocks.wall()).total_seconds() + 1)
        run.wait_for(3)
    finally:
        run.stop.set()
        run.thread.join(5)
    assert not run.thread.is_alive()
