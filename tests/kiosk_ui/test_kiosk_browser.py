"""The kiosk page in Debian's chromium at the Pi panel's 800×480: taps on the on-screen keys,
what a parent sees, and screenshots of each screen under test-output/screenshots/."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import select

from edge.attendance import utc_iso_ms
from edge.models import AttendanceEvent
from tests.kiosk_ui.conftest import STATION, Hub, screenshot

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

pytestmark = pytest.mark.browser

CLOCK_TIME = r"\d{1,2}:\d{2}\s?(AM|PM)"
CLOCK_TIME_ES = r"\d{1,2}:\d{2}\s?(a|p)\.\s?m\."
MIN_KEY_PX = 96  # 15 mm on the Pi's 7" panel is about 80 px; 96 leaves room for a thumb


def expect() -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def open_kiosk(page: Page, hub: Hub, **query: str) -> None:
    page.goto(hub.kiosk(**query))
    expect()(page.locator("#screen-pad")).to_be_visible()


def tap_pin(page: Page, pin: str) -> None:
    """Tap the digits on the on-screen keys; OK unless six digits sent it already."""
    for digit in pin:
        page.click(f'#keys [data-key="{digit}"]')
    if len(pin) < 6:
        page.click("#pin-ok")


def first(name: str) -> str:
    return name.split(maxsplit=1)[0]


def wait_for_listener(hub: Hub, count: int = 1) -> None:
    """Until the page's EventSource is subscribed on the hub's bus."""
    deadline = time.monotonic() + 10
    while hub.services.events.listener_count < count:
        assert time.monotonic() < deadline, "the page never opened its live channel"
        time.sleep(0.02)


def test_the_pad_is_big_and_masks_the_pin(hub: Hub, page: Page) -> None:
    open_kiosk(page, hub)
    screenshot(page, "01-pad")
    keys = page.locator("#keys .key")
    assert keys.count() == 12
    for index in range(keys.count()):
        box = keys.nth(index).bounding_box()
        assert box is not None
        assert box["height"] >= MIN_KEY_PX
        assert box["width"] >= MIN_KEY_PX
        assert box["y"] + box["height"] <= 480, "a key is below the screen's edge"
    ok = page.locator("#pin-ok").bounding_box()
    assert ok is not None
    assert ok["height"] >= MIN_KEY_PX
    assert page.locator("#pin-ok").is_disabled()
    for digit in "730":
        page.click(f'#keys [data-key="{digit}"]')
    assert page.locator("#pin-dots .dot").count() == 3
    # Dots only: the digits are nowhere on the page.
    assert not re.search(r"\d", page.locator("#pin-dots").inner_text())
    page.click('#keys [data-key="back"]')
    assert page.locator("#pin-dots .dot").count() == 2
    page.click('#keys [data-key="5"]')
    page.click('#keys [data-key="1"]')
    expect()(page.locator("#pin-ok")).to_be_enabled()
    screenshot(page, "02-pad-typing")
    page.click('#keys [data-key="clear"]')
    assert page.locator("#pin-dots .dot").count() == 0
    expect()(page.locator("#pin-ok")).to_be_disabled()


def test_a_parent_checks_a_child_in_and_later_out(hub: Hub, page: Page) -> None:
    payer = hub.people["payer"]
    child = payer["children"][0]
    open_kiosk(page, hub)
    wait_for_listener(hub)
    tap_pin(page, payer["pin"])

    expect()(page.locator("#screen-people")).to_be_visible()
    expect()(page.locator("#people-hello")).to_have_text(f"Hi, {payer['name']}")
    card = page.locator(f'.child[data-child-id="{child["id"]}"]')
    expect()(card).to_have_attribute("aria-pressed", "true")
    expect()(card.locator(".child-state")).to_have_text("Not here")
    expect()(card.locator(".avatar")).to_have_text(re.compile(r"^[A-ZÀ-Ý]{2}$"))
    expect()(page.locator("#people-confirm")).to_have_text(f"Check in {first(child['name'])}")
    screenshot(page, "03-children")

    page.click("#people-confirm")
    expect()(page.locator("#screen-done")).to_be_visible()
    expect()(page.locator("#done-lines")).to_have_text(
        re.compile(rf"^{re.escape(first(child['name']))} checked in at {CLOCK_TIME}$")
    )
    screenshot(page, "04-done")
    # Its own check-in comes back on the live channel too: no pop-up for it.
    page.wait_for_timeout(300)
    expect()(page.locator("#popup")).to_be_hidden()
    # Back to the pad by itself after a few seconds.
    expect()(page.locator("#screen-pad")).to_be_visible(timeout=8000)

    tap_pin(page, payer["pin"])
    expect()(card.locator(".child-state")).to_have_text("Here now")
    expect()(page.locator("#people-confirm")).to_have_text(f"Check out {first(child['name'])}")
    page.click("#people-confirm")
    expect()(page.locator("#done-lines")).to_have_text(re.compile(rf"checked out at {CLOCK_TIME}$"))
    page.click("#screen-done .back")
    expect()(page.locator("#screen-pad")).to_be_visible()


def test_two_children_and_one_action_per_confirmation(hub: Hub, page: Page) -> None:
    family = hub.people["family"]
    one, two = family["children"][:2]
    open_kiosk(page, hub)
    tap_pin(page, family["pin"])
    expect()(page.locator("#people-confirm")).to_have_text(f"Check in {first(one['name'])} and {first(two['name'])}")
    screenshot(page, "05-two-children")
    # Tap the second one off: only the first goes in.
    page.click(f'.child[data-child-id="{two["id"]}"]')
    expect()(page.locator(f'.child[data-child-id="{two["id"]}"]')).to_have_attribute("aria-pressed", "false")
    expect()(page.locator("#people-confirm")).to_have_text(f"Check in {first(one['name'])}")
    page.click("#people-confirm")
    expect()(page.locator("#done-lines li")).to_have_count(1)
    page.click("#screen-done .back")

    # Now one is in and one is out: one action per confirmation, and the screen says so.
    tap_pin(page, family["pin"])
    expect()(page.locator("#people-hint")).to_have_text("Check-ins and check-outs are done one at a time.")
    expect()(page.locator("#people-confirm")).to_have_text(f"Check out {first(one['name'])}")
    screenshot(page, "06-mixed")
    page.click(f'.child[data-child-id="{two["id"]}"]')
    expect()(page.locator(f'.child[data-child-id="{one["id"]}"]')).to_have_attribute("aria-pressed", "false")
    expect()(page.locator("#people-confirm")).to_have_text(f"Check in {first(two['name'])}")
    page.click("#people-confirm")
    expect()(page.locator("#done-lines")).to_have_text(re.compile(rf"^{re.escape(first(two['name']))} checked in"))


def test_five_wrong_pins_lock_the_pad(hub: Hub, page: Page) -> None:
    open_kiosk(page, hub)
    wrong = next(pin for pin in ("0000", "1111", "2222", "9999", "1212") if pin not in pins_of(hub.export))
    for attempt in range(1, 5):
        tap_pin(page, wrong)
        expect()(page.locator("#pad-message")).to_have_text("That PIN was not recognized. Please try again.")
        assert page.locator("#pin-dots .dot").count() == 0, attempt
    screenshot(page, "07-wrong-pin")
    tap_pin(page, wrong)
    message = page.locator("#pad-message")
    expect()(message).to_have_text(re.compile(r"^Too many wrong PINs\. Try again in \d+ s\.$"))
    screenshot(page, "08-locked")
    expect()(page.locator('#keys [data-key="5"]')).to_be_disabled()
    expect()(page.locator("#pin-ok")).to_be_disabled()
    before = int(re.findall(r"\d+", message.inner_text())[0])
    assert 20 <= before <= 30
    expect()(message).not_to_have_text(f"Too many wrong PINs. Try again in {before} s.", timeout=2500)
    # Even the right PIN is not taken while locked, and nothing is sent for it.
    page.click('#keys [data-key="1"]', force=True)
    assert page.locator("#pin-dots .dot").count() == 0


def pins_of(export: dict[str, Any]) -> set[str]:
    return {str(r.get("pin")) for r in [*export["employees"], *(p for f in export["families"] for p in f["persons"])]}


def test_a_pickup_persons_pin_works_for_their_child(hub: Hub, page: Page) -> None:
    pickup = hub.people["pickup"]
    open_kiosk(page, hub)
    tap_pin(page, pickup["pin"])
    expect()(page.locator("#people-hello")).to_have_text(f"Hi, {pickup['name']}")
    card = page.locator(f'.child[data-child-id="{pickup["child_id"]}"]')
    expect()(card.locator(".child-name")).to_have_text(pickup["child_name"])
    screenshot(page, "09-pickup")
    page.click("#people-confirm")
    expect()(page.locator("#done-lines")).to_have_text(
        re.compile(rf"^{re.escape(first(pickup['child_name']))} checked in at {CLOCK_TIME}$")
    )


def test_a_restricted_person_is_refused_even_if_the_page_is_tricked(hub: Hub, page: Page) -> None:
    """The restricted child is not offered at all; and a page made to ask for them anyway (a
    tampered or stale screen) gets the hub's refusal, shown in plain words, and staff an alert."""
    restricted = hub.people["restricted"]
    open_kiosk(page, hub)
    tap_pin(page, restricted["pin"])
    expect()(page.locator("#people-hello")).to_have_text(f"Hi, {restricted['name']}")
    expect()(page.locator("#screen-people")).not_to_contain_text(restricted["child_name"])

    def ask_for_the_restricted_child(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body.update(children=[restricted["child_id"]], action="check_in")
        route.continue_(post_data=json.dumps(body))

    page.route("**/api/v1/attendance", ask_for_the_restricted_child)
    if page.locator("#people-confirm").is_hidden():
        pytest.fail("the restricted person has no children of their own in this roster: pick another seed")
    page.click("#people-confirm")
    expect()(page.locator("#screen-refused")).to_be_visible()
    expect()(page.locator("#refused-message")).to_have_text(
        f"Please see a staff member about {restricted['child_name']}."
    )
    screenshot(page, "10-refused")
    alerts = [e for e in hub.services.events.since(0) if e.kind == "alert"]
    assert [a.data["child_id"] for a in alerts] == [restricted["child_id"]]


def test_spanish_on_one_tap_and_remembered_on_that_screen(hub: Hub, page: Page) -> None:
    payer = hub.people["payer"]
    child = payer["children"][0]
    open_kiosk(page, hub)
    page.click("#screen-pad .lang-toggle")
    expect()(page.locator("#pad-title")).to_have_text("Ingrese su PIN")
    expect()(page.locator("#screen-pad .lang-toggle")).to_have_text("English")
    assert page.evaluate("document.documentElement.lang") == "es"
    screenshot(page, "11-pad-es")

    page.reload()
    expect()(page.locator("#pad-title")).to_have_text("Ingrese su PIN")

    tap_pin(page, "0000" if "0000" not in pins_of(hub.export) else "1111")
    expect()(page.locator("#pad-message")).to_have_text("No se reconoció ese PIN. Inténtelo de nuevo.")
    tap_pin(page, payer["pin"])
    expect()(page.locator("#people-hello")).to_have_text(f"Hola, {payer['name']}")
    expect()(page.locator("#people-confirm")).to_have_text(f"Registrar entrada de {first(child['name'])}")
    screenshot(page, "12-children-es")
    page.click("#people-confirm")
    expect()(page.locator("#done-lines")).to_have_text(
        re.compile(rf"^Entrada de {re.escape(first(child['name']))} a las {CLOCK_TIME_ES}$")
    )
    expect()(page.locator("#screen-done .done-thanks")).to_have_text("¡Gracias!")
    screenshot(page, "13-done-es")

    # ?lang= wins over what the screen remembered.
    open_kiosk(page, hub, lang="en")
    expect()(page.locator("#pad-title")).to_have_text("Enter your PIN")


def test_a_teacher_clocks_in(hub: Hub, page: Page) -> None:
    teacher = hub.people["teacher"]
    open_kiosk(page, hub)
    tap_pin(page, teacher["pin"])
    expect()(page.locator("#screen-staff")).to_be_visible()
    expect()(page.locator("#staff-hello")).to_have_text(f"Hi, {teacher['name']}")
    expect()(page.locator("#staff-state")).to_have_text("Not clocked in")
    expect()(page.locator("#staff-confirm")).to_have_text("Clock in")
    screenshot(page, "14-staff")
    page.click("#staff-confirm")
    expect()(page.locator("#done-lines")).to_have_text(
        re.compile(rf"^{re.escape(first(teacher['name']))} clocked in at {CLOCK_TIME}$")
    )
    page.click("#screen-done .back")
    tap_pin(page, teacher["pin"])
    expect()(page.locator("#staff-state")).to_have_text(re.compile(rf"^Clocked in since {CLOCK_TIME}$"))
    expect()(page.locator("#staff-confirm")).to_have_text("Clock out")


def test_a_screen_left_alone_forgets_the_person(hub: Hub, page: Page) -> None:
    payer = hub.people["payer"]
    page.clock.install()
    open_kiosk(page, hub)
    tap_pin(page, payer["pin"])
    expect()(page.locator("#screen-people")).to_be_visible()
    page.clock.fast_forward("00:21")
    expect()(page.locator("#screen-pad")).to_be_visible()
    expect()(page.locator("#screen-people")).to_be_hidden()
    # Half a PIN left on the pad goes too.
    page.click('#keys [data-key="4"]')
    page.click('#keys [data-key="2"]')
    page.clock.fast_forward("00:21")
    expect()(page.locator("#pin-dots .dot")).to_have_count(0)


def live_attendance(hub: Hub, name: str, *, station: str = STATION, method: str = "qr") -> None:
    """What edge.checkin publishes for a check-in made elsewhere (a QR scan at this door)."""
    hub.services.events.publish(
        "attendance",
        {
            "event_id": f"ev-{name}",
            "child_id": "C999",
            "name": name,
            "action": "check_in",
            "occurred_at": utc_iso_ms(dt.datetime.now(dt.UTC)),
            "station_id": station,
            "method": method,
            "actor_kind": "payer",
            "actor_name": "An Nguyen",
        },
        station_id=station,
    )


def test_a_check_in_elsewhere_pops_up_and_survives_a_hub_restart(hub: Hub, page: Page) -> None:
    open_kiosk(page, hub)
    wait_for_listener(hub)
    live_attendance(hub, "Zoë Kealoha", station="back-door")
    live_attendance(hub, "Mai Nguyen")
    popup = page.locator("#popup")
    expect()(popup).to_be_visible()
    expect()(page.locator("#popup-text")).to_have_text(re.compile(rf"^Mai checked in at {CLOCK_TIME}$"))
    expect()(page.locator("#popup-sub")).to_have_text("With a QR code")
    screenshot(page, "15-live-popup")
    popup.click()
    expect()(popup).to_be_hidden()

    hub.server.stop()
    expect()(page.locator("#status-reconnecting")).to_be_visible(timeout=8000)
    screenshot(page, "16-reconnecting")
    hub.server.start()
    wait_for_listener(hub)
    expect()(page.locator("#status-reconnecting")).to_be_hidden(timeout=8000)
    live_attendance(hub, "Lan Nguyen", method="geofence")
    expect()(page.locator("#popup-text")).to_have_text(re.compile(r"^Lan checked in at "))
    expect()(page.locator("#popup-sub")).to_have_text("From the phone app")


def test_offline_badge_when_the_cloud_is_unreachable(hub: Hub, page: Page) -> None:
    open_kiosk(page, hub)
    wait_for_listener(hub)
    badge = page.locator("#status-offline")
    expect()(badge).to_be_hidden()
    hub.services.connectivity.record_failure(dt.datetime.now(dt.UTC), "connection refused")
    hub.services.events.publish("outbox", {"cloud": "offline", "error": "connection refused"})
    expect()(badge).to_be_visible()
    expect()(badge).to_have_text("Offline — check-ins are saved")
    screenshot(page, "17-offline")
    # A fresh page learns it from /api/v1/status, without waiting for the next change.
    page.reload()
    expect()(badge).to_be_visible()


def test_a_code_shown_to_the_camera_opens_the_children_on_this_doors_screen(hub: Hub, page: Page) -> None:
    payer = hub.people["payer"]
    child = payer["children"][0]
    badge = hub.services.badges.issue_badge(payer["id"])
    open_kiosk(page, hub)
    wait_for_listener(hub)
    # What the scanner process does: post the decoded text to identify for this station.
    answer = httpx.post(
        f"{hub.url}/api/v1/identify", json={"station_id": STATION, "method": "qr", "secret": badge.token}, timeout=5
    )
    assert answer.status_code == 200, answer.text
    expect()(page.locator("#screen-people")).to_be_visible()
    expect()(page.locator("#people-hello")).to_have_text(f"Hi, {payer['name']}")
    expect()(page.locator("#people-confirm")).to_have_text(f"Check in {first(child['name'])}")
    screenshot(page, "18-scanned")
    page.click("#people-confirm")
    expect()(page.locator("#done-lines")).to_have_text(re.compile(rf"checked in at {CLOCK_TIME}$"))
    with hub.services.store.read() as session:
        (event,) = session.scalars(select(AttendanceEvent))
    assert (event.subject_id, event.method.value, event.station_id) == (child["id"], "qr", STATION)


def test_another_doors_scan_never_reaches_this_screen(hub: Hub, page: Page) -> None:
    badge = hub.services.badges.issue_badge(hub.people["payer"]["id"])
    open_kiosk(page, hub)
    wait_for_listener(hub)
    answer = httpx.post(
        f"{hub.url}/api/v1/identify", json={"station_id": "back-door", "method": "qr", "secret": badge.token}, timeout=5
    )
    assert answer.status_code == 200
    page.wait_for_timeout(500)
    expect()(page.locator("#screen-pad")).to_be_visible()
