"""What the check-in service answers: an identification, recorded events, or a refusal.

Plain values, free of web code: the station API turns them into JSON, the kiosk page into
screens, and ``kiosk_ui.presenter`` a refusal into a sentence.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from edge.attendance import utc_iso_ms
from edge.models import Action, ActorKind, Method, SubjectKind
from edge.policy import RefusalReason


@dataclass(frozen=True)
class Refusal:
    reason: RefusalReason
    # Words the sentence on screen may use: {"child": "Mai Nguyen"}, never a PIN or a token.
    context: dict[str, str] = field(default_factory=dict)
    retry_after_s: int | None = None  # a lockout: how long until the pad takes PINs again


@dataclass(frozen=True)
class PersonView:
    id: str
    name: str
    role: ActorKind


@dataclass(frozen=True)
class ChildView:
    id: str
    name: str
    room: str | None
    present: bool
    allowed: bool  # may this person, by this method, do the natural action (in -> out, out -> in)
    reason: RefusalReason | None


@dataclass(frozen=True)
class ClockView:
    present: bool
    since: dt.datetime | None


@dataclass(frozen=True)
class Identification:
    ticket: str
    person: PersonView
    children: tuple[ChildView, ...]
    clock: ClockView | None = None  # set for staff (a teacher's PIN), who get no children

    def as_json(self) -> dict[str, Any]:
        """The station API's identify answer (station-api.md); also what a QR scan announces to
        the kiosk at that door."""
        person = {"id": self.person.id, "name": self.person.name, "role": self.person.role.value}
        if self.clock is not None:
            since = utc_iso_ms(self.clock.since) if self.clock.since else None
            clock = {"present": self.clock.present, "since": since}
            return {"ticket": self.ticket, "person": person, "children": [], "clock": clock}
        children = [
            {"id": c.id, "name": c.name, "room": c.room, "present": c.present, "allowed": c.allowed, "reason": c.reason}
            for c in self.children
        ]
        return {"ticket": self.ticket, "person": person, "children": children}


@dataclass(frozen=True)
class RecordedEvent:
    """One attendance event as the station is told of it (a new one, or the one a double tap repeats)."""

    event_id: str
    subject_kind: SubjectKind
    subject_id: str
    name: str
    action: Action
    occurred_at: dt.datetime
    method: Method
    station_id: str

    def as_json(self) -> dict[str, Any]:
        """One event of the station API's /api/v1/attendance answer (also the phone app's)."""
        subject = "child_id" if self.subject_kind is SubjectKind.CHILD else "staff_id"
        return {
            "event_id": self.event_id,
            subject: self.subject_id,
            "name": self.name,
            "action": self.action.value,
            "occurred_at": utc_iso_ms(self.occurred_at),
        }


Recorded = tuple[RecordedEvent, ...]
