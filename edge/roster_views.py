"""The synced roster as the dashboard shows it: families, children, teachers, rooms, and the
sync doctor (every record that did not sync or was demoted, from the last run's report).

Read-only queries: everything here is owned by the back office and arrives by sync.
Never a PIN: only whether one is set, shared (so disabled) or missing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from edge.models import (
    AppDevice,
    Child,
    ChildLink,
    LinkRelation,
    Person,
    PersonRole,
    PinState,
    Room,
    SyncOutcome,
    SyncRun,
    Teacher,
)


@dataclass(frozen=True)
class Link:
    person_id: str
    name: str  # the person's name, or the id when the roster does not hold them
    note: str | None


@dataclass
class ChildRow:
    id: str
    name: str
    birth_date: dt.date | None
    room: str | None
    active: bool
    family_id: str | None
    payers: list[Link] = field(default_factory=list)
    pickups: list[Link] = field(default_factory=list)
    restricted: list[Link] = field(default_factory=list)


@dataclass(frozen=True)
class PersonRow:
    id: str
    name: str
    role: PersonRole
    email: str | None
    sms: str | None
    pin: PinState
    phones: int
    active: bool
    family_id: str | None


@dataclass
class Family:
    id: str
    name: str
    people: list[PersonRow] = field(default_factory=list)
    children: list[ChildRow] = field(default_factory=list)


@dataclass(frozen=True)
class TeacherRow:
    id: str
    name: str
    email: str | None
    room: str | None
    pin: PinState
    active: bool
    changed_at: dt.datetime


@dataclass(frozen=True)
class RoomRow:
    id: str
    name: str
    ratio: int | None
    active: bool
    children: int  # active children enrolled in it
    teachers: int  # active teachers whose room it is


def _like(column: Any, text: str) -> Any:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(f"%{escaped}%", escape="\\")


def _room_names(session: Session) -> dict[str, str]:
    return dict(session.execute(select(Room.id, Room.name)).all())


def children(*, session: Session, query: str | None = None) -> list[ChildRow]:
    rooms = _room_names(session)
    stmt = select(Child).order_by(Child.active.desc(), Child.first_name, Child.last_name, Child.id)
    if query:
        stmt = stmt.where(_like(Child.first_name + " " + Child.last_name, query) | (Child.id == query.strip()))
    rows = {
        c.id: ChildRow(c.id, c.name, c.birth_date, rooms.get(c.room_id or ""), c.active, c.family_id)
        for c in session.scalars(stmt)
    }
    if not rows:
        return []
    people = {p.id: p.name for p in session.scalars(select(Person))}
    for link in session.scalars(
        select(ChildLink).where(ChildLink.child_id.in_(rows)).order_by(ChildLink.child_id, ChildLink.person_id)
    ):
        target = {
            LinkRelation.PAYER: rows[link.child_id].payers,
            LinkRelation.PICKUP: rows[link.child_id].pickups,
            LinkRelation.RESTRICTED: rows[link.child_id].restricted,
        }[link.relation]
        target.append(Link(link.person_id, people.get(link.person_id, link.person_id), link.note))
    return list(rows.values())


def families(*, session: Session, query: str | None = None) -> list[Family]:
    """People and children grouped by the back office's family id, payers first."""
    phones = dict(
        session.execute(
            select(AppDevice.person_id, func.count()).where(AppDevice.active).group_by(AppDevice.person_id)
        ).all()
    )
    grouped: dict[str, Family] = {}
    for person in session.scalars(select(Person).order_by(Person.role, Person.first_name, Person.id)):
        key = person.family_id or f"(no family) {person.id}"
        family = grouped.setdefault(key, Family(key, person.last_name))
        family.people.append(
            PersonRow(
                person.id,
                person.name,
                person.role,
                person.email,
                person.sms_number,
                person.pin_state,
                phones.get(person.id, 0),
                person.active,
                person.family_id,
            )
        )
    for child in children(session=session):
        key = child.family_id or f"(no family) {child.id}"
        grouped.setdefault(key, Family(key, child.name.rsplit(" ", 1)[-1])).children.append(child)
    out = sorted(grouped.values(), key=lambda f: (f.name.lower(), f.id))
    if query:
        words = query.strip().lower()
        out = [
            f
            for f in out
            if words in f.id.lower()
            or any(words in p.name.lower() or words == p.id.lower() for p in f.people)
            or any(words in c.name.lower() or words == c.id.lower() for c in f.children)
        ]
    return out


