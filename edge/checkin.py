"""The check-in service: identify a person, then record what they do, for every door and method.

``identify`` finds who is at the station (PIN, or a QR token through a ``TokenVerifier``) and
hands out a ticket; it writes nothing unless it refuses. ``act`` takes the ticket, loads the
facts inside the single writer's transaction (so two doors cannot both check the same child
out), asks ``edge.policy.decide`` about each child, and writes the attendance events, the
presence rows, the outbox rows and the audit rows in that one transaction before answering:
once a station is told "done", a power cut loses nothing. Only after the commit does it
announce the events (live channel) and wake the outbox sender.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Table, bindparam, insert, update

from edge import audit, const, facts
from edge.attendance import event_payload, subject_key, utc_iso_ms
from edge.clock import ClockCheck
from edge.events import ATTENDANCE, EventBus
from edge.facts import PresenceFacts
from edge.group_commit import GroupCommitLoop
from edge.ids import uuid7
from edge.lockout import PinLockout
from edge.models import (
    Action,
    ActorKind,
    AttendanceEvent,
    LinkRelation,
    Method,
    OutboxEntry,
    OutboxState,
    PinState,
    SubjectKind,
)
from edge.outcomes import (
    ChildView,
    ClockView,
    Identification,
    PersonView,
    Recorded,
    RecordedEvent,
    Refusal,
)
from edge.pins import PinHasher, is_valid_pin
from edge.policy import (
    CLOCK_ACTIONS,
    Actor,
    ChildFacts,
    Decision,
    Facts,
    RefusalReason,
    Request,
    Rule,
    admit,
    decide,
    natural_action,
)
from edge.prepared import Prepared
from edge.store import Store
from edge.tickets import Ticket, TicketStore

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

EVENTS = cast(Table, AttendanceEvent.__table__)
OUTBOX = cast(Table, OutboxEntry.__table__)
PRESENCE = facts.PRESENCE
# Prepared once (edge.prepared): each check-in runs them on the driver's cursor.
_INSERT_EVENT = Prepared(insert(EVENTS))
_INSERT_OUTBOX = Prepared(insert(OUTBOX))
_INSERT_PRESENCE = Prepared(
    insert(PRESENCE).values(
        subject_kind=bindparam("kind"),
        subject_id=bindparam("sid"),
        present=bindparam("present"),
        since=bindparam("since"),
        event_id=bindparam("eid"),
    )
)
_UPDATE_PRESENCE = Prepared(
    update(PRESENCE)
    .where(PRESENCE.c.subject_kind == bindparam("kind"), PRESENCE.c.subject_id == bindparam("sid"))
    .values(present=bindparam("present"), since=bindparam("since"), event_id=bindparam("eid"))
)

# Words for the audit log's rule column when the refusal comes before any policy question.
RULE_UNKNOWN_PIN = "no active person has that PIN"
RULE_AMBIGUOUS_PIN = "a PIN shared by more than one person is disabled for all of them"
RULE_LOCKED = "too many wrong PINs at this station: the PIN pad is locked"
RULE_TOKEN = "QR codes must be valid tokens signed by a trusted key, unexpired, unrevoked and not replayed"  # noqa: S105
RULE_NO_VERIFIER = "no QR token verifier is configured on this appliance"
RULE_UNKNOWN_PERSON = "the QR code names nobody in the roster"
RULE_BAD_TICKET = "a ticket is good for 120 s, for one set of children and one action"
RULE_OVERRIDE_UNKNOWN_STAFF = "only staff may check a child in or out by hand"

_VERB = {
    Action.CHECK_IN: "check in",
    Action.CHECK_OUT: "check out",
    Action.CLOCK_IN: "clock in",
    Action.CLOCK_OUT: "clock out",
}
# Which refusal the station hears when several children are refused at once: the one staff
# must act on first, then the one the person can fix.
_SEVERITY: dict[RefusalReason | None, int] = {
    RefusalReason.RESTRICTED: 0,
    RefusalReason.PERSON_INACTIVE: 1,
    RefusalReason.NOT_AUTHORIZED: 2,
}


# Live event kind: a person identified at a station by QR (carries the ticket: that station only).
IDENTIFIED = "identified"


class TokenVerifier(Protocol):
    """Checks a scanned QR text (implemented by the QR token issue, edge/tokens.py).

    Returns the person id the token names, or the ``RefusalReason`` it is refused for
    (not_a_token, bad_signature, unknown_key, expired, replayed, revoked). ``RefusalReason`` is
    a ``str`` too: callers test for it first.
    """

    def verify(self, text: str, now: dt.datetime) -> str | RefusalReason: ...


@dataclass(frozen=True)
class _Subject:
    """One child (or a teacher's own clock) an act is about, with the facts loaded for it."""

    kind: SubjectKind
    id: str | None
    name: str
    facts: Facts
    presence: PresenceFacts


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CheckinService:
    def __init__(
        self,
        store: Store,
        hasher: PinHasher,
        events: EventBus,
        clock_check: ClockCheck,
        *,
        clock: Clock = utc_now,
        tickets: TicketStore | None = None,
        lockout: PinLockout | None = None,
        token_verifier: TokenVerifier | None = None,
        on_committed: Callable[[], None] | None = None,
        dedup_window_s: float = const.DEDUP_WINDOW_S,
        writer: GroupCommitLoop | None = None,
    ) -> None:
        self.store = store
        self.writer = writer if writer is not None else GroupCommitLoop(store)
        self.hasher = hasher
        self.events = events
        self.clock_check = clock_check
        self.clock = clock
        self.tickets = tickets if tickets is not None else TicketStore()
        self.lockout = lockout if lockout is not None else PinLockout(store, events, clock)
        self.token_verifier = token_verifier
        # Called after each commit that recorded events: the outbox sender's wake-up.
        self.on_committed = on_committed
        self.dedup_window = dt.timedelta(seconds=dedup_window_s)
        # The same unreadable QR text at a station is audited once per window: a scanner held
        # over a cereal box would otherwise write a row for every frame.
        self._token_audits: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._token_audits_lock = threading.Lock()

    # -- identify -------------------------------------------------------------------------------

    def identify(self, station_id: str, method: Method | str, secret: str) -> Identification | Refusal:
        """Who is at the station: a ticket with the person and their children, or a refusal."""
        method = Method(method)
        if method is Method.PIN:
            found = self._identify_pin(station_id, secret)
        elif method is Method.QR:
            found = self._identify_qr(station_id, secret)
        else:
            raise ValueError(f"{method.value} does not identify at a station")
        if isinstance(found, Refusal):
            self._announce(station_id, method, found)
        return found

    def _identify_pin(self, station_id: str, pin: str) -> Identification | Refusal:
        retry_after = self.lockout.retry_after(station_id)
        if retry_after is not None:
            # Not audited one by one: the lockout itself is (with an alert), and a pad being
            # hammered while locked must not wear the SD card out.
            return Refusal(RefusalReason.LOCKED, retry_after_s=retry_after)
        if not is_valid_pin(pin):
            return self._wrong_pin(station_id)
        with self.store.reading() as conn:
            holders = facts.pin_holders(self.hasher.digest(pin), db=conn)
            active = [holder.actor for holder in holders if holder.actor.active]
            ambiguous = len(active) > 1 or any(holder.pin_state is PinState.AMBIGUOUS for holder in holders)
            if len(active) == 1 and not ambiguous:
                return self._identified(station_id, active[0], Method.PIN, conn)
        # Refusals write their audit row after the read has ended.
        if not holders:
            return self._wrong_pin(station_id)
        if ambiguous:
            return self._refuse_identify(
                station_id,
                Method.PIN,
                RefusalReason.AMBIGUOUS_PIN,
                RULE_AMBIGUOUS_PIN,
                detail={"holders": sorted(holder.actor.id for holder in holders)},
            )
        actor = holders[0].actor
        return self._refuse_identify(
            station_id, Method.PIN, RefusalReason.PERSON_INACTIVE, admit(actor, Method.PIN).rule, actor=actor
        )

    def _wrong_pin(self, station_id: str) -> Refusal:
        locked_for = self.lockout.record_failure(station_id)
        refusal = self._refuse_identify(station_id, Method.PIN, RefusalReason.UNKNOWN_PIN, RULE_UNKNOWN_PIN)
        if locked_for is not None:
            return Refusal(RefusalReason.LOCKED, retry_after_s=locked_for)
        return refusal

    def _identify_qr(self, station_id: str, text: str) -> Identification | Refusal:
        now = self.clock()
        verdict: str | RefusalReason = (
            RefusalReason.NOT_A_TOKEN if self.token_verifier is None else self.token_verifier.verify(text, now)
        )
        if isinstance(verdict, RefusalReason):
            rule = RULE_NO_VERIFIER if self.token_verifier is None else RULE_TOKEN
            if self._first_token_refusal(station_id, text):
                return self._refuse_identify(station_id, Method.QR, verdict, rule)
            return Refusal(verdict)
        with self.store.reading() as conn:
            actor = facts.person_actor(verdict, db=conn)
            admitted = admit(actor, Method.QR) if actor is not None else None
            if actor is not None and admitted is not None and admitted.allowed:
                found = self._identified(station_id, actor, Method.QR, conn)
        if actor is not None and admitted is not None and admitted.allowed:
            # The scanner is not the screen: the kiosk at this door shows who was scanned, with
            # the ticket to act on; private, so only that station's stream receives it.
            self.events.publish(IDENTIFIED, found.as_json(), station_id=station_id, private=True)
            return found
        if actor is None or admitted is None:
            return self._refuse_identify(
                station_id,
                Method.QR,
                RefusalReason.PERSON_INACTIVE,
                RULE_UNKNOWN_PERSON,
                detail={"person_id": verdict},
            )
        assert admitted.reason is not None
        return self._refuse_identify(
            station_id, Method.QR, admitted.reason, admitted.rule, actor=actor, role=admitted.role
        )

    def _identified(self, station_id: str, actor: Actor, method: Method, conn: Connection) -> Identification:
        """Success writes nothing: the decision is audited when the person acts."""
        ticket = self.tickets.issue(station_id, actor, method)
        person = PersonView(actor.id, actor.name, actor.kind)
        if actor.kind is ActorKind.STAFF:
            presence = facts.staff_presence(actor.id, db=conn)
            clock = ClockView(presence.present, presence.since if presence.present else None)
            return Identification(ticket.token, person, (), clock)
        children = []
        for child, _presence in facts.children_of(actor.id, db=conn).values():
            # A child the person may not take is not listed (restricted, withdrawn, no room);
            # acting on one anyway is refused (and a restriction alerts staff).
            if child.relation in (None, LinkRelation.RESTRICTED) or not child.active or not child.room:
                continue
            decision = decide(Request(method, natural_action(child.present)), Facts(actor, child))
            children.append(
                ChildView(child.id, child.name, child.room, child.present, decision.allowed, decision.reason)
            )
        children.sort(key=lambda view: (view.name, view.id))
        return Identification(ticket.token, person, tuple(children))

    def _refuse_identify(
        self,
        station_id: str,
        method: Method,
        reason: RefusalReason,
        rule: str,
        *,
        actor: Actor | None = None,
        role: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Refusal:
        now = self.clock()
        extra = dict(detail or {})
        if role:
            extra["role"] = role
        row = audit.audit_row(
            at=now,
            action="identify",
            station_id=station_id,
            method=method.value,
            reason=reason,
            rule=rule,
            actor_kind=actor.kind.value if actor else None,
            actor_id=actor.id if actor else None,
            detail=extra or None,
        )
        with self.store.writing() as conn:
            audit.append([row], db=conn)
        log.info("identify refused at %s: %s (%s)", station_id, reason.value, method.value)
        return Refusal(reason)

    def _first_token_refusal(self, station_id: str, text: str) -> bool:
        key = (station_id, hashlib.sha256(text.encode("utf-8", "replace")).hexdigest())
        now = time.monotonic()
        with self._token_audits_lock:
            seen = self._token_audits.get(key)
            if seen is not None and now - seen < self.dedup_window.total_seconds():
                return False
            self._token_audits[key] = now
            self._token_audits.move_to_end(key)
            while len(self._token_audits) > 1_000:
                self._token_audits.popitem(last=False)
            return True

    # -- act ------------------------------------------------------------------------------------

    def act(self, ticket_token: str, children: Sequence[str], action: Action | str) -> Recorded | Refusal:
        """Check the children in or out (or a teacher clock in or out) on the strength of a ticket."""
        return self.start_act(ticket_token, children, action).result()

    def start_act(self, ticket_token: str, children: Sequence[str], action: Action | str) -> Future[Recorded | Refusal]:
        """``act`` for a caller that must not block (the event loop): the answer comes once durable."""
        action = Action(action)
        child_ids = list(dict.fromkeys(children))
        ticket = self.tickets.get(ticket_token)
        if ticket is None:
            # No station to tell: an unknown ticket names none.
            return _answered(self._bad_ticket(None, child_ids, action, "unknown or expired"))
        key = (frozenset(child_ids), action)
        claimed: Future[Recorded | Refusal] | None = None
        with ticket.lock:
            if ticket.used_for is None:
                # Claimed now, before the write: a second tap arriving meanwhile waits for this answer.
                ticket.used_for = key
                ticket.answer = claimed = self._record(
                    ticket.actor, ticket.method, ticket.station_id, child_ids, action, announce=True
                )
            elif ticket.used_for == key and ticket.recorded is not None:
                return _answered(ticket.recorded)  # a double tap: the same answer, nothing new written
            elif ticket.used_for == key and ticket.answer is not None:
                return ticket.answer  # a double tap while the first is being written: its answer
        if claimed is not None:
            # Outside the lock: the callback runs at once (taking the lock) if the answer is in.
            claimed.add_done_callback(lambda answer: _settle(ticket, answer))
            return claimed
        refusal = self._bad_ticket(ticket, child_ids, action, "already used for other children or action")
        self._announce(ticket.station_id, ticket.method, refusal, action)
        return _answered(refusal)

    def ticket_station(self, ticket_token: str) -> str | None:
        """The station a live ticket was issued at (the web layer checks a remote station uses its own)."""
        ticket = self.tickets.get(ticket_token)
        return ticket.station_id if ticket is not None else None

    def record_for_person(
        self, person_id: str, method: Method | str, station_id: str, children: Sequence[str], action: Action | str
    ) -> Recorded | Refusal:
        """Act for a person proven some other way (the phone app on site: the geofence issue's hook)."""
        method = Method(method)
        with self.store.reading() as conn:
            actor = facts.person_actor(person_id, db=conn)
        if actor is None:
            refusal = self._refuse_identify(
                station_id, method, RefusalReason.NOT_AUTHORIZED, Rule.NO_LINK, detail={"person_id": person_id}
            )
        else:
            admitted = admit(actor, method)
            if admitted.allowed:
                result = self._record(actor, method, station_id, list(dict.fromkeys(children)), Action(action)).result()
                if isinstance(result, Refusal):
                    self._announce(station_id, method, result, Action(action))
                return result
            assert admitted.reason is not None
            refusal = self._refuse_identify(station_id, method, admitted.reason, admitted.rule, actor=actor)
        self._announce(station_id, method, refusal)
        return refusal

    def staff_override(
        self,
        staff_actor_id: str,
        child_id: str,
        action: Action | str,
        reason: str,
        station_id: str,
        *,
        account_name: str | None = None,
    ) -> Recorded | Refusal:
        """A check-in or check-out by hand (method ``staff``): needs a staff member and a reason.

        ``staff_actor_id`` is a teacher of the roster; or, with ``account_name``, a dashboard
        login that is no teacher (a director, say: ``user:<username>``). Its password already
        proved who it is, so it acts as itself rather than being looked up in the roster."""
        action = Action(action)
        if account_name is not None:
            actor: Actor | None = Actor(ActorKind.STAFF, staff_actor_id, account_name)
        else:
            with self.store.reading() as conn:
                actor = facts.teacher_actor(staff_actor_id, db=conn)
        if actor is None:
            row = audit.audit_row(
                at=self.clock(),
                action=action.value,
                station_id=station_id,
                method=Method.STAFF.value,
                reason=RefusalReason.NOT_AUTHORIZED,
                rule=RULE_OVERRIDE_UNKNOWN_STAFF,
                actor_id=staff_actor_id,
                child_id=child_id,
            )
            with self.store.writing() as conn:
                audit.append([row], db=conn)
            return Refusal(RefusalReason.NOT_AUTHORIZED)
        reason = reason.strip()[: const.OVERRIDE_REASON_MAX_CHARS]
        return self._record(
            actor,
            Method.STAFF,
            station_id,
            [child_id],
            action,
            override_reason=reason,
            roster_actor=account_name is None,
        ).result()

    def _announce(self, station_id: str, method: Method, refusal: Refusal, action: Action | None = None) -> None:
        """A refusal on the live channel, for that station's screen (a QR code refused at the door
        shows there) and the dashboard. Codes and names only; the screen words it."""
        data: dict[str, Any] = {"reason": refusal.reason.value, "method": method.value}
        if action is not None:
            data["action"] = action.value
        if refusal.context.get("child"):
            data["child_name"] = refusal.context["child"]
        if refusal.retry_after_s is not None:
            data["retry_after_s"] = refusal.retry_after_s
        self.events.publish("refusal", data, station_id=station_id)

    def _bad_ticket(self, ticket: Ticket | None, child_ids: list[str], action: Action, why: str) -> Refusal:
        actor = ticket.actor if ticket else None
        row = audit.audit_row(
            at=self.clock(),
            action=action.value,
            station_id=ticket.station_id if ticket else None,
            method=ticket.method.value if ticket else None,
            reason=RefusalReason.BAD_TICKET,
            rule=f"{RULE_BAD_TICKET} ({why})",
            actor_kind=actor.kind.value if actor else None,
            actor_id=actor.id if actor else None,
            child_id=child_ids[0] if len(child_ids) == 1 else None,
            detail={"children": child_ids} if len(child_ids) > 1 else None,
        )
        with self.store.writing() as conn:
            audit.append([row], db=conn)
        return Refusal(RefusalReason.BAD_TICKET)

    def _record(
        self,
        actor: Actor,
        method: Method,
        station_id: str,
        child_ids: list[str],
        action: Action,
        *,
        override_reason: str | None = None,
        roster_actor: bool = True,
        announce: bool = False,
    ) -> Future[Recorded | Refusal]:
        """Decides and writes in the door writer's next commit; the future's answer comes after it."""
        synced = self.clock_check.synced()  # cached, and outside the writer's lock

        def write(conn: Connection) -> _Written:
            act = _Act(
                facts.current_actor(actor, db=conn) if roster_actor else actor,
                method,
                station_id,
                action,
                override_reason,
                self.clock(),
                synced,
            )
            written = _Written(act)
            request = Request(method, action, act.override_reason)
            decided: list[tuple[int, _Subject, Decision]] = []
            for index, subject in enumerate(self._subjects(act.actor, child_ids, action, conn)):
                decision = decide(request, subject.facts)
                repeat = self._repeat(act, subject, decision)
                if repeat is not None:
                    written.repeats[index] = repeat
                else:
                    decided.append((index, subject, decision))
            written.refused = [(subject, decision) for _i, subject, decision in decided if not decision.allowed]
            if written.refused:
                audit.append([act.audit(subject, decision) for subject, decision in written.refused], db=conn)
                written.alerts = [
                    act.restricted_alert(conn, subject) for subject, decision in written.refused if decision.alert
                ]
            elif decided:
                written.new = self._write(conn, act, decided)
            return written

        def committed(written: _Written) -> Recorded | Refusal:
            # Announce only now: a screen must never show what the database does not hold.
            for alert in written.alerts:
                self.events.publish("alert", alert, station_id=station_id)
            if written.refused:
                refusal = self._refusal(written.refused, action, station_id)
                if announce:
                    self._announce(station_id, method, refusal, action)
                return refusal
            for event in written.new.values():
                self.events.publish(ATTENDANCE, _live(event, written.act.actor), station_id=station_id)
            if written.new and self.on_committed is not None:
                try:
                    self.on_committed()
                except Exception:
                    log.exception("on_committed callback failed")  # the event is safe in the outbox anyway
            merged = {**written.repeats, **written.new}
            return tuple(merged[index] for index in sorted(merged))

        return self.writer.submit(write, committed)

    @staticmethod
    def _refusal(refused: list[tuple[_Subject, Decision]], action: Action, station_id: str) -> Refusal:
        """One refusal for the station: the one staff must act on first, then one the person can fix."""
        subject, decision = min(refused, key=lambda pair: _SEVERITY.get(pair[1].reason, len(_SEVERITY)))
        assert decision.reason is not None
        log.info("%s refused at %s: %s", action.value, station_id, decision.reason.value)
        context = {"child": subject.name} if subject.kind is SubjectKind.CHILD and subject.name else {}
        return Refusal(decision.reason, context)

    @staticmethod
    def _subjects(actor: Actor, child_ids: list[str], action: Action, conn: Connection) -> list[_Subject]:
        if action in CLOCK_ACTIONS and not child_ids:
            presence = facts.staff_presence(actor.id, db=conn)
            return [_Subject(SubjectKind.STAFF, actor.id, actor.name, Facts(actor, None, presence.present), presence)]
        if not child_ids:  # a check-in or out naming no child: the policy refuses it
            return [_Subject(SubjectKind.CHILD, None, "", Facts(actor), facts.NO_PRESENCE)]
        link_owner = None if actor.kind is ActorKind.STAFF else actor.id
        loaded = facts.child_facts(child_ids, link_owner, db=conn)
        subjects = []
        for child_id in child_ids:
            if child_id in loaded:
                child, presence = loaded[child_id]
            else:  # no such child: nobody has a link to it
                child = ChildFacts(child_id, child_id, active=False, room=None, relation=None, present=False)
                presence = facts.NO_PRESENCE
            subjects.append(_Subject(SubjectKind.CHILD, child_id, child.name, Facts(actor, child), presence))
        return subjects

    def _repeat(self, act: _Act, subject: _Subject, decision: Decision) -> RecordedEvent | None:
        """The event to answer with when this is the same act again within the dedup window."""
        if decision.reason not in (RefusalReason.ALREADY_IN, RefusalReason.ALREADY_OUT):
            return None
        last = subject.presence.last
        if last is None or subject.id is None or last.actor_id != act.actor.id or last.action is not act.action:
            return None
        if not dt.timedelta(0) <= act.now - last.occurred_at <= self.dedup_window:
            return None
        return RecordedEvent(
            last.event_id, subject.kind, subject.id, subject.name, last.action, last.occurred_at, last.method,
            last.station_id,
        )  # fmt: skip

    @staticmethod
    def _write(conn: Connection, act: _Act, decided: list[tuple[int, _Subject, Decision]]) -> dict[int, RecordedEvent]:
        """Events, presence, outbox and audit rows: all inside the caller's one transaction."""
        present = act.action in (Action.CHECK_IN, Action.CLOCK_IN)
        events, outbox, audits = [], [], []
        recorded: dict[int, RecordedEvent] = {}
        for index, subject, decision in decided:
            assert subject.id is not None
            values: dict[str, Any] = {
                "id": str(uuid7()),
                "subject_kind": subject.kind,
                "subject_id": subject.id,
                "action": act.action,
                "occurred_at": act.now,
                "method": act.method,
                "actor_kind": act.actor.kind,
                "actor_id": act.actor.id,
                "station_id": act.station_id,
                "clock_synced": act.synced,
                "reason": act.override_reason if act.method is Method.STAFF else None,
            }
            event = AttendanceEvent(**values)  # transient: only to build the payload the outbox sends
            events.append(values)
            outbox.append(
                {
                    "event_id": values["id"],
                    "subject_key": subject_key(event),
                    "payload": event_payload(event),
                    "created_at": act.now,
                    "state": OutboxState.PENDING,
                    "attempts": 0,
                }
            )
            audits.append(act.audit(subject, decision, values["id"]))
            recorded[index] = RecordedEvent(
                values["id"], subject.kind, subject.id, subject.name, act.action, act.now, act.method, act.station_id
            )
        _INSERT_EVENT.run(conn, events)
        for index, subject, _decision in decided:
            row = {"kind": subject.kind, "sid": subject.id, "present": present, "since": act.now}
            row["eid"] = recorded[index].event_id
            (_UPDATE_PRESENCE if subject.presence.has_row else _INSERT_PRESENCE).run(conn, row)
        _INSERT_OUTBOX.run(conn, outbox)
        audit.append(audits, db=conn)
        return recorded


@dataclass
class _Written:
    """What one act wrote, handed from the writer's transaction to the answer after the commit."""

    act: _Act
    new: dict[int, RecordedEvent] = field(default_factory=dict)
    repeats: dict[int, RecordedEvent] = field(default_factory=dict)
    refused: list[tuple[_Subject, Decision]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


def _settle(ticket: Ticket, answer: Future[Recorded | Refusal]) -> None:
    """A refused or failed act does not spend its ticket: the person may choose again, or retry.

    A recorded one keeps its result for a double tap, and lets the future go: a future holds a
    condition, a lock and its waiters, and at the door's peak thousands of used tickets are open
    at once, each object of them for the garbage collector to walk (docs/door.md)."""
    result = answer.result() if answer.exception() is None else None
    with ticket.lock:
        if ticket.answer is not answer:
            return
        if result is not None and not isinstance(result, Refusal):
            ticket.recorded = result
            ticket.answer = None
        else:
            ticket.used_for = ticket.answer = None


def _answered(result: Recorded | Refusal) -> Future[Recorded | Refusal]:
    future: Future[Recorded | Refusal] = Future()
    future.set_result(result)
    return future


@dataclass(frozen=True)
class _Act:
    """One act being recorded: who, how, where, what, and when."""

    actor: Actor  # as the roster holds them at this moment
    method: Method
    station_id: str
    action: Action
    override_reason: str | None
    now: dt.datetime
    synced: bool

    def audit(self, subject: _Subject, decision: Decision, event_id: str | None = None) -> dict[str, Any]:
        extra = {"override_reason": self.override_reason} if self.override_reason else {}
        return audit.audit_row(
            at=self.now,
            action=self.action.value,
            station_id=self.station_id,
            method=self.method.value,
            reason=decision.reason,
            rule=decision.rule,
            actor_kind=self.actor.kind.value,
            actor_id=self.actor.id,
            child_id=subject.id if subject.kind is SubjectKind.CHILD else None,
            event_id=event_id,
            detail=audit.decision_detail(decision, **extra),
        )

    def restricted_alert(self, conn: Connection, subject: _Subject) -> dict[str, Any]:
        actor = self.actor
        message = (
            f"{actor.name} ({actor.id}) is restricted for {subject.name} and tried to "
            f"{_VERB[self.action]} {subject.name} at {self.station_id}"
        )
        alert_id = audit.raise_alert(
            db=conn,
            at=self.now,
            kind=audit.ALERT_RESTRICTED,
            message=message,
            station_id=self.station_id,
            person_id=actor.id,
            child_id=subject.id,
        )
        log.warning(
            "restricted person %s tried to %s child %s at %s", actor.id, self.action.value, subject.id, self.station_id
        )
        return {
            "alert_id": alert_id,
            "kind": audit.ALERT_RESTRICTED,
            "message": message,
            "station_id": self.station_id,
            "person_id": actor.id,
            "child_id": subject.id,
        }


def _live(event: RecordedEvent, actor: Actor) -> dict[str, Any]:
    """The live channel's "attendance" event: what a screen or the dashboard shows at once."""
    subject_field = "child_id" if event.subject_kind is SubjectKind.CHILD else "staff_id"
    return {
        "event_id": event.event_id,
        subject_field: event.subject_id,
        "name": event.name,
        "action": event.action.value,
        "occurred_at": utc_iso_ms(event.occurred_at),
        "station_id": event.station_id,
        "method": event.method.value,
        "actor_kind": actor.kind.value,
        "actor_name": actor.name,
    }
