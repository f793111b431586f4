"""The check-in service on a real SQLite file: identify, act, tickets, the dedup window, the
restricted alert, one transaction per act, and never a PIN in the audit log or the logs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

import edge.audit
from cloud_sync.roster_sync import RosterSyncService
from edge.attendance import event_payload, subject_key
from edge.checkin import CheckinService
from edge.events import EventBus, LiveEvent
from edge.models import (
    Action,
    ActorKind,
    Alert,
    AttendanceEvent,
    AuditEntry,
    AuditOutcome,
    Method,
    OutboxEntry,
    OutboxState,
    Presence,
    SubjectKind,
)
from edge.outcomes import Identification, Recorded, Refusal
from edge.pins import PinHasher
from edge.policy import RefusalReason, Rule
from edge.prepared import Prepared
from edge.store import Store
from tests.conftest import FakeClock
from tests.dbenv import holding_the_writer
from tests.door import PINS, SHARED_PIN, STATION, FixedClockCheck, apply, door_export, make_service

R = RefusalReason


@pytest.fixture
def events() -> EventBus:
    return EventBus()


@pytest.fixture
def woken() -> list[int]:
    return []


@pytest.fixture
def service(
    store: Store,
    hasher: PinHasher,
    clock: FakeClock,
    roster_sync: RosterSyncService,
    events: EventBus,
    woken: list[int],
) -> CheckinService:
    apply(roster_sync)
    return make_service(store, hasher, clock, events, on_committed=lambda: woken.append(1))


def identified(result: Identification | Refusal) -> Identification:
    assert isinstance(result, Identification), result
    return result


def recorded(result: Recorded | Refusal) -> Recorded:
    assert not isinstance(result, Refusal), result
    return result


def refused(result: object, reason: RefusalReason) -> Refusal:
    assert isinstance(result, Refusal), result
    assert result.reason is reason
    return result


def count(store: Store, model: type[Any]) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def counts(store: Store) -> dict[str, int]:
    return {
        model.__tablename__: count(store, model)
        for model in (AttendanceEvent, Presence, OutboxEntry, AuditEntry, Alert)
    }


def audits(store: Store) -> list[AuditEntry]:
    with store.read() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def kinds(events: EventBus) -> list[str]:
    return [e.kind for e in events.since(0)]


def pin(service: CheckinService, who: str, station: str = STATION) -> Identification:
    return identified(service.identify(station, "pin", PINS[who]))


# -- identify ------------------------------------------------------------------------------------


def test_a_payer_sees_their_children_and_nothing_is_written(service: CheckinService, store: Store) -> None:
    found = pin(service, "P1")
    assert (found.person.id, found.person.name, found.person.role) == ("P1", "An Nguyen", ActorKind.PAYER)
    assert [(c.id, c.name, c.room, c.present, c.allowed, c.reason) for c in found.children] == [
        ("C3", "Ava Smith", "Toddlers", False, True, None),  # an authorized pickup of another family's child
        ("C1", "Mai Nguyen", "Infants", False, True, None),
    ]
    assert found.clock is None
    assert found.ticket
    assert counts(store) == {"attendance_events": 0, "presence": 0, "outbox": 0, "audit_log": 0, "alerts": 0}


def test_a_restricted_child_is_not_listed(service: CheckinService) -> None:
    found = pin(service, "P9")  # payer of Noah and Ava, restricted for Mai
    assert [c.id for c in found.children] == ["C3", "C2"]


def test_a_pickup_person_is_identified_by_pin(service: CheckinService) -> None:
    found = pin(service, "P2")
    assert found.person.role is ActorKind.PICKUP
    assert [(c.id, c.allowed) for c in found.children] == [("C1", True)]


def test_a_teacher_pin_identifies_staff_with_their_clock(service: CheckinService) -> None:
    found = pin(service, "E1")
    assert (found.person.id, found.person.role, found.children) == ("E1", ActorKind.STAFF, ())
    assert found.clock is not None
    assert (found.clock.present, found.clock.since) == (False, None)


def test_unknown_and_malformed_pins(service: CheckinService, store: Store) -> None:
    secrets = ("0000", "12", "12a4", "1234567", "", "٣٣٣٣")  # the last: Arabic-Indic digits
    for number, secret in enumerate(secrets):
        refused(service.identify(f"door-{number}", "pin", secret), R.UNKNOWN_PIN)
    rows = audits(store)
    assert len(rows) == len(secrets)
    assert {(r.action, r.outcome, r.reason, r.rule) for r in rows} == {
        ("identify", AuditOutcome.REFUSED, "unknown_pin", "no active person has that PIN")
    }


def test_a_shared_pin_is_ambiguous_and_does_not_count_towards_a_lockout(service: CheckinService, store: Store) -> None:
    for _ in range(6):
        refused(service.identify(STATION, "pin", SHARED_PIN), R.AMBIGUOUS_PIN)
    row = audits(store)[0]
    assert (row.reason, row.detail) == ("ambiguous_pin", {"holders": ["P5", "P6"]})
    assert service.lockout.retry_after(STATION) is None


def test_an_inactive_person_is_refused(
    service: CheckinService, roster_sync: RosterSyncService, clock: FakeClock
) -> None:
    page = door_export()
    nguyen = page["families"][0]
    nguyen["persons"] = [p for p in nguyen["persons"] if p["id"] != "P2"]
    nguyen["children"][0]["pickups"] = [p for p in nguyen["children"][0]["pickups"] if p["person_id"] != "P2"]
    clock.advance(minutes=1)
    apply(roster_sync, page)
    refusal = refused(service.identify(STATION, "pin", PINS["P2"]), R.PERSON_INACTIVE)
    assert refusal.context == {}


def test_qr_without_a_verifier_is_not_a_token_and_audited_once_per_window(
    service: CheckinService, store: Store, clock: FakeClock
) -> None:
    for _ in range(3):
        refused(service.identify(STATION, "qr", "https://example.org/not-ours"), R.NOT_A_TOKEN)
    refused(service.identify(STATION, "qr", "x" * 3000), R.NOT_A_TOKEN)
    rows = audits(store)
    assert [(r.method, r.reason) for r in rows] == [("qr", "not_a_token"), ("qr", "not_a_token")]


class FakeVerifier:
    """What the QR token issue will provide: text -> person id, or a refusal."""

    def __init__(self, answers: dict[str, str | RefusalReason]) -> None:
        self.answers = answers
        self.seen: list[tuple[str, dt.datetime]] = []

    def verify(self, text: str, now: dt.datetime) -> str | RefusalReason:
        self.seen.append((text, now))
        return self.answers.get(text, R.NOT_A_TOKEN)


@pytest.fixture
def qr_service(
    store: Store, hasher: PinHasher, clock: FakeClock, roster_sync: RosterSyncService, events: EventBus
) -> CheckinService:
    apply(roster_sync)
    verifier = FakeVerifier({"tok-P1": "P1", "tok-P2": "P2", "tok-nobody": "P404", "tok-old": R.EXPIRED})
    return make_service(store, hasher, clock, events, token_verifier=verifier)


def test_qr_payer_children_they_only_pick_up_are_pin_only(qr_service: CheckinService) -> None:
    found = identified(qr_service.identify(STATION, "qr", "tok-P1"))
    assert [(c.id, c.allowed, c.reason) for c in found.children] == [("C3", False, R.PIN_ONLY), ("C1", True, None)]
    refusal = refused(qr_service.act(found.ticket, ["C3"], "check_in"), R.PIN_ONLY)
    assert refusal.context == {"child": "Ava Smith"}
    (event,) = recorded(qr_service.act(found.ticket, ["C1"], "check_in"))
    assert event.method is Method.QR


@pytest.mark.parametrize(
    ("text", "reason"),
    [("tok-P2", R.PIN_ONLY), ("tok-old", R.EXPIRED), ("tok-nobody", R.PERSON_INACTIVE), ("junk", R.NOT_A_TOKEN)],
)
def test_qr_refusals(qr_service: CheckinService, store: Store, text: str, reason: RefusalReason) -> None:
    refused(qr_service.identify(STATION, "qr", text), reason)
    (row,) = audits(store)
    assert (row.action, row.method, row.reason) == ("identify", "qr", reason.value)


def test_qr_verifier_gets_the_injected_clock(qr_service: CheckinService, clock: FakeClock) -> None:
    qr_service.identify(STATION, "qr", "tok-P1")
    assert qr_service.token_verifier is not None
    assert qr_service.token_verifier.seen == [("tok-P1", clock())]  # type: ignore[attr-defined]


def test_geofence_hook_follows_the_same_policy(qr_service: CheckinService) -> None:
    (event,) = recorded(qr_service.record_for_person("P1", "geofence", STATION, ["C1"], "check_in"))
    assert (event.method, event.subject_id) == (Method.GEOFENCE, "C1")
    refused(qr_service.record_for_person("P1", "geofence", STATION, ["C3"], "check_in"), R.PIN_ONLY)
    refused(qr_service.record_for_person("P2", "geofence", STATION, ["C1"], "check_out"), R.PIN_ONLY)
    refused(qr_service.record_for_person("P404", "geofence", STATION, ["C1"], "check_out"), R.NOT_AUTHORIZED)


# -- act -----------------------------------------------------------------------------------------


def test_check_in_writes_event_presence_outbox_and_audit_together(
    service: CheckinService, store: Store, clock: FakeClock, events: EventBus, woken: list[int]
) -> None:
    ticket = pin(service, "P1").ticket
    (event,) = recorded(service.act(ticket, ["C1"], "check_in"))
    assert (event.subject_kind, event.subject_id, event.name, event.action) == (
        SubjectKind.CHILD,
        "C1",
        "Mai Nguyen",
        Action.CHECK_IN,
    )
    assert event.occurred_at == clock()
    with store.read() as session:
        row = session.get(AttendanceEvent, event.event_id)
        assert row is not None
        assert (row.method, row.actor_kind, row.actor_id, row.station_id, row.clock_synced) == (
            Method.PIN,
            ActorKind.PAYER,
            "P1",
            STATION,
            True,
        )
        assert row.occurred_at == clock()
        presence = session.get(Presence, (SubjectKind.CHILD, "C1"))
        assert presence is not None
        assert (presence.present, presence.since, presence.event_id) == (True, clock(), event.event_id)
        outbox = session.scalars(select(OutboxEntry)).one()
        assert (outbox.event_id, outbox.state, outbox.subject_key) == (event.event_id, OutboxState.PENDING, "child:C1")
        assert outbox.payload == event_payload(row)
        assert outbox.subject_key == subject_key(row)
        assert outbox.payload["occurred_at"] == "2026-11-29T18:00:00.000Z"
        (audit,) = session.scalars(select(AuditEntry)).all()
    assert (audit.action, audit.outcome, audit.reason, audit.actor_id, audit.child_id, audit.event_id) == (
        "check_in",
        AuditOutcome.ALLOWED,
        None,
        "P1",
        "C1",
        event.event_id,
    )
    assert audit.rule == Rule.PAYER
    assert audit.detail == {"role": "An Nguyen (payer), payer (parent/guardian) of Mai Nguyen"}
    (live,) = events.since(0)
    assert (live.kind, live.station_id) == ("attendance", STATION)
    assert live.data == {
        "event_id": event.event_id,
        "child_id": "C1",
        "name": "Mai Nguyen",
        "action": "check_in",
        "occurred_at": "2026-11-29T18:00:00.000Z",
        "station_id": STATION,
        "method": "pin",
        "actor_kind": "payer",
        "actor_name": "An Nguyen",
    }
    assert woken == [1]


def test_event_ids_are_uuid7(service: CheckinService) -> None:
    import uuid

    (event,) = recorded(service.act(pin(service, "P1").ticket, ["C1"], "check_in"))
    assert uuid.UUID(event.event_id).version == 7


def test_the_clock_not_known_good_is_recorded(
    store: Store, hasher: PinHasher, clock: FakeClock, roster_sync: RosterSyncService
) -> None:
    apply(roster_sync)
    service = make_service(store, hasher, clock, clock_check=FixedClockCheck(synced=False))
    (event,) = recorded(service.act(pin(service, "P1").ticket, ["C1"], "check_in"))
    with store.read() as session:
        assert session.get(AttendanceEvent, event.event_id).clock_synced is False  # type: ignore[union-attr]
        assert session.scalars(select(OutboxEntry.payload)).one()["clock_synced"] is False


def test_a_double_tap_is_one_event(service: CheckinService, store: Store, events: EventBus, woken: list[int]) -> None:
    ticket = pin(service, "P1").ticket
    first = recorded(service.act(ticket, ["C1"], "check_in"))
    before = counts(store)
    again = recorded(service.act(ticket, ["C1"], "check_in"))
    assert again == first
    assert counts(store) == before
    assert kinds(events) == ["attendance"]
    assert woken == [1]


def test_a_used_ticket_keeps_its_answer_and_lets_the_future_go(service: CheckinService) -> None:
    """Thousands of used tickets are open at the peak: each future (a condition, a lock, its
    waiters) was objects for the garbage collector to walk (docs/door.md)."""
    ticket = pin(service, "P1").ticket
    first = recorded(service.act(ticket, ["C1"], "check_in"))
    held = service.tickets.get(ticket)
    assert held is not None
    assert held.answer is None
    assert held.recorded == first


def test_two_taps_at_the_same_moment_are_one_event(service: CheckinService, store: Store) -> None:
    ticket = pin(service, "P1").ticket
    results: list[Recorded | Refusal] = []
    start = threading.Barrier(4)

    def tap() -> None:
        start.wait()
        results.append(service.act(ticket, ["C1", "C3"], "check_in"))

    threads = [threading.Thread(target=tap) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({json.dumps([e.event_id for e in recorded(r)]) for r in results}) == 1
    assert count(store, AttendanceEvent) == 2


def test_acts_at_doors_at_once_share_a_commit_and_all_hold(service: CheckinService, store: Store) -> None:
    from sqlalchemy import event

    lead, first, second = pin(service, "P1").ticket, pin(service, "P9").ticket, pin(service, "P1").ticket
    commits: list[int] = []
    # The door writer's commits only (reads end with a commit too, and so does the held writer).
    event.listen(
        store.engine,
        "commit",
        lambda _conn: commits.extend([1] if threading.current_thread().name == "door-writer" else []),
    )
    with holding_the_writer(store):
        answers = [service.start_act(lead, ["C1"], "check_in")]
        time.sleep(0.05)  # the door's writer has (most likely) taken this one and waits for the store
        answers += [service.start_act(first, ["C2"], "check_in"), service.start_act(second, ["C3"], "check_in")]
    assert [len(recorded(answer.result(5))) for answer in answers] == [1, 1, 1]
    assert counts(store)["outbox"] == 3
    # The lead alone (or with the others, had the writer not woken yet), then the two together:
    # one commit per act would be three.
    assert len(commits) <= 2


def test_a_ticket_being_written_is_not_good_for_other_children(service: CheckinService, store: Store) -> None:
    ticket = pin(service, "P1").ticket
    with holding_the_writer(store):
        first = service.start_act(ticket, ["C1"], "check_in")
        again = service.start_act(ticket, ["C1"], "check_in")  # a double tap: the same answer
        other = service.start_act(ticket, ["C3"], "check_in")
        refused(other.result(5), R.BAD_TICKET)
    assert again is first
    assert len(recorded(first.result(5))) == 1
    assert counts(store)["attendance_events"] == 1


def test_a_ticket_is_good_for_one_set_of_children_and_one_action(service: CheckinService, store: Store) -> None:
    ticket = pin(service, "P1").ticket
    recorded(service.act(ticket, ["C1"], "check_in"))
    refused(service.act(ticket, ["C3"], "check_in"), R.BAD_TICKET)
    refused(service.act(ticket, ["C1", "C3"], "check_in"), R.BAD_TICKET)
    refused(service.act(ticket, ["C1"], "check_out"), R.BAD_TICKET)
    refused(service.act("not-a-ticket", ["C1"], "check_out"), R.BAD_TICKET)
    assert count(store, AttendanceEvent) == 1
    bad = [row for row in audits(store) if row.reason == "bad_ticket"]
    assert len(bad) == 4
    assert bad[0].actor_id == "P1"
    assert bad[-1].actor_id is None


def test_the_order_of_children_does_not_make_a_new_request(service: CheckinService) -> None:
    ticket = pin(service, "P1").ticket
    first = recorded(service.act(ticket, ["C1", "C3"], "check_in"))
    assert recorded(service.act(ticket, ["C3", "C1", "C3"], "check_in")) == first


def test_a_ticket_expires(service: CheckinService, clock: FakeClock) -> None:
    ticket = pin(service, "P1").ticket
    clock.advance(seconds=120)
    refused(service.act(ticket, ["C1"], "check_in"), R.BAD_TICKET)


def test_a_ticket_just_before_expiry_works(service: CheckinService, clock: FakeClock) -> None:
    ticket = pin(service, "P1").ticket
    clock.advance(seconds=119)
    recorded(service.act(ticket, ["C1"], "check_in"))


def test_a_refused_act_leaves_the_ticket_usable(service: CheckinService) -> None:
    ticket = pin(service, "P1").ticket
    refused(service.act(ticket, ["C1"], "check_out"), R.ALREADY_OUT)
    recorded(service.act(ticket, ["C1"], "check_in"))


def test_the_same_act_again_within_the_window_gets_the_first_event(
    service: CheckinService, store: Store, clock: FakeClock, events: EventBus
) -> None:
    (first,) = recorded(service.act(pin(service, "P1").ticket, ["C1"], "check_in"))
    clock.advance(seconds=9)
    before = counts(store)
    assert recorded(service.act(pin(service, "P1").ticket, ["C1"], "check_in")) == (first,)
    assert counts(store) == before
    assert kinds(events) == ["attendance"]
    clock.advance(seconds=2)
    refused(service.act(pin(service, "P1").ticket, ["C1"], "check_in"), R.ALREADY_IN)


def test_the_window_is_per_person(service: CheckinService) -> None:
    recorded(service.act(pin(service, "P1").ticket, ["C1"], "check_in"))
    refusal = refused(service.act(pin(service, "P2").ticket, ["C1"], "check_in"), R.ALREADY_IN)
    assert refusal.context == {"child": "Mai Nguyen"}


def test_the_window_mixes_with_a_new_child(service: CheckinService, store: Store) -> None:
    (mai,) = recorded(service.act(pin(service, "P1").ticket, ["C1"], "check_in"))
    both = recorded(service.act(pin(service, "P1").ticket, ["C1", "C3"], "check_in"))
    assert both[0] == mai
    assert both[1].subject_id == "C3"
    assert count(store, AttendanceEvent) == 2


def test_check_out_after_check_in(service: CheckinService, store: Store, clock: FakeClock) -> None:
    recorded(service.act(pin(service, "P1").ticket, ["C1"], "check_in"))
    clock.advance(hours=7)
    found = pin(service, "P2")
    assert [(c.id, c.present) for c in found.children] == [("C1", True)]
    (out,) = recorded(service.act(found.ticket, ["C1"], "check_out"))
    assert out.action is Action.CHECK_OUT
    with store.read() as session:
        presence = session.get(Presence, (SubjectKind.CHILD, "C1"))
        assert presence is not None
        assert (presence.present, presence.since, presence.event_id) == (False, clock(), out.event_id)
        assert session.scalar(select(func.count()).select_from(OutboxEntry)) == 2


def test_one_refused_child_refuses_the_whole_request(service: CheckinService, store: Store, clock: FakeClock) -> None:
    recorded(service.act(pin(service, "P1").ticket, ["C1"], "check_in"))
    clock.advance(minutes=1)
    refusal = refused(service.act(pin(service, "P1").ticket, ["C3", "C1"], "check_in"), R.ALREADY_IN)
    assert refusal.context == {"child": "Mai Nguyen"}
    assert count(store, AttendanceEvent) == 1


def test_unknown_child_is_not_authorized(service: CheckinService) -> None:
    refused(service.act(pin(service, "P1").ticket, ["C404"], "check_in"), R.NOT_AUTHORIZED)


def test_another_familys_child_is_not_authorized(service: CheckinService) -> None:
    refusal = refused(service.act(pin(service, "P1").ticket, ["C2"], "check_in"), R.NOT_AUTHORIZED)
    assert refusal.context == {"child": "Noah Smith"}


def test_a_check_in_naming_no_child_is_refused(service: CheckinService) -> None:
    refused(service.act(pin(service, "P1").ticket, [], "check_in"), R.NOT_AUTHORIZED)


def test_a_payer_cannot_clock_in(service: CheckinService) -> None:
    refused(service.act(pin(service, "P1").ticket, [], "clock_in"), R.NOT_AUTHORIZED)


def test_restricted_is_refused_alerted_and_audited(
    service: CheckinService, store: Store, events: EventBus, woken: list[int]
) -> None:
    ticket = pin(service, "P9").ticket
    refusal = refused(service.act(ticket, ["C1"], "check_out"), R.RESTRICTED)
    assert refusal.context == {"child": "Mai Nguyen"}
    with store.read() as session:
        alert = session.scalars(select(Alert)).one()
        assert session.scalar(select(func.count()).select_from(AttendanceEvent)) == 0
    assert (alert.kind, alert.person_id, alert.child_id, alert.station_id, alert.resolved_at) == (
        "restricted_pickup",
        "P9",
        "C1",
        STATION,
        None,
    )
    assert "Cal Smith" in alert.message
    assert "Mai Nguyen" in alert.message
    (row,) = audits(store)
    assert (row.outcome, row.reason, row.rule, row.actor_id, row.child_id) == (
        AuditOutcome.REFUSED,
        "restricted",
        Rule.RESTRICTED,
        "P9",
        "C1",
    )
    assert "restricted for Mai Nguyen" in row.detail["role"]  # type: ignore[index]
    live = {e.kind: e for e in events.since(0)}
    assert live["alert"].data["alert_id"] == alert.id
    assert live["alert"].station_id == STATION
    assert live["refusal"].data == {
        "reason": "restricted",
        "method": "pin",
        "action": "check_out",
        "child_name": "Mai Nguyen",
    }
    assert woken == []


def test_a_restriction_wins_over_other_refusals_in_one_request(service: CheckinService, store: Store) -> None:
    refused(service.act(pin(service, "P9").ticket, ["C2", "C1"], "check_out"), R.RESTRICTED)
    assert count(store, Alert) == 1


def test_a_child_withdrawn_since_identify(
    service: CheckinService, roster_sync: RosterSyncService, clock: FakeClock
) -> None:
    ticket = pin(service, "P1").ticket
    page = door_export()
    page["families"][0]["children"][0]["enrollment_status"] = "Withdrawn"
    clock.advance(seconds=5)
    apply(roster_sync, page)
    refused(service.act(ticket, ["C1"], "check_in"), R.CHILD_INACTIVE)
    assert [c.id for c in pin(service, "P1").children] == ["C3"]


def test_a_person_deactivated_since_identify(
    service: CheckinService, roster_sync: RosterSyncService, clock: FakeClock
) -> None:
    ticket = pin(service, "P2").ticket
    page = door_export()
    nguyen = page["families"][0]
    nguyen["persons"] = [p for p in nguyen["persons"] if p["id"] != "P2"]
    nguyen["children"][0]["pickups"] = [p for p in nguyen["children"][0]["pickups"] if p["person_id"] != "P2"]
    clock.advance(seconds=5)
    apply(roster_sync, page)
    refused(service.act(ticket, ["C1"], "check_in"), R.PERSON_INACTIVE)


# -- teachers ------------------------------------------------------------------------------------


def test_a_teacher_clocks_in_and_out(service: CheckinService, store: Store, clock: FakeClock) -> None:
    found = pin(service, "E1")
    (event,) = recorded(service.act(found.ticket, [], "clock_in"))
    assert (event.subject_kind, event.subject_id, event.name, event.action) == (
        SubjectKind.STAFF,
        "E1",
        "Lee Park",
        Action.CLOCK_IN,
    )
    with store.read() as session:
        outbox = session.scalars(select(OutboxEntry)).one()
    assert outbox.payload["staff_id"] == "E1"
    assert "child_id" not in outbox.payload
    assert outbox.payload["actor"] == {"kind": "staff", "id": "E1"}
    assert outbox.subject_key == "staff:E1"
    clock.advance(hours=8)
    again = pin(service, "E1")
    assert again.clock is not None
    assert (again.clock.present, again.clock.since) == (True, clock() - dt.timedelta(hours=8))
    refused(service.act(again.ticket, [], "clock_in"), R.ALREADY_IN)
    (out,) = recorded(service.act(again.ticket, [], "clock_out"))
    assert out.action is Action.CLOCK_OUT


def test_a_teacher_pin_cannot_take_a_child(service: CheckinService) -> None:
    refused(service.act(pin(service, "E1").ticket, ["C1"], "check_in"), R.NOT_AUTHORIZED)


# -- staff override ------------------------------------------------------------------------------


def test_staff_override_needs_a_reason(service: CheckinService, store: Store) -> None:
    refused(service.staff_override("E1", "C1", "check_in", "  ", "dashboard"), R.NOT_AUTHORIZED)
    (row,) = audits(store)
    assert (row.method, row.reason, row.rule, row.actor_id) == (
        "staff",
        "not_authorized",
        Rule.OVERRIDE_NEEDS_REASON,
        "E1",
    )


def test_staff_override_needs_staff(service: CheckinService, store: Store) -> None:
    refused(service.staff_override("P1", "C1", "check_in", "because", "dashboard"), R.NOT_AUTHORIZED)
    assert audits(store)[0].rule == "only staff may check a child in or out by hand"


def test_staff_override_with_a_reason_is_recorded_and_audited(service: CheckinService, store: Store) -> None:
    (event,) = recorded(service.staff_override("E1", "C1", "check_in", " arrived with grandma ", "dashboard"))
    assert event.method is Method.STAFF
    with store.read() as session:
        row = session.get(AttendanceEvent, event.event_id)
        assert row is not None
        assert (row.actor_kind, row.actor_id, row.reason, row.station_id) == (
            ActorKind.STAFF,
            "E1",
            "arrived with grandma",
            "dashboard",
        )
        payload = session.scalars(select(OutboxEntry.payload)).one()
    assert payload["method"] == "staff"
    assert payload["actor"] == {"kind": "staff", "id": "E1"}
    (row_audit,) = audits(store)
    assert row_audit.rule == Rule.OVERRIDE
    assert row_audit.detail == {"role": "Lee Park (staff)", "override_reason": "arrived with grandma"}


def test_staff_override_follows_the_childs_state(service: CheckinService, clock: FakeClock) -> None:
    first = recorded(service.staff_override("E1", "C1", "check_in", "dropped off by the bus", "dashboard"))
    # A second click at once is the same act: the same event back.
    assert recorded(service.staff_override("E1", "C1", "check_in", "again", "dashboard")) == first
    clock.advance(minutes=1)
    refused(service.staff_override("E1", "C1", "check_in", "again", "dashboard"), R.ALREADY_IN)


# -- one transaction -----------------------------------------------------------------------------


def test_a_failure_inside_the_transaction_writes_nothing(
    service: CheckinService, store: Store, monkeypatch: pytest.MonkeyPatch, events: EventBus, woken: list[int]
) -> None:
    ticket = pin(service, "P1").ticket

    def broken(rows: list[dict[str, Any]], *, db: Any) -> None:
        raise RuntimeError("disk on fire")

    # The audit rows go in last: the event, presence and outbox rows are already written.
    monkeypatch.setattr(edge.audit, "append", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        service.act(ticket, ["C1", "C3"], "check_in")
    assert counts(store) == {"attendance_events": 0, "presence": 0, "outbox": 0, "audit_log": 0, "alerts": 0}
    assert kinds(events) == []
    assert woken == []
    monkeypatch.undo()
    # The ticket was not spent on a failure: the retry records the check-in once.
    assert len(recorded(service.act(ticket, ["C1", "C3"], "check_in"))) == 2
    assert counts(store)["outbox"] == 2


def test_a_failing_outbox_insert_leaves_no_event(
    service: CheckinService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import insert

    import edge.checkin
    from edge.models import StationLockout

    # An outbox statement that fails at the database (NOT NULL), after the event and presence rows.
    monkeypatch.setattr(edge.checkin, "_INSERT_OUTBOX", Prepared(insert(StationLockout)))
    with pytest.raises(Exception, match=r"NOT NULL|IntegrityError|station_id"):
        service.act(pin(service, "P1").ticket, ["C1"], "check_in")
    assert counts(store)["attendance_events"] == 0
    assert counts(store)["presence"] == 0


def test_a_broken_wake_up_does_not_undo_the_check_in(
    store: Store, hasher: PinHasher, clock: FakeClock, roster_sync: RosterSyncService, caplog: pytest.LogCaptureFixture
) -> None:
    apply(roster_sync)

    def broken() -> None:
        raise RuntimeError("sender gone")

    service = make_service(store, hasher, clock, on_committed=broken)
    recorded(service.act(pin(service, "P1").ticket, ["C1"], "check_in"))
    assert count(store, OutboxEntry) == 1
    assert "on_committed callback failed" in caplog.text


# -- secrets stay secret ---------------------------------------------------------------------------


def test_no_pin_in_the_audit_log_or_the_logs(
    service: CheckinService, store: Store, hasher: PinHasher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = ["7305", "1964", "5550", "4821", SHARED_PIN, "918273", "4444", "55555", "60606", "71717"]
    for secret in secrets:
        found = service.identify(STATION, "pin", secret)
        if isinstance(found, Identification) and found.children:
            service.act(found.ticket, [found.children[0].id], "check_in")
    assert count(store, AuditEntry) >= 5
    with store.read() as session:
        dumped = json.dumps(
            [
                {column.name: getattr(row, column.name) for column in AuditEntry.__table__.columns}
                for row in session.scalars(select(AuditEntry))
            ]
            + [{"message": a.message} for a in session.scalars(select(Alert))],
            default=str,
        )
    for secret in secrets:
        assert secret not in dumped
        assert secret not in caplog.text
        assert hasher.digest(secret) not in dumped
        assert hasher.digest(secret) not in caplog.text


def test_refusals_are_announced_to_the_station(service: CheckinService, events: EventBus) -> None:
    service.identify(STATION, "pin", "0000")
    service.identify("back-door", "qr", "hello")
    announced: list[LiveEvent] = [e for e in events.since(0) if e.kind == "refusal"]
    assert [(e.station_id, e.data) for e in announced] == [
        (STATION, {"reason": "unknown_pin", "method": "pin"}),
        ("back-door", {"reason": "not_a_token", "method": "qr"}),
    ]


def test_identify_rejects_methods_that_do_not_identify_at_a_station(service: CheckinService) -> None:
    check: Callable[[], object] = lambda: service.identify(STATION, "geofence", "x")  # noqa: E731
    with pytest.raises(ValueError, match="geofence"):
        check()
