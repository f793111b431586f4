"""Brute-force limits on the hub's two guessable secrets: station tokens and staff passwords.

- **Station tokens** (``Authorization: Bearer`` on the station API, ``token=`` when pairing a
  screen): past ``STATION_TOKEN_MAX_FAILURES`` wrong tokens from one client within the window,
  that client gets ``429`` with ``Retry-After`` for ``STATION_TOKEN_BLOCK_S``, the right token
  included (a guesser must not learn that a guess was right). Until then the station API answers
  as documented (``401``). A pairing cookie is an HMAC nobody can guess, so a stale one is not
  counted: a screen whose pairing ended keeps its ``401`` and its "pair this screen" message.
- **Logins**: ``edge.staff.LoginThrottle`` locks a (username, client) pair after a few wrong
  passwords; on top of it, past ``LOGIN_MAX_FAILURES_PER_CLIENT`` wrong logins from one client
  (any usernames: a password sprayed over every name) that client is refused for a while. A
  login from another client, for any username, is not affected.

Counts live in memory only (a wrong guess writes nothing to the SD card) and are bounded; a
restart forgets them, which gives a guesser a handful of tries per restart. Clients are keyed by
address; an IPv6 client by its /64, which one machine can fill with addresses at will.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

STATION_TOKEN_MAX_FAILURES = 10
STATION_TOKEN_WINDOW_S = 300.0
STATION_TOKEN_BLOCK_S = 300.0
LOGIN_MAX_FAILURES_PER_CLIENT = 20
LOGIN_WINDOW_S = 300.0
LOGIN_BLOCK_S = 300.0
MAX_CLIENTS = 10_000  # distinct clients remembered per limiter; the oldest go first


def client_key(host: str) -> str:
    """The address a limit counts against: IPv4 as is, IPv6 by its /64 network."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class FailureLimiter:
    """``max_failures`` failures of one key within ``window_s`` block that key for ``block_s``.

    ``retry_after`` is what a request pays when nothing is blocked: one truthiness test, no lock.
    """

    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        block_s: float,
        monotonic: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_CLIENTS,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.block_s = block_s
        self.monotonic = monotonic
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or None when it is not blocked."""
        if not self._blocked_until:
            return None
        now = self.monotonic()
        with self._lock:
            until = self._blocked_until.get(key)
            if until is None:
                return None
            if until <= now:
                del self._blocked_until[key]
                return None
            return max(1, math.ceil(until - now))

    def failure(self, key: str) -> int | None:
        """Counts one failure; the seconds to wait when this one blocked ``key``, else None."""
        now = self.monotonic()
        with self._lock:
            recent = self._failures.pop(key, None) or deque()
            while recent and now - recent[0] >= self.window_s:
                recent.popleft()
            recent.append(now)
            if len(recent) < self.max_failures:
                self._failures[key] = recent  # re-inserted: the dict's order is the eviction order
                _bound(self._failures, self.max_keys)
                return None
            self._blocked_until.pop(key, None)
            self._blocked_until[key] = now + self.block_s
            _bound(self._blocked_until, self.max_keys)
            return max(1, math.ceil(self.block_s))

    def __len__(self) -> int:
        return len(self._failures) + len(self._blocked_until)


def _bound(table: dict[str, Any], limit: int) -> None:
    while len(table) > limit:
        del table[next(iter(table))]


@dataclass
class Throttles:
    """The hub's limiters, one set per app (``throttles_of``)."""

    station_token: FailureLimiter = field(
        default_factory=lambda: FailureLimiter(
            max_failures=STATION_TOKEN_MAX_FAILURES, window_s=STATION_TOKEN_WINDOW_S, block_s=STATION_TOKEN_BLOCK_S
        )
    )
    login: FailureLimiter = field(
        default_factory=lambda: FailureLimiter(
            max_failures=LOGIN_MAX_FAILURES_PER_CLIENT, window_s=LOGIN_WINDOW_S, block_s=LOGIN_BLOCK_S
        )
    )


def throttles_of(app: FastAPI) -> Throttles:
    throttles: Throttles | None = getattr(app.state, "throttles", None)
    if throttles is None:
        throttles = app.state.throttles = Throttles()
    return throttles
