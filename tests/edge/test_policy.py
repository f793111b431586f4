"""The pickup policy, cell by cell (DESIGN.md's table), every refusal, as tables."""

from __future__ import annotations

import pytest

from edge.models import Action, ActorKind, LinkRelation, Method
from edge.policy import (
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

PAYER = ActorKind.PAYER
PICKUP = ActorKind.PICKUP
STAFF = ActorKind.STAFF
R = RefusalReason
ALLOWED = None


def actor(kind: ActorKind, *, active: bool = True) -> Actor:
    return Actor(kind, {"payer": "P1", "pickup": "P2", "staff": "E1"}[kind.value], f"Someone {kind.value}", active)


def child(
    relation: LinkRelation | None,
    *,
    present: bool = True,
    active: bool = True,
    room: str | None = "Infants",
) -> ChildFacts:
    return ChildFacts("C1", "Mai Nguyen", active=active, room=room, relation=relation, present=present)


def check_out(who: Actor, kid: ChildFacts | None, method: Method, reason: str | None = None) -> Decision:
    return decide(Request(method, Action.CHECK_OUT, reason), Facts(who, kid))


# -- the table: who x method, for a child who is in and may go -----------------------------------

# (actor kind, their link to the child, method) -> refusal or ALLOWED
TABLE = [
    # payer (parent/guardian): PIN, QR, geofence; never an override
    (PAYER, LinkRelation.PAYER, Method.PIN, ALLOWED),
    (PAYER, LinkRelation.PAYER, Method.QR, ALLOWED),
    (PAYER, LinkRelation.PAYER, Method.GEOFENCE, ALLOWED),
    (PAYER, LinkRelation.PAYER, Method.STAFF, R.NOT_AUTHORIZED),
    # authorized non-payer pickup: PIN only
    (PICKUP, LinkRelation.PICKUP, Method.PIN, ALLOWED),
    (PICKUP, LinkRelation.PICKUP, Method.QR, R.PIN_ONLY),
    (PICKUP, LinkRelation.PICKUP, Method.GEOFENCE, R.PIN_ONLY),
    (PICKUP, LinkRelation.PICKUP, Method.STAFF, R.NOT_AUTHORIZED),
    # a payer of one family who is only an authorized pickup of this child: PIN only for this child
    (PAYER, LinkRelation.PICKUP, Method.PIN, ALLOWED),
    (PAYER, LinkRelation.PICKUP, Method.QR, R.PIN_ONLY),
    (PAYER, LinkRelation.PICKUP, Method.GEOFENCE, R.PIN_ONLY),
    # restricted for that child: never, by any method
    (PAYER, LinkRelation.RESTRICTED, Method.PIN, R.RESTRICTED),
    (PAYER, LinkRelation.RESTRICTED, Method.QR, R.RESTRICTED),
    (PAYER, LinkRelation.RESTRICTED, Method.GEOFENCE, R.RESTRICTED),
    (PICKUP, LinkRelation.RESTRICTED, Method.PIN, R.RESTRICTED),
    (PICKUP, LinkRelation.RESTRICTED, Method.QR, R.RESTRICTED),
    (PICKUP, LinkRelation.RESTRICTED, Method.GEOFENCE, R.RESTRICTED),
    # no link at all
    (PAYER, None, Method.PIN, R.NOT_AUTHORIZED),
    (PAYER, None, Method.QR, R.NOT_AUTHORIZED),
    (PAYER, None, Method.GEOFENCE, R.NOT_AUTHORIZED),
    (PICKUP, None, Method.PIN, R.NOT_AUTHORIZED),
    # staff: by hand with a reason only
    (STAFF, None, Method.PIN, R.NOT_AUTHORIZED),
    (STAFF, None, Method.QR, R.NOT_AUTHORIZED),
    (STAFF, None, Method.GEOFENCE, R.NOT_AUTHORIZED),
    (STAFF, None, Method.STAFF, ALLOWED),
]


@pytest.mark.parametrize(("kind", "relation", "method", "expected"), TABLE)
def test_the_pickup_table(
    kind: ActorKind, relation: LinkRelation | None, method: Method, expected: RefusalReason | None
) -> None:
    decision = check_out(
        actor(kind), child(relation), method, reason="parent called" if method is Method.STAFF else None
    )
    assert decision.reason == expected
    assert decision.allowed is (expected is None)
    assert decision.rule
    assert decision.role.startswith(f"Someone {kind.value} ({kind.value})")
    # Only a restriction raises a staff alert.
    assert decision.alert is (expected is R.RESTRICTED)


@pytest.mark.parametrize("action", [Action.CHECK_IN, Action.CHECK_OUT])
@pytest.mark.parametrize("method", [Method.PIN, Method.QR, Method.GEOFENCE])
def test_restricted_refuses_both_ways_and_alerts(action: Action, method: Method) -> None:
    kid = child(LinkRelation.RESTRICTED, present=action is Action.CHECK_OUT)
    decision = decide(Request(method, action), Facts(actor(PAYER), kid))
    assert (decision.reason, decision.alert, decision.rule) == (R.RESTRICTED, True, Rule.RESTRICTED)
    assert "restricted for Mai Nguyen" in decision.role


# -- the conditions every cell also needs ----------------------------------------------------------

# (description, actor, child facts, method, action, override reason) -> refusal or ALLOWED
CONDITIONS = [
    ("inactive payer", actor(PAYER, active=False), child(LinkRelation.PAYER), Method.PIN, Action.CHECK_OUT, None,
     R.PERSON_INACTIVE),
    ("inactive pickup", actor(PICKUP, active=False), child(LinkRelation.PICKUP), Method.PIN, Action.CHECK_OUT, None,
     R.PERSON_INACTIVE),
    ("inactive staff override", actor(STAFF, active=False), child(None), Method.STAFF, Action.CHECK_OUT, "x",
     R.PERSON_INACTIVE),
    ("withdrawn child", actor(PAYER), child(LinkRelation.PAYER, active=False), Method.PIN, Action.CHECK_OUT, None,
     R.CHILD_INACTIVE),
    ("child with no room", actor(PAYER), child(LinkRelation.PAYER, room=None), Method.PIN, Action.CHECK_OUT, None,
     R.CHILD_INACTIVE),
    ("withdrawn child, pickup", actor(PICKUP), child(LinkRelation.PICKUP, active=False), Method.PIN,
     Action.CHECK_IN, None, R.CHILD_INACTIVE),
    ("override of a withdrawn child", actor(STAFF), child(None, active=False), Method.STAFF, Action.CHECK_OUT, "x",
     R.CHILD_INACTIVE),
    ("restriction outranks a withdrawn child", actor(PAYER), child(LinkRelation.RESTRICTED, active=False),
     Method.PIN, Action.CHECK_OUT, None, R.RESTRICTED),
    ("a stranger learns nothing of a withdrawn child", actor(PAYER), child(None, active=False), Method.PIN,
     Action.CHECK_OUT, None, R.NOT_AUTHORIZED),
    ("check in a child who is in", actor(PAYER), child(LinkRelation.PAYER, present=True), Method.PIN,
     Action.CHECK_IN, None, R.ALREADY_IN),
    ("check out a child who is out", actor(PAYER), child(LinkRelation.PAYER, present=False), Method.PIN,
     Action.CHECK_OUT, None, R.ALREADY_OUT),
    ("pickup checks in a child who is in", actor(PICKUP), child(LinkRelation.PICKUP, present=True), Method.PIN,
     Action.CHECK_IN, None, R.ALREADY_IN),
    ("override: check in a child who is in", actor(STAFF), child(None, present=True), Method.STAFF,
     Action.CHECK_IN, "x", R.ALREADY_IN),
    ("override: check out a child who is out", actor(STAFF), child(None, present=False), Method.STAFF,
     Action.CHECK_OUT, "x", R.ALREADY_OUT),
    ("payer checks in a child who is out", actor(PAYER), child(LinkRelation.PAYER, present=False), Method.PIN,
     Action.CHECK_IN, None, ALLOWED),
    ("payer by QR checks in", actor(PAYER), child(LinkRelation.PAYER, present=False), Method.QR, Action.CHECK_IN,
     None, ALLOWED),
    ("pickup checks in by PIN", actor(PICKUP), child(LinkRelation.PICKUP, present=False), Method.PIN,
     Action.CHECK_IN, None, ALLOWED),
    ("override needs a reason", actor(STAFF), child(None), Method.STAFF, Action.CHECK_OUT, None, R.NOT_AUTHORIZED),
    ("a blank reason is no reason", actor(STAFF), child(None), Method.STAFF, Action.CHECK_OUT, "   ",
     R.NOT_AUTHORIZED),
    ("override needs staff", actor(PAYER), child(LinkRelation.PAYER), Method.STAFF, Action.CHECK_OUT, "x",
     R.NOT_AUTHORIZED),
    ("override with a reason", actor(STAFF), child(None, present=False), Method.STAFF, Action.CHECK_IN,
     "forgot to sign in", ALLOWED),
    ("a check-out naming no child", actor(PAYER), None, Method.PIN, Action.CHECK_OUT, None, R.NOT_AUTHORIZED),
]  # fmt: skip


@pytest.mark.parametrize(
    ("actor_", "kid", "method", "action", "reason", "expected"),
    [case[1:] for case in CONDITIONS],
    ids=[case[0] for case in CONDITIONS],
)
def test_conditions(
    actor_: Actor,
    kid: ChildFacts | None,
    method: Method,
    action: Action,
    reason: str | None,
    expected: RefusalReason | None,
) -> None:
    decision = decide(Request(method, action, reason), Facts(actor_, kid))
    assert decision.reason == expected


def test_override_rules_name_what_was_missing() -> None:
    assert check_out(actor(STAFF), child(None), Method.STAFF).rule == Rule.OVERRIDE_NEEDS_REASON
    assert check_out(actor(PAYER), child(LinkRelation.PAYER), Method.STAFF, "x").rule == Rule.OVERRIDE_NEEDS_STAFF
    assert check_out(actor(STAFF), child(None), Method.STAFF, "sick").rule == Rule.OVERRIDE


def test_allowed_decisions_say_which_rule_and_role_allowed_them() -> None:
    payer = check_out(actor(PAYER), child(LinkRelation.PAYER), Method.QR)
    assert (payer.rule, payer.role) == (Rule.PAYER, "Someone payer (payer), payer (parent/guardian) of Mai Nguyen")
    pickup = check_out(actor(PICKUP), child(LinkRelation.PICKUP), Method.PIN)
    assert (pickup.rule, pickup.role) == (Rule.PICKUP_PIN, "Someone pickup (pickup), authorized pickup of Mai Nguyen")
    refused = check_out(actor(PICKUP), child(LinkRelation.PICKUP), Method.QR)
    assert refused.rule == Rule.PIN_ONLY


# -- teachers clocking in and out ------------------------------------------------------------------

CLOCK = [
    ("clock in when out", actor(STAFF), False, Method.PIN, Action.CLOCK_IN, ALLOWED),
    ("clock out when in", actor(STAFF), True, Method.PIN, Action.CLOCK_OUT, ALLOWED),
    ("clock in twice", actor(STAFF), True, Method.PIN, Action.CLOCK_IN, R.ALREADY_IN),
    ("clock out when out", actor(STAFF), False, Method.PIN, Action.CLOCK_OUT, R.ALREADY_OUT),
    ("inactive teacher", actor(STAFF, active=False), False, Method.PIN, Action.CLOCK_IN, R.PERSON_INACTIVE),
    ("a payer cannot clock in", actor(PAYER), False, Method.PIN, Action.CLOCK_IN, R.NOT_AUTHORIZED),
    ("a pickup cannot clock out", actor(PICKUP), True, Method.PIN, Action.CLOCK_OUT, R.NOT_AUTHORIZED),
    ("clocking is by PIN", actor(STAFF), False, Method.QR, Action.CLOCK_IN, R.NOT_AUTHORIZED),
]


@pytest.mark.parametrize(
    ("actor_", "clocked_in", "method", "action", "expected"),
    [case[1:] for case in CLOCK],
    ids=[case[0] for case in CLOCK],
)
def test_clock(actor_: Actor, clocked_in: bool, method: Method, action: Action, expected: RefusalReason | None) -> None:
    assert decide(Request(method, action), Facts(actor_, None, clocked_in)).reason == expected


def test_a_clock_action_about_a_child_is_refused() -> None:
    assert decide(Request(Method.PIN, Action.CLOCK_IN), Facts(actor(STAFF), child(None))).reason is R.NOT_AUTHORIZED


def test_staff_pin_cannot_check_a_child_out() -> None:
    decision = check_out(actor(STAFF), child(None), Method.PIN)
    assert (decision.reason, decision.rule) == (R.NOT_AUTHORIZED, Rule.STAFF_NO_CHILDREN)


# -- who may be identified at all, by which method -------------------------------------------------

ADMIT = [
    (PAYER, True, Method.PIN, ALLOWED),
    (PAYER, True, Method.QR, ALLOWED),
    (PAYER, True, Method.GEOFENCE, ALLOWED),
    (PICKUP, True, Method.PIN, ALLOWED),
    (PICKUP, True, Method.QR, R.PIN_ONLY),
    (PICKUP, True, Method.GEOFENCE, R.PIN_ONLY),
    (STAFF, True, Method.PIN, ALLOWED),
    (STAFF, True, Method.QR, R.PIN_ONLY),
    (PAYER, False, Method.PIN, R.PERSON_INACTIVE),
    (PAYER, False, Method.QR, R.PERSON_INACTIVE),
    (PICKUP, False, Method.PIN, R.PERSON_INACTIVE),
    (STAFF, False, Method.PIN, R.PERSON_INACTIVE),
]


@pytest.mark.parametrize(("kind", "active", "method", "expected"), ADMIT)
def test_admit(kind: ActorKind, active: bool, method: Method, expected: RefusalReason | None) -> None:
    assert admit(actor(kind, active=active), method).reason == expected


@pytest.mark.parametrize(("present", "action"), [(False, Action.CHECK_IN), (True, Action.CHECK_OUT)])
def test_the_kiosk_offers_what_makes_sense(present: bool, action: Action) -> None:
    assert natural_action(present) is action


def test_refusal_codes_are_exactly_the_contracts() -> None:
    assert {r.value for r in RefusalReason} == {
        "unknown_pin", "ambiguous_pin", "locked", "pin_only", "restricted", "not_authorized", "person_inactive",
        "child_inactive", "already_in", "already_out", "not_a_token", "bad_signature", "unknown_key", "expired",
        "replayed", "revoked", "bad_ticket",
    }  # fmt: skip
