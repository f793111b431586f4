"""A real hub on a loopback port (uvicorn in a thread, SQLite under tmp_path, a generated
roster applied) and Debian's chromium driven by Playwright, for the kiosk page's tests."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cloud_sync.standin.generator import EMPLOYED, ENROLLED, demo_people, generate_roster
from cloud_sync.standin.threaded import ThreadedServer
from edge.config import load_config
from edge.models import SyncOutcome, SyncTrigger
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services
from kiosk_ui.services import Services

if TYPE_CHECKING:
    from fastapi import FastAPI
    from playwright.sync_api import Browser, Page

KIOSK_SEED = 11
KIOSK_PEOPLE = 300
STATION = "front-door"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).parents[2] / "test-output" / "screenshots"


class LiveServer:
    """The hub's app on 127.0.0.1 in a background thread; ``stop()`` then ``start()`` is a hub
    restart on the same port (the page must reconnect by itself)."""

    def __init__(self, app: FastAPI, port: int = 0) -> None:
        # Open SSE streams never end by themselves: without a graceful limit, stop() waits for them.
        self._server = ThreadedServer(app, port=port, name="kiosk-hub", timeout_graceful_shutdown=1)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


@dataclass
class Hub:
    server: LiveServer
    services: Services
    export: dict[str, Any]
    people: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def kiosk(self, station: str = STATION, **query: str) -> str:
        params = "&".join(f"{k}={v}" for k, v in {"station": station, **query}.items())
        return f"{self.url}/kiosk?{params}"


# -- the roster ---------------------------------------------------------------------------------


def _full(record: dict[str, Any]) -> str:
    return f"{record['first_name']} {record['last_name']}"


def _usable_pins(export: dict[str, Any]) -> set[str]:
    """PINs held by exactly one record and well formed: the ones a test can type."""
    records = [*export["employees"], *(p for f in export["families"] for p in f["persons"])]
    counts = Counter(str(r.get("pin")) for r in records if r.get("pin"))
    return {pin for pin, n in counts.items() if n == 1 and pin.isdigit() and 4 <= len(pin) <= 6}


def family_of_two(export: dict[str, Any]) -> dict[str, Any]:
    """A payer with two enrolled children (in rooms) and a PIN of their own."""
    rooms = {room["id"] for room in export["rooms"]}
    pins = _usable_pins(export)
    restricted = {
        p["person_id"]
        for f in export["families"]
        for c in f["children"]
        for p in c["pickups"]
        if p.get("authorized") is False
    }
    for family in export["families"]:
        kids = [c for c in family["children"] if c["enrollment_status"] == ENROLLED and c.get("classroom") in rooms]
        if len(kids) < 2 or any(p.get("authorized") is False for c in kids for p in c["pickups"]):
            continue
        for person in family["persons"]:
            if person.get("payer") and "id" in person and person["pin"] in pins and person["id"] not in restricted:
                return {
                    "id": person["id"],
                    "name": _full(person),
                    "pin": person["pin"],
                    "children": [{"id": c["id"], "name": _full(c)} for c in kids],
                }
    raise LookupError("no family with two enrolled children in this roster")


def teacher(export: dict[str, Any]) -> dict[str, Any]:
    """A teacher who syncs (employed, started, in a room) with a PIN of their own."""
    rooms = {room["id"] for room in export["rooms"]}
    pins = _usable_pins(export)
    for employee in export["employees"]:
        history = employee["work_history"]
        if (
            history["status"] == EMPLOYED
            and history["start_date"]
            and employee.get("primary_work_area") in rooms
            and employee["pin"] in pins
        ):
            return {"id": employee["id"], "name": _full(employee), "pin": employee["pin"]}
    raise LookupError("no usable teacher in this roster")


@pytest.fixture(scope="session")
def kiosk_export() -> dict[str, Any]:
    """One generated roster for the session; each hub applies its own copy."""
    return generate_roster(seed=KIOSK_SEED, people=KIOSK_PEOPLE, center_id="demo-center")


@pytest.fixture(scope="session")
def kiosk_people(kiosk_export: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``payer``, ``pickup``, ``restricted`` (demo_people), ``family`` (two children) and ``teacher``."""
    people = demo_people(kiosk_export)
    people["family"] = family_of_two(kiosk_export)
    people["teacher"] = teacher(kiosk_export)
    return people


# -- the hub ------------------------------------------------------------------------------------


@pytest.fixture
def hub(
    tmp_path: Path,
    kiosk_export: dict[str, Any],
    kiosk_people: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Hub]:
    """A fresh hub per test: its own database, so presence, tickets and lockouts never leak."""
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    config = load_config(None, data_dir=tmp_path / "data", center_id="demo-center")
    services = build_services(config)
    try:
        report = services.roster_sync.apply_export([copy.deepcopy(kiosk_export)], SyncTrigger.FILE)
        assert report.outcome is SyncOutcome.OK, report.error
        server = LiveServer(create_app(services)).start()
        try:
            yield Hub(server, services, kiosk_export, kiosk_people)
        finally:
            server.stop()
    finally:
        services.close()


# -- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One chromium for the session (starting one costs about a second); Debian's own, never a
    downloaded one."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context per test (no shared storage or cookies), sized like the Pi's 7" panel.

    Fails the test on a JavaScript error or a Content-Security-Policy violation: the kiosk
    route sends a strict CSP, so every browser test also proves the page needs no inline
    script or style."""
    context = browser.new_context(
        viewport={"width": 800, "height": 480},
        has_touch=True,
        locale="en-US",
        timezone_id="America/Los_Angeles",
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )
    try:
        yield page
    finally:
        context.close()
    assert problems == []


def screenshot(page: Page, name: str) -> Path:
    """Saved under test-output/screenshots/ for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
