"""The "Now" read model: per room, who is in, who is enrolled, which teachers are clocked in,
and whether the room's ratio holds.

A room's ``ratio`` (from the roster) is children per teacher: 4 means one teacher for every
four children. A room is over ratio when more children are in than the teachers clocked in to
it may look after (``children_in > teachers_in * ratio``); a room with children and no teacher
is always over. Only teachers clocked in at the kiosk count, in the room the roster gives them.

Three indexed reads on the session, no writes: the dashboard asks for this on every page load.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Table, and_, select, update
from sqlalchemy.orm import Session

from edge.models import Alert, AttendanceEvent, Child, Presence, Room, School, SubjectKind, Teacher

ROOMS = cast(Table, Room.__table__)
CHILDREN = cast(Table, Child.__table__)
TEACHERS = cast(Table, Teacher.__table__)
PRESENCE = cast(Table, Presence.__table__)
ALERTS = cast(Table, Alert.__table__)

_ROOMS = select(ROOMS.c.id, ROOMS.c.name, ROOMS.c.ratio).where(ROOMS.c.active).order_by(ROOMS.c.name, ROOMS.c.id)


def _with_presence(table: Table, kind: SubjectKind) -> Table:
    return cast(
        Table,
        table.outerjoin(PRESENCE, and_(PRESENCE.c.subject_kind == kind, PRESENCE.c.subject_id == table.c.id)),
    )


_CHILDREN = (
    select(
        CHILDREN.c.id,
        CHILDREN.c.first_name,
        CHILDREN.c.last_name,
        CHILDREN.c.room_id,
        PRESENCE.c.present,
        PRESENCE.c.since,
    )
    .select_from(_with_presence(CHILDREN, SubjectKind.CHILD))
    .where(CHILDREN.c.active, CHILDREN.c.room_id.is_not(None))
    .order_by(CHILDREN.c.first_name, CHILDREN.c.last_name, CHILDREN.c.id)
)
_TEACHERS = (
    select(
        TEACHERS.c.id,
        TEACHERS.c.first_name,
        TEACHERS.c.last_name,
        TEACHERS.c.room_id,
        PRESENCE.c.present,
        PRESENCE.c.since,
    )
    .select_from(_with_presence(TEACHERS, SubjectKind.STAFF))
    .where(TEACHERS.c.active)
    .order_by(TEACHERS.c.first_name, TEACHERS.c.last_name, TEACHERS.c.id)
)


def school_zone(*, session: Session, default: str = "UTC") -> ZoneInfo:
    """The center's own time zone (from the roster's school record): the dashboard's clock."""
    name = session.scalar(select(School.time_zone).where(School.active).limit(1)) or default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)


@dataclass(frozen=True, slots=True)
class SubjectNow:
    """A child or a teacher: in or out, and since when (None: no event yet)."""

    id: str
    name: str
    present: bool
    since: dt.datetime | None
    today: bool  # the last event was today (center time): "out since 17:40" rather than "not in today"


@dataclass(frozen=True)
class RoomNow:
    id: str
    name: str
    ratio: int | None  # children per teacher; None: the back office set none
    children: list[SubjectNow] = field(default_factory=list)
    teachers: list[SubjectNow] = field(default_factory=list)

    # Counted once: a page asks for each several times (summary, table, the room's own heading).
    # Read only after now_view has filled the lists.
    @cached_property
    def enrolled(self) -> int:
        return len(self.children)

    @cached_property
    def children_in(self) -> int:
        return sum(1 for child in self.children if child.present)

    @cached_property
    def teachers_in(self) -> int:
        return sum(1 for teacher in self.teachers if teacher.present)

    @property
    def teachers_needed(self) -> int | None:
        if self.ratio is None:
            return None
        return math.ceil(self.children_in / self.ratio)

    @property
    def over_ratio(self) -> bool:
        if self.ratio is None:
            return self.children_in > 0 and self.teachers_in == 0
        return self.children_in > self.teachers_in * self.ratio


@dataclass(frozen=True)
class NowView:
    at: dt.datetime
    zone: ZoneInfo
    rooms: list[RoomNow]
    other_teachers_in: list[SubjectNow]  # clocked in without a room of their own (active rooms)

    @cached_property
    def children_in(self) -> int:
        return sum(room.children_in for room in self.rooms)

    @cached_property
    def enrolled(self) -> int:
        return sum(room.enrolled for room in self.rooms)

    @cached_property
    def teachers_in(self) -> int:
        return sum(room.teachers_in for room in self.rooms) + len(self.other_teachers_in)

    @cached_property
    def rooms_over_ratio(self) -> list[RoomNow]:
        return [room for room in self.rooms if room.over_ratio]


def now_view(*, session: Session, now: dt.datetime, zone: ZoneInfo | None = None) -> NowView:
    zone = zone or school_zone(session=session)
    day_start = dt.datetime.combine(now.astimezone(zone).date(), dt.time(), tzinfo=zone)
    conn = session.connection()
    rooms = {row.id: RoomNow(row.id, row.name, row.ratio) for row in conn.execute(_ROOMS)}

    def subject(row: Any) -> SubjectNow:
        since = row.since  # aware: Core reads through the UTCDateTime column type
        return SubjectNow(
            row.id,
            f"{row.first_name} {row.last_name}".strip(),
            bool(row.present),
            since,
            since is not None and since >= day_start,
        )

    for row in conn.execute(_CHILDREN):
        room = rooms.get(row.room_id)
        if room is not None:  # a child in an inactive room cannot be checked in: not on this page
            room.children.append(subject(row))
    others = []
    for row in conn.execute(_TEACHERS):
        room = rooms.get(row.room_id)
        if room is not None:
            room.teachers.append(subject(row))
        elif row.present:
            others.append(subject(row))
    return NowView(now, zone, list(rooms.values()), others)


def open_alerts(*, session: Session, limit: int = 50) -> list[Alert]:
    """Alerts staff have not dismissed yet, newest first."""
    return list(
        session.scalars(select(Alert).where(Alert.resolved_at.is_(None)).order_by(Alert.id.desc()).limit(limit))
    )


def resolve_alert(alert_id: int, *, session: Session, at: dt.datetime) -> bool:
    """Staff have seen to it; the alert stays in the table (append-only history) with the time."""
    result = session.execute(
        update(ALERTS).where(ALERTS.c.id == alert_id, ALERTS.c.resolved_at.is_(None)).values(resolved_at=at)
    )
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class ChildDetail:
    """One child for the fix-by-hand page: where they are, and their last events."""

    id: str
    name: str
    room: str | None
    active: bool
    present: bool
    since: dt.datetime | None
    events: list[AttendanceEvent]


def child_detail(child_id: str, *, session: Session, limit: int = 10) -> ChildDetail | None:
    child = session.get(Child, child_id)
    if child is None:
        return None
    room = session.get(Room, child.room_id) if child.room_id else None
    presence = session.get(Presence, (SubjectKind.CHILD, child_id))
    events = list(
        session.scalars(
            select(AttendanceEvent)
            .where(AttendanceEvent.subject_kind == SubjectKind.CHILD, AttendanceEvent.subject_id == child_id)
            .order_by(AttendanceEvent.occurred_at.desc(), AttendanceEvent.id.desc())
            .limit(limit)
        )
    )
    return ChildDetail(
        child.id,
        child.name,
        room.name if room is not None and room.active else None,
        child.active,
        bool(presence and presence.present),
        presence.since if presence else None,
        events,
    )
