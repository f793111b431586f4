"""PIN pad lockout: too many wrong PINs at a station lock it for a while.

LOCKOUT_MAX_FAILURES wrong PINs within LOCKOUT_WINDOW_S lock the station for LOCKOUT_BASE_S,
doubling with each further lockout (up to LOCKOUT_MAX_S) until LOCKOUT_RESET_S pass without one.
A 4-digit PIN has 10,000 values: at 5 guesses per 30 s and doubling, guessing one takes days.

Failure counts live in memory (a wrong PIN costs no disk write); the lockout itself is written to
``station_lockouts`` with an alert and an audit row, so a restart (or pulling the plug) does not
unlock the pad, and staff see that it happened.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
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
    ) -> None:
        self.store = store
        self.events = events
        self.clock = clock
        self.max_failures = max_failures
        self.window = dt.timedelta(seconds=window_s)
        self.base_s = base_s
        self.max_s = max_s
        self.reset = dt.timedelta(seconds=reset_s)
        self._lock = threading.Lock()
        self._failures: dict[str, deque[dt.datetime]] = {}
        self._states: dict[str, LockState] | None = None  # read from the database on first use

    def retry_after(self, station_id: str) -> int | None:
        """Whole seconds until the station's pad takes PINs again, or None when it is not locked."""
        now = self.clock()
        with self._lock:
            state = self._loaded().get(station_id)
        if state is None or state.locked_until <= now:
            return None
        return max(1, math.ceil((state.locked_until - now).total_seconds()))

    def record_failure(self, station_id: str) -> int | None:
        """Count one wrong PIN; returns the lockout's length in seconds when this one locked the pad."""
        now = self.clock()
        with self._lock:
            recent = self._failures.setdefault(station_id, deque())
            while recent and now - recent[0] >= self.window:
                recent.popleft()
            recent.append(now)
            if len(recent) < self.max_failures:
                return None
            failures = len(recent)
            recent.clear()
            states = self._loaded()
            previous = states.get(station_id)
            repeated = previous is not None and now - previous.locked_until < self.reset
            lockouts = previous.lockouts + 1 if previous is not None and repeated else 1
            seconds = min(self.base_s * 2.0 ** min(lockouts - 1, 30), self.max_s)
            state = LockState(now + dt.timedelta(seconds=seconds), lockouts)
            # In memory first: the pad is locked even if writing it down fails below.
            states[station_id] = state
        self._persist(station_id, state, failures, seconds, now)
        return math.ceil(seconds)

    def unlock(self, station_id: str, *, by: str) -> bool:
        """Staff open a locked PIN pad by hand (the dashboard): the lockout, its doubling and the
        failure count are forgotten, its alerts resolved, and who did it audited. False when the
        pad was not locked."""
        now = self.clock()
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
            locked = state is not None and state.locked_until > now
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
                    session=session,
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
                session=session, at=now, kind=audit.ALERT_LOCKOUT, message=message, station_id=station_id
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
                session=session,
            )
        log.warning("station %s locked for %.0f s (lockout %d)", station_id, seconds, state.lockouts)
        self.events.publish(
            "alert",
            {"alert_id": alert_id, "kind": audit.ALERT_LOCKOUT, "message": message, "station_id": station_id},
            station_id=station_id,
        )
