"""The Content-Security-Policy in Debian's chromium (issue 9): every kiosk screen and dashboard page
runs under it without a single violation (each ``securitypolicyviolation`` event and each
"Refused to …" console message is collected), the browser does enforce it (an inline style put
into the page is refused), and no other page can frame the kiosk or the dashboard."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from edge.models import SyncOutcome, SyncTrigger
from tests.kiosk_ui.conftest import Hub
from tests.kiosk_ui.test_dashboard_browser import log_in
from tests.kiosk_ui.test_kiosk_browser import open_kiosk, pins_of, tap_pin, wait_for_listener

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

# Runs before any script of the page, in every document (frames included). Playwright adds it
# through the DevTools protocol, which the page's own policy does not govern.
COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " @ " + e.documentURI);
});
"""


def expect() -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


@dataclass
class Watched:
    page: Page
    console: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        """This document's violation events, and every "Refused to …" message so far."""
        events: list[str] = self.page.evaluate("window.__cspViolations || []")
        return events + self.console


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    context.add_init_script(COLLECT_VIOLATIONS)
    page = context.new_page()
    seen = Watched(page)
    page.on(
        "console",
        lambda message: (
            seen.console.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )
    page.on("pageerror", lambda error: seen.console.append(f"JavaScript error: {error}"))
    try:
        yield seen
    finally:
        context.close()


def test_the_kiosk_runs_under_its_policy_without_a_violation(hub: Hub, watched: Watched) -> None:
    page = watched.page
    family = hub.people["family"]
    open_kiosk(page, hub)
    wait_for_listener(hub)
    assert watched.violations() == []
    tap_pin(page, family["pin"])  # the people screen: avatars coloured from script, names from the API
    expect()(page.locator("#screen-people")).to_be_visible()
    page.click("#people-confirm")
    expect()(page.locator("#screen-done")).to_be_visible()
    page.click("#screen-done .back")
    wrong = next(pin for pin in ("0000", "1111", "9999", "1212") if pin not in pins_of(hub.export))
    tap_pin(page, wrong)  # a refusal on the pad
    expect()(page.locator("#pad-message")).to_have_text("That PIN was not recognized. Please try again.")
    page.locator(".lang-toggle:visible").first.click()  # the other language
    page.wait_for_timeout(200)
    assert watched.violations() == []


def test_every_dashboard_page_runs_under_its_policy_without_a_violation(hub: Hub, watched: Watched) -> None:
    page = watched.page
    log_in(page, hub)
    paths = [
        "/dashboard",
        "/dashboard/reports",
        "/dashboard/audit",
        "/dashboard/roster",
        "/dashboard/roster/children",
        "/dashboard/roster/families",
        "/dashboard/roster/teachers",
        "/dashboard/sync-doctor",
        "/dashboard/sync",
        "/dashboard/badges",
        "/dashboard/geofence",
        f"/dashboard/children/{hub.people['payer']['children'][0]['id']}/fix",
    ]
    seen: dict[str, list[str]] = {}
    for path in paths:
        response = page.goto(hub.url + path)
        assert response is not None
        assert response.status == 200, path
        page.wait_for_load_state("load")
        seen[path] = watched.violations()
    # A badge printed from the dashboard: a page with a server-drawn SVG inside.
    page.goto(hub.url + "/dashboard/badges?q=" + hub.people["payer"]["name"].split()[-1])
    page.locator('form[action$="/issue"] button').first.click()
    expect()(page.locator("svg").first).to_be_visible()
    seen["badge print"] = watched.violations()
    assert {path: found for path, found in seen.items() if found} == {}


def test_the_browser_enforces_it(hub: Hub, watched: Watched) -> None:
    """The collectors above hear a violation when there is one: markup with an inline style and
    an inline script, as an XSS would bring, is refused on the kiosk page."""
    page = watched.page
    open_kiosk(page, hub)
    page.evaluate(
        """() => {
          const box = document.createElement("div");
          box.innerHTML = '<p id="injected" style="color: rgb(255, 0, 0)">x</p>';
          document.body.appendChild(box);
          const script = document.createElement("script");
          script.textContent = "window.__ran = true";
          document.body.appendChild(script);
        }"""
    )
    page.wait_for_timeout(200)
    assert page.evaluate("window.__ran === undefined")
    assert page.eval_on_selector("#injected", "e => getComputedStyle(e).color") != "rgb(255, 0, 0)"
    found = " ".join(watched.violations())
    assert "style-src" in found
    assert "script-src" in found


@pytest.mark.parametrize("path", ["/kiosk?station=front-door", "/login"])
def test_no_page_can_frame_the_kiosk_or_the_dashboard(hub: Hub, watched: Watched, path: str) -> None:
    page = watched.page
    page.set_content(f'<iframe id="f" src="{hub.url}{path}" width="600" height="400"></iframe>')
    page.wait_for_timeout(1000)
    frame = page.frame_locator("#f")
    assert frame.locator("#screen-pad, form").count() == 0
    assert any(re.search(r"frame-ancestors|X-Frame-Options", text) for text in watched.console), watched.console


MARKUP_NAME = '<img src="/static/x.png" onerror="window.__xss = 1">Mia'


def test_a_roster_name_with_markup_stays_text_at_the_door_and_on_the_dashboard(hub: Hub, watched: Watched) -> None:
    """A name is whatever the back office typed: it is shown as text (escaped by Jinja2, set with
    textContent by the scripts), never parsed as markup, and nothing in it runs."""
    family = hub.people["family"]
    child_id = family["children"][0]["id"]
    page_data = copy.deepcopy(hub.export)
    for household in page_data["families"]:
        for child in household["children"]:
            if child["id"] == child_id:
                child["first_name"] = MARKUP_NAME
    report = hub.services.roster_sync.apply_export([page_data], SyncTrigger.FILE)
    assert report.outcome is SyncOutcome.OK, report.error

    page = watched.page
    open_kiosk(page, hub)
    tap_pin(page, family["pin"])
    card = page.locator(f'.child[data-child-id="{child_id}"]')
    expect()(card).to_contain_text(MARKUP_NAME)
    page.click("#people-confirm")
    expect()(page.locator("#done-lines")).to_contain_text("<img checked in")  # first names only, as text
    assert page.locator("#screen-done img, .child img").count() == 0

    log_in(page, hub)
    expect()(page.locator("main")).to_contain_text(MARKUP_NAME)
    assert page.locator("main img").count() == 0
    for path in ("/dashboard/roster/children", "/dashboard/audit"):
        page.goto(hub.url + path)
        assert page.locator("main img").count() == 0, path
    assert page.evaluate("window.__xss === undefined")
    assert watched.violations() == []
