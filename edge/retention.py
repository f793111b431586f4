"""Bounded growth of the data directory: what is kept, and for how long.

Attendance is kept (it is the record). Everything else that grows with time has a limit: the
audit log and resolved alerts by age, sync runs by count (each holds its report), and the
copies made before migrations by count. Delivered outbox rows, phone fixes and seen QR nonces
are pruned by their own owners (cloud_sync.outbox, edge.pings, edge.tokens).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Delete, delete, select
from sqlalchemy.orm import Session

from edge.models import Alert, AuditEntry, SyncRun
from edge.store import Store

log = logging.getLogger(__name__)

PRE_MIGRATION_GLOB = "*.pre-migration-*.db"


@dataclass(frozen=True)
class RetentionPolicy:
    audit_days: float = 730.0  # two years: long enough for any dispute about a pickup
    resolved_alert_days: float = 90.0
    sync_runs_kept: int = 200
    pre_migration_copies_kept: int = 3


@dataclass(frozen=True)
class Pruned:
    audit: int
    alerts: int
    sync_runs: int
    pre_migration_copies: int

    @property
    def total(self) -> int:
        return self.audit + self.alerts + self.sync_runs + self.pre_migration_copies


def _deleted(session: Session, statement: Delete) -> int:
    return int(getattr(session.execute(statement), "rowcount", 0) or 0)


def prune(store: Store, data_dir: Path, policy: RetentionPolicy, now: dt.datetime) -> Pruned:
    with store.transaction() as session:
        audit = _deleted(session, delete(AuditEntry).where(AuditEntry.at < now - dt.timedelta(days=policy.audit_days)))
        alerts = _deleted(
            session,
            delete(Alert).where(
                Alert.resolved_at.is_not(None), Alert.resolved_at < now - dt.timedelta(days=policy.resolved_alert_days)
            ),
        )
        keep_from = session.scalar(
            select(SyncRun.id).order_by(SyncRun.id.desc()).offset(policy.sync_runs_kept - 1).limit(1)
        )
        runs = 0 if keep_from is None else _deleted(session, delete(SyncRun).where(SyncRun.id < keep_from))
    copies = sorted((data_dir / "backups").glob(PRE_MIGRATION_GLOB), key=lambda p: p.name)
    stale = copies[: max(0, len(copies) - policy.pre_migration_copies_kept)]
    for path in stale:
        path.unlink(missing_ok=True)
    result = Pruned(audit, alerts, runs, len(stale))
    if result.total:
        log.info("retention: pruned %s", result)
    return result


class RetentionLoop:
    """Once a day (and once at start), until ``stop`` is set."""

    def __init__(
        self,
        store: Store,
        data_dir: Path,
        policy: RetentionPolicy,
        clock: Callable[[], dt.datetime],
        interval_s: float = 86_400.0,
    ) -> None:
        self.store = store
        self.data_dir = data_dir
        self.policy = policy
        self.clock = clock
        self.interval_s = interval_s

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                prune(self.store, self.data_dir, self.policy, self.clock())
            except Exception:
                log.exception("retention pass failed; the next one tries again")
            stop.wait(self.interval_s)
