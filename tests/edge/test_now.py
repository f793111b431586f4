"""The "Now" read model: children in per room, teachers clocked in, the ratio flag."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cloud_sync.roster_sync import RosterSyncService
from edge.attendance import record_event
from edge.models import Action, ActorKind, Method, SubjectKind
from edge.now import RoomNow, SubjectNow, child_detail, now_view, open_alerts, resolve_alert
from edge.store import Store
from tests.conftest import FakeClock
from tests.door import apply
from tests.exports import child, export, family, person, teacher

AT = dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.UTC)  # 09:00 in Fresno


def _subjects(present: int, out: int = 0) -> list[SubjectNow]:
    return [SubjectNow(f"X{i}", f"X{i}", i < present, AT, True) for i in range(present + out)]


@pytest.mark.parametrize(
    ("ratio", "children_in", "teachers_in", "over", "needed"),
    [
        (4, 0, 0, False, 0),
        (4, 4, 1, False, 1),
        (4, 5, 1, True, 2),
        (4, 8, 2, False, 2),
        (4, 1, 0, True, 1),  # a child with no teacher clocked in
        (None, 3, 0, True, None),  # no ratio set: still never a room of children alone
        (None, 3, 1, False, None),
    ],
)
def test_ratio_flag(ratio: int | None, children_in: int, teachers_in: int, over: bool, needed: int | None) -> None:
    room = RoomNow("R1", "Infants", ratio, _subjects(children_in, out=2), _subjects(teachers_in, out=1))
    assert (room.children_in, room.enrolled, room.teachers_in) == (children_in, children_in + 2, teachers_in)
    assert room.over_ratio is over
    assert room.teachers_needed == needed


def _event(store: Store, kind: SubjectKind, subject: str, action: Action, at: dt.datetime) -> None:
    with store.transaction() as session:
        record_event(
            session,
            subject_kind=kind,
            subject_id=subject,
            action=action,
            method=Method.PIN,
            actor_kind=ActorKind.STAFF if kind is SubjectKind.STAFF else ActorKind.PAYER,
            actor_id="E1" if kind is SubjectKind.STAFF else "P1",
            station_id="front-door",
            occurred_at=at,
            clock_synced=True,
        )


def infants_export() -> dict[str, Any]:
    kids = [child(f"C{i}", f"Kid{i}") for i in range(1, 7)]
    return export(
        employees=[
            teacher("E1"),
            teacher("E2", first_name="Ana", last_name="Ruiz", pin="5821", primary_work_area="R2"),
        ],
        families=[family("F1", [person("P1")], kids)],
    )


def test_now_view_counts_rooms_and_flags_ratio(store: Store, roster_sync: RosterSyncService) -> None:
    apply(roster_sync, infants_export())
    for i in range(1, 6):
        _event(store, SubjectKind.CHILD, f"C{i}", Action.CHECK_IN, AT - dt.timedelta(minutes=i))
    _event(store, SubjectKind.CHILD, "C5", Action.CHECK_OUT, AT - dt.timedelta(seconds=30))
    _event(store, SubjectKind.CHILD, "C6", Action.CHECK_OUT, AT - dt.timedelta(days=1))  # yesterday
    with store.read() as session:
        view = now_view(session=session, now=AT)
    infants, toddlers = view.rooms
    assert (infants.name, infants.children_in, infants.enrolled, infants.teachers_in) == ("Infants", 4, 6, 0)
    assert infants.over_ratio  # four children, nobody clocked in
    states = {c.id: (c.present, c.today) for c in infants.children}
    assert states["C1"] == (True, True)
    assert states["C5"] == (False, True)  # went home today
    assert states["C6"] == (False, False)  # not in today
    assert (toddlers.name, toddlers.enrolled, [t.name for t in toddlers.teachers]) == ("Toddlers", 0, ["Ana Ruiz"])
    _event(store, SubjectKind.STAFF, "E1", Action.CLOCK_IN, AT - dt.timedelta(minutes=20))
    with store.read() as session:
        view = now_view(session=session, now=AT)
    assert (view.rooms[0].teachers_in, view.rooms[0].over_ratio) == (1, False)
    assert (view.children_in, view.enrolled, view.teachers_in, view.rooms_over_ratio) == (4, 6, 1, [])
    assert view.zone.key == "America/Los_Angeles"


def test_child_detail_and_alerts(store: Store, roster_sync: RosterSyncService, clock: FakeClock) -> None:
    apply(roster_sync)
    _event(store, SubjectKind.CHILD, "C1", Action.CHECK_IN, AT)
    with store.transaction() as session:
        from edge.audit import raise_alert

        alert_id = raise_alert(db=session, at=AT, kind="restricted_pickup", message="P9 at the door")
    with store.read() as session:
        detail = child_detail("C1", session=session)
        assert child_detail("C404", session=session) is None
        assert [a.id for a in open_alerts(session=session)] == [alert_id]
    assert detail is not None
    assert (detail.name, detail.room, detail.present, detail.since) == ("Mai Nguyen", "Infants", True, AT)
    assert [e.action for e in detail.events] == [Action.CHECK_IN]
    with store.transaction() as session:
        assert resolve_alert(alert_id, session=session, at=clock())
        assert not resolve_alert(alert_id, session=session, at=clock())
    with store.read() as session:
        assert open_alerts(session=session) == []
