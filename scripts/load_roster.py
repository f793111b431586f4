"""The rosters of the peak-hour load (scripts/load): a center of ~300 children synced first, and
the 3,000-person export the stand-in serves in the middle of the run.

Both come from one generated export (``generate_roster``), so they agree: the small one is its
first families (in ~14 children per room, with those rooms' teachers), the big one all of it. The families the
stations and phones use are the same records in both, so the sync in the middle adds 2,700
people and changes none of the people at the door: a PIN that worked before the sync works
after it, and a refusal is a real error, not the load's own doing.

Every payer gets a phone (the generator gives ~60 % of them one), so a 300-child center has
the 300 phones the issue asks for.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from cloud_sync.standin.generator import ENROLLED, device_private_key, generate_roster, public_key_b64
from scripts.bench_checkin import family_pins

CENTER = "demo-center"


@dataclass(frozen=True)
class LoadRosters:
    seed: int
    small: dict[str, Any]  # the export of the first sync
    big: dict[str, Any]  # the export of the sync in the middle (a superset of ``small``)
    pins: list[str]  # one payer PIN per family of ``small``, held by nobody else in ``big``
    devices: list[str]  # payers' phones in ``small`` (each a payer of a family with a child who syncs)

    @property
    def children(self) -> int:
        return sum(len(family["children"]) for family in self.small["families"])


def _enrolled(family: dict[str, Any], rooms: set[str]) -> bool:
    return any(c.get("enrollment_status") == ENROLLED and c.get("classroom") in rooms for c in family["children"])


def build_rosters(seed: int = 11, children: int = 300, big_people: int = 3_000) -> LoadRosters:
    big = generate_roster(seed=seed, people=big_people, center_id=CENTER)
    for family in big["families"]:
        for person in family["persons"]:
            if person.get("payer") and "id" in person and not person.get("app_devices"):
                device_id = f"D-{person['id']}"
                key = public_key_b64(device_private_key(seed, device_id))
                person["app_devices"] = [{"device_id": device_id, "public_key": key}]
    first: list[dict[str, Any]] = []
    count = 0
    for family in big["families"]:
        if count >= children:
            break
        first.append(family)
        count += len(family["children"])
    if count < children:
        raise ValueError(f"{big_people} people hold only {count} children; ask for more people")
    # The small center has the rooms of a small center (the generator's one per 25 people):
    # its children move into those, in both exports, and it lists only their teachers.
    small_rooms = big["rooms"][: max(3, round(children / 14))]
    room_ids = [room["id"] for room in small_rooms]
    for family in first:
        for child in family["children"]:
            if child.get("classroom") and child["classroom"] not in room_ids:
                child["classroom"] = room_ids[int(child["id"][1:]) % len(room_ids)]
    other_rooms = {room["id"] for room in big["rooms"]} - set(room_ids)
    employees = [e for e in big["employees"] if e.get("primary_work_area") not in other_rooms]
    small = copy.deepcopy({**big, "rooms": small_rooms, "employees": employees, "families": first})
    ids = {family["id"] for family in first}
    pins = family_pins(big)  # unique across the big export, so the sync makes no PIN ambiguous
    small_pins = set(family_pins({**big, "families": first}))
    rooms = {room["id"] for room in big["rooms"]}
    devices = [
        device["device_id"]
        for family in first
        if family["id"] in ids and _enrolled(family, rooms)
        for person in family["persons"]
        if person.get("payer") and "id" in person
        for device in person.get("app_devices", [])[:1]
    ]
    return LoadRosters(seed, small, big, [pin for pin in pins if pin in small_pins], devices)
