"""What the hub last heard from the cloud, for the kiosk's "offline" badge and the dashboard.

Written by the outbox sender, read by screens; in memory only (no disk write per attempt).
"""

from __future__ import annotations

import datetime as dt
import enum
import threading
from dataclasses import dataclass


class CloudState(enum.StrEnum):
    UNKNOWN = "unknown"  # nothing sent yet since start
    ONLINE = "online"
    OFFLINE = "offline"  # unreachable, timing out or 5xx: check-ins are saved and sent later
    REFUSED = "refused"  # 401/403: our token is refused; staff must act


@dataclass(frozen=True)
class CloudHealth:
    state: CloudState
    last_success: dt.datetime | None
    last_error: str | None
    changed_at: dt.datetime | None


class Connectivity:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._health = CloudHealth(CloudState.UNKNOWN, None, None, None)

    def get(self) -> CloudHealth:
        with self._lock:
            return self._health

    def record_success(self, now: dt.datetime) -> bool:
        """Returns True when the state changed (worth announcing once)."""
        with self._lock:
            changed = self._health.state is not CloudState.ONLINE
            self._health = CloudHealth(CloudState.ONLINE, now, None, now if changed else self._health.changed_at)
            return changed

    def record_failure(self, now: dt.datetime, error: str, *, refused: bool = False) -> bool:
        state = CloudState.REFUSED if refused else CloudState.OFFLINE
        with self._lock:
            changed = self._health.state is not state
            self._health = CloudHealth(
                state, self._health.last_success, error, now if changed else self._health.changed_at
            )
            return changed
