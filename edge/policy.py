"""The pickup policy: who may check which child in or out, by which method (DESIGN.md's table).

Pure: facts in, a ``Decision`` out; no database, no clock. A refusal is a value with a reason
(a ``RefusalReason``, whose values are the station API's codes), never an exception. Every
decision also says, in words, the rule that decided it and the role the person held at that
moment: both go to the audit log as they stood, so a later roster change cannot rewrite why a
child was handed over.

    who                        | PIN | QR code | phone geofence | staff override
    payer (parent/guardian)    | yes | yes     | yes (on site)  | -
    authorized non-payer       | yes | no      | no             | -
    restricted for that child  | never, and staff are alerted   | -
    staff, with a reason       | -   | -       | -              | yes, audited

...and only for an active person, a child the person may take, an active child in an active
room, and a change of state that makes sense (check in a child who is out, out one who is in).
Checked in that order, after a restriction, which outranks everything: see ``decide``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edge.models import Action, ActorKind, LinkRelation, Method


class RefusalReason(enum.StrEnum):
    """Why something was refused: exactly the station API's refusal codes (station-api.md)."""

    UNKNOWN_PIN = "unknown_pin"
    AMBIGUOUS_PIN = "ambiguous_pin"
    LOCKED = "locked"
    PIN_ONLY = "pin_only"
    RESTRICTED = "restricted"
    NOT_AUTHORIZED = "not_authorized"
    PERSON_INACTIVE = "person_inactive"
    CHILD_INACTIVE = "child_inactive"
    ALREADY_IN = "already_in"
    ALREADY_OUT = "already_out"
    NOT_A_TOKEN = "not_a_token"  # noqa: S105 (a refusal code, not a secret)
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    REVOKED = "revoked"
    BAD_TICKET = "bad_ticket"


CHILD_ACTIONS = frozenset({Action.CHECK_IN, Action.CHECK_OUT})
CLOCK_ACTIONS = frozenset({Action.CLOCK_IN, Action.CLOCK_OUT})
# Methods that prove who someone is without a PIN: only payers have them (qr-and-geofence.md).
PROOF_METHODS = frozenset({Method.QR, Method.GEOFENCE})


class Rule:
    """The rules, in the words the audit log keeps (plain strings: they are stored as text)."""

    PAYER = "payers (parents/guardians) may check their children in and out by PIN, QR code or phone"
    PICKUP_PIN = "authorized pickup people who are not payers may check a child in and out by PIN at the kiosk"
    PIN_ONLY = "authorized pickup people who are not payers may use the PIN at the kiosk only, not a QR code or phone"
    RESTRICTED = "a person restricted for a child may never check that child in or out; staff are alerted"
    NO_LINK = "only a payer or an authorized pickup person of a child may check that child in or out"
    PERSON_ACTIVE = "only people active in the roster may check children in or out"
    CHILD_ACTIVE = "only children Currently Enrolled in an active room can be checked in or out"
    ALREADY_IN = "a child who is in cannot be checked in again"
    ALREADY_OUT = "a child who is out cannot be checked out"
    OVERRIDE = "staff may check a child in or out by hand, with a reason"
    OVERRIDE_NEEDS_STAFF = "only staff may check a child in or out by hand"
    OVERRIDE_NEEDS_REASON = "a check-in or check-out by hand needs a reason"
    STAFF_NO_CHILDREN = "staff check children in or out only by hand, with a reason"
    CLOCK = "teachers clock themselves in and out with their PIN at the kiosk"
    CLOCK_STAFF_ONLY = "only teachers clock in and out"
    CLOCKED_IN = "a teacher who is clocked in cannot clock in again"
    CLOCKED_OUT = "a teacher who is clocked out cannot clock out"
    IDENTIFIED = "an active person identified at the kiosk"


@dataclass(frozen=True)
class Actor:
    """Who is at the door (or at the dashboard), as the roster holds them now."""

    kind: ActorKind
    id: str
    name: str
    active: bool = True


@dataclass(frozen=True)
class ChildFacts:
    id: str
    name: str
    active: bool
    room: str | None  # the room's name; None when the child has no room or the room is inactive
    relation: LinkRelation | None  # the actor's link to this child; restricted wins over any other
    present: bool


@dataclass(frozen=True)
class Request:
    method: Method
    action: Action
    override_reason: str | None = None  # a staff override's reason, as typed


@dataclass(frozen=True)
class Facts:
    actor: Actor
    child: ChildFacts | None = None  # None: a teacher clocking themself in or out
    clocked_in: bool = False  # with no child: whether that teacher is clocked in now


@dataclass(frozen=True)
class Decision:
    reason: RefusalReason | None  # None: allowed
    rule: str  # what allowed or refused it, in words
    role: str  # the role that allowed or refused it, in words, as it stood
    alert: bool = False  # staff must be told (a restricted person at the door)

    @property
    def allowed(self) -> bool:
        return self.reason is None


