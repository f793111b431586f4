"""Free space on the data directory's disk, the staff alert when it runs low, and what happens
when it has run out (or turned read-only).

An SD card that fills up fails every write at once, the door's included. This warns early
(``LOW_DISK_MIN_FREE_*``: weeks of attendance still fit) so staff can act, and warns once per
change of state: one alert row and one live ``alert`` when the disk turns low, the alert
resolved when it recovers. It only ever reports: nothing is refused and nothing already
recorded is touched because a disk is low.

When a write does fail (SQLite's ``SQLITE_FULL``, or a directory the kernel remounted
read-only after a card error), the transaction is rolled back whole, so nothing recorded is
touched; ``storage_fault`` names the fault, the web layer answers the station with it (503,
``storage_full`` / ``storage_read_only``: the hub failed, not the person) and ``StorageAlarm``
remembers it in memory, because the disk may not take an alert row. ``DiskWatch`` writes that
row as soon as a write succeeds again, and the alarm clears then; SQLite itself needs no
restart to write again once there is room.
"""

from __future__ import annotations

import datetime as dt
import enum
import errno
import logging
import os
import shutil
import sqlite3
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
ALERT_STORAGE = "storage_fault"


class StorageFault(enum.StrEnum):
    """Why the hub could not save: the station API's 503 codes (docs/door.md, "Faults")."""

    FULL = "storage_full"
    READ_ONLY = "storage_read_only"


# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_READONLY = 8
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_IOERR = 10
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class StorageUnavailable(Exception):
    """The data directory cannot be written: raised at start-up, before SQLite is opened."""

    def __init__(self, fault: StorageFault, path: Path, detail: str) -> None:
        self.fault = fault
        self.path = path
        what = "is full" if fault is StorageFault.FULL else "is read-only"
        super().__init__(
            f"The data directory {path} {what} ({detail}): check-ins cannot be saved. "
            + (
                "Free space on its disk (old backups, a bigger SD card), then start again."
                if fault is StorageFault.FULL
                else "Remount it read-write (a card the kernel remounted read-only after errors needs checking "
                "or replacing), then start again."
            )
        )


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (SQLAlchemy's ``.orig``) and what caused it."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen) or len(seen) > 10:
            continue
        seen.append(item)
        todo.extend([getattr(item, "orig", None), item.__cause__, item.__context__])
    return seen


# PostgreSQL's SQLSTATEs for the same two faults: its server's disk full, and a database (or a
# standby) that takes no writes.
_PG_DISK_FULL = "53100"
_PG_READ_ONLY = "25006"


def storage_fault(exc: BaseException, db_dir: Path | None = None) -> StorageFault | None:
    """Which storage fault an error from a write (or from opening the database) is, or None for
    anything else (a bug, a constraint: those stay errors)."""
    for item in _chain(exc):
        if isinstance(item, sqlite3.Error):
            code = (getattr(item, "sqlite_errorcode", 0) or 0) & 0xFF
            if code == _SQLITE_FULL:
                return StorageFault.FULL
            if code == _SQLITE_READONLY:
                return StorageFault.READ_ONLY
            if code in (_SQLITE_CANTOPEN, _SQLITE_IOERR) and db_dir is not None:
                # A WAL database in a read-only directory cannot even be opened (its -shm file
                # cannot be made): name the cause when the directory says so.
                return writable_fault(db_dir)
        elif (sqlstate := getattr(item, "sqlstate", None)) is not None:  # PostgreSQL's (psycopg)
            if sqlstate == _PG_DISK_FULL:
                return StorageFault.FULL
            if sqlstate == _PG_READ_ONLY:
                return StorageFault.READ_ONLY
        elif isinstance(item, OSError):
            if item.errno in _FULL_ERRNOS:
                return StorageFault.FULL
            if item.errno == errno.EROFS:
                return StorageFault.READ_ONLY
    return None


def writable_fault(path: Path) -> StorageFault | None:
    """None when ``path`` (a directory) takes a new file; otherwise why not. Root ignores file
    modes, not a read-only mount, so this tries rather than asks ``os.access``."""
    try:
        fd, name = _probe_file(path)
    except OSError as exc:
        if exc.errno in _FULL_ERRNOS:
            return StorageFault.FULL
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return StorageFault.READ_ONLY
        return None
    os.close(fd)
    os.unlink(name)
    return None


def _probe_file(path: Path) -> tuple[int, str]:
    name = str(path / f".write-probe-{os.getpid()}")
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"\0" * 4096)  # a page: a directory entry alone fits on a full disk
    except OSError:
        os.close(fd)
        os.unlink(name)
        raise
    return fd, name


