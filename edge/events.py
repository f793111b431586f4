"""The live channel inside the hub: check-ins, refusals, alerts, sync runs, scanner health.

In-process publish/subscribe, thread-safe, with no web code: the web layer turns a
subscription into Server-Sent Events. A small ring buffer lets a reconnecting screen ask for
what it missed (``since``, the SSE ``Last-Event-ID``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

Listener = Callable[["LiveEvent"], None]

# Published once when the hub begins to stop: open streams end, so the server can exit at
# once and screens reconnect to the next one.
SHUTDOWN = "shutdown"
# A check-in or out (or a clock-in or out) recorded, fixes by hand included; a roster pull.
ATTENDANCE = "attendance"
SYNC = "sync"


@dataclass(frozen=True)
class LiveEvent:
    id: int
    kind: str  # "attendance", "refusal", "alert", "arrival", "sync", "scanner", "outbox", …
    at: dt.datetime
    data: dict[str, Any] = field(default_factory=dict)
    station_id: str | None = None  # None: for every screen
    # Only that station's own stream may see it (it carries a ticket): not other doors, not dashboards.
    private: bool = False

    def for_station(self, station_id: str | None) -> bool:
        if self.private:
            return station_id is not None and self.station_id == station_id
        return self.station_id is None or station_id is None or self.station_id == station_id


class EventBus:
    def __init__(self, history: int = 500) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._last_ids: dict[str, int] = {}
        self._recent: deque[LiveEvent] = deque(maxlen=history)
        self._listeners: list[Listener] = []

    def publish(
        self, kind: str, data: dict[str, Any], *, station_id: str | None = None, private: bool = False
    ) -> LiveEvent:
        with self._lock:
            event = LiveEvent(next(self._ids), kind, dt.datetime.now(dt.UTC), data, station_id, private)
            self._last_ids[kind] = event.id
            self._recent.append(event)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                # One broken screen must never stop a check-in from being announced elsewhere.
                log.exception("live listener failed")
        return event

    def last_id(self, *kinds: str) -> int:
        """The newest id among events of these kinds (0 before the first): it changes whenever
        one of them happened."""
        with self._lock:
            return max((self._last_ids.get(kind, 0) for kind in kinds), default=0)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Register ``listener``; returns the function that unregisters it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def since(self, last_id: int) -> list[LiveEvent]:
        with self._lock:
            return [e for e in self._recent if e.id > last_id]

    @property
    def listener_count(self) -> int:
        with self._lock:
            return len(self._listeners)
