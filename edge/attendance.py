"""Attendance events as the cloud receives them (attendance-push.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from edge.models import AttendanceEvent, SubjectKind


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
