"""The audit log and staff alerts: append-only rows written inside the caller's transaction.

Rows carry ids, codes and the rule in words; never a PIN, a token or a secret of any kind.
Plain Core inserts: they sit on the door's hot path.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from edge.models import Alert, AuditEntry, AuditOutcome
from edge.policy import Decision, RefusalReason
from edge.prepared import Db, Prepared

AUDIT_TABLE = cast(Table, AuditEntry.__table__)
ALERT_TABLE = cast(Table, Alert.__table__)
_INSERT_AUDIT = Prepared(insert(AUDIT_TABLE))

ALERT_RESTRICTED = "restricted_pickup"
ALERT_LOCKOUT = "pin_lockout"


def audit_row(
    *,
    at: dt.datetime,
    action: str,
    station_id: str | None,
    method: str | None,
    reason: RefusalReason | None,
    rule: str | None,
    actor_kind: str | None = None,
    actor_id: str | None = None,
    child_id: str | None = None,
    event_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "at": at,
        "station_id": station_id,
        "method": method,
        "action": action,
        "outcome": AuditOutcome.REFUSED if reason is not None else AuditOutcome.ALLOWED,
        "reason": reason.value if reason is not None else None,
        "actor_kind": actor_kind,
        "actor_id": actor_id,
        "child_id": child_id,
        "rule": rule,
        "event_id": event_id,
        "detail": detail,
    }


def decision_detail(decision: Decision, **extra: Any) -> dict[str, Any]:
    return {"role": decision.role, **extra}


def append(rows: list[dict[str, Any]], *, db: Db) -> None:
    if rows:
        _INSERT_AUDIT.run(db, rows)


def raise_alert(
    *,
    db: Db,
    at: dt.datetime,
    kind: str,
    message: str,
    station_id: str | None = None,
    person_id: str | None = None,
    child_id: str | None = None,
) -> int:
    result = db.execute(
        insert(ALERT_TABLE)
        .values(at=at, kind=kind, message=message, station_id=station_id, person_id=person_id, child_id=child_id)
        .returning(ALERT_TABLE.c.id)
    )
    return int(result.scalar_one())


def recent(*, session: Session, limit: int = 100) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)))


def open_alerts(*, session: Session) -> list[Alert]:
    return list(session.scalars(select(Alert).where(Alert.resolved_at.is_(None)).order_by(Alert.id)))