def teachers(*, session: Session) -> list[TeacherRow]:
    rooms = _room_names(session)
    return [
        TeacherRow(t.id, t.name, t.email, rooms.get(t.room_id or ""), t.pin_state, t.active, t.changed_at)
        for t in session.scalars(select(Teacher).order_by(Teacher.active.desc(), Teacher.first_name, Teacher.id))
    ]


def rooms(*, session: Session) -> list[RoomRow]:
    kids = dict(session.execute(select(Child.room_id, func.count()).where(Child.active).group_by(Child.room_id)).all())
    staff = dict(
        session.execute(select(Teacher.room_id, func.count()).where(Teacher.active).group_by(Teacher.room_id)).all()
    )
    return [
        RoomRow(r.id, r.name, r.ratio, r.active, kids.get(r.id, 0), staff.get(r.id, 0))
        for r in session.scalars(select(Room).order_by(Room.active.desc(), Room.name))
    ]


# -- the sync doctor --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One line of a sync report (station-api.md's ``skipped`` / ``demoted`` / ``hints``)."""

    kind: str  # school, room, teacher, person, child
    source_id: str | None
    rule: str  # R1..R8
    reason: str


@dataclass(frozen=True)
class Inactive:
    """A record the roster holds as inactive that the last report does not explain."""

    kind: str
    id: str
    name: str
    since: dt.datetime


@dataclass(frozen=True)
class SyncDoctor:
    run: SyncRun | None  # the last run that applied an export (its report lists every finding)
    last_attempt: SyncRun | None  # the last run of any outcome (a failure shows here)
    skipped: list[Finding]
    demoted: list[Finding]
    hints: list[Finding]
    inactive: list[Inactive]

    @property
    def problems(self) -> int:
        return len(self.skipped) + len(self.demoted)

    def for_kind(self, kind: str) -> list[tuple[str, Finding]]:
        """("did not sync" | "no longer active", finding) for one kind: a roster page's own box."""
        return [("did not sync", f) for f in self.skipped if f.kind == kind] + [
            ("no longer active", f) for f in self.demoted if f.kind == kind
        ]


def _findings(report: dict[str, Any] | None, key: str) -> list[Finding]:
    items = (report or {}).get(key) or []
    return [
        Finding(str(i.get("kind", "")), i.get("source_id"), str(i.get("rule", "")), str(i.get("reason", "")))
        for i in items
        if isinstance(i, dict)
    ]


def sync_doctor(*, session: Session) -> SyncDoctor:
    # Not-modified runs carry an empty report: the last run that applied an export holds the findings.
    run = session.scalars(
        select(SyncRun).where(SyncRun.outcome == SyncOutcome.OK).order_by(SyncRun.id.desc()).limit(1)
    ).first()
    last = session.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(1)).first()
    report = run.report if run is not None else None
    skipped, demoted, hints = (_findings(report, key) for key in ("skipped", "demoted", "hints"))
    explained = {(f.kind, f.source_id) for f in [*skipped, *demoted]}
    inactive: list[Inactive] = []
    inactive_rows: list[tuple[str, Room | Teacher | Person | Child]] = [
        *(("room", r) for r in session.scalars(select(Room).where(Room.active.is_(False)).order_by(Room.id))),
        *(
            ("teacher", t)
            for t in session.scalars(select(Teacher).where(Teacher.active.is_(False)).order_by(Teacher.id))
        ),
        *(("person", p) for p in session.scalars(select(Person).where(Person.active.is_(False)).order_by(Person.id))),
        *(("child", c) for c in session.scalars(select(Child).where(Child.active.is_(False)).order_by(Child.id))),
    ]
    for kind, row in inactive_rows:
        if (kind, row.id) not in explained:
            inactive.append(Inactive(kind, row.id, row.name, row.changed_at))
    return SyncDoctor(run, last, skipped, demoted, hints, inactive)


def payers(*, session: Session, query: str | None = None, limit: int = 200) -> list[PersonRow]:
    """Active payers (the only people a badge is for), by name; ``query`` matches a name or an id."""
    stmt = (
        select(Person)
        .where(Person.active, Person.role == PersonRole.PAYER)
        .order_by(Person.first_name, Person.last_name, Person.id)
        .limit(limit)
    )
    if query:
        stmt = stmt.where(_like(Person.first_name + " " + Person.last_name, query) | (Person.id == query.strip()))
    return [
        PersonRow(p.id, p.name, p.role, p.email, p.sms_number, p.pin_state, 0, p.active, p.family_id)
        for p in session.scalars(stmt)
    ]
