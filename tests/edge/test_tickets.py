"""Tickets: in memory, expiring, bounded."""

from __future__ import annotations

from edge.models import ActorKind, Method
from edge.policy import Actor
from edge.tickets import TicketStore

AN = Actor(ActorKind.PAYER, "P1", "An Nguyen")


class Ticking:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_is_found_until_it_expires() -> None:
    time = Ticking()
    tickets = TicketStore(ttl_s=120, now=time)
    ticket = tickets.issue("front-door", AN, Method.PIN)
    assert tickets.get(ticket.token) is ticket
    time.now += 119.9
    assert tickets.get(ticket.token) is ticket
    time.now += 0.1
    assert tickets.get(ticket.token) is None
    assert len(tickets) == 0


def test_tokens_are_unguessable_and_distinct() -> None:
    tickets = TicketStore()
    tokens = {tickets.issue("front-door", AN, Method.PIN).token for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(len(token) >= 24 for token in tokens)
    assert tickets.get("guess") is None


def test_expired_tickets_are_dropped_when_new_ones_are_issued() -> None:
    time = Ticking()
    tickets = TicketStore(ttl_s=10, now=time)
    for _ in range(50):
        tickets.issue("front-door", AN, Method.PIN)
    time.now += 11
    tickets.issue("front-door", AN, Method.PIN)
    assert len(tickets) == 1


def test_a_flood_of_tickets_is_bounded_oldest_first() -> None:
    tickets = TicketStore(max_open=100)
    first = tickets.issue("front-door", AN, Method.PIN)
    issued = [tickets.issue("front-door", AN, Method.PIN) for _ in range(150)]
    assert len(tickets) == 100
    assert tickets.get(first.token) is None
    assert tickets.get(issued[-1].token) is issued[-1]
