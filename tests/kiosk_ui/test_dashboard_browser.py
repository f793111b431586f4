"""The dashboard in Debian's chromium on a laptop-sized screen: the login, a PIN check-in at the
kiosk appearing on an open dashboard without a reload (and how fast), a fix by hand with a
reason, the roster's locks and the sync doctor's reasons, yesterday's CSV. Screenshots go to
test-output/screenshots/dashboard-*.png for a person to look at."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest

from edge.attendance import record_event
from edge.models import Action, ActorKind, Method, SubjectKind
from tests.kiosk_ui.conftest import Hub, screenshot
from tests.kiosk_ui.test_kiosk_browser import open_kiosk, tap_pin, wait_for_listener
from tests.phones import site_geojson

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.browser

DIRECTOR = ("dana", "maple street director")
LIVE_BUDGET_MS = 100  # issue 7: a check-in appears on an open dashboard < 100 ms after "done"


def expect() -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


@pytest.fixture
def desk(browser: Browser) -> Iterator[BrowserContext]:
    """A laptop-sized context; fails the test on a JavaScript error or a CSP violation."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 860},
        locale="en-US",
        timezone_id="America/Los_Angeles",
        accept_downloads=True,
    )
    problems: list[str] = []

    def watch(page: Page) -> None:
        page.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"console: {message.text}")
                if "Content Security Policy" in message.text or "Refused to" in message.text
                else None
            ),
        )

    context.on("page", watch)
    try:
        yield context
    finally:
        context.close()
    assert problems == []


def log_in(page: Page, hub: Hub, path: str = "/dashboard") -> None:
    if hub.services.staff.get(DIRECTOR[0]) is None:
        hub.services.staff.add(DIRECTOR[0], "director", DIRECTOR[1])
    page.goto(hub.url + path)
    expect()(page).to_have_url(re.compile(r"/login\?next="))
    page.fill('input[name="username"]', DIRECTOR[0])
    page.fill('input[name="password"]', DIRECTOR[1])
    page.click('button[type="submit"]')
    expect()(page).to_have_url(re.compile(re.escape(path) + r"(\?|#|$)"))


def test_login_live_check_in_and_a_fix_by_hand(hub: Hub, desk: BrowserContext, page: Page) -> None:
    payer = hub.people["payer"]
    child = payer["children"][0]
    board = desk.new_page()
    board.goto(hub.url + "/dashboard")
    expect()(board.locator("section.login")).to_be_visible()
    screenshot(board, "dashboard-01-login")
    log_in(board, hub)
    expect()(board.locator("#live-status")).to_have_text("live")
    screenshot(board, "dashboard-02-now")

    # A parent at the kiosk (the conftest's 800x480 panel), the dashboard open beside it.
    open_kiosk(page, hub)
    wait_for_listener(hub, 2)
    page.evaluate(
        """() => {
            const done = document.getElementById("screen-done");
            window.__doneAt = null;
            new MutationObserver(() => {
                if (!done.hidden && window.__doneAt === null) window.__doneAt = Date.now();
            }).observe(done, { attributes: true });
        }"""
    )
    tap_pin(page, payer["pin"])
    page.click("#people-confirm")
    expect()(page.locator("#screen-done")).to_be_visible()
    item = board.locator('#feed li[data-kind="attendance"]', has_text=child["name"])
    expect()(item).to_be_visible()
    expect()(item).to_contain_text("checked in")
    done_at = page.evaluate("() => window.__doneAt")
    shown_at = int(item.get_attribute("data-shown-at") or 0)
    latency_ms = shown_at - done_at
    print(f"kiosk 'done' -> dashboard feed: {latency_ms} ms")
    assert latency_ms < LIVE_BUDGET_MS
    # The room redraws itself too: the child is in, without a reload.
    room = board.locator("section.room", has=board.locator(f'li[data-child="{child["id"]}"]'))
    expect()(room.locator(f'li[data-child="{child["id"]}"] .since')).to_contain_text("in since")
    board.locator("#find").fill(child["name"].split()[0])
    expect()(board.locator("table.rooms")).to_be_hidden()
    screenshot(board, "dashboard-03-live-check-in")
    board.locator("#find").fill("")

    # Fix by hand: check the same child out, with a reason.
    room.locator(f'li[data-child="{child["id"]}"] a.fix').click()
    expect()(board.locator("h1")).to_contain_text(child["name"])
    expect()(board.locator('input[value="check_out"]')).to_be_checked()
    board.fill('textarea[name="reason"]', "Picked up by grandmother, ID checked at the desk")
    screenshot(board, "dashboard-04-fix-by-hand")
    board.click('section.fix button[type="submit"]')
    expect()(board.locator("p.done")).to_be_visible()
    expect()(board.locator("p.state")).to_contain_text("Checked out since")
    board.click('a:has-text("Everything about")')
    expect()(board.locator("table.audit")).to_contain_text("Picked up by grandmother")
    expect()(board.locator("table.audit")).to_contain_text(f"{DIRECTOR[0]} (dashboard)")
    screenshot(board, "dashboard-05-audit")
    board.click('header nav a:has-text("Reports")')
    expect()(board.locator("#occupancy svg.chart")).to_be_visible()
    expect()(board.locator("#by-child")).to_contain_text(child["name"])
    screenshot(board, "dashboard-11-reports-today")


