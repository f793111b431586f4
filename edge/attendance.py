"""Attendance events as the cloud receives them (attendance-push.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from edge.ids import uuid7
from edge.models import (
    Action,
    ActorKind,
    AttendanceEvent,
    Method,
    OutboxEntry,
    OutboxState,
    Presence,
    SubjectKind,
)


def utc_iso_ms(when: dt.datetime) -> str:
    """``2026-11-29T23:41:07.512Z``: UTC, milliseconds, Z."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def event_payload(event: AttendanceEvent) -> dict[str, Any]:
    """The event exactly as the outbox sends it; stored in the outbox row at record time."""
    subject_field = "child_id" if event.subject_kind is SubjectKind.CHILD else "staff_id"
    return {
        "event_id": event.id,
        subject_field: event.subject_id,
        "action": event.action.value,
        "occurred_at": utc_iso_ms(event.occurred_at),
        "method": event.method.value,
        "actor": {"kind": event.actor_kind.value, "id": event.actor_id},
        "station_id": event.station_id,
        "clock_synced": event.clock_synced,
    }


def subject_key(event: AttendanceEvent) -> str:
    return f"{event.subject_kind.value}:{event.subject_id}"


def record_event(
    session: Session,
    *,
    subject_kind: SubjectKind,
    subject_id: str,
    action: Action,
    method: Method,
    actor_kind: ActorKind,
    actor_id: str,
    station_id: str,
    occurred_at: dt.datetime,
    clock_synced: bool,
    reason: str | None = None,
) -> AttendanceEvent:
    """Add the event, its subject's presence and its outbox row to the caller's transaction:
    the three are committed together or not at all."""
    event = AttendanceEvent(
        id=str(uuid7()),
        subject_kind=subject_kind,
        subject_id=subject_id,
        action=action,
        occurred_at=occurred_at,
        method=method,
        actor_kind=actor_kind,
        actor_id=actor_id,
        station_id=station_id,
        clock_synced=clock_synced,
        reason=reason,
    )
    session.add(event)
    session.flush()  # the event row first: presence and outbox point at it
    present = action in (Action.CHECK_IN, Action.CLOCK_IN)
    session.merge(
        Presence(
            subject_kind=subject_kind, subject_id=subject_id, present=present, since=occurred_at, event_id=event.id
        )
    )
    session.add(
        OutboxEntry(
            event_id=event.id,
            subject_key=subject_key(event),
            payload=event_payload(event),
            created_at=occurred_at,
            state=OutboxState.PENDING,
            attempts=0,
        )
    )
    return event
