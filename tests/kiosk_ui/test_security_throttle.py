"""Brute force on the hub's guessable secrets (issue 9): wrong station tokens, on the station API
and when pairing a screen, and wrong logins sprayed over many usernames. Each limit answers
``429`` with ``Retry-After`` once it trips, and not before (the contract's ``401`` until then);
nobody else is locked out by it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from edge.config import load_config
from kiosk_ui import throttle
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services
from kiosk_ui.services import Services
from kiosk_ui.throttle import FailureLimiter, Throttles, client_key
from tests.door import apply, door_export
from tests.kiosk_ui.dashboard_helpers import PASSWORD, cheap_accounts

BACK = "back-door"
BACK_TOKEN = "tok-back-door-5f2c9e1a77"
GUESSER = ("192.168.1.66", 40_000)
SCANNER = ("192.168.1.20", 40_001)
OFFICE = ("192.168.1.30", 40_002)


class Ticks:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


# -- the limiter itself ---------------------------------------------------------------------------


def limiter(ticks: Ticks, **kw: float) -> FailureLimiter:
    return FailureLimiter(
        max_failures=int(kw.get("max_failures", 3)),
        window_s=kw.get("window_s", 60.0),
        block_s=kw.get("block_s", 120.0),
        monotonic=ticks,
        max_keys=int(kw.get("max_keys", 100)),
    )


@pytest.mark.parametrize(
    ("gaps", "blocked_after"),
    [
        ([0, 1, 1], 3),  # three within the window: the third blocks
        ([0, 30, 29.9], 3),  # just inside the window
        ([0, 30, 30, 30], None),  # each falls out before the third arrives
        ([0, 61, 1, 1], 4),  # the first one expired; the next three block
    ],
)
def test_failures_within_the_window_block(gaps: list[float], blocked_after: int | None) -> None:
    ticks = Ticks()
    limits = limiter(ticks)
    tripped = None
    for n, gap in enumerate(gaps, start=1):
        ticks.now += gap
        if limits.failure("a") is not None and tripped is None:
            tripped = n
    assert tripped == blocked_after


def test_a_block_lasts_its_time_and_is_per_key() -> None:
    ticks = Ticks()
    limits = limiter(ticks)
    assert limits.retry_after("a") is None
    for _ in range(3):
        wait = limits.failure("a")
    assert wait == 120
    assert limits.retry_after("a") == 120
    assert limits.retry_after("b") is None
    ticks.now += 119.5
    assert limits.retry_after("a") == 1
    ticks.now += 0.5
    assert limits.retry_after("a") is None
    # Its count started again from nothing.
    assert limits.failure("a") is None


def test_memory_stays_bounded_oldest_first() -> None:
    ticks = Ticks()
    limits = limiter(ticks, max_keys=50)
    for n in range(1_000):
        limits.failure(f"10.0.{n // 256}.{n % 256}")
    assert len(limits) == 50
    for _ in range(3):
        limits.failure("10.9.9.9")  # blocked: kept even as newer keys arrive
    assert limits.retry_after("10.9.9.9") is not None


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.168.1.20", "192.168.1.20"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.168.1.20", "192.168.1.20"),
        ("fe80::1%eth0", "fe80::/64"),
        ("testclient", "testclient"),
    ],
)
def test_clients_are_keyed_by_address_and_ipv6_by_its_64(host: str, key: str) -> None:
    assert client_key(host) == key


# -- station tokens over HTTP ---------------------------------------------------------------------


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    config = load_config(None, data_dir=tmp_path / "data", center_id="demo-center", station_tokens={BACK: BACK_TOKEN})
    built = build_services(config)
    apply(built.roster_sync, door_export())
    accounts = cheap_accounts(built)
    accounts.add("maria", "director", PASSWORD)
    accounts.add("tom", "teacher", PASSWORD)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def app(services: Services) -> FastAPI:
    built = create_app(services)
    built.state.throttles = Throttles(
        station_token=FailureLimiter(
            max_failures=throttle.STATION_TOKEN_MAX_FAILURES,
            window_s=throttle.STATION_TOKEN_WINDOW_S,
            block_s=throttle.STATION_TOKEN_BLOCK_S,
            monotonic=TICKS,
        ),
        login=FailureLimiter(
            max_failures=throttle.LOGIN_MAX_FAILURES_PER_CLIENT,
            window_s=throttle.LOGIN_WINDOW_S,
            block_s=throttle.LOGIN_BLOCK_S,
            monotonic=TICKS,
        ),
    )
    return built


TICKS = Ticks()


@pytest.fixture(autouse=True)
def _reset_ticks() -> None:
    TICKS.now = 1_000.0


def client_at(app: FastAPI, address: tuple[str, int]) -> TestClient:
    return TestClient(app, client=address)


def status_of(client: TestClient, token: str) -> int:
    return client.get(
        "/api/v1/status", params={"station": BACK}, headers={"Authorization": f"Bearer {token}"}
    ).status_code


def test_wrong_station_tokens_get_401_then_429_even_for_the_right_one(app: FastAPI) -> None:
    with client_at(app, GUESSER) as guesser, client_at(app, SCANNER) as scanner:
        codes = [status_of(guesser, f"guess-{n}") for n in range(throttle.STATION_TOKEN_MAX_FAILURES)]
        assert codes == [401] * (throttle.STATION_TOKEN_MAX_FAILURES - 1) + [429]
        blocked = guesser.get(
            "/api/v1/status", params={"station": BACK}, headers={"Authorization": f"Bearer {BACK_TOKEN}"}
        )
        assert blocked.status_code == 429  # a right guess now says nothing
        assert int(blocked.headers["retry-after"]) == throttle.STATION_TOKEN_BLOCK_S
        # The real scanner at another address is not touched.
        assert status_of(scanner, BACK_TOKEN) == 200
        TICKS.now += throttle.STATION_TOKEN_BLOCK_S
        assert status_of(guesser, BACK_TOKEN) == 200


def test_no_token_at_all_is_no_guess(app: FastAPI) -> None:
    """A screen at another door whose pairing ended keeps hearing 401 (and says "pair this
    screen"), however often it asks; so does a stale pairing cookie (an HMAC, not guessable)."""
    with client_at(app, GUESSER) as screen:
        screen.cookies.set("station", f"{BACK}.{'0' * 64}")
        codes = {screen.get("/api/v1/status", params={"station": BACK}).status_code for _ in range(30)}
    assert codes == {401}


def test_the_hub_itself_is_never_limited(app: FastAPI) -> None:
    with TestClient(app) as local:  # "testclient" counts as loopback, as 127.0.0.1 does
        codes = {status_of(local, f"guess-{n}") for n in range(throttle.STATION_TOKEN_MAX_FAILURES + 5)}
    assert codes == {200}


def test_pairing_guesses_count_against_the_same_limit(app: FastAPI) -> None:
    with client_at(app, GUESSER) as guesser:
        for n in range(throttle.STATION_TOKEN_MAX_FAILURES - 1):
            assert status_of(guesser, f"guess-{n}") == 401
        wrong = guesser.get("/kiosk/pair", params={"station": BACK, "token": "guess"}, follow_redirects=False)
        assert wrong.status_code == 429
        right = guesser.get("/kiosk/pair", params={"station": BACK, "token": BACK_TOKEN}, follow_redirects=False)
        assert right.status_code == 429
        assert "retry-after" in right.headers
        assert "set-cookie" not in right.headers


def test_a_paired_screen_over_https_gets_a_secure_cookie(app: FastAPI) -> None:
    with TestClient(app, base_url="https://hub.local", client=OFFICE) as screen:
        answer = screen.get("/kiosk/pair", params={"station": BACK, "token": BACK_TOKEN}, follow_redirects=False)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "secure" in cookie
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


# -- logins ---------------------------------------------------------------------------------------


def try_login(client: TestClient, username: str, password: str) -> int:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    answer = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    if answer.status_code == 429:
        assert int(answer.headers["retry-after"]) > 0
        assert "Too many wrong passwords" in answer.text
    return answer.status_code


def test_a_password_sprayed_over_many_usernames_is_limited_per_client(app: FastAPI) -> None:
    limit = throttle.LOGIN_MAX_FAILURES_PER_CLIENT
    with client_at(app, GUESSER) as guesser, client_at(app, OFFICE) as office:
        # One try per username: the (username, client) lockout never trips, the per-client one does.
        codes = [try_login(guesser, f"user{n}", "Summer2026!") for n in range(limit)]
        assert codes == [401] * (limit - 1) + [429]
        assert try_login(guesser, "maria", PASSWORD) == 429  # right or wrong: nothing is checked now
        # The director at the office PC logs in all the same.
        assert try_login(office, "maria", PASSWORD) == 303
        TICKS.now += throttle.LOGIN_BLOCK_S
        assert try_login(guesser, "tom", PASSWORD) == 303


def test_wrong_passwords_for_one_user_do_not_block_another(app: FastAPI) -> None:
    """The (username, client) lockout (edge.staff.LoginThrottle) now also says Retry-After; a
    colleague at the same desk still logs in under her own name."""
    with client_at(app, OFFICE) as office:
        codes = [try_login(office, "tom", "not his password") for _ in range(6)]
        assert codes == [401, 401, 401, 401, 429, 429]
        assert try_login(office, "maria", PASSWORD) == 303
