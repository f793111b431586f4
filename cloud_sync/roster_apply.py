"""Write a ``RosterPlan`` into the database, inside the caller's transaction.

Unchanged records cost no write: each row carries a hash of its synced content (its links or
devices included), compared before anything is written. Bulk statements, not one ORM object
per record: a 30,000-person roster must not hold the single writer for long.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from cloud_sync.rules import Finding, Kind, RosterPlan, Row, Rule
from edge.models import AppDevice, Child, ChildLink, Person, Room, School, Teacher, TrustedKey

_TABLES: tuple[tuple[Kind, type[Any], Rule], ...] = (
    (Kind.ROOM, Room, Rule.R2),
    (Kind.TEACHER, Teacher, Rule.R3),
    (Kind.PERSON, Person, Rule.R4),
    (Kind.CHILD, Child, Rule.R6),
)


@dataclass
class ApplyResult:
    added: int = 0
    updated: int = 0
    deactivated: int = 0
    unchanged: int = 0
    rows_written: int = 0
    demoted: list[Finding] = field(default_factory=list)
    demoted_ids: set[tuple[Kind, str]] = field(default_factory=set)


def content_hash(row: Row, extra: Iterable[Row] = ()) -> str:
    # repr of sorted items is stable for the str / int / date / enum / None values rows hold.
    text = repr(sorted(row.items())) + repr([sorted(r.items()) for r in extra])
    return hashlib.sha256(text.encode()).hexdigest()


def _gone_reason(kind: Kind, name: str) -> str:
    what = {Kind.ROOM: "Room", Kind.TEACHER: "Teacher", Kind.PERSON: "Person", Kind.CHILD: "Child"}[kind]
    return f"{what} {name} is no longer in the back office's export"


def _desired(plan: RosterPlan, kind: Kind) -> dict[str, Row]:
    return {Kind.ROOM: plan.rooms, Kind.TEACHER: plan.teachers, Kind.PERSON: plan.persons, Kind.CHILD: plan.children}[
        kind
    ]


def _sub_rows(plan: RosterPlan, kind: Kind, source_id: str) -> list[Row]:
    if kind is Kind.PERSON:
        return plan.devices.get(source_id, [])
    if kind is Kind.CHILD:
        return plan.links.get(source_id, [])
    return []


def apply_plan(session: Session, plan: RosterPlan, now: dt.datetime) -> ApplyResult:
    result = ApplyResult()
    _apply_school(session, plan, now, result)
    tables = _TableApplier(session, plan, now, result)
    changed = {kind: tables.apply(kind, model, default_rule) for kind, model, default_rule in _TABLES}
    _rewrite_devices(session, plan, changed[Kind.PERSON], result)
    _rewrite_links(session, plan, changed[Kind.CHILD], result)
    _apply_keys(session, plan, now, result)
    return result


def _apply_school(session: Session, plan: RosterPlan, now: dt.datetime, result: ApplyResult) -> None:
    if plan.school is None:
        return  # an unreadable school record keeps the school as it was (reported as skipped)
    row = plan.school
    digest = content_hash(row)
    existing = session.execute(select(School.id, School.content_hash, School.active)).all()
    if not existing:
        session.execute(insert(School), [{**row, "active": True, "content_hash": digest, "changed_at": now}])
        result.added += 1
        result.rows_written += 1
        return
    stale = [old_id for old_id, _, _ in existing if old_id != row["id"]]
    if stale:
        # A school id change means a new source school: one school row, replaced in place.
        session.execute(delete(School).where(School.id.in_(stale)))
    current = {old_id: (h, active) for old_id, h, active in existing}
    if current.get(row["id"]) == (digest, True):
        result.unchanged += 1
        return
    if row["id"] in current:
        session.execute(update(School), [{**row, "active": True, "content_hash": digest, "changed_at": now}])
        result.updated += 1
    else:
        session.execute(insert(School), [{**row, "active": True, "content_hash": digest, "changed_at": now}])
        result.added += 1
    result.rows_written += 1


class _TableApplier:
    def __init__(self, session: Session, plan: RosterPlan, now: dt.datetime, result: ApplyResult) -> None:
        self.session = session
        self.plan = plan
        self.now = now
        self.result = result
        self.reasons = plan.skipped_reasons()

    def apply(self, kind: Kind, model: type[Any], default_rule: Rule) -> list[str]:
        """Insert, update or deactivate one table's rows; returns the ids written."""
        session, plan, now, result = self.session, self.plan, self.now, self.result
        desired = _desired(plan, kind)
        existing: dict[str, tuple[str, bool, str]] = {}
        name_cols = (model.name,) if kind is Kind.ROOM else (model.first_name, model.last_name)
        for source_id, digest, active, *names in session.execute(
            select(model.id, model.content_hash, model.active, *name_cols)
        ):
            existing[source_id] = (digest, active, " ".join(n for n in names if n))
        inserts: list[Row] = []
        updates: list[Row] = []
        for source_id, row in desired.items():
            digest = content_hash(row, _sub_rows(plan, kind, source_id))
            old = existing.get(source_id)
            if old is None:
                inserts.append({**row, "active": True, "content_hash": digest, "changed_at": now})
            elif old[0] != digest or not old[1]:
                updates.append({**row, "active": True, "content_hash": digest, "changed_at": now})
            else:
                result.unchanged += 1
        gone = [source_id for source_id, (_, active, _) in existing.items() if active and source_id not in desired]
        demote: list[Row] = [{"id": source_id, "active": False, "changed_at": now} for source_id in gone]
        for source_id in gone:
            why = self.reasons.get((kind, source_id))
            if why:
                result.demoted.extend(why)
            else:
                rule = Rule.R7 if kind is Kind.PERSON and _was_pickup(session, source_id) else default_rule
                result.demoted.append(Finding(kind, source_id, rule, _gone_reason(kind, existing[source_id][2])))
            result.demoted_ids.add((kind, source_id))
        if inserts:
            session.execute(insert(model), inserts)
        if updates or demote:
            session.execute(update(model), updates + demote)
        result.added += len(inserts)
        result.updated += len(updates)
        result.deactivated += len(demote)
        result.rows_written += len(inserts) + len(updates) + len(demote)
        return [row["id"] for row in inserts + updates]


