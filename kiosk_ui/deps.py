"""Dependencies for route handlers, as Annotated aliases."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from edge import const
from kiosk_ui.services import Services
from kiosk_ui.throttle import FailureLimiter, client_key, throttles_of


# Cheap dependencies are ``async def``: FastAPI runs a plain ``def`` one in the threadpool, a
# thread hop per dependency per request on the door's hot path.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def read_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    with services.store.read() as session:
        yield session


ServicesDep = Annotated[Services, Depends(get_services)]
ReadSession = Annotated[Session, Depends(read_session)]


# -- stations (docs/station-api.md, "Who may call") -------------------------------------------


@dataclass(frozen=True)
class StationCaller:
    """Who is calling the station API: the hub itself, or one remote station proven by its
    token (a scanner, an integrator) or its pairing cookie (a kiosk screen at another door)."""

    local: bool
    station_id: str | None = None  # the proven station; None for the hub itself (any of its screens)

    def speaks_for(self, station_id: str) -> bool:
        return self.local or self.station_id == station_id


@functools.lru_cache(maxsize=1024)  # a LAN's few callers, asked about on every station request
def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback; FastAPI's TestClient calls itself "testclient"."""
    if host in ("testclient", "localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


async def station_caller(request: Request) -> StationCaller:
    # Services straight from the app, not as a sub-dependency: each dependency FastAPI solves
    # costs tens of microseconds on every station request.
    services: Services = request.app.state.services
    host = request.client.host if request.client else ""
    if is_loopback(host):
        return StationCaller(local=True)
    guessed: FailureLimiter | None = None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        # Checked before the token, so a blocked guesser learns nothing, not even a right guess.
        guessed = throttles_of(request.app).station_token
        raise_if_blocked(guessed, client_key(host))
        station = services.stations.station_for_token(token.strip())
        if station is not None:
            return StationCaller(local=False, station_id=station)
    cookie = request.cookies.get(const.STATION_COOKIE)
    if cookie:
        station = services.stations.station_for_cookie(cookie)
        if station is not None:
            return StationCaller(local=False, station_id=station)
    if guessed is not None:  # a wrong token (a stale pairing cookie is no guess: an HMAC)
        count_wrong_token(guessed, client_key(host))
    raise HTTPException(
        status_code=401,
        detail="A station needs its station token (Authorization: Bearer) or a paired screen",
        headers={"WWW-Authenticate": "Bearer"},
    )


def raise_if_blocked(limiter: FailureLimiter, key: str) -> None:
    wait = limiter.retry_after(key)
    if wait is not None:
        raise too_many_wrong_tokens(wait)


def count_wrong_token(limiter: FailureLimiter, key: str) -> None:
    wait = limiter.failure(key)
    if wait is not None:
        raise too_many_wrong_tokens(wait)


def too_many_wrong_tokens(wait_s: int) -> HTTPException:
    return HTTPException(
        status_code=429,
        detail="Too many wrong station tokens from this address: try again later",
        headers={"Retry-After": str(wait_s)},
    )


StationDep = Annotated[StationCaller, Depends(station_caller)]