def natural_action(present: bool) -> Action:
    """What the kiosk offers for a child: out -> check in, in -> check out."""
    return Action.CHECK_OUT if present else Action.CHECK_IN


def role_words(actor: Actor, child: ChildFacts | None = None) -> str:
    if actor.kind is ActorKind.STAFF or child is None:
        return f"{actor.name} ({actor.kind.value})"
    relation = {
        LinkRelation.PAYER: "payer (parent/guardian) of",
        LinkRelation.PICKUP: "authorized pickup of",
        LinkRelation.RESTRICTED: "restricted for",
        None: "no link to",
    }[child.relation]
    return f"{actor.name} ({actor.kind.value}), {relation} {child.name}"


def admit(actor: Actor, method: Method) -> Decision:
    """May this person be identified at all by this method (before any child is chosen)?"""
    role = role_words(actor)
    if not actor.active:
        return Decision(RefusalReason.PERSON_INACTIVE, Rule.PERSON_ACTIVE, role)
    if method in PROOF_METHODS and actor.kind is not ActorKind.PAYER:
        return Decision(RefusalReason.PIN_ONLY, Rule.PIN_ONLY, role)
    return Decision(None, Rule.IDENTIFIED, role)


def decide(request: Request, facts: Facts) -> Decision:
    """The one place that decides a check-in, check-out, clock-in or clock-out."""
    if request.action in CLOCK_ACTIONS:
        return _decide_clock(request, facts)
    actor, child = facts.actor, facts.child
    role = role_words(actor, child)
    if child is None:
        return Decision(RefusalReason.NOT_AUTHORIZED, Rule.NO_LINK, role)
    if not actor.active:
        return Decision(RefusalReason.PERSON_INACTIVE, Rule.PERSON_ACTIVE, role)

    if request.method is Method.STAFF:
        if actor.kind is not ActorKind.STAFF:
            return Decision(RefusalReason.NOT_AUTHORIZED, Rule.OVERRIDE_NEEDS_STAFF, role)
        if not (request.override_reason or "").strip():
            return Decision(RefusalReason.NOT_AUTHORIZED, Rule.OVERRIDE_NEEDS_REASON, role)
        return _decide_state(request.action, child, Rule.OVERRIDE, role)
    if actor.kind is ActorKind.STAFF:
        return Decision(RefusalReason.NOT_AUTHORIZED, Rule.STAFF_NO_CHILDREN, role)

    # A restriction outranks everything else about the child: it is what staff must hear of.
    if child.relation is LinkRelation.RESTRICTED:
        return Decision(RefusalReason.RESTRICTED, Rule.RESTRICTED, role, alert=True)
    # No link before enrollment: a stranger learns nothing about a child, not even whether enrolled.
    if child.relation is None:
        return Decision(RefusalReason.NOT_AUTHORIZED, Rule.NO_LINK, role)
    if not child.active or child.room is None:
        return Decision(RefusalReason.CHILD_INACTIVE, Rule.CHILD_ACTIVE, role)
    # Per child: a payer of one family is only an authorized pickup of another family's child.
    if request.method in PROOF_METHODS and (
        actor.kind is not ActorKind.PAYER or child.relation is not LinkRelation.PAYER
    ):
        return Decision(RefusalReason.PIN_ONLY, Rule.PIN_ONLY, role)
    rule = Rule.PAYER if child.relation is LinkRelation.PAYER else Rule.PICKUP_PIN
    return _decide_state(request.action, child, rule, role)


def _decide_state(action: Action, child: ChildFacts, rule: str, role: str) -> Decision:
    if not child.active or child.room is None:
        return Decision(RefusalReason.CHILD_INACTIVE, Rule.CHILD_ACTIVE, role)
    if action is Action.CHECK_IN and child.present:
        return Decision(RefusalReason.ALREADY_IN, Rule.ALREADY_IN, role)
    if action is Action.CHECK_OUT and not child.present:
        return Decision(RefusalReason.ALREADY_OUT, Rule.ALREADY_OUT, role)
    return Decision(None, rule, role)


def _decide_clock(request: Request, facts: Facts) -> Decision:
    actor = facts.actor
    role = role_words(actor)
    if actor.kind is not ActorKind.STAFF or facts.child is not None or request.method is not Method.PIN:
        return Decision(RefusalReason.NOT_AUTHORIZED, Rule.CLOCK_STAFF_ONLY, role)
    if not actor.active:
        return Decision(RefusalReason.PERSON_INACTIVE, Rule.PERSON_ACTIVE, role)
    if request.action is Action.CLOCK_IN and facts.clocked_in:
        return Decision(RefusalReason.ALREADY_IN, Rule.CLOCKED_IN, role)
    if request.action is Action.CLOCK_OUT and not facts.clocked_in:
        return Decision(RefusalReason.ALREADY_OUT, Rule.CLOCKED_OUT, role)
    return Decision(None, Rule.CLOCK, role)