def _yesterday_visit(hub: Hub, child_id: str) -> None:
    zone = ZoneInfo("America/Los_Angeles")
    yesterday = dt.datetime.now(zone).date() - dt.timedelta(days=1)
    for action, hour in ((Action.CHECK_IN, 8), (Action.CHECK_OUT, 16)):
        with hub.services.store.transaction() as session:
            record_event(
                session,
                subject_kind=SubjectKind.CHILD,
                subject_id=child_id,
                action=action,
                method=Method.PIN,
                actor_kind=ActorKind.PAYER,
                actor_id="P1",
                station_id="front-door",
                occurred_at=dt.datetime.combine(yesterday, dt.time(hour, 15), tzinfo=zone).astimezone(dt.UTC),
                clock_synced=True,
            )


def test_roster_locks_sync_doctor_and_yesterdays_csv(hub: Hub, desk: BrowserContext) -> None:
    child = hub.people["payer"]["children"][0]
    _yesterday_visit(hub, child["id"])
    board = desk.new_page()
    log_in(board, hub)

    # Why did a teacher not sync? Roster → Teachers says it at the top, with what to change.
    board.click('header nav a:has-text("Roster")')
    board.click('nav.tabs a:has-text("Teachers")')
    findings = board.locator("section.findings-box")
    expect()(findings).to_contain_text("did not sync")
    expect()(findings).to_contain_text("What to change in the back office")
    assert board.locator("th .lock").count() >= 5
    assert board.locator(".lock").first.get_attribute("title") == "Synced from the back office: edit this there"
    screenshot(board, "dashboard-06-roster-teachers")
    board.click('nav.tabs a:has-text("Why not synced?")')
    doctor = board.locator("table.findings").first
    expect()(doctor).to_contain_text("R3")
    expect()(doctor).to_contain_text("Teacher")
    screenshot(board, "dashboard-07-sync-doctor")
    board.click('nav.tabs a:has-text("Families")')
    expect()(board.locator("section.family").first).to_be_visible()
    screenshot(board, "dashboard-08-roster-families")

    # Yesterday's attendance as CSV, from Reports.
    board.click('header nav a:has-text("Reports")')
    board.click('a:has-text("Yesterday")')
    expect()(board.locator("#by-child")).to_contain_text(child["name"])
    screenshot(board, "dashboard-09-reports-yesterday")
    with board.expect_download() as download_info:
        board.click('a:has-text("Download CSV, per child")')
    download = download_info.value
    assert re.fullmatch(r"attendance-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
    path = download.path()
    assert path is not None
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert [(r["child"], r["first_check_in"], r["last_check_out"], r["hours"]) for r in rows] == [
        (child["name"], "08:15", "16:15", "8.00")
    ]

    board.click('header nav a:has-text("Sync & health")')
    expect()(board.locator("#sync-runs")).to_contain_text("Next syncs")
    screenshot(board, "dashboard-10-sync")

    # A payer's badge, printed from the dashboard; the geofence drawn.
    payer = hub.people["payer"]
    board.click('header nav a:has-text("Badges")')
    board.fill('input[name="q"]', payer["name"])
    board.press('input[name="q"]', "Enter")
    board.click('button:has-text("Print a badge")')
    expect()(board.locator(".badge-card svg")).to_be_visible()
    screenshot(board, "dashboard-12-badge")
    hub.services.pings.set_fence(site_geojson(), 250)
    board.click('header nav a:has-text("Geofence")')
    expect()(board.locator("svg.fence .site")).to_be_visible()
    screenshot(board, "dashboard-13-geofence")
