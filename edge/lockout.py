"""PIN pad lockout: too many wrong PINs at a station lock it for a while.

LOCKOUT_MAX_FAILURES wrong PINs within LOCKOUT_WINDOW_S lock the station for LOCKOUT_BASE_S,
doubling with each further lockout (up to LOCKOUT_MAX_S) until LOCKOUT_RESET_S pass without one.
A 4-digit PIN has 10,000 values: at 5 guesses per 30 s and doubling, guessing one takes days.

Failure counts live in memory (a wrong PIN costs no disk write); the lockout itself is written to
``station_lockouts`` with an alert and an audit row, so a restart (or pulling the plug) does not
unlock the pad, and staff see that it happened.

Durations are measured on the monotonic clock, so the wall clock jumping (set back an hour, or
forward a day) neither keeps a pad locked for that hour nor unlocks it early. A lockout read back
after a restart has only its wall-clock end: it is then never longer than its own length.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update

from edge import audit, const
from edge.events import EventBus
from edge.models import Alert, StationLockout
from edge.policy import RefusalReason
from edge.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class LockState:
    locked_until: dt.datetime
    lockouts: int  # consecutive lockouts, each twice as long as the one before
    ends_mono: float | None = None  # the monotonic end, for a lockout this process imposed


class PinLockout:
    def __init__(
        self,
        store: Store,
        events: EventBus,
        clock: Clock,
        *,
        max_failures: int = const.LOCKOUT_MAX_FAILURES,
        window_s: float = const.LOCKOUT_WINDOW_S,
        base_s: float = const.LOCKOUT_BASE_S,
        max_s: float = const.LOCKOUT_MAX_S,
        reset_s: float = const.LOCKOUT_RESET_S,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.clock = clock
        self.monotonic = monotonic if monotonic is not None else time.monotonic
        self.max_failures = max_failures
        self.window = dt.timedelta(seconds=window_s)
        self.base_s = base_s
        self.max_s = max_s
        self.reset = dt.timedelta(seconds=reset_s)
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}  # monotonic times of recent wrong PINs
        self._states: dict[str, LockState] | None = None  # read from the database on first use

    def retry_after(self, station_id: str) -> int | None:
        """Whole seconds until the station's pad takes PINs again, or None when it is not locked."""
        now, mono = self.clock(), self.monotonic()
        with self._lock:
            state = self._loaded().get(station_id)
        left = self._left(state, now, mono)
        return None if left <= 0 else max(1, math.ceil(left))

    def _length(self, lockouts: int) -> float:
        return min(self.base_s * 2.0 ** min(lockouts - 1, 30), self.max_s)

    def _left(self, state: LockState | None, now: dt.datetime, mono: float) -> float:
        """Seconds the pad stays locked (0 or less: open)."""
        if state is None:
            return 0.0
        if state.ends_mono is not None:
            return state.ends_mono - mono  # the wall clock may have jumped since; this cannot
        # Read back after a restart: the wall clock is all there is, but a clock set back must
        # not stretch a lockout past its own length.
        return min((state.locked_until - now).total_seconds(), self._length(state.lockouts))

    def record_failure(self, station_id: str) -> int | None:
        """Count one wrong PIN; returns the lockout's length in seconds when this one locked the pad."""
        now, mono = self.clock(), self.monotonic()
        window_s = self.window.total_seconds()
        with self._lock:
            recent = self._failures.setdefault(station_id, deque())
            while recent and mono - recent[0] >= window_s:
                recent.popleft()
            recent.append(mono)
            if len(recent) < self.max_failures:
                return None
            failures = len(recent)
            recent.clear()
            states = self._loaded()
            previous = states.get(station_id)
            repeated = previous is not None and self._since_end(previous, now, mono) < self.reset.total_seconds()
            lockouts = previous.lockouts + 1 if previous is not None and repeated else 1
            seconds = self._length(lockouts)
            state = LockState(now + dt.timedelta(seconds=seconds), lockouts, mono + seconds)
            # In memory first: the pad is locked even if writing it down fails below.
            states[station_id] = state
        self._persist(station_id, state, failures, seconds, now)
        return math.ceil(seconds)

    def _since_end(self, state: LockState, now: dt.datetime, mono: float) -> float:
        """Seconds since a lockout ended (negative while it lasts), for the doubling's reset."""
        if state.ends_mono is not None:
            return mono - state.ends_mono
        return (now - state.locked_until).total_seconds()

    def unlock(self, station_id: str, *, by: str) -> bool:
        """Staff open a locked PIN pad by hand (the dashboard): the lockout, its doubling and the
        failure count are forgotten, its alerts resolved, and who did it audited. False when the
        pad was not locked."""
        now, mono = self.clock(), self.monotonic()
        with self._lock:
            state = self._loaded().pop(station_id, None)
            self._failures.pop(station_id, None)
        with self.store.transaction() as session:
            row = session.get(StationLockout, station_id)
            if row is not None:
                session.delete(row)
            session.execute(
                update(Alert)
                .where(Alert.station_id == station_id, Alert.kind == audit.ALERT_LOCKOUT, Alert.resolved_at.is_(None))
                .values(resolved_at=now)
            )
            locked = self._left(state, now, mono) > 0
            if locked:
                audit.append(
                    [
                        audit.audit_row(
                            at=now,
                            action="unlock",
                            station_id=station_id,
                            method=None,
                            reason=None,
                            rule="staff unlocked the PIN pad by hand",
                            actor_kind="staff",
                            actor_id=by,
                        )
                    ],
                    db=session,
                )
        if locked:
            log.warning("station %s unlocked by %s", station_id, by)
        return locked

    def _loaded(self) -> dict[str, LockState]:
        if self._states is None:
            with self.store.read() as session:
                self._states = {
                    row.station_id: LockState(row.locked_until, row.lockouts)
                    for row in session.scalars(select(StationLockout))
                }
        return self._states

    def _persist(self, station_id: str, state: LockState, failures: int, seconds: float, now: dt.datetime) -> None:
        message = (
            f"The PIN pad at {station_id} is locked for {seconds:.0f} s after {failures} wrong PINs "
            f"within {self.window.total_seconds():.0f} s"
            + (f" (lockout {state.lockouts} in a row)" if state.lockouts > 1 else "")
        )
        with self.store.transaction() as session:
            row = session.get(StationLockout, station_id)
            if row is None:
                session.add(
                    StationLockout(
                        station_id=station_id, locked_until=state.locked_until, lockouts=state.lockouts, updated_at=now
                    )
                )
            else:
                row.locked_until, row.lockouts, row.updated_at = state.locked_until, state.lockouts, now
            alert_id = audit.raise_alert(
                db=session, at=now, kind=audit.ALERT_LOCKOUT, message=message, station_id=station_id
            )
            audit.append(
                [
                    audit.audit_row(
                        at=now,
                        action="lockout",
                        station_id=station_id,
                        method="pin",
                        reason=RefusalReason.LOCKED,
                        rule=message,
                        detail={"locked_until": state.locked_until.isoformat(), "lockouts": state.lockouts},
                    )
                ],
                db=session,
            )
        log.warning("station %s locked for %.0f s (lockout %d)", station_id, seconds, state.lockouts)
        self.events.publish(
            "alert",
            {"alert_id": alert_id, "kind": audit.ALERT_LOCKOUT, "message": message, "station_id": station_id},
            station_id=station_id,
        )
