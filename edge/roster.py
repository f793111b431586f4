"""The roster as the appliance holds it, read for people and scripts (``roster show``).

Never a PIN: only whether one is set, ambiguous or missing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from edge.models import AppDevice, Child, ChildLink, LinkRelation, Person, Room, School, SyncRun, Teacher


def roster_snapshot(*, session: Session) -> dict[str, Any]:
    school = session.scalars(select(School).limit(1)).first()
    links: defaultdict[str, defaultdict[LinkRelation, list[str]]] = defaultdict(lambda: defaultdict(list))
    takes: defaultdict[str, list[str]] = defaultdict(list)  # person -> children they may take
    for link in session.scalars(select(ChildLink).order_by(ChildLink.child_id, ChildLink.person_id)):
        links[link.child_id][link.relation].append(link.person_id)
        if link.relation is not LinkRelation.RESTRICTED:
            takes[link.person_id].append(link.child_id)
    devices: defaultdict[str, list[str]] = defaultdict(list)
    for device in session.scalars(select(AppDevice).where(AppDevice.active).order_by(AppDevice.device_id)):
        devices[device.person_id].append(device.device_id)
    return {
        "school": None
        if school is None
        else {
            "name": school.name,
            "director_name": school.director_name,
            "director_email": school.director_email,
            "time_zone": school.time_zone,
        },
        "rooms": [
            {"id": r.id, "name": r.name, "active": r.active} for r in session.scalars(select(Room).order_by(Room.id))
        ],
        "teachers": [
            {"id": t.id, "name": t.name, "room": t.room_id, "active": t.active}
            for t in session.scalars(select(Teacher).order_by(Teacher.id))
        ],
        "people": [
            {
                "id": p.id,
                "name": p.name,
                "role": p.role.value,
                "active": p.active,
                "sms": p.sms_number,
                "pin": p.pin_state.value,
                "devices": devices.get(p.id, []),
                "children": sorted(takes.get(p.id, [])),
            }
            for p in session.scalars(select(Person).order_by(Person.id))
        ],
        "children": [
            {
                "id": c.id,
                "name": c.name,
                "room": c.room_id,
                "active": c.active,
                "payers": links[c.id][LinkRelation.PAYER],
                "pickups": links[c.id][LinkRelation.PICKUP],
                "restricted": links[c.id][LinkRelation.RESTRICTED],
            }
            for c in session.scalars(select(Child).order_by(Child.id))
        ],
    }


def recent_sync_runs(*, session: Session, limit: int = 10) -> list[SyncRun]:
    return list(session.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(limit)))
