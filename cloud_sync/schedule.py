"""When the roster is pulled: fixed local times in the back office's zone (Pacific by default).

The one definition of the schedule: ``serve``'s in-process loop, ``sync --next`` and the test
that checks systemd/checkin-edge-sync.timer all read it from here.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from edge import const

log = logging.getLogger(__name__)

# A slot already pulled is not pulled again within this much real (monotonic) time, whatever the
# wall clock says: set back an hour just after 03:00, it would otherwise read 03:00 as still due.
SAME_SLOT_GUARD_S = 12 * 3600.0


@dataclass(frozen=True)
class SyncSchedule:
    slots: tuple[dt.time, ...]
    zone: ZoneInfo

    @classmethod
    def from_config(cls, slots: Sequence[str] = const.SYNC_SLOTS_PACIFIC, zone: str = const.PACIFIC_TZ) -> SyncSchedule:
        times = tuple(sorted(dt.time(int(s[:2]), int(s[3:5])) for s in slots))
        return cls(times, ZoneInfo(zone))

    def _instants_on(self, day: dt.date) -> list[dt.datetime]:
        out = []
        for slot in self.slots:
            local = dt.datetime.combine(day, slot, tzinfo=self.zone)
            # A slot inside a spring-forward gap does not exist that day: round-tripping through
            # UTC moves it to the next real instant. fold=0 takes the first of a repeated hour.
            out.append(local.astimezone(dt.UTC))
        return sorted(set(out))

    def next_runs(self, after: dt.datetime, count: int) -> list[dt.datetime]:
        """The next ``count`` pulls strictly after ``after``, as UTC instants."""
        if after.tzinfo is None:
            raise ValueError("after must be timezone-aware")
        runs: list[dt.datetime] = []
        day = after.astimezone(self.zone).date() - dt.timedelta(days=1)
        while len(runs) < count:
            runs.extend(t for t in self._instants_on(day) if t > after)
            day += dt.timedelta(days=1)
        return runs[:count]

    def previous_run(self, now: dt.datetime) -> dt.datetime:
        """The last scheduled instant at or before ``now``."""
        day = now.astimezone(self.zone).date()
        while True:
            earlier = [t for t in self._instants_on(day) if t <= now]
            if earlier:
                return earlier[-1]
            day -= dt.timedelta(days=1)

    def due_at_startup(self, last_success: dt.datetime | None, now: dt.datetime) -> bool:
        """Pull at start-up when the last good pull is older than the previous slot."""
        return last_success is None or last_success < self.previous_run(now)


class SyncLoop:
    """Runs the schedule inside ``serve`` when no systemd timer drives it.

    The wall clock may jump while it waits: forward (a day, say), and the slot it waited for is
    pulled once at once, the ones jumped over not one by one; back, and the slot it last pulled is
    not pulled again (``SAME_SLOT_GUARD_S``), the next one is awaited instead.
    """

    def __init__(
        self,
        schedule: SyncSchedule,
        run_sync: Callable[[str], object],
        last_success: Callable[[], dt.datetime | None],
        clock: Callable[[], dt.datetime],
        stop: threading.Event,
        *,
        poll_s: float = 60.0,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.schedule = schedule
        self.run_sync = run_sync
        self.last_success = last_success
        self.clock = clock
        self.stop = stop
        self.poll_s = poll_s
        self.monotonic = monotonic if monotonic is not None else time.monotonic
        self._last_slot: tuple[dt.datetime, float] | None = None  # the slot last pulled, and when (monotonic)

    def next_due(self, now: dt.datetime) -> dt.datetime:
        """The next slot to pull: the next one after ``now``, unless that is the slot just pulled."""
        (due,) = self.schedule.next_runs(now, 1)
        if self._last_slot is not None:
            slot, pulled_at = self._last_slot
            if due == slot and self.monotonic() - pulled_at < SAME_SLOT_GUARD_S:
                log.warning("the clock went back to before the %s pull; waiting for the next slot", slot.isoformat())
                (due,) = self.schedule.next_runs(slot, 1)
        return due

    def run(self) -> None:
        if self.schedule.due_at_startup(self.last_success(), self.clock()):
            self._run_once("startup")
        while not self.stop.is_set():
            due = self.next_due(self.clock())
            log.info("next roster sync at %s", due.isoformat())
            # Wake at least every minute: a clock set right by NTP after boot moves "due".
            while not self.stop.is_set() and self.clock() < due:
                self.stop.wait(min(self.poll_s, max(0.05, (due - self.clock()).total_seconds())))
            if not self.stop.is_set():
                self._last_slot = (due, self.monotonic())
                self._run_once("schedule")

    def _run_once(self, trigger: str) -> None:
        try:
            self.run_sync(trigger)
        except Exception:
            log.exception("scheduled roster sync raised; the next slot will try again")
