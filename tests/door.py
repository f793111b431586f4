"""A small roster for the door's tests, and a check-in service over a real SQLite file.

family F1 (Nguyen): payer P1 An (PIN 7305), authorized pickup P2 Binh (1964, not a payer),
                    child C1 Mai (Infants) — P9 is restricted for Mai
family F2 (Smith):  payer P9 Cal (5550), children C2 Noah (Toddlers) and C3 Ava (Toddlers);
                    P1 is an authorized pickup of Ava only (a payer elsewhere: PIN only here)
family F3 (Lopez):  payers P5 and P6 share PIN 2222 (ambiguous), child C5 Eli
teacher E1 Lee Park (PIN 4821)
"""

from __future__ import annotations

import copy
from typing import Any

from cloud_sync.roster_sync import RosterSyncService
from edge.checkin import CheckinService
from edge.clock import ClockCheck
from edge.events import EventBus
from edge.lockout import PinLockout
from edge.models import SyncOutcome
from edge.pins import PinHasher
from edge.store import Store
from edge.tickets import TicketStore
from tests.conftest import FakeClock
from tests.exports import child, export, family, person, pickup, teacher

STATION = "front-door"
PINS = {"P1": "7305", "P2": "1964", "P9": "5550", "E1": "4821"}
SHARED_PIN = "2222"


def door_export() -> dict[str, Any]:
    nguyen = family(
        "F1",
        [person("P1"), person("P2", "Binh", "Tran", payer=False, pin="1964")],
        [child("C1", pickups=[pickup("P2"), pickup("P9", authorized=False, note="court order 2026-04")])],
    )
    smith = family(
        "F2",
        [person("P9", "Cal", "Smith", pin="5550")],
        [
            child("C2", "Noah", classroom="R2", last_name="Smith"),
            child("C3", "Ava", classroom="R2", last_name="Smith", pickups=[pickup("P1")]),
        ],
        name="Smith",
    )
    lopez = family(
        "F3",
        [person("P5", "Rosa", "Lopez", pin=SHARED_PIN), person("P6", "Luis", "Lopez", pin=SHARED_PIN)],
        [child("C5", "Eli", last_name="Lopez")],
        name="Lopez",
    )
    return export(employees=[teacher("E1")], families=[nguyen, smith, lopez])


def apply(roster_sync: RosterSyncService, page: dict[str, Any] | None = None) -> None:
    report = roster_sync.apply_export([copy.deepcopy(page or door_export())])
    assert report.outcome is SyncOutcome.OK, report.error


class FixedClockCheck(ClockCheck):
    """A clock check with a fixed answer (the real one looks at systemd's flag file)."""

    def __init__(self, synced: bool = True) -> None:
        super().__init__(timesync_flag=None)
        self.answer = synced

    def synced(self) -> bool:
        return self.answer


def make_service(
    store: Store, hasher: PinHasher, clock: FakeClock, events: EventBus | None = None, **kw: Any
) -> CheckinService:
    """A service on the fake clock: tickets age with it, lockouts and events are stamped by it."""
    bus = events if events is not None else EventBus()
    tickets = TicketStore(now=lambda: clock().timestamp())
    # The fake clock stands in for the monotonic one too (tests/faults make them disagree).
    lockout = PinLockout(store, bus, clock, monotonic=lambda: clock().timestamp())
    return CheckinService(
        store,
        hasher,
        bus,
        kw.pop("clock_check", FixedClockCheck()),
        clock=clock,
        tickets=tickets,
        lockout=lockout,
        **kw,
    )


def act_over_http(client: Any, action: str, who: str = "P1", children: tuple[str, ...] = ("C1",)) -> Any:
    """Identify by PIN at the station, then act: the identify's answer when it is refused."""
    found = client.post("/api/v1/identify", json={"station_id": STATION, "method": "pin", "secret": PINS[who]})
    if found.status_code != 200:
        return found
    body = {"ticket": found.json()["ticket"], "children": list(children), "action": action}
    return client.post("/api/v1/attendance", json=body)
