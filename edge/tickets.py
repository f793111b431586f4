"""Tickets: proof that a person identified at a station a moment ago.

In memory only: an identify writes nothing to the SD card. A ticket expires (TICKET_TTL_S) and
is good for one set of children and one action; repeating exactly that (a double tap) gets the
same answer back. A restart forgets every ticket, which only sends a parent back to the PIN pad.
Time is monotonic, so the wall clock jumping when NTP first answers expires nothing early.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from edge import const
from edge.models import Action, Method
from edge.outcomes import Recorded, Refusal
from edge.policy import Actor

UseKey = tuple[frozenset[str], Action]


@dataclass(slots=True)
class Ticket:
    token: str
    station_id: str
    actor: Actor
    method: Method
    issued_at: float  # monotonic seconds
    # Held while the ticket is claimed, so two taps arriving together are one act, not two.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    used_for: UseKey | None = None
    # The claimed act's answer while it is written: a double tap meanwhile waits for it.
    answer: Future[Recorded | Refusal] | None = field(default=None, repr=False)
    # What it recorded, once durable: a double tap later gets the same.
    recorded: Recorded | None = field(default=None, repr=False)


class TicketStore:
    def __init__(
        self,
        ttl_s: float = const.TICKET_TTL_S,
        max_open: int = const.TICKET_MAX_OPEN,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_open = max_open
        # Monotonic, never the wall clock: a clock set back an hour must not keep a ticket alive
        # for that hour, nor one set forward a day send every parent back to the PIN pad.
        self.now = now if now is not None else time.monotonic
        self._lock = threading.Lock()
        self._tickets: OrderedDict[str, Ticket] = OrderedDict()  # oldest first

    def issue(self, station_id: str, actor: Actor, method: Method) -> Ticket:
        now = self.now()
        ticket = Ticket(secrets.token_urlsafe(18), station_id, actor, method, now)
        with self._lock:
            self._drop_expired(now)
            while len(self._tickets) >= self.max_open:
                self._tickets.popitem(last=False)
            self._tickets[ticket.token] = ticket
        return ticket

    def get(self, token: str) -> Ticket | None:
        """The ticket, or None when it is unknown or has expired."""
        now = self.now()
        with self._lock:
            ticket = self._tickets.get(token)
            if ticket is None:
                return None
            if now - ticket.issued_at >= self.ttl_s:
                del self._tickets[token]
                return None
            return ticket

    def __len__(self) -> int:
        with self._lock:
            return len(self._tickets)

    def _drop_expired(self, now: float) -> None:
        while self._tickets:
            oldest = next(iter(self._tickets.values()))
            if now - oldest.issued_at < self.ttl_s:
                return
            self._tickets.popitem(last=False)
