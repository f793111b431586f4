"""Loading what the policy decides on: people by PIN or id, children with their rooms, links and
presence, and the last event of each (for the double-tap window).

The door's hot path, so: Core statements built once at import and prepared (edge.prepared: on
SQLite, compiled once and run on the driver's cursor), each an indexed lookup. Functions take
the transaction's session or connection as a keyword (``db``) and never commit; the caller owns
the transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, literal, select, union_all

from edge.models import (
    Action,
    ActorKind,
    AttendanceEvent,
    Child,
    ChildLink,
    LinkRelation,
    Method,
    Person,
    PinState,
    Presence,
    Room,
    SubjectKind,
    Teacher,
)
from edge.policy import Actor, ChildFacts
from edge.prepared import Db, Prepared

PERSONS = cast(Table, Person.__table__)
TEACHERS = cast(Table, Teacher.__table__)
CHILDREN = cast(Table, Child.__table__)
ROOMS = cast(Table, Room.__table__)
LINKS = cast(Table, ChildLink.__table__)
PRESENCE = cast(Table, Presence.__table__)
EVENTS = cast(Table, AttendanceEvent.__table__)

# When one person holds several links to a child, the strongest decides: a restriction always wins.
_STRENGTH = {LinkRelation.RESTRICTED: 3, LinkRelation.PAYER: 2, LinkRelation.PICKUP: 1}

_PRESENCE_COLUMNS = (
    PRESENCE.c.present,
    PRESENCE.c.since,
    PRESENCE.c.event_id.label("presence_event"),
    EVENTS.c.action.label("event_action"),
    EVENTS.c.actor_id.label("event_actor"),
    EVENTS.c.occurred_at.label("event_at"),
    EVENTS.c.method.label("event_method"),
    EVENTS.c.station_id.label("event_station"),
)

# Persons and teachers holding a PIN digest, in one round trip. The role is NULL for a teacher.
_PIN_HOLDERS = Prepared(
    union_all(
        select(
            PERSONS.c.id,
            PERSONS.c.first_name,
            PERSONS.c.last_name,
            PERSONS.c.role,
            PERSONS.c.active,
            PERSONS.c.pin_state,
        ).where(PERSONS.c.pin_hmac == bindparam("digest")),
        select(
            TEACHERS.c.id,
            TEACHERS.c.first_name,
            TEACHERS.c.last_name,
            literal(None).label("role"),
            TEACHERS.c.active,
            TEACHERS.c.pin_state,
        ).where(TEACHERS.c.pin_hmac == bindparam("digest")),
    )
)
_PERSON = Prepared(
    select(PERSONS.c.first_name, PERSONS.c.last_name, PERSONS.c.role, PERSONS.c.active).where(
        PERSONS.c.id == bindparam("id")
    )
)
_TEACHER = Prepared(
    select(TEACHERS.c.first_name, TEACHERS.c.last_name, TEACHERS.c.active).where(TEACHERS.c.id == bindparam("id"))
)


def _children_query(by_person: bool) -> Any:
    """A child's room, the actor's links to it and its presence (with the event behind it).

    ``by_person``: the children the person is linked to (identify); otherwise the children named
    in ``id``, with ``person``'s links to it if any (act)."""
    link_on = and_(LINKS.c.child_id == CHILDREN.c.id, LINKS.c.person_id == bindparam("person"))
    joined = CHILDREN.join(LINKS, link_on) if by_person else CHILDREN.outerjoin(LINKS, link_on)
    joined = (
        joined.outerjoin(ROOMS, ROOMS.c.id == CHILDREN.c.room_id)
        .outerjoin(PRESENCE, and_(PRESENCE.c.subject_kind == SubjectKind.CHILD, PRESENCE.c.subject_id == CHILDREN.c.id))
        .outerjoin(EVENTS, EVENTS.c.id == PRESENCE.c.event_id)
    )
    query = select(
        CHILDREN.c.id,
        CHILDREN.c.first_name,
        CHILDREN.c.last_name,
        CHILDREN.c.active,
        ROOMS.c.name.label("room_name"),
        ROOMS.c.active.label("room_active"),
        LINKS.c.relation,
        *_PRESENCE_COLUMNS,
    ).select_from(joined)
    # One child per run rather than an expanding IN: an act names one or two children, and
    # SQLAlchemy re-renders an IN list on every run.
    return query if by_person else query.where(CHILDREN.c.id == bindparam("id"))


_CHILDREN_OF_PERSON = Prepared(_children_query(by_person=True))
_CHILDREN_BY_ID = Prepared(_children_query(by_person=False))
_STAFF_PRESENCE = Prepared(
    select(*_PRESENCE_COLUMNS)
    .select_from(PRESENCE.outerjoin(EVENTS, EVENTS.c.id == PRESENCE.c.event_id))
    .where(PRESENCE.c.subject_kind == SubjectKind.STAFF, PRESENCE.c.subject_id == bindparam("id"))
)


