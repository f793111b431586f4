"""Builders for back-office export records, in the contract's raw shape."""

from __future__ import annotations

import copy
from typing import Any

SCHOOL = {
    "id": "S1",
    "name": "Maple Street Early Learning",
    "address": "12 Maple St, Fresno, CA 93650",
    "phone": "+1 559 555 0100",
    "director_name": "Dana Ortiz",
    "director_email": "dana@example.org",
    "time_zone": "America/Los_Angeles",
}
ROOMS = [{"id": "R1", "name": "Infants", "ratio": 4}, {"id": "R2", "name": "Toddlers", "ratio": 6}]


def teacher(id: str | None = "E1", **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": id,
        "first_name": "Lee",
        "last_name": "Park",
        "email": "lee@example.org",
        "pin": "4821",
        "work_history": {"start_date": "2024-08-19", "status": "Currently Employed", "termination_date": None},
        "primary_work_area": "R1",
    }
    if id is None:
        del rec["id"]
    rec.update(over)
    return rec


def person(
    id: str | None, first: str = "An", last: str = "Nguyen", *, payer: bool = True, pin: Any = "7305", **over: Any
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": id,
        "first_name": first,
        "last_name": last,
        "email": f"{first.lower()}@example.org",
        "phones": {"home": None, "work": None, "cell": "+1 559 555 0112"},
        "text_message": {"carrier": "Verizon", "number": "+1 559 555 0199"} if payer else None,
        "payer": payer,
        "pin": pin,
        "app_devices": [],
    }
    if id is None:
        del rec["id"]
    rec.update(over)
    return rec


def child(
    id: str | None = "C1",
    first: str = "Mai",
    *,
    status: str = "Currently Enrolled",
    classroom: str | None = "R1",
    pickups: list[dict[str, Any]] | None = None,
    **over: Any,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": id,
        "first_name": first,
        "last_name": "Nguyen",
        "birth_date": "2023-02-11",
        "enrollment_status": status,
        "classroom": classroom,
        "pickups": pickups or [],
    }
    if id is None:
        del rec["id"]
    rec.update(over)
    return rec


def pickup(person_id: str, authorized: bool = True, note: str | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"person_id": person_id, "authorized": authorized}
    if note:
        rec["note"] = note
    return rec


def family(
    id: str, persons: list[dict[str, Any]], children: list[dict[str, Any]], name: str = "Nguyen"
) -> dict[str, Any]:
    return {"id": id, "name": name, "persons": persons, "children": children}


def export(
    *,
    employees: list[dict[str, Any]] | None = None,
    families: list[dict[str, Any]] | None = None,
    rooms: list[dict[str, Any]] | None = None,
    keys: list[dict[str, Any]] | None = None,
    school: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "exported_at": "2026-11-29T11:00:04Z",
        "etag": 'W/"test"',
        "school": copy.deepcopy(school or SCHOOL),
        "rooms": copy.deepcopy(ROOMS if rooms is None else rooms),
        "employees": employees or [],
        "families": families or [],
        "keys": keys or [],
        "next_cursor": None,
    }


def standard_family() -> dict[str, Any]:
    """The contract's example family: payer P1, pickup P2, restricted P9, child C1."""
    return family(
        "F1",
        [person("P1"), person("P2", "Binh", "Tran", payer=False, pin="1964")],
        [child("C1", pickups=[pickup("P2"), pickup("P9", authorized=False, note="court order 2026-04")])],
    )
