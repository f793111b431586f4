"""Bounded growth: old audit rows, resolved alerts, surplus sync runs and pre-migration copies go;
attendance, recent rows and open alerts stay."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import func, select

from edge.attendance import record_event
from edge.models import (
    Action,
    ActorKind,
    Alert,
    AttendanceEvent,
    AuditEntry,
    AuditOutcome,
    Method,
    SubjectKind,
    SyncOutcome,
    SyncRun,
    SyncTrigger,
)
from edge.retention import RetentionPolicy, prune
from edge.store import Store

NOW = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)


def count(store: Store, model: type) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_prune_keeps_what_the_policy_keeps(store: Store, data_dir: Path) -> None:
    old, recent = NOW - dt.timedelta(days=800), NOW - dt.timedelta(days=10)
    with store.transaction() as session:
        for at in (old, recent):
            session.add(AuditEntry(at=at, action="check_in", outcome=AuditOutcome.ALLOWED))
            record_event(
                session,
                subject_kind=SubjectKind.CHILD,
                subject_id=f"C{at.year}",
                action=Action.CHECK_IN,
                method=Method.PIN,
                actor_kind=ActorKind.PAYER,
                actor_id="P1",
                station_id="front-door",
                occurred_at=at,
                clock_synced=True,
            )
        session.add(Alert(at=old, kind="lockout", message="old, resolved", resolved_at=old))
        session.add(Alert(at=old, kind="lockout", message="old, still open"))
        session.add(Alert(at=recent, kind="lockout", message="recent, resolved", resolved_at=recent))
        for i in range(15):
            session.add(
                SyncRun(trigger=SyncTrigger.SCHEDULE, started_at=NOW - dt.timedelta(hours=i), outcome=SyncOutcome.OK)
            )
    backups = data_dir / "backups"
    backups.mkdir()
    for day in range(1, 6):
        (backups / f"checkin-edge.pre-migration-2026110{day}T000000Z.db").write_bytes(b"x")
    (backups / "checkin-edge-20261101.tar.gz").write_bytes(b"nightly backups are not ours to prune")

    pruned = prune(store, data_dir, RetentionPolicy(sync_runs_kept=10, pre_migration_copies_kept=2), NOW)

    assert (pruned.audit, pruned.alerts, pruned.sync_runs, pruned.pre_migration_copies) == (1, 1, 5, 3)
    assert count(store, AuditEntry) == 1
    assert count(store, AttendanceEvent) == 2  # attendance is the record: never pruned
    with store.read() as session:
        assert sorted(a.message for a in session.scalars(select(Alert))) == ["old, still open", "recent, resolved"]
        kept_runs = list(session.scalars(select(SyncRun.id).order_by(SyncRun.id)))
    assert kept_runs == list(range(6, 16))  # the newest ten
    assert sorted(p.name for p in backups.iterdir()) == [
        "checkin-edge-20261101.tar.gz",
        "checkin-edge.pre-migration-20261104T000000Z.db",
        "checkin-edge.pre-migration-20261105T000000Z.db",
    ]
    assert prune(store, data_dir, RetentionPolicy(sync_runs_kept=10, pre_migration_copies_kept=2), NOW).total == 0
