"""The sync rules R1-R8: export records in, the roster to keep and a report out.

Pure: no database, no clock, no HTTP. PINs leave here only as digests (``pin_digest`` is the
appliance's HMAC), so a plan can be logged or kept without exposing one.
See docs/roster-sync.md for the rules in a director's words.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud_sync.export import (
    ChildRecord,
    EmployeeRecord,
    KeyRecord,
    PersonRecord,
    RecordError,
    RoomRecord,
    SchoolRecord,
    column_length,
    parse_record,
)
from edge.models import Child, LinkRelation, PersonRole, PinState
from edge.pins import is_valid_pin

CURRENTLY_EMPLOYED = "Currently Employed"
CURRENTLY_ENROLLED = "Currently Enrolled"
ED25519 = "Ed25519"
_FAMILY_ID_MAX = column_length(Child.family_id)  # persons.family_id is as long


class Kind(enum.StrEnum):
    SCHOOL = "school"
    ROOM = "room"
    TEACHER = "teacher"
    PERSON = "person"
    CHILD = "child"


class Rule(enum.StrEnum):
    R1 = "R1"
    R2 = "R2"
    R3 = "R3"
    R4 = "R4"
    R5 = "R5"
    R6 = "R6"
    R7 = "R7"
    R8 = "R8"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Kind
    source_id: str | None
    rule: Rule
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "source_id": self.source_id,
            "rule": self.rule.value,
            "reason": self.reason,
        }


Row = dict[str, Any]


@dataclass
class RosterPlan:
    """The roster as the rules say it should be after this sync.

    Rows are column values of ``edge.models`` tables (without active / hash / changed_at).
    ``skipped`` holds every record of the export that does not sync, with its reasons;
    the applier moves those that were active before into the report's ``demoted``.
    """

    school: Row | None = None
    rooms: dict[str, Row] = field(default_factory=dict)
    teachers: dict[str, Row] = field(default_factory=dict)
    persons: dict[str, Row] = field(default_factory=dict)
    children: dict[str, Row] = field(default_factory=dict)
    links: dict[str, list[Row]] = field(default_factory=dict)  # child id -> its links
    devices: dict[str, list[Row]] = field(default_factory=dict)  # person id -> devices
    keys: dict[str, Row] = field(default_factory=dict)
    skipped: list[Finding] = field(default_factory=list)
    hints: list[Finding] = field(default_factory=list)

    def skipped_reasons(self) -> dict[tuple[Kind, str], list[Finding]]:
        by_id: dict[tuple[Kind, str], list[Finding]] = defaultdict(list)
        for finding in self.skipped:
            if finding.source_id is not None:
                by_id[finding.kind, finding.source_id].append(finding)
        return by_id


class ExportFormatError(ValueError):
    """The export as a whole cannot be used (not one record at a time)."""


def _full_name(first: str | None, last: str | None) -> str:
    return f"{first or ''} {last or ''}".strip() or "(no name)"


def _label(kind: Kind) -> str:
    return {
        Kind.SCHOOL: "School",
        Kind.ROOM: "Room",
        Kind.TEACHER: "Teacher",
        Kind.PERSON: "Person",
        Kind.CHILD: "Child",
    }[kind]


def _unreadable(kind: Kind, rule: Rule, err: RecordError) -> Finding:
    who = f"{_label(kind)} {err.label}".strip() if err.label else f"A {kind.value} record"
    if err.source_id is None and "no id" not in err.problem:
        return Finding(kind, None, rule, f"{who} did not sync: the record has {err.problem}")
    ident = f" ({err.source_id})" if err.source_id else ""
    return Finding(kind, err.source_id, rule, f"{who}{ident} did not sync: {err.problem}")


def _ed25519_key_ok(text: str) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


class _Planner:
    def __init__(self, pin_digest: Callable[[str], str]) -> None:
        self.pin_digest = pin_digest
        self.plan = RosterPlan()
        # digest -> [(kind, id, name)] of everyone who syncs with that PIN
        self.pins: dict[str, list[tuple[Kind, str, str]]] = defaultdict(list)
        # families, gathered page by page: a payer of one family may pick up in another
        self._people: dict[str, tuple[PersonRecord, str | None]] = {}
        self._payer_of: dict[str, list[str | None]] = defaultdict(list)  # person -> family ids
        self._raw_children: list[tuple[ChildRecord, str | None]] = []
        self._family_names: dict[str | None, str] = {}
        self._family_payers: dict[str | None, list[str]] = defaultdict(list)

    def skip(self, kind: Kind, source_id: str | None, rule: Rule, reason: str) -> None:
        self.plan.skipped.append(Finding(kind, source_id, rule, reason))

    def hint(self, kind: Kind, source_id: str | None, rule: Rule, reason: str) -> None:
        self.plan.hints.append(Finding(kind, source_id, rule, reason))

    # -- R1, R2 and keys: from the first page -----------------------------------------------

    def school(self, raw: Any) -> None:
        try:
            rec = parse_record(SchoolRecord, raw)
        except RecordError as err:
            self.skip(Kind.SCHOOL, err.source_id, Rule.R1, f"The school's details did not sync: {err.problem}")
            return
        try:
            ZoneInfo(rec.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            self.skip(
                Kind.SCHOOL,
                rec.id,
                Rule.R1,
                f"The school's details did not sync: time zone “{rec.time_zone}” is not a known time zone",
            )
            return
        self.plan.school = rec.model_dump()

    def rooms(self, raws: Iterable[Any]) -> None:
        for raw in raws:
            try:
                rec = parse_record(RoomRecord, raw)
            except RecordError as err:
                self.skip(Kind.ROOM, err.source_id, Rule.R2, _unreadable(Kind.ROOM, Rule.R2, err).reason)
                continue
            if rec.id in self.plan.rooms:
                self.skip(Kind.ROOM, rec.id, Rule.R2, f"Room {rec.name} ({rec.id}) appears twice; the first was kept")
                continue
            ratio = rec.ratio
            if ratio is not None and not (isinstance(ratio, int) and not isinstance(ratio, bool) and ratio > 0):
                self.hint(
                    Kind.ROOM,
                    rec.id,
                    Rule.R2,
                    f"Room {rec.name}: ratio “{ratio}” is not a whole number above 0; synced without a ratio",
                )
                ratio = None
            self.plan.rooms[rec.id] = {"id": rec.id, "name": rec.name, "ratio": ratio}

    def keys(self, raws: Iterable[Any]) -> None:
        for raw in raws:
            try:
                rec = parse_record(KeyRecord, raw)
            except RecordError as err:
                self.hint(Kind.SCHOOL, None, Rule.R1, f"A signing key was ignored: the record has {err.problem}")
                continue
            if rec.alg != ED25519 or not _ed25519_key_ok(rec.public_key):
                self.hint(
                    Kind.SCHOOL, None, Rule.R1, f"Signing key {rec.kid} was ignored: not a valid Ed25519 public key"
                )
                continue
            self.plan.keys[rec.kid] = {"kid": rec.kid, "alg": rec.alg, "public_key": rec.public_key}

    # -- PINs ------------------------------------------------------------------------------

    def pin(self, kind: Kind, source_id: str, name: str, raw_pin: Any, rule: Rule) -> tuple[str | None, PinState]:
        if raw_pin is None or raw_pin == "":
            if kind is not Kind.TEACHER:
                self.hint(
                    kind,
                    source_id,
                    rule,
                    f"{name} has no PIN: they cannot use the PIN pad until one is set in the back office",
                )
            return None, PinState.NONE
        if not isinstance(raw_pin, str) or not is_valid_pin(raw_pin):
            self.hint(
                kind,
                source_id,
                rule,
                f"{name}'s PIN is not 4 to 6 digits: the PIN pad will not accept it "
                "until it is fixed in the back office",
            )
            return None, PinState.NONE
        digest = self.pin_digest(raw_pin)
        self.pins[digest].append((kind, source_id, name))
        return digest, PinState.SET

    def settle_pins(self) -> None:
        """Two people with one PIN: both keep syncing, the PIN is disabled for both."""
        for holders in self.pins.values():
            if len(holders) < 2:
                continue
            for kind, source_id, name in holders:
                table = self.plan.teachers if kind is Kind.TEACHER else self.plan.persons
                table[source_id]["pin_state"] = PinState.AMBIGUOUS
                others = ", ".join(n for k, s, n in holders if (k, s) != (kind, source_id))
                rule = Rule.R3 if kind is Kind.TEACHER else Rule(self.person_rule(source_id))
                self.hint(
                    kind,
                    source_id,
                    rule,
                    f"{name}'s PIN is the same as {others}'s: it is disabled for all of them until "
                    "each has a different PIN in the back office",
                )

    def person_rule(self, person_id: str) -> str:
        row = self.plan.persons[person_id]
        return Rule.R4 if row["role"] is PersonRole.PAYER else Rule.R7

    # -- R3 ---------------------------------------------------------------------------------

    def employees(self, raws: list[Any]) -> None:
        for raw in raws:
            try:
                rec = parse_record(EmployeeRecord, raw)
            except RecordError as err:
                self.plan.skipped.append(_unreadable(Kind.TEACHER, Rule.R3, err))
                continue
            name = _full_name(rec.first_name, rec.last_name)
            if rec.id in self.plan.teachers:
                self.skip(Kind.TEACHER, rec.id, Rule.R3, f"Teacher {name} ({rec.id}) appears twice; the first was kept")
                continue
            history = rec.work_history
            problems = []
            if history is None or history.start_date is None:
                problems.append("no Start Date in Work History")
            status = history.status if history else None
            if status != CURRENTLY_EMPLOYED:
                said = f"status is “{status}”" if status else "no employment status"
                if history and history.termination_date:
                    said += f" (terminated {history.termination_date.isoformat()})"
                problems.append(f"{said}, not “{CURRENTLY_EMPLOYED}”")
            if not rec.primary_work_area:
                problems.append("no Primary Work Area")
            elif rec.primary_work_area not in self.plan.rooms:
                problems.append(f"Primary Work Area “{rec.primary_work_area}” is not a room")
            if problems:
                self.skip(Kind.TEACHER, rec.id, Rule.R3, f"Teacher {name} did not sync: {'; '.join(problems)}")
                continue
            if history and history.termination_date:
                self.hint(
                    Kind.TEACHER,
                    rec.id,
                    Rule.R3,
                    f"Teacher {name} is “{CURRENTLY_EMPLOYED}” but has a termination date "
                    f"({history.termination_date.isoformat()}); check Work History",
                )
            row = {
                "id": rec.id,
                "first_name": rec.first_name,
                "last_name": rec.last_name,
                "email": rec.email,
                "room_id": rec.primary_work_area,
                "pin_hmac": None,
                "pin_state": PinState.NONE,
            }
            self.plan.teachers[rec.id] = row
            row["pin_hmac"], row["pin_state"] = self.pin(Kind.TEACHER, rec.id, f"Teacher {name}", rec.pin, Rule.R3)

    # -- R4-R8: families --------------------------------------------------------------------

    def parse_families(self, raws: list[Any]) -> None:
        """Read one page's families; the rules that span families run in ``finish_families``."""
        for raw in raws:
            if not isinstance(raw, dict):
                self.skip(
                    Kind.CHILD, None, Rule.R6, "A family record is not an object; its people and children did not sync"
                )
                continue
            family_id = raw.get("id") if isinstance(raw.get("id"), str) else None
            raw_persons, raw_children = raw.get("persons") or [], raw.get("children") or []
            if not isinstance(raw_persons, list) or not isinstance(raw_children, list):  # found by fuzzing
                self.skip(
                    Kind.CHILD,
                    None,
                    Rule.R6,
                    f"Family {family_id or '(no id)'}: its persons or children are not a list; none of them synced",
                )
                continue
            if family_id is not None and len(family_id) > _FAMILY_ID_MAX:  # PostgreSQL would refuse the row
                self.skip(
                    Kind.CHILD,
                    None,
                    Rule.R6,
                    f"Family {family_id[:24]}…: its id is longer than {_FAMILY_ID_MAX} characters; none of them synced",
                )
                continue
            self._family_names[family_id] = str(raw.get("name") or family_id or "(no name)")
            for raw_person in raw_persons:
                try:
                    person = parse_record(PersonRecord, raw_person)
                except RecordError as err:
                    self.plan.skipped.append(_unreadable(Kind.PERSON, Rule.R4, err))
                    continue
                if person.id not in self._people:
                    self._people[person.id] = (person, family_id)
                if person.payer:
                    self._payer_of[person.id].append(family_id)
                    self._family_payers[family_id].append(person.id)
            for raw_child in raw_children:
                try:
                    self._raw_children.append((parse_record(ChildRecord, raw_child), family_id))
                except RecordError as err:
                    self.plan.skipped.append(_unreadable(Kind.CHILD, Rule.R6, err))

    def finish_families(self) -> None:
        enrolled = self._children(self._raw_children, self._people, self._family_names, self._family_payers)
        self._raw_children = []
        self._people_rows(self._people, self._payer_of, enrolled)

    def _children(
        self,
        children: list[tuple[ChildRecord, str | None]],
        people: Mapping[str, tuple[PersonRecord, str | None]],
        family_names: Mapping[str | None, str],
        family_payers: Mapping[str | None, list[str]],
    ) -> dict[str, tuple[ChildRecord, str | None]]:
        """R6 for each child; returns the children that sync, by id."""
        enrolled: dict[str, tuple[ChildRecord, str | None]] = {}
        for child, family_id in children:
            name = _full_name(child.first_name, child.last_name)
            if child.id in enrolled or child.id in self.plan.children:
                self.skip(Kind.CHILD, child.id, Rule.R6, f"Child {name} ({child.id}) appears twice; the first was kept")
                continue
            problems = []
            if child.enrollment_status != CURRENTLY_ENROLLED:
                said = (
                    f"enrollment status is “{child.enrollment_status}”"
                    if child.enrollment_status
                    else "no enrollment status"
                )
                problems.append(f"{said}, not “{CURRENTLY_ENROLLED}”")
            if not child.classroom:
                problems.append("no classroom")
            elif child.classroom not in self.plan.rooms:
                problems.append(f"classroom “{child.classroom}” is not a room")
            if problems:
                self.skip(Kind.CHILD, child.id, Rule.R6, f"Child {name} did not sync: {'; '.join(problems)}")
                continue
            enrolled[child.id] = (child, family_id)
            self.plan.children[child.id] = {
                "id": child.id,
                "family_id": family_id,
                "first_name": child.first_name,
                "last_name": child.last_name,
                "birth_date": child.birth_date,
                "room_id": child.classroom,
            }
            if not family_payers.get(family_id):
                self.hint(
                    Kind.CHILD,
                    child.id,
                    Rule.R4,
                    f"Child {name}: family {family_names.get(family_id, '')} has no payer, so no parent "
                    "can use a QR code or the phone app for this child; authorized pickups use the PIN",
                )
        return enrolled

    def _people_rows(
        self,
        people: dict[str, tuple[PersonRecord, str | None]],
        payer_of: Mapping[str, list[str | None]],
        enrolled: Mapping[str, tuple[ChildRecord, str | None]],
    ) -> None:
        restricted: dict[str, dict[str, str | None]] = defaultdict(dict)  # child -> person -> note
        authorized: dict[str, set[str]] = defaultdict(set)  # child -> persons
        for child_id, (child, _family) in enrolled.items():
            for pickup in child.pickups:
                if pickup.authorized:
                    authorized[child_id].add(pickup.person_id)
                else:
                    restricted[child_id][pickup.person_id] = pickup.note
        pickup_of: dict[str, set[str]] = defaultdict(set)  # person -> children they may pick up
        for child_id in enrolled:
            authorized[child_id] -= restricted[child_id].keys()
            for person_id in authorized[child_id]:
                pickup_of[person_id].add(child_id)

        children_of_family: dict[str | None, list[str]] = defaultdict(list)
        for child_id, (_child, family_id) in enrolled.items():
            children_of_family[family_id].append(child_id)

        links: dict[str, list[Row]] = {child_id: [] for child_id in enrolled}
        for child_id, notes in restricted.items():
            for person_id, note in notes.items():
                links[child_id].append(
                    {"child_id": child_id, "person_id": person_id, "relation": LinkRelation.RESTRICTED, "note": note}
                )

        for person_id in list(people):
            person, family_id = people.pop(person_id)  # each record freed once it is a row
            name = _full_name(person.first_name, person.last_name)
            families = payer_of.get(person_id, [])
            own = sorted({c for fam in families for c in children_of_family.get(fam, [])})
            extra = sorted(pickup_of.get(person_id, set()) - set(own))
            if families:
                role, label = PersonRole.PAYER, f"Parent {name}"
            else:
                role, label = PersonRole.PICKUP, f"Pickup person {name}"
                if not extra:
                    self.skip(
                        Kind.PERSON,
                        person_id,
                        Rule.R7,
                        f"{label} did not sync: not a payer, and not an authorized pickup of any enrolled child",
                    )
                    continue
            for child_id in own:
                if person_id in restricted[child_id]:
                    child = enrolled[child_id][0]
                    self.hint(
                        Kind.PERSON,
                        person_id,
                        Rule.R8,
                        f"{label} is a payer of the family but restricted for "
                        f"{_full_name(child.first_name, child.last_name)}: they may never check that child in or out",
                    )
            text = person.text_message
            sms = text.number if role is PersonRole.PAYER and text and text.number else None
            row: Row = {
                "id": person_id,
                "family_id": families[0] if families else family_id,
                "first_name": person.first_name,
                "last_name": person.last_name,
                "email": person.email,
                "role": role,
                "sms_number": sms,
                "sms_carrier": text.carrier if sms and text else None,
                "pin_hmac": None,
                "pin_state": PinState.NONE,
            }
            self.plan.persons[person_id] = row
            if role is PersonRole.PAYER and sms is None:
                self.hint(
                    Kind.PERSON,
                    person_id,
                    Rule.R5,
                    f"{label} has no Text Message number, so no text messages can be sent; "
                    "numbers under Phones are never used for texts",
                )
            rule = Rule.R4 if role is PersonRole.PAYER else Rule.R7
            row["pin_hmac"], row["pin_state"] = self.pin(Kind.PERSON, person_id, label, person.pin, rule)
            self._devices(person, role, label)
            # A payer is a payer of their own family's children; for anyone else's child
            # they are only an authorized pickup (PIN at the kiosk only).
            for relation, child_ids in ((LinkRelation.PAYER, own), (LinkRelation.PICKUP, extra)):
                for child_id in child_ids:
                    if person_id not in restricted[child_id]:
                        links[child_id].append(
                            {"child_id": child_id, "person_id": person_id, "relation": relation, "note": None}
                        )

        for child_id, child_links in links.items():
            for person_id in sorted(p for p in authorized[child_id] if p not in self.plan.persons):
                child = enrolled[child_id][0]
                self.hint(
                    Kind.CHILD,
                    child_id,
                    Rule.R7,
                    f"Child {_full_name(child.first_name, child.last_name)}: the pickup list names "
                    f"{person_id}, who is not in the roster",
                )
            child_links.sort(key=lambda link: (link["relation"].value, link["person_id"]))
        self.plan.links = links

    def _devices(self, person: PersonRecord, role: PersonRole, label: str) -> None:
        if role is PersonRole.PICKUP:
            if person.app_devices:
                self.hint(
                    Kind.PERSON,
                    person.id,
                    Rule.R7,
                    f"{label}'s phone app was not registered: pickup people who are not payers "
                    "use the PIN at the kiosk only",
                )
            return
        devices = []
        for device in person.app_devices:
            if not _ed25519_key_ok(device.public_key):
                self.hint(
                    Kind.PERSON,
                    person.id,
                    Rule.R4,
                    f"{label}'s phone {device.device_id} was not registered: its key is not a valid Ed25519 public key",
                )
                continue
            devices.append({"device_id": device.device_id, "person_id": person.id, "public_key": device.public_key})
        self.plan.devices[person.id] = sorted(devices, key=lambda d: d["device_id"])