def _was_pickup(session: Session, person_id: str) -> bool:
    return session.execute(select(Person.role).where(Person.id == person_id)).scalar_one() == "pickup"


def _rewrite_devices(session: Session, plan: RosterPlan, person_ids: list[str], result: ApplyResult) -> None:
    if not person_ids:
        return
    rows = [device for pid in person_ids for device in plan.devices.get(pid, [])]
    for chunk in _chunks(person_ids):
        session.execute(delete(AppDevice).where(AppDevice.person_id.in_(chunk)))
    # A phone moved to another person: its old row goes too.
    for chunk in _chunks([r["device_id"] for r in rows]):
        session.execute(delete(AppDevice).where(AppDevice.device_id.in_(chunk)))
    if rows:
        session.execute(insert(AppDevice), [{**r, "active": True} for r in rows])
    result.rows_written += len(rows)


def _rewrite_links(session: Session, plan: RosterPlan, child_ids: list[str], result: ApplyResult) -> None:
    if not child_ids:
        return
    for chunk in _chunks(child_ids):
        session.execute(delete(ChildLink).where(ChildLink.child_id.in_(chunk)))
    rows = [link for cid in child_ids for link in plan.links.get(cid, [])]
    if rows:
        session.execute(insert(ChildLink), rows)
    result.rows_written += len(rows)


def _apply_keys(session: Session, plan: RosterPlan, now: dt.datetime, result: ApplyResult) -> None:
    existing = {k.kid: k for k in session.scalars(select(TrustedKey))}
    for kid, row in plan.keys.items():
        key = existing.get(kid)
        if key is None:
            session.add(TrustedKey(**row, active=True, changed_at=now))
        elif (key.alg, key.public_key, key.active) != (row["alg"], row["public_key"], True):
            key.alg, key.public_key, key.active, key.changed_at = row["alg"], row["public_key"], True, now
        else:
            continue
        result.rows_written += 1
    for kid, key in existing.items():
        if kid not in plan.keys and key.active:
            key.active, key.changed_at = False, now
            result.rows_written += 1


def _chunks(items: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
