"""The dashboard's *Sync now*: one roster pull in a background thread, told on the live channel.

The page posts, gets its answer at once, and hears ``sync`` events (``started``, then
``finished`` with the outcome and counts) on its live stream. One pull at a time: a second
press while one runs, or while another process's pull is recorded as running (the sync timer),
is refused, because a pull starting marks any run still "running" as interrupted.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading

from sqlalchemy import select

from cloud_sync.roster_sync import RosterSource, RosterSyncService, SyncReport
from edge.events import SYNC, EventBus
from edge.models import SyncOutcome, SyncRun, SyncTrigger
from edge.store import Store

log = logging.getLogger(__name__)

# A run recorded as running for longer than this died with its process: it no longer blocks.
STALE_RUN_S = 15 * 60.0


class ManualSync:
    def __init__(self, roster_sync: RosterSyncService, source: RosterSource | None, events: EventBus) -> None:
        self.roster_sync = roster_sync
        self.source = source
        self.events = events
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        return self.source is not None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self, by: str) -> str | None:
        """Start a pull; None when started, or why not in plain words."""
        if self.source is None:
            return "No roster source is set on this appliance (source_url), so there is nothing to pull from"
        with self._lock:
            if self.running or _running_elsewhere(self.roster_sync.store, self.roster_sync.clock()):
                return "A sync is already running; its result will show here when it ends"
            self._thread = threading.Thread(target=self._run, args=(self.source, by), name="sync-now", daemon=True)
            self._thread.start()
        return None

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self, source: RosterSource, by: str) -> None:
        try:
            announced_pull(self.roster_sync, source, SyncTrigger.MANUAL, self.events, by=by)
        except Exception as exc:  # pull records its own failures; this is a bug, told all the same
            log.exception("sync now failed")
            self.events.publish(SYNC, {"state": "finished", "outcome": "failed", "error": type(exc).__name__})


def announced_pull(
    roster_sync: RosterSyncService, source: RosterSource, trigger: SyncTrigger, events: EventBus, *, by: str
) -> SyncReport:
    """One pull, told on the live channel (kind ``sync``) as it starts and ends: Sync now, and the
    schedule's pulls inside ``serve`` (kiosk_ui/cli.py), so an open dashboard sees both."""
    events.publish(SYNC, {"state": "started", "by": by})
    report = roster_sync.pull(source, trigger)
    events.publish(
        SYNC,
        {
            "state": "finished",
            "outcome": report.outcome.value,
            "counts": report.counts,
            "error": report.error,
            "skipped": len(report.skipped),
            "demoted": len(report.demoted),
            "run_id": report.run_id,
        },
    )
    return report


def _running_elsewhere(store: Store, now: dt.datetime) -> bool:
    with store.read() as session:
        started = session.scalar(
            select(SyncRun.started_at).where(SyncRun.outcome == SyncOutcome.RUNNING).order_by(SyncRun.id.desc())
        )
    return started is not None and (now - started).total_seconds() < STALE_RUN_S