@dataclass(frozen=True)
class PinHolder:
    actor: Actor
    pin_state: PinState


@dataclass(frozen=True)
class LastEvent:
    """The event behind a presence row: what a double tap within the window gets back."""

    event_id: str
    action: Action
    actor_id: str
    occurred_at: dt.datetime
    method: Method
    station_id: str


@dataclass(frozen=True)
class PresenceFacts:
    present: bool
    since: dt.datetime | None
    last: LastEvent | None
    has_row: bool  # whether a presence row exists (update it) or not (insert one)


NO_PRESENCE = PresenceFacts(False, None, None, has_row=False)


def _name(first: str | None, last: str | None) -> str:
    return f"{first or ''} {last or ''}".strip()


def pin_holders(digest: str, *, db: Db) -> list[PinHolder]:
    """Everyone, person or teacher, active or not, whose PIN has this digest."""
    holders = []
    for row in _PIN_HOLDERS.rows(db, {"digest": digest}):
        state = PinState(row.pin_state)
        if state is PinState.NONE:
            continue
        kind = ActorKind.STAFF if row.role is None else ActorKind(row.role)
        holders.append(PinHolder(Actor(kind, row.id, _name(row.first_name, row.last_name), bool(row.active)), state))
    return holders


def person_actor(person_id: str, *, db: Db) -> Actor | None:
    row = _PERSON.first(db, {"id": person_id})
    if row is None:
        return None
    return Actor(ActorKind(row.role.value), person_id, _name(row.first_name, row.last_name), row.active)


def teacher_actor(teacher_id: str, *, db: Db) -> Actor | None:
    row = _TEACHER.first(db, {"id": teacher_id})
    if row is None:
        return None
    return Actor(ActorKind.STAFF, teacher_id, _name(row.first_name, row.last_name), row.active)


def current_actor(actor: Actor, *, db: Db) -> Actor:
    """The actor as the roster holds them now (a sync may have deactivated them since identify)."""
    loaded = (teacher_actor if actor.kind is ActorKind.STAFF else person_actor)(actor.id, db=db)
    return loaded if loaded is not None else Actor(actor.kind, actor.id, actor.name, active=False)


def children_of(person_id: str, *, db: Db) -> dict[str, tuple[ChildFacts, PresenceFacts]]:
    """Every child the person has any link to (restricted ones too), with the facts about each."""
    rows = _CHILDREN_OF_PERSON.rows(db, {"person": person_id})
    return _fold(rows)


def child_facts(
    child_ids: Sequence[str], actor_id: str | None, *, db: Db
) -> dict[str, tuple[ChildFacts, PresenceFacts]]:
    """Facts of each known child (unknown ids are left out), with ``actor_id``'s link to it."""
    if not child_ids:
        return {}
    rows = [
        row for child_id in child_ids for row in _CHILDREN_BY_ID.rows(db, {"id": child_id, "person": actor_id or ""})
    ]
    return _fold(rows)


def staff_presence(teacher_id: str, *, db: Db) -> PresenceFacts:
    row = _STAFF_PRESENCE.first(db, {"id": teacher_id})
    return NO_PRESENCE if row is None else _presence(row)


def _fold(rows: Any) -> dict[str, tuple[ChildFacts, PresenceFacts]]:
    """One entry per child; a child with several links to the person keeps the strongest."""
    out: dict[str, tuple[ChildFacts, PresenceFacts]] = {}
    for row in rows:
        relation: LinkRelation | None = row.relation
        if row.id in out and not _stronger(relation, out[row.id][0].relation):
            continue
        presence = _presence(row)
        facts = ChildFacts(
            id=row.id,
            name=_name(row.first_name, row.last_name),
            active=bool(row.active),
            room=row.room_name if row.room_active else None,
            relation=relation,
            present=presence.present,
        )
        out[row.id] = (facts, presence)
    return out


def _stronger(relation: LinkRelation | None, than: LinkRelation | None) -> bool:
    return relation is not None and (than is None or _STRENGTH[relation] > _STRENGTH[than])


def _presence(row: Any) -> PresenceFacts:  # a result Row with the _PRESENCE_COLUMNS
    if row.presence_event is None:
        return NO_PRESENCE
    last = None
    if row.event_action is not None:
        last = LastEvent(
            row.presence_event, row.event_action, row.event_actor, row.event_at, row.event_method, row.event_station
        )
    return PresenceFacts(bool(row.present), row.since, last, has_row=True)
