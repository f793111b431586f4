"""The live channel's station rule: who may see which event."""

from __future__ import annotations

import pytest

from edge.events import EventBus


@pytest.mark.parametrize(
    ("published_for", "private", "subscriber", "sees"),
    [
        (None, False, None, True),  # for everyone, dashboard
        (None, False, "door", True),  # for everyone, a door
        ("door", False, None, True),  # a door's event on the dashboard
        ("door", False, "door", True),
        ("door", False, "back", False),  # another door's
        ("door", True, "door", True),  # private: that door only...
        ("door", True, "back", False),
        ("door", True, None, False),  # ...not even the dashboard (it carries a ticket)
    ],
)
def test_who_sees_an_event(published_for: str | None, private: bool, subscriber: str | None, sees: bool) -> None:
    event = EventBus().publish("identified", {}, station_id=published_for, private=private)
    assert event.for_station(subscriber) is sees
