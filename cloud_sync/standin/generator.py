"""Generated back-office roster exports, in the contract's page shape (contracts/desktop-roster.md).

Deterministic from the seed (one ``random.Random(seed)``, no global random state), realistic
enough to read on a kiosk, and sprinkled with the awkward records a real export holds, a
handful of each even in a 300-person roster:

- teachers: "Terminated" with a termination date; no primary work area; no start date; a
  primary work area that names no room;
- payers whose only mobile number is in ``phones.cell`` (``text_message`` null);
- children "Withdrawn"; children with no classroom;
- non-payers with an app device;
- restrictions (``authorized: false`` with a note) on a person who is a payer in another
  family, and on a person who is not in the roster at all;
- two people sharing a PIN; person records missing their ``id``; families with no payer;
  PINs that are not 4-6 digits ("12", "abcd", ...).

Each awkward case takes its own family (or teacher), so the rest of the roster is clean and
the cases do not mask one another.

Keys are real Ed25519 keys derived from the seed: ``device_private_key(seed, device_id)``
signs what a payer's phone would sign, ``cloud_private_key(seed)`` what the cloud would.
"""

from __future__ import annotations

import base64
import hashlib
import random
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

EXPORTED_AT = "2026-11-29T11:00:04Z"
# Birth dates, start dates and termination dates are drawn relative to this day, not today,
# so that one seed always gives the same export.
REFERENCE_DATE = date(2026, 11, 29)
CLOUD_KEY_ID = "cloud-2026"

ENROLLED = "Currently Enrolled"
EMPLOYED = "Currently Employed"

FIRST_NAMES = (
    "An", "Binh", "Mai", "Lee", "Dana", "José", "María", "Lucía", "Mateo", "Sofía", "Diego",
    "Valentina", "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Amelia", "James", "Harper",
    "Aiden", "Chloé", "Zoë", "Amara", "Kwame", "Ngozi", "Tariq", "Aaliyah", "Omar", "Fatima",
    "Yusuf", "Priya", "Arjun", "Ananya", "Rohan", "Mei", "Wei", "Jun", "Hana", "Haruto",
    "Yuna", "Min-jun", "Seo-yeon", "Kai", "Leilani", "Malia", "Nikolai", "Anya", "Søren",
    "Ingrid", "Declan", "Siobhan", "Gabriel", "Camila", "Isaac", "Ruth", "Samuel", "Grace",
    "Thomas", "Naomi", "Ezra", "Hazel", "Luca", "Nora", "Rafael", "Elena", "Marcus", "Jade",
)  # fmt: skip
LAST_NAMES = (
    "Nguyen", "Tran", "Park", "Ortiz", "Garcia", "Martinez", "Hernández", "Lopez", "Gonzalez",
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson",
    "Thomas", "Taylor", "Moore", "Jackson", "Lee", "Kim", "Chen", "Wang", "Singh", "Patel",
    "Khan", "Ali", "Okafor", "Mensah", "Adeyemi", "Haddad", "Cohen", "Levi", "O'Brien",
    "Murphy", "Kowalski", "Novak", "Ivanova", "Petrov", "Rossi", "Bianchi", "Müller", "Schmidt",
    "Yamamoto", "Tanaka", "Sato", "Kealoha", "Begay", "Yazzie", "Silva", "Santos", "Pereira",
    "Dubois", "Laurent", "Jensen", "Larsen", "de la Cruz", "Van der Berg", "Ramírez", "Torres",
)  # fmt: skip
ROOM_KINDS: tuple[tuple[str, int | None], ...] = (
    ("Infants", 4),
    ("Toddlers", 6),
    ("Twos", 8),
    ("Threes", 10),
    ("Preschool", 12),
    ("Pre-K", 12),
    ("School Age", None),
)
SCHOOLS = (
    ("Maple Street Early Learning", "12 Maple St, Fresno, CA 93650"),
    ("Sunflower Children's Center", "480 W Shaw Ave, Fresno, CA 93704"),
    ("Little Oaks Child Care", "2210 Oak Park Dr, Clovis, CA 93611"),
)
CARRIERS = ("Verizon", "AT&T", "T-Mobile", "US Cellular", "Cricket")
AREA_CODES = ("559", "209", "661")
RESTRICTION_NOTES = (
    "court order 2026-04",
    "restraining order on file",
    "custody agreement: no pickups",
    "per the parents' written request",
)
INVALID_PINS = ("12", "abcd", "1234567", "", "12a4")
WORK_AREAS_THAT_ARE_NOT_ROOMS = ("Kitchen", "Office", "Floater", "Annex 2")

_PIN_DIGITS = (4, 5, 5, 6, 6, 6)