def _dedupe_devices(plan: RosterPlan) -> None:
    """A device id registered to two people belongs to neither."""
    owners: dict[str, list[str]] = defaultdict(list)
    for person_id, devices in plan.devices.items():
        for device in devices:
            owners[device["device_id"]].append(person_id)
    for device_id, people in owners.items():
        if len(people) < 2:
            continue
        for person_id in people:
            plan.devices[person_id] = [d for d in plan.devices[person_id] if d["device_id"] != device_id]
            plan.hints.append(
                Finding(
                    Kind.PERSON,
                    person_id,
                    Rule.R4,
                    f"Phone {device_id} is registered to more than one person and was not registered",
                )
            )


def _envelope_list(page: Mapping[str, Any], key: str, number: int) -> list[Any]:
    value = page.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ExportFormatError(f"Page {number} of the roster broke the export format: {key} is not a list")
    return value


def plan_roster(pages: Iterable[Mapping[str, Any]], pin_digest: Callable[[str], str]) -> RosterPlan:
    """Apply R1-R8 to a complete export (every page, in order; an iterator is read once, a
    page at a time). Raises ``ExportFormatError`` only when the export as a whole is
    unusable; a bad record is skipped with its reason."""
    planner = _Planner(pin_digest)
    number = 0
    for number, page in enumerate(pages, start=1):
        if number == 1:
            if not isinstance(page.get("school"), dict):
                raise ExportFormatError("The roster export has no school on its first page")
            planner.school(page["school"])
            planner.rooms(_envelope_list(page, "rooms", 1))
            planner.keys(_envelope_list(page, "keys", 1))
        planner.employees(_envelope_list(page, "employees", number))
        planner.parse_families(_envelope_list(page, "families", number))
    if number == 0:
        raise ExportFormatError("The roster export is empty")
    planner.finish_families()
    planner.settle_pins()
    _dedupe_devices(planner.plan)
    return planner.plan
