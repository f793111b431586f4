"""The security headers on every answer of the hub (issue 9): pages, JSON, static files, the live
streams, redirects, and the framework's own errors, over the real uvicorn server; each header
exactly once, and a Content-Security-Policy that allows no inline script and no framing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from kiosk_ui import security_headers
from kiosk_ui.app import create_app
from kiosk_ui.security_headers import SecurityHeaders
from tests.kiosk_ui.conftest import STATION, Hub
from tests.kiosk_ui.dashboard_helpers import PASSWORD, cheap_accounts

EXPECTED = {
    "content-security-policy": security_headers.CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def assert_secured(what: str, response: Any) -> None:
    """An httpx (live server) or TestClient answer."""
    for name, value in EXPECTED.items():
        assert response.headers.get_list(name) == [value], (what, response.status_code, name)


def test_the_policy_runs_only_the_hubs_own_files_and_forbids_framing() -> None:
    policy = directives(security_headers.CONTENT_SECURITY_POLICY)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert not re.search(r"unsafe-|\*|data:|https?:", security_headers.CONTENT_SECURITY_POLICY)


@pytest.fixture
def web(hub: Hub) -> Iterator[httpx.Client]:
    cheap_accounts(hub.services).add("maria", "director", PASSWORD)
    with httpx.Client(base_url=hub.url, timeout=httpx.Timeout(5.0)) as client:
        yield client


def test_every_kind_of_answer_carries_them(hub: Hub, web: httpx.Client) -> None:
    html = {"accept": "text/html"}
    answers = {
        "kiosk page": web.get("/kiosk", params={"station": STATION}),
        "kiosk set-up page (400)": web.get("/kiosk"),
        "login page": web.get("/login"),
        "dashboard without a session (303)": web.get("/dashboard", headers=html),
        "dashboard API without a session (401)": web.get("/dashboard/api/now"),
        "static script": web.get("/static/kiosk.js"),
        "static style": web.get("/static/dashboard.css"),
        "missing static file (404)": web.get("/static/nothing.js"),
        "unknown path (404)": web.get("/nowhere"),
        "health": web.get("/healthz"),
        "metrics": web.get("/metrics"),
        "openapi": web.get("/openapi.json"),
        "station API refusal (403)": web.post(
            "/api/v1/identify", json={"station_id": STATION, "method": "qr", "secret": "not a code"}
        ),
        "station API status": web.get("/api/v1/status"),
        "station API bad body (422)": web.post("/api/v1/identify", json={}),
        "phone API without a signature": web.post("/api/v1/geofence/pings", json={}),
        "wrong method (405)": web.delete("/api/v1/status"),
    }
    with web.stream("GET", "/api/v1/live", params={"station": STATION}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        answers["kiosk live stream"] = stream
    page = web.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    answers["login (303)"] = web.post(
        "/login", data={"username": "maria", "password": PASSWORD, "csrf_token": token.group(1)}
    )
    answers["dashboard page"] = web.get("/dashboard")
    answers["dashboard JSON"] = web.get("/dashboard/api/now")
    answers["report CSV"] = web.get("/dashboard/reports/attendance.csv")
    for what, response in answers.items():
        assert response.status_code < 500, (what, response.status_code)
        assert_secured(what, response)
    assert answers["report CSV"].status_code == 200
    assert answers["dashboard page"].status_code == 200
    # The pages keep their own no-store beside the shared headers.
    assert answers["kiosk page"].headers["cache-control"] == "no-store"
    assert answers["dashboard page"].headers["cache-control"] == "no-store"


def test_the_frameworks_own_errors_carry_them_too(hub: Hub) -> None:
    """A handler's unhandled error (the framework's 500) and a body over the API's limit (413)
    are answered outside the routes: the middleware sits outside them."""
    app = create_app(hub.services)
    broken = APIRouter(tags=["public"])

    @broken.get("/broken")
    def fail() -> None:
        raise RuntimeError("a bug")

    app.include_router(broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        crashed = client.get("/broken")
        too_big = client.post(
            "/api/v1/identify", content=b"{" + b" " * 100_000 + b"}", headers={"content-type": "application/json"}
        )
    assert crashed.status_code == 500
    assert too_big.status_code == 413
    assert_secured("500", crashed)
    assert_secured("413", too_big)


def run_apart(call: Coroutine[Any, Any, None]) -> None:
    """asyncio.run in a thread of its own: Playwright's sync API (the browser tests, a session
    fixture) keeps an event loop running on the main thread once it has started."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, call).result()


def test_other_scopes_pass_through_untouched() -> None:
    seen: list[Message] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "lifespan.startup.complete"})
        seen.append({"type": "inner", "scope": scope["type"]})

    async def send(message: Message) -> None:
        seen.append(message)

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    run_apart(SecurityHeaders(inner)({"type": "lifespan"}, receive, send))
    assert seen == [{"type": "lifespan.startup.complete"}, {"type": "inner", "scope": "lifespan"}]


def test_a_responses_own_header_list_is_left_as_it_was() -> None:
    """The response object may be sent again (a cached answer): its raw headers must not grow."""
    own = [(b"content-type", b"text/plain")]
    sent: list[Message] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": own})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    run_apart(SecurityHeaders(inner)({"type": "http"}, receive, send))
    assert own == [(b"content-type", b"text/plain")]
    assert sent[0]["headers"] == [*security_headers.RAW_HEADERS, (b"content-type", b"text/plain")]
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}