T = TypeVar("T")


def _ascii_slug(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


_SLUGS = {name: _ascii_slug(name) for name in FIRST_NAMES + LAST_NAMES}


def _derived_key(material: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(material.encode()).digest())


def device_private_key(seed: int, device_id: str) -> Ed25519PrivateKey:
    """The private key of a generated app device (its public key is in the export)."""
    return _derived_key(f"{seed}:{device_id}")


def cloud_private_key(seed: int) -> Ed25519PrivateKey:
    """The private key behind the export's one ``keys`` entry."""
    return _derived_key(f"{seed}:cloud")


def public_key_b64(key: Ed25519PrivateKey) -> str:
    """Raw 32-byte public key, standard base64 with padding: the export's format."""
    return base64.b64encode(key.public_key().public_bytes_raw()).decode("ascii")


def generate_roster(seed: int = 1, people: int = 300, center_id: str = "demo-center") -> dict[str, Any]:
    """One complete export: ``people`` persons across the families (roughly), about one
    teacher and one room per 25 people (at least 3 of each). ``etag`` and ``next_cursor``
    are left null: the server fills them in."""
    return _RosterBuilder(seed, center_id).build(people)


class _RosterBuilder:
    def __init__(self, seed: int, center_id: str) -> None:
        self.seed = seed
        self.center_id = center_id
        self.rng = random.Random(seed)
        self.pins: set[str] = set()
        self.person_count = 0
        self.child_count = 0
        self.room_ids: list[str] = []

    # -- pieces ---------------------------------------------------------------------------
    # pick() and below() use rng.random() rather than choice()/randrange(): twice as fast,
    # and generation time is dominated by them (and by deriving Ed25519 keys).

    def pick(self, options: Sequence[T]) -> T:
        return options[int(self.rng.random() * len(options))]

    def below(self, n: int) -> int:
        return int(self.rng.random() * n)

    def pin(self) -> str:
        while True:
            digits = self.pick(_PIN_DIGITS)
            pin = f"{self.below(10**digits):0{digits}d}"
            if pin not in self.pins:
                self.pins.add(pin)
                return pin

    def phone(self) -> str:
        return f"+1 {self.pick(AREA_CODES)} 555 {self.below(10_000):04d}"

    def day_between(self, earliest: date, latest: date) -> str:
        return (earliest + timedelta(days=self.below((latest - earliest).days + 1))).isoformat()

    def next_person_id(self) -> str:
        self.person_count += 1
        return f"P{self.person_count}"

    def device(self, person_id: str, suffix: str = "") -> dict[str, str]:
        device_id = f"D-{person_id}{suffix}"
        return {"device_id": device_id, "public_key": public_key_b64(device_private_key(self.seed, device_id))}

    def school(self) -> dict[str, Any]:
        name, address = self.pick(SCHOOLS)
        director = f"{self.pick(FIRST_NAMES)} {self.pick(LAST_NAMES)}"
        first, _, last = director.partition(" ")
        return {
            "id": self.center_id,
            "name": name,
            "address": address,
            "phone": "+1 559 555 0100",
            "director_name": director,
            "director_email": f"{_SLUGS[first]}.{_SLUGS[last]}@example.org",
            "time_zone": "America/Los_Angeles",
        }

    def rooms(self, count: int) -> list[dict[str, Any]]:
        rooms: list[dict[str, Any]] = []
        for index in range(count):
            kind, ratio = ROOM_KINDS[index % len(ROOM_KINDS)]
            round_no = index // len(ROOM_KINDS)
            name = kind if round_no == 0 else f"{kind} {round_no + 1}"
            rooms.append({"id": f"R{index + 1}", "name": name, "ratio": ratio})
        self.room_ids = [room["id"] for room in rooms]
        return rooms

    def employee(self, number: int) -> dict[str, Any]:
        first, last = self.pick(FIRST_NAMES), self.pick(LAST_NAMES)
        return {
            "id": f"E{number}",
            "first_name": first,
            "last_name": last,
            "email": f"{_SLUGS[first]}.{_SLUGS[last]}.e{number}@example.org",
            "pin": self.pin(),
            "work_history": {
                "start_date": self.day_between(date(2015, 1, 5), REFERENCE_DATE - timedelta(days=30)),
                "status": EMPLOYED,
                "termination_date": None,
            },
            "primary_work_area": self.pick(self.room_ids),
        }

    def person(self, family_name: str, *, payer: bool) -> dict[str, Any]:
        rng = self.rng
        person_id = self.next_person_id()
        first = self.pick(FIRST_NAMES)
        last = family_name if rng.random() < 0.8 else self.pick(LAST_NAMES)
        cell = self.phone()
        devices: list[dict[str, str]] = []
        if payer:
            draw = rng.random()
            if draw < 0.6:
                devices.append(self.device(person_id))
            elif draw < 0.65:
                devices += [self.device(person_id), self.device(person_id, "-2")]
        texting = payer or rng.random() < 0.4
        return {
            "id": person_id,
            "first_name": first,
            "last_name": last,
            "email": (
                f"{_SLUGS[first]}.{_SLUGS[last]}.{person_id.lower()}@example.org" if rng.random() < 0.85 else None
            ),
            "phones": {
                "home": self.phone() if rng.random() < 0.3 else None,
                "work": self.phone() if rng.random() < 0.2 else None,
                "cell": cell,
            },
            "text_message": {"carrier": self.pick(CARRIERS), "number": cell} if texting else None,
            "payer": payer,
            "pin": self.pin(),
            "app_devices": devices,
        }

    def child(self, family_name: str, pickup_ids: list[str]) -> dict[str, Any]:
        self.child_count += 1
        return {
            "id": f"C{self.child_count}",
            "first_name": self.pick(FIRST_NAMES),
            "last_name": family_name,
            "birth_date": self.day_between(
                REFERENCE_DATE - timedelta(days=5 * 365), REFERENCE_DATE - timedelta(days=90)
            ),
            "enrollment_status": ENROLLED,
            "classroom": self.pick(self.room_ids),
            "pickups": [{"person_id": person_id, "authorized": True} for person_id in pickup_ids],
        }

    def family(self, number: int) -> dict[str, Any]:
        rng = self.rng
        name = self.pick(LAST_NAMES)
        payers = [self.person(name, payer=True) for _ in range(1 if rng.random() < 0.35 else 2)]
        draw = rng.random()
        others = [self.person(name, payer=False) for _ in range(0 if draw < 0.4 else 1 if draw < 0.8 else 2)]
        pickup_ids = [person["id"] for person in others]
        children = [self.child(name, pickup_ids) for _ in range(1 if rng.random() < 0.6 else 2)]
        return {"id": f"F{number}", "name": name, "persons": payers + others, "children": children}

    # -- the whole export -----------------------------------------------------------------

    def build(self, people: int) -> dict[str, Any]:
        school = self.school()
        rooms = self.rooms(max(3, round(people / 25)))
        employees = [self.employee(number) for number in range(1, max(3, people // 25) + 1)]
        families: list[dict[str, Any]] = []
        while self.person_count < people:
            families.append(self.family(len(families) + 1))
        self.sprinkle_teachers(employees)
        self.sprinkle_families(families)
        return {
            "exported_at": EXPORTED_AT,
            "etag": None,
            "school": school,
            "rooms": rooms,
            "employees": employees,
            "families": families,
            "keys": [
                {"kid": CLOUD_KEY_ID, "alg": "Ed25519", "public_key": public_key_b64(cloud_private_key(self.seed))}
            ],
            "next_cursor": None,
        }

    # -- the awkward cases ----------------------------------------------------------------

    def sprinkle_teachers(self, employees: list[dict[str, Any]]) -> None:
        rng = self.rng
        order = iter(rng.sample(employees, len(employees)))
        each = max(1, len(employees) // 12)

        def terminated(employee: dict[str, Any]) -> None:
            history = employee["work_history"]
            history["status"] = "Terminated"
            start = date.fromisoformat(history["start_date"])
            history["termination_date"] = self.day_between(start + timedelta(days=1), REFERENCE_DATE)

        def no_work_area(employee: dict[str, Any]) -> None:
            employee["primary_work_area"] = None

        def no_start_date(employee: dict[str, Any]) -> None:
            employee["work_history"]["start_date"] = None

        def work_area_not_a_room(employee: dict[str, Any]) -> None:
            employee["primary_work_area"] = rng.choice(WORK_AREAS_THAT_ARE_NOT_ROOMS)

        for spoil in (terminated, no_work_area, no_start_date, work_area_not_a_room):
            for _ in range(each):
                employee = next(order, None)
                if employee is None:
                    return
                spoil(employee)

    def sprinkle_families(self, families: list[dict[str, Any]]) -> None:
        rng = self.rng
        pool = rng.sample(families, len(families))
        each = max(2, len(families) // 50)
        bad_pins = iter(INVALID_PINS * (each // len(INVALID_PINS) + 1))

        def take(wanted: Callable[[dict[str, Any]], bool] = lambda _family: True) -> dict[str, Any] | None:
            for index, family in enumerate(pool):
                if wanted(family):
                    return pool.pop(index)
            return None

        def payers(family: dict[str, Any]) -> list[dict[str, Any]]:
            return [person for person in family["persons"] if person["payer"]]

        def non_payers(family: dict[str, Any]) -> list[dict[str, Any]]:
            return [person for person in family["persons"] if not person["payer"]]

        def restrict(family: dict[str, Any], person_id: str) -> None:
            family["children"][0]["pickups"].append(
                {"person_id": person_id, "authorized": False, "note": rng.choice(RESTRICTION_NOTES)}
            )

        def one_round() -> int:
            done = 0
            if family := take():  # a payer whose only mobile is phones.cell
                payers(family)[0]["text_message"] = None
                done += 1
            if family := take():
                family["children"][0]["enrollment_status"] = "Withdrawn"
                done += 1
            if family := take():
                family["children"][0]["classroom"] = None
                done += 1
            if family := take(lambda f: bool(non_payers(f))):
                person = non_payers(family)[0]
                person["app_devices"] = [self.device(person["id"])]
                done += 1
            if (elsewhere := take()) and (family := take()):  # restricted here, payer there
                restrict(family, payers(elsewhere)[0]["id"])
                done += 1
            if family := take():  # restricted, and in the roster nowhere
                restrict(family, self.next_person_id())
                done += 1
            if (first := take()) and (second := take()):
                payers(second)[0]["pin"] = payers(first)[0]["pin"]
                done += 1
            if family := take(lambda f: bool(non_payers(f))):
                person = non_payers(family)[0]
                missing_id = person.pop("id")
                for child in family["children"]:
                    child["pickups"] = [p for p in child["pickups"] if p["person_id"] != missing_id]
                done += 1
            if family := take():
                for person in family["persons"]:
                    person["payer"] = False
                    person["app_devices"] = []
                done += 1
            if family := take():
                rng.choice(family["persons"])["pin"] = next(bad_pins)
                done += 1

            return done

        for _ in range(each):
            if not one_round():
                return


def _passes_r6(child: dict[str, Any], room_ids: set[str]) -> bool:
    return child.get("enrollment_status") == ENROLLED and child.get("classroom") in room_ids


def _name(record: dict[str, Any]) -> str:
    return f"{record['first_name']} {record['last_name']}"


def demo_people(export: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """People for the demo script, all with a valid PIN nobody else has and children who are
    Currently Enrolled in a room:

    - ``payer``: ``{id, name, pin, children: [{id, name}, ...]}``;
    - ``pickup``: an authorized non-payer, ``{id, name, pin, child_id, child_name}``;
    - ``restricted``: a person restricted for that child, ``{id, name, pin, child_id, child_name}``.

    Raises ``ValueError`` when the export holds no such people (a very small roster)."""
    room_ids = {room["id"] for room in export.get("rooms", [])}
    families = export.get("families", [])
    persons = [person for family in families for person in family.get("persons", [])]
    pin_counts = Counter(
        str(record.get("pin")) for record in [*export.get("employees", []), *persons] if record.get("pin")
    )

    def usable(person: dict[str, Any]) -> bool:
        pin = str(person.get("pin") or "")
        return "id" in person and pin.isdigit() and 4 <= len(pin) <= 6 and pin_counts[pin] == 1

    def summary(person: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {"id": person["id"], "name": _name(person), "pin": person["pin"], **extra}

    by_id = {person["id"]: person for person in persons if "id" in person}
    restricted_ids = {
        pickup["person_id"]
        for family in families
        for child in family.get("children", [])
        for pickup in child.get("pickups", [])
        if pickup.get("authorized") is False
    }
    chosen: dict[str, dict[str, Any]] = {}
    for family in families:
        children = [child for child in family.get("children", []) if _passes_r6(child, room_ids)]
        for person in family.get("persons", []):
            if (
                "payer" not in chosen
                and person.get("payer") is True
                and children
                and usable(person)
                and person["id"] not in restricted_ids
            ):
                chosen["payer"] = summary(
                    person, children=[{"id": child["id"], "name": _name(child)} for child in children]
                )
        for child in children:
            for pickup in child.get("pickups", []):
                person = by_id.get(pickup.get("person_id", ""))
                if person is None or not usable(person):
                    continue
                if pickup.get("authorized") is True and person.get("payer") is False and "pickup" not in chosen:
                    if person["id"] not in restricted_ids:
                        chosen["pickup"] = summary(person, child_id=child["id"], child_name=_name(child))
                elif pickup.get("authorized") is False and "restricted" not in chosen:
                    chosen["restricted"] = summary(person, child_id=child["id"], child_name=_name(child))
        if len(chosen) == 3:
            return chosen
    missing = sorted({"payer", "pickup", "restricted"} - chosen.keys())
    raise ValueError(f"the roster has no usable demo {', '.join(missing)}")
