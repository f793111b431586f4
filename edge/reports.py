"""Attendance reports for staff: hours per child and per room, today's occupancy, the end-of-day
exceptions, and the audit log searched by child, person and day. Pure queries: no writes.

Days are the center's days (its time zone, from the roster). How hours are counted, so that a
director can explain any figure:

- a visit runs from a check-in to the next check-out of that child on the same day;
- a check-in with no check-out by the end of its day is an *open* visit: it counts up to the
  closing time (``closing_time``), or to now on the current day, and the day is flagged;
- a check-out with no check-in before it that day counts no hours and is flagged (a child
  checked in on an earlier day and never checked out, or checked in on paper);
- a child's room is the room the roster gives the child now (rooms have no history here).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.orm import Session

from edge.models import (
    Action,
    AttendanceEvent,
    AuditEntry,
    Child,
    OutboxEntry,
    OutboxState,
    Person,
    PhoneFix,
    Presence,
    Room,
    StaffAccount,
    StationLockout,
    SubjectKind,
    Teacher,
)

EVENTS = cast(Table, AttendanceEvent.__table__)
CHILDREN = cast(Table, Child.__table__)
ROOMS = cast(Table, Room.__table__)
PRESENCE = cast(Table, Presence.__table__)

MAX_RANGE_DAYS = 366  # a report of more than a year is a job for the cloud, not the appliance
# A cell starting with one of these is a formula to a spreadsheet: the CSV defuses it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ReportError(ValueError):
    """A report that cannot be made as asked (a range backwards or too long)."""


def parse_hhmm(text: str) -> dt.time:
    hh, _, mm = text.partition(":")
    return dt.time(int(hh), int(mm))


def day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The center's day as UTC instants [start, end): 23 or 25 hours on a daylight-saving change."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def closing_at(day: dt.date, zone: ZoneInfo, closing: dt.time) -> dt.datetime:
    return dt.datetime.combine(day, closing, tzinfo=zone).astimezone(dt.UTC)


# -- attendance per child and per room -------------------------------------------------------------


@dataclass
class ChildDay:
    day: dt.date
    child_id: str
    child_name: str
    room_name: str
    first_in: dt.datetime | None = None
    last_out: dt.datetime | None = None
    seconds: float = 0.0
    visits: int = 0
    open: bool = False  # checked in, no check-out by the end of the day (counted to closing / now)
    still_in: bool = False  # open, on the current day: the visit is still going on
    open_since: dt.datetime | None = None
    orphan_outs: list[dt.datetime] = field(default_factory=list)  # check-outs with no check-in before

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def note(self) -> str:
        notes = []
        if self.still_in:
            notes.append("still checked in (counted to now)")
        elif self.open:
            notes.append("no check-out (counted to closing time)")
        if self.orphan_outs:
            notes.append("check-out with no check-in")
        return "; ".join(notes)


@dataclass(frozen=True)
class RoomDay:
    day: dt.date
    room_name: str
    children: int
    seconds: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600


@dataclass(frozen=True)
class AttendanceReport:
    start: dt.date
    end: dt.date  # inclusive
    zone: ZoneInfo
    closing: dt.time
    children: list[ChildDay]
    rooms: list[RoomDay]

    @property
    def total_hours(self) -> float:
        return sum(row.seconds for row in self.children) / 3600

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


_EVENT_ROWS = (
    select(
        EVENTS.c.subject_id,
        EVENTS.c.action,
        EVENTS.c.occurred_at,
        CHILDREN.c.first_name,
        CHILDREN.c.last_name,
        ROOMS.c.name.label("room_name"),
    )
    .select_from(
        EVENTS.outerjoin(CHILDREN, CHILDREN.c.id == EVENTS.c.subject_id).outerjoin(
            ROOMS, ROOMS.c.id == CHILDREN.c.room_id
        )
    )
    .where(EVENTS.c.subject_kind == SubjectKind.CHILD)
)


def attendance_report(
    *, session: Session, start: dt.date, end: dt.date, zone: ZoneInfo, now: dt.datetime, closing: dt.time
) -> AttendanceReport:
    if end < start:
        raise ReportError("The range ends before it starts")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise ReportError(f"A report covers at most {MAX_RANGE_DAYS} days")
    since, _ = day_bounds(start, zone)
    _, until = day_bounds(end, zone)
    rows = session.connection().execute(
        _EVENT_ROWS.where(EVENTS.c.occurred_at >= since, EVENTS.c.occurred_at < until).order_by(
            EVENTS.c.subject_id, EVENTS.c.occurred_at, EVENTS.c.id
        )
    )
    today = now.astimezone(zone).date()
    days: dict[tuple[dt.date, str], ChildDay] = {}
    for row in rows:
        at: dt.datetime = row.occurred_at
        day = at.astimezone(zone).date()
        key = (day, row.subject_id)
        entry = days.get(key)
        if entry is None:
            name = f"{row.first_name or ''} {row.last_name or ''}".strip() or row.subject_id
            entry = days[key] = ChildDay(day, row.subject_id, name, row.room_name or "")
        if row.action == Action.CHECK_IN:
            if entry.open_since is not None:  # two check-ins in a row: the first visit ends here
                entry.seconds += (at - entry.open_since).total_seconds()
                entry.visits += 1
            entry.open_since = at
            entry.first_in = entry.first_in or at
        elif row.action == Action.CHECK_OUT:
            if entry.open_since is None:
                entry.orphan_outs.append(at)
            else:
                entry.seconds += (at - entry.open_since).total_seconds()
                entry.visits += 1
                entry.open_since = None
            entry.last_out = at
    for entry in days.values():
        if entry.open_since is None:
            continue
        entry.open = True
        if entry.day == today:
            entry.still_in = True
            stop = max(now, entry.open_since)
        else:
            cutoff = closing_at(entry.day, zone, closing)
            stop = cutoff if entry.open_since < cutoff else day_bounds(entry.day, zone)[1]
        entry.seconds += (stop - entry.open_since).total_seconds()
        entry.visits += 1
    children = sorted(days.values(), key=lambda d: (d.day, d.room_name, d.child_name, d.child_id))
    per_room: dict[tuple[dt.date, str], list[ChildDay]] = defaultdict(list)
    for entry in children:
        per_room[(entry.day, entry.room_name)].append(entry)
    rooms = [
        RoomDay(day, room, sum(1 for e in entries if e.visits), sum(e.seconds for e in entries))
        for (day, room), entries in sorted(per_room.items())
    ]
    return AttendanceReport(start, end, zone, closing, children, rooms)


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _clock(moment: dt.datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M") if moment is not None else ""


def child_csv_rows(report: AttendanceReport) -> Iterator[list[str]]:
    """One row per child per day, header first (times in the center's zone, hours to 0.01)."""
    yield ["date", "child_id", "child", "room", "first_check_in", "last_check_out", "hours", "visits", "note"]
    for row in report.children:
        yield [
            row.day.isoformat(),
            _cell(row.child_id),
            _cell(row.child_name),
            _cell(row.room_name),
            _clock(row.first_in, report.zone),
            _clock(row.last_out, report.zone),
            f"{row.hours:.2f}",
            str(row.visits),
            _cell(row.note),
        ]


def room_csv_rows(report: AttendanceReport) -> Iterator[list[str]]:
    yield ["date", "room", "children", "child_hours"]
    for row in report.rooms:
        yield [row.day.isoformat(), _cell(row.room_name), str(row.children), f"{row.hours:.2f}"]


# -- today's occupancy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoomOccupancy:
    room_id: str
    room_name: str
    steps: list[tuple[dt.datetime, int]]  # (from this instant, this many children in); the first at day start
    peak: int
    current: int


def _last_before(moment: dt.datetime) -> Any:
    """Each child's last event before ``moment`` (a join back on the max: portable SQL)."""
    latest = (
        select(EVENTS.c.subject_id, func.max(EVENTS.c.occurred_at).label("at"))
        .where(EVENTS.c.subject_kind == SubjectKind.CHILD, EVENTS.c.occurred_at < moment)
        .group_by(EVENTS.c.subject_id)
        .subquery()
    )
    return (
        select(EVENTS.c.subject_id, EVENTS.c.action)
        .select_from(
            EVENTS.join(latest, and_(EVENTS.c.subject_id == latest.c.subject_id, EVENTS.c.occurred_at == latest.c.at))
        )
        .where(EVENTS.c.subject_kind == SubjectKind.CHILD)
    )


def occupancy(*, session: Session, day: dt.date, zone: ZoneInfo, now: dt.datetime) -> list[RoomOccupancy]:
    """Children in each active room through the day, as steps (check-ins and check-outs)."""
    start, end = day_bounds(day, zone)
    conn = session.connection()
    rooms = {
        row.id: row.name
        for row in conn.execute(select(ROOMS.c.id, ROOMS.c.name).where(ROOMS.c.active).order_by(ROOMS.c.name))
    }
    room_of = dict(conn.execute(select(CHILDREN.c.id, CHILDREN.c.room_id)).all())
    counts = dict.fromkeys(rooms, 0)
    inside: set[str] = set()
    for subject_id, action in conn.execute(_last_before(start)):
        if action == Action.CHECK_IN:
            inside.add(subject_id)
    for subject_id in inside:
        room = room_of.get(subject_id)
        if room in counts:
            counts[room] += 1
    steps: dict[str, list[tuple[dt.datetime, int]]] = {room: [(start, counts[room])] for room in rooms}
    events = conn.execute(
        select(EVENTS.c.subject_id, EVENTS.c.action, EVENTS.c.occurred_at)
        .where(
            EVENTS.c.subject_kind == SubjectKind.CHILD,
            EVENTS.c.occurred_at >= start,
            EVENTS.c.occurred_at < min(end, max(now, start)),
        )
        .order_by(EVENTS.c.occurred_at, EVENTS.c.id)
    )
    for subject_id, action, at in events:
        room = room_of.get(subject_id)
        if room is None or room not in counts:
            continue
        if action == Action.CHECK_IN and subject_id not in inside:
            inside.add(subject_id)
            counts[room] += 1
        elif action == Action.CHECK_OUT and subject_id in inside:
            inside.discard(subject_id)
            counts[room] -= 1
        else:
            continue
        steps[room].append((at, counts[room]))
    return [
        RoomOccupancy(room, name, steps[room], max(count for _, count in steps[room]), counts[room])
        for room, name in rooms.items()
    ]


# -- the end-of-day exceptions -----------------------------------------------------------------------


@dataclass(frozen=True)
class ExceptionRow:
    child_id: str
    child_name: str
    room_name: str
    at: dt.datetime  # the check-in still open, or the check-out with no check-in
    day: dt.date


@dataclass(frozen=True)
class DayExceptions:
    day: dt.date
    closing: dt.datetime
    after_closing: bool  # the day's closing time has passed
    still_in: list[ExceptionRow]  # checked in and not checked out (after closing, or since an earlier day)
    orphan_checkouts: list[ExceptionRow]

    @property
    def count(self) -> int:
        return len(self.still_in) + len(self.orphan_checkouts)


def day_exceptions(
    *, session: Session, day: dt.date, zone: ZoneInfo, now: dt.datetime, closing: dt.time
) -> DayExceptions:
    """So nobody is forgotten: who was never checked out, and check-outs that had no check-in."""
    close = closing_at(day, zone, closing)
    start, _ = day_bounds(day, zone)
    report = attendance_report(session=session, start=day, end=day, zone=zone, now=now, closing=closing)
    today = now.astimezone(zone).date()
    still_in: list[ExceptionRow] = []
    if day == today:
        # Today the presence table is the truth: who is in now. Before closing, only a child in
        # since an earlier day is already an exception.
        rows = session.connection().execute(
            select(CHILDREN.c.id, CHILDREN.c.first_name, CHILDREN.c.last_name, ROOMS.c.name, PRESENCE.c.since)
            .select_from(
                PRESENCE.join(CHILDREN, CHILDREN.c.id == PRESENCE.c.subject_id).outerjoin(
                    ROOMS, ROOMS.c.id == CHILDREN.c.room_id
                )
            )
            .where(PRESENCE.c.subject_kind == SubjectKind.CHILD, PRESENCE.c.present)
            .order_by(PRESENCE.c.since)
        )
        for child_id, first, last, room, since in rows:
            if now >= close or since < start:
                name = f"{first} {last}".strip()
                still_in.append(ExceptionRow(child_id, name, room or "", since, since.astimezone(zone).date()))
    else:
        for entry in report.children:
            if entry.open and entry.open_since is not None:
                still_in.append(ExceptionRow(entry.child_id, entry.child_name, entry.room_name, entry.open_since, day))
    orphans = [
        ExceptionRow(entry.child_id, entry.child_name, entry.room_name, at, day)
        for entry in report.children
        for at in entry.orphan_outs
    ]
    return DayExceptions(day, close, now >= close, still_in, sorted(orphans, key=lambda row: row.at))


# -- the audit log, searched ------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditLine:
    entry: AuditEntry
    actor_name: str | None
    child_name: str | None


def _name_matches(first: Any, last: Any, words: str) -> Any:
    full = func.lower(first + " " + last)
    return full.like(f"%{words.lower()}%", escape="\\")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_audit(
    *,
    session: Session,
    zone: ZoneInfo,
    child: str | None = None,
    person: str | None = None,
    day: dt.date | None = None,
    limit: int = 200,
) -> list[AuditLine]:
    """Newest first. ``child`` and ``person`` match an id exactly or a part of a name; ``person``
    finds parents, pickup people, teachers and dashboard accounts (the actor of each line)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if child:
        words = _escape_like(child.strip())
        ids = set(
            session.scalars(
                select(Child.id).where(
                    or_(Child.id == child.strip(), _name_matches(Child.first_name, Child.last_name, words))
                )
            )
        )
        query = query.where(AuditEntry.child_id.in_(ids or {child.strip()}))
    if person:
        words = _escape_like(person.strip())
        ids = {person.strip(), f"user:{person.strip().lower()}"}
        ids.update(session.scalars(select(Person.id).where(_name_matches(Person.first_name, Person.last_name, words))))
        ids.update(
            session.scalars(select(Teacher.id).where(_name_matches(Teacher.first_name, Teacher.last_name, words)))
        )
        ids.update(
            f"user:{name}"
            for name in session.scalars(
                select(StaffAccount.username).where(StaffAccount.username.like(f"%{words.lower()}%", escape="\\"))
            )
        )
        query = query.where(AuditEntry.actor_id.in_(ids))
    if day is not None:
        start, end = day_bounds(day, zone)
        query = query.where(AuditEntry.at >= start, AuditEntry.at < end)
    entries = list(session.scalars(query))
    return [
        AuditLine(entry, names.get(entry.actor_id or ""), names.get(entry.child_id or ""))
        for names in [_names(session, entries)]
        for entry in entries
    ]


def _names(session: Session, entries: list[AuditEntry]) -> dict[str, str]:
    ids = {e.actor_id for e in entries if e.actor_id} | {e.child_id for e in entries if e.child_id}
    if not ids:
        return {}
    names: dict[str, str] = {}
    for model in (Child, Person, Teacher):
        for row in session.execute(select(model.id, model.first_name, model.last_name).where(model.id.in_(ids))):
            names[row.id] = f"{row.first_name} {row.last_name}".strip()
    for actor in ids:
        if actor.startswith("user:"):
            names.setdefault(actor, f"{actor[5:]} (dashboard)")
    return names


# -- the sync page: rejected events and stations -------------------------------------------------------


@dataclass(frozen=True)
class RejectedEvent:
    event_id: str
    subject: str  # "child C1" or "teacher E1"
    name: str | None
    action: str
    occurred_at: str
    reason: str
    rejected_at: dt.datetime  # when it was recorded (the rejection itself is not timed)


def rejected_events(*, session: Session, limit: int = 100) -> list[RejectedEvent]:
    """Events the cloud refused for good: kept, shown to staff with the reason, never retried."""
    entries = session.scalars(
        select(OutboxEntry)
        .where(OutboxEntry.state == OutboxState.REJECTED)
        .order_by(OutboxEntry.id.desc())
        .limit(limit)
    ).all()
    ids = {str(e.payload.get("child_id") or e.payload.get("staff_id") or "") for e in entries}
    names: dict[str, str] = {}
    for model in (Child, Teacher):
        for row in session.execute(select(model.id, model.first_name, model.last_name).where(model.id.in_(ids))):
            names[row.id] = f"{row.first_name} {row.last_name}".strip()
    out = []
    for entry in entries:
        payload = entry.payload
        subject_id = str(payload.get("child_id") or payload.get("staff_id") or "")
        kind = "child" if payload.get("child_id") else "teacher"
        out.append(
            RejectedEvent(
                entry.event_id,
                f"{kind} {subject_id}",
                names.get(subject_id),
                str(payload.get("action", "")),
                str(payload.get("occurred_at", "")),
                entry.reject_reason or entry.last_error or "(no reason given)",
                entry.created_at,
            )
        )
    return out


@dataclass(frozen=True)
class StationRow:
    station_id: str
    configured: bool  # has a station token in the settings (a remote door or scanner)
    last_seen: dt.datetime | None  # its last decision in the audit log (within ``seen_days``)
    locked_until: dt.datetime | None
    lockouts: int

    def locked(self, now: dt.datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


def stations(*, session: Session, now: dt.datetime, configured: Iterable[str], seen_days: int = 7) -> list[StationRow]:
    """Every station the hub knows of: configured, seen lately at the door, or locked out."""
    seen = dict(
        session.execute(
            select(AuditEntry.station_id, func.max(AuditEntry.at))
            .where(AuditEntry.at >= now - dt.timedelta(days=seen_days), AuditEntry.station_id.is_not(None))
            .group_by(AuditEntry.station_id)
        ).all()
    )
    locks = {row.station_id: row for row in session.scalars(select(StationLockout))}
    configured = set(configured)
    names = sorted(name for name in set(seen) | set(locks) | configured if name)
    return [
        StationRow(
            name,
            name in configured,
            seen.get(name),
            locks[name].locked_until if name in locks else None,
            locks[name].lockouts if name in locks else 0,
        )
        for name in names
    ]


# -- the geofence page: where phones were lately ------------------------------------------------------


@dataclass(frozen=True)
class FixDot:
    lat: float
    lon: float
    accuracy_m: float
    state: str  # away, arriving, on_site, uncertain
    fix_at: dt.datetime


def recent_fixes(*, session: Session, since: dt.datetime, limit: int = 500) -> list[FixDot]:
    """Accepted phone fixes since ``since``, newest first, without who sent them (dots on a map)."""
    rows = session.execute(
        select(PhoneFix.lat, PhoneFix.lon, PhoneFix.accuracy_m, PhoneFix.state, PhoneFix.fix_at)
        .where(PhoneFix.fix_at >= since)
        .order_by(PhoneFix.fix_at.desc())
        .limit(limit)
    )
    return [FixDot(row.lat, row.lon, row.accuracy_m, str(row.state), row.fix_at) for row in rows]
