"""The rooms fragment every open dashboard refetches after a check-in: rendered once per change,
shared by all of them, and never older than the last announced event."""

from __future__ import annotations

import pytest

from edge import const
from edge.models import Action
from tests.door import PINS, STATION
from tests.kiosk_ui.dashboard_helpers import Dash, dash, login
from tests.kiosk_ui.test_dashboard_pages import checkin

__all__ = ["dash"]

ROOMS = "/dashboard/now/rooms"


def in_count(html: str) -> str:
    return html.split("</strong>", 1)[0].rsplit("<strong>", 1)[1]


def test_one_render_serves_every_dashboard_until_something_happens(dash: Dash) -> None:
    login(dash.client, "maria")
    assert in_count(dash.client.get(ROOMS).text) == "0"
    # Written without an announcement (as a roster applied by another process would be): the
    # fragment already rendered is served again, to this dashboard and any other.
    checkin(dash, "C1")
    assert in_count(dash.client.get(ROOMS).text) == "0"
    # Arrivals and scanner reports keep the live channel busy without changing the rooms.
    dash.services.events.publish("arrival", {"device_id": "d1"})
    assert in_count(dash.client.get(ROOMS).text) == "0"
    # A check-in announced makes it fresh.
    dash.services.events.publish("attendance", {"child_id": "C1", "action": Action.CHECK_IN.value})
    assert in_count(dash.client.get(ROOMS).text) == "1"


def test_a_check_in_at_the_door_shows_at_once(dash: Dash) -> None:
    login(dash.client, "maria")
    assert in_count(dash.client.get(ROOMS).text) == "0"
    found = dash.services.checkin.identify(STATION, "pin", PINS["P1"])
    dash.services.checkin.act(found.ticket, ["C1"], "check_in")  # type: ignore[union-attr]
    assert in_count(dash.client.get(ROOMS).text) == "1"


def test_nothing_is_served_older_than_its_age_limit(dash: Dash, monkeypatch: pytest.MonkeyPatch) -> None:
    login(dash.client, "maria")
    assert in_count(dash.client.get(ROOMS).text) == "0"
    checkin(dash, "C1")
    monkeypatch.setattr(const, "ROOMS_FRAGMENT_MAX_AGE_S", 0.0)
    assert in_count(dash.client.get(ROOMS).text) == "1"


def test_the_fragment_needs_a_login(dash: Dash) -> None:
    dash.client.cookies.clear()
    answer = dash.client.get(ROOMS, follow_redirects=False)
    assert answer.status_code in (303, 401)
