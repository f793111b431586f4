"""Is the system clock known to be right? A Pi has no battery clock: after a power cut its
time is wrong until NTP answers. Each attendance event records the answer (``clock_synced``).

The wall clock can also jump while the hub runs (someone sets it by hand, a bad NTP source).
Each look compares how far the wall clock moved with how far the monotonic clock did; a step of
more than ``MAX_STEP_S`` makes the clock "not known good" until something confirms it after the
step: systemd-timesyncd touching its flag (it does on every synchronization, so a step NTP made
itself is confirmed at once) or the cloud's ``Date`` (the cloud offset measured before the step
is forgotten: it was measured against the old clock).
"""

from __future__ import annotations

import datetime as dt
import logging
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
# More than NTP's slewing (at most 500 ppm) could move the wall clock between two looks.
MAX_STEP_S = 5.0

log = logging.getLogger(__name__)


class ClockCheck:
    """Caches its verdict for a few seconds: it is asked on every check-in."""

    def __init__(
        self,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        timesync_flag: Path | None = TIMESYNC_FLAG,
        cache_s: float = 10.0,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.clock = clock
        self.monotonic = monotonic if monotonic is not None else time.monotonic
        self.timesync_flag = timesync_flag
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, bool] | None = None
        self.cloud_offset_s: float | None = None  # cloud Date minus our clock, when last heard
        self._base: tuple[float, dt.datetime] | None = None  # (monotonic, wall) at the last look
        self.stepped_at: dt.datetime | None = None  # the wall clock jumped here, not confirmed since
        self._flag_at_step: float | None = None  # timesyncd's flag's mtime when the step was seen

    def note_cloud_date(self, cloud_now: dt.datetime, local_now: dt.datetime | None = None) -> None:
        """A second opinion: the cloud's ``Date`` header, as seen when its answer arrived."""
        local = local_now or self.clock()
        with self._lock:
            self._watch_steps(self.monotonic(), self.clock())
            self.cloud_offset_s = (cloud_now - local).total_seconds()
            self.stepped_at = None  # a measurement made after the step: it decides from now on
            self._cached = None

    def drift_s(self) -> float | None:
        return self.cloud_offset_s

    def synced(self) -> bool:
        now_mono = self.monotonic()
        wall = self.clock()
        with self._lock:
            # Two clock reads per check-in: a jump is caught on the very next event, cache or not.
            self._watch_steps(now_mono, wall)
            if self._cached and now_mono - self._cached[0] < self.cache_s:
                return self._cached[1]
        verdict = self._evaluate()
        with self._lock:
            self._cached = (now_mono, verdict)
        return verdict

    def _watch_steps(self, mono: float, wall: dt.datetime) -> None:
        """Called with the lock held: notes a step of the wall clock since the last look."""
        base, self._base = self._base, (mono, wall)
        if base is None:
            return
        elapsed = mono - base[0]
        step = (wall - base[1]).total_seconds() - elapsed
        if abs(step) <= MAX_STEP_S:
            return
        # The earliest the step can have happened, on the new clock: just after the last look.
        self.stepped_at = wall - dt.timedelta(seconds=elapsed)
        self._flag_at_step = self._flag_mtime()
        self.cloud_offset_s = None
        self._cached = None
        log.warning("the wall clock jumped by %+.0f s; events are flagged until it is confirmed", step)

    def _flag_mtime(self) -> float | None:
        try:
            return None if self.timesync_flag is None else self.timesync_flag.stat().st_mtime
        except OSError:
            return None

    def _confirmed_after_step(self) -> bool:
        stepped = self.stepped_at
        if stepped is None:
            return True
        # Touched again since the step was seen (its times are in whichever clock was set then,
        # so compare with the flag's own earlier time, not with ours).
        mtime = self._flag_mtime()
        touched = mtime is not None and mtime != self._flag_at_step
        if touched:
            with self._lock:
                if self.stepped_at is stepped:
                    self.stepped_at = None
        return touched

    def _evaluate(self) -> bool:
        now = self.clock()
        if not (EARLIEST_SANE <= now < LATEST_SANE):
            return False
        if not self._confirmed_after_step():
            return False
        if self.cloud_offset_s is not None and abs(self.cloud_offset_s) > MAX_CLOUD_DRIFT_S:
            return False
        if self.timesync_flag is not None and self.timesync_flag.parent.exists():
            # Under systemd-timesyncd: trust only a clock it has synchronized since boot.
            return self.timesync_flag.exists() or self.cloud_offset_s is not None
        return True
