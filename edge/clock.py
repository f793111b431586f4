"""Is the system clock known to be right? A Pi has no battery clock: after a power cut its
time is wrong until NTP answers. Each attendance event records the answer (``clock_synced``).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path

# systemd-timesyncd touches this file once the clock has been synchronized since boot.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
# No real clock reads earlier than this build; a Pi that booted without NTP often reads 1970
# or the last shutdown's fake-hwclock time.
EARLIEST_SANE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LATEST_SANE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
MAX_CLOUD_DRIFT_S = 120.0


class ClockCheck:
    """Caches its verdict for a few seconds: it is asked on every check-in."""

    def __init__(
        self,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        timesync_flag: Path | None = TIMESYNC_FLAG,
        cache_s: float = 10.0,
    ) -> None:
        self.clock = clock
        self.timesync_flag = timesync_flag
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, bool] | None = None
        self.cloud_offset_s: float | None = None  # cloud Date minus our clock, when last heard

    def note_cloud_date(self, cloud_now: dt.datetime, local_now: dt.datetime | None = None) -> None:
        """A second opinion: the cloud's ``Date`` header, as seen when its answer arrived."""
        local = local_now or self.clock()
        with self._lock:
            self.cloud_offset_s = (cloud_now - local).total_seconds()
            self._cached = None

    def drift_s(self) -> float | None:
        return self.cloud_offset_s

    def synced(self) -> bool:
        now_mono = time.monotonic()
        with self._lock:
            if self._cached and now_mono - self._cached[0] < self.cache_s:
                return self._cached[1]
        verdict = self._evaluate()
        with self._lock:
            self._cached = (now_mono, verdict)
        return verdict

    def _evaluate(self) -> bool:
        now = self.clock()
        if not (EARLIEST_SANE <= now < LATEST_SANE):
            return False
        if self.cloud_offset_s is not None and abs(self.cloud_offset_s) > MAX_CLOUD_DRIFT_S:
            return False
        if self.timesync_flag is not None and self.timesync_flag.parent.exists():
            # Under systemd-timesyncd: trust only a clock it has synchronized since boot.
            return self.timesync_flag.exists() or self.cloud_offset_s is not None
        return True
