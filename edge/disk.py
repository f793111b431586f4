"""Free space on the data directory's disk, and the staff alert when it runs low.

An SD card that fills up fails every write at once, the door's included. This warns early
(``LOW_DISK_MIN_FREE_*``: weeks of attendance still fit) so staff can act, and warns once per
change of state: one alert row and one live ``alert`` when the disk turns low, the alert
resolved when it recovers. It only ever reports: nothing is refused and nothing already
recorded is touched because a disk is low.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import select, update

from edge import audit, const
from edge.events import EventBus
from edge.models import Alert
from edge.store import Store

log = logging.getLogger(__name__)

ALERT_LOW_DISK = "low_disk"


class Usage(NamedTuple):
    total: int
    used: int
    free: int


UsageFn = Callable[[Path], Usage]


def _disk_usage(path: Path) -> Usage:
    total, used, free = shutil.disk_usage(path)
    return Usage(total, used, free)


@dataclass(frozen=True)
class DiskStatus:
    total_bytes: int
    free_bytes: int
    low: bool

    @property
    def free_ratio(self) -> float:
        return self.free_bytes / self.total_bytes if self.total_bytes else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "free_mb": round(self.free_bytes / 1024 / 1024, 1),
            "total_mb": round(self.total_bytes / 1024 / 1024, 1),
            "free_percent": round(self.free_ratio * 100, 1),
        }

    def describe(self) -> str:
        return f"{self.free_bytes / 1024 / 1024:.0f} MB free ({self.free_ratio:.0%} of the disk)"


def disk_status(
    path: Path,
    *,
    min_free_bytes: int = const.LOW_DISK_MIN_FREE_BYTES,
    min_free_ratio: float = const.LOW_DISK_MIN_FREE_RATIO,
    usage: UsageFn = _disk_usage,
) -> DiskStatus:
    """The disk holding ``path``: low when below either threshold (a small card hits the share
    first, a big one the bytes)."""
    found = usage(path)
    ratio = found.free / found.total if found.total else 0.0
    return DiskStatus(found.total, found.free, found.free < min_free_bytes or ratio < min_free_ratio)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DiskWatch:
    """Checks the data directory's disk; raises one alert when it turns low, resolves it when it
    recovers. A restart does not raise the same alert again: an open one is found first."""

    def __init__(
        self,
        store: Store,
        events: EventBus | None,
        data_dir: Path,
        *,
        min_free_bytes: int = const.LOW_DISK_MIN_FREE_BYTES,
        min_free_ratio: float = const.LOW_DISK_MIN_FREE_RATIO,
        usage: UsageFn = _disk_usage,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.events = events
        self.data_dir = data_dir
        self.min_free_bytes = min_free_bytes
        self.min_free_ratio = min_free_ratio
        self.usage = usage
        self.clock = clock
        self._low: bool | None = None  # unknown until the first check
        self.last: DiskStatus | None = None

    def status(self) -> DiskStatus:
        return disk_status(
            self.data_dir, min_free_bytes=self.min_free_bytes, min_free_ratio=self.min_free_ratio, usage=self.usage
        )

    def check(self) -> DiskStatus | None:
        """One look; acts only on a change of state. None when the disk cannot be read."""
        try:
            status = self.status()
        except OSError as exc:
            log.warning("cannot read free space of %s: %s", self.data_dir, exc)
            return None
        self.last = status
        if status.low == self._low:
            return status
        try:
            if status.low:
                self._turned_low(status)
            elif self._low is not None or self._open_alert_id() is not None:
                self._recovered(status)
        except Exception:
            # A full disk can fail the alert's own write: say so in the journal, try again next
            # round (the state is not recorded as changed), and never take the hub down.
            log.exception("could not record the disk state (%s)", status.describe())
            return status
        self._low = status.low
        return status

    def _open_alert_id(self) -> int | None:
        with self.store.read() as session:
            return session.scalar(
                select(Alert.id).where(Alert.kind == ALERT_LOW_DISK, Alert.resolved_at.is_(None)).limit(1)
            )

    def _turned_low(self, status: DiskStatus) -> None:
        log.warning("the data directory's disk is low: %s", status.describe())
        if self._open_alert_id() is not None:
            return  # raised before a restart, still open: once per change of state
        message = (
            f"The appliance's disk is nearly full: {status.describe()}. Check-ins are still recorded; "
            "free space (old backups, a bigger SD card) before it runs out."
        )
        with self.store.transaction() as session:
            alert_id = audit.raise_alert(session=session, at=self.clock(), kind=ALERT_LOW_DISK, message=message)
        if self.events is not None:
            self.events.publish(
                "alert", {"alert_id": alert_id, "kind": ALERT_LOW_DISK, "message": message, "disk": status.as_json()}
            )

    def _recovered(self, status: DiskStatus) -> None:
        log.info("the data directory's disk has room again: %s", status.describe())
        with self.store.transaction() as session:
            session.execute(
                update(Alert)
                .where(Alert.kind == ALERT_LOW_DISK, Alert.resolved_at.is_(None))
                .values(resolved_at=self.clock())
            )

    def run(self, stop: threading.Event, interval_s: float = const.DISK_CHECK_INTERVAL_S) -> None:
        self.check()
        while not stop.wait(interval_s):
            self.check()