def require_writable(*paths: Path) -> None:
    """Start-up's check: each directory takes a page-sized file, or ``StorageUnavailable``."""
    for path in paths:
        fault = writable_fault(path)
        if fault is not None:
            detail = "no space left" if fault is StorageFault.FULL else "read-only file system"
            raise StorageUnavailable(fault, path, detail)


@dataclass(frozen=True)
class StorageProblem:
    fault: StorageFault
    since: dt.datetime
    refused: int  # writes refused since (check-ins, audit rows, syncs)

    def as_json(self) -> dict[str, Any]:
        return {"fault": self.fault.value, "since": self.since.isoformat(), "refused": self.refused}


class StorageAlarm:
    """The storage fault in memory, where the dashboard and /healthz read it: the disk that
    failed may not take an alert row. Cleared by ``DiskWatch`` once a write succeeds again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problem: StorageProblem | None = None

    def current(self) -> StorageProblem | None:
        with self._lock:
            return self._problem

    def failed(self, fault: StorageFault, now: dt.datetime) -> bool:
        """Count one failed write; True when this one raised the alarm (announce it once)."""
        with self._lock:
            problem = self._problem
            if problem is None or problem.fault is not fault:
                self._problem = StorageProblem(fault, now, 1)
                return True
            self._problem = StorageProblem(fault, problem.since, problem.refused + 1)
            return False

    def clear(self) -> StorageProblem | None:
        with self._lock:
            problem, self._problem = self._problem, None
            return problem


def storage_message(problem: StorageProblem) -> str:
    what = "is full" if problem.fault is StorageFault.FULL else "turned read-only"
    return (
        f"The appliance's storage {what} (since {problem.since:%Y-%m-%d %H:%M} UTC): check-ins could not be saved "
        f"and families were told to see staff ({problem.refused} refused so far). Record those check-ins by hand; "
        + (
            "free space (old backups, a bigger SD card)."
            if problem.fault is StorageFault.FULL
            else "the SD card may be failing: check or replace it."
        )
    )


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
        alarm: StorageAlarm | None = None,
    ) -> None:
        self.store = store
        self.alarm = alarm
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
        self.check_alarm()
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

    def check_alarm(self) -> bool:
        """A write refused for storage since the last look: write its alert row now. The row
        going in proves writes work again, so the alarm clears; the alert stays open (families
        were turned away: staff record those check-ins by hand and resolve it). True when the
        alarm cleared."""
        problem = self.alarm.current() if self.alarm is not None else None
        if self.alarm is None or problem is None:
            return False
        message = storage_message(problem)
        try:
            with self.store.transaction() as session:
                alert_id = audit.raise_alert(db=session, at=self.clock(), kind=ALERT_STORAGE, message=message)
        except Exception as exc:
            if storage_fault(exc, self.data_dir) is None:
                log.exception("could not record the storage fault")
            return False  # still failing: the alarm (in memory) is what staff see meanwhile
        self.alarm.clear()
        log.warning("writes work again after a storage fault (%s, %d refused)", problem.fault.value, problem.refused)
        if self.events is not None:
            self.events.publish(
                "alert", {"alert_id": alert_id, "kind": ALERT_STORAGE, "message": message, "storage": None}
            )
        return True

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
            alert_id = audit.raise_alert(db=session, at=self.clock(), kind=ALERT_LOW_DISK, message=message)
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
