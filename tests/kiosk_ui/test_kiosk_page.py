"""The kiosk page and the live channel over real HTTP, without a browser."""

from __future__ import annotations

import json
import re
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from edge.config import load_config
from edge.policy import RefusalReason
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services
from kiosk_ui.i18n import LANGUAGES, STRINGS, pick_language
from kiosk_ui.routes import live
from tests.kiosk_ui.conftest import STATION, Hub

# -- the page -----------------------------------------------------------------------------------


def test_page_renders_a_shell_with_its_settings_on_body(hub: Hub) -> None:
    r = httpx.get(hub.kiosk())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    body = re.search(r"<body ([^>]*)>", html)
    assert body is not None
    assert 'data-station="front-door"' in body.group(1)
    assert 'data-time-zone="America/Los_Angeles"' in body.group(1)
    assert 'data-lang="en"' in body.group(1)
    assert hub.export["school"]["name"].replace("'", "&#39;") in html
    assert "Enter your PIN" in html
    # Ten digit keys, Clear and Delete: the pad works before any script has run a line.
    assert len(re.findall(r'data-key="\d"', html)) == 10
    assert 'data-key="clear"' in html
    assert 'data-key="back"' in html


def test_page_has_no_inline_script_or_style(hub: Hub) -> None:
    """So a Content-Security-Policy without 'unsafe-inline' holds; the route sends one."""
    r = httpx.get(hub.kiosk())
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["cache-control"] == "no-store"
    html = r.text
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert 'src="/static/' in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert "http://" not in html.replace(hub.url, "")
    assert "https://" not in html


def test_page_carries_both_languages_as_data(hub: Hub) -> None:
    html = httpx.get(hub.kiosk()).text
    block = re.search(r'<script type="application/json" id="kiosk-strings">(.*?)</script>', html, re.S)
    assert block is not None
    assert json.loads(block.group(1)) == STRINGS


@pytest.mark.parametrize(
    ("query", "lang", "forced", "title"),
    [
        ({}, "en", "false", "Enter your PIN"),
        ({"lang": "es"}, "es", "true", "Ingrese su PIN"),
        ({"lang": "ES"}, "es", "true", "Ingrese su PIN"),
        ({"lang": "fr"}, "en", "false", "Enter your PIN"),
    ],
)
def test_page_language(hub: Hub, query: dict[str, str], lang: str, forced: str, title: str) -> None:
    html = httpx.get(hub.kiosk(**query)).text
    assert f'<html lang="{lang}">' in html
    assert f'data-lang-forced="{forced}"' in html
    assert f'<h1 id="pad-title" data-t="pad.title">{title}</h1>' in html


@pytest.mark.parametrize("query", ["", "?station=", "?station=front%20door", "?station=" + "x" * 65])
def test_page_without_a_valid_station_says_how_to_set_it_up(hub: Hub, query: str) -> None:
    r = httpx.get(f"{hub.url}/kiosk{query}")
    assert r.status_code in (400, 422)
    if r.status_code == 400:
        assert "This screen is not set up yet" in r.text
        assert "/kiosk?station=front-door" in r.text


def test_static_assets_are_served_locally(hub: Hub) -> None:
    js = httpx.get(f"{hub.url}/static/kiosk.js")
    css = httpx.get(f"{hub.url}/static/kiosk.css")
    assert js.status_code == css.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert css.headers["content-type"].startswith("text/css")
    # Nothing from the internet: the appliance may have none.
    for text in (js.text, css.text):
        assert "http://" not in text
        assert "https://" not in text
        assert "@import" not in text


# -- the words ----------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    assert set(STRINGS) == set(LANGUAGES)
    english = STRINGS["en"]
    for lang, table in STRINGS.items():
        assert set(table) == set(english), lang
        for key, text in table.items():
            assert text.strip(), (lang, key)
            assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(english[key])), (lang, key)
            # Only {name}-style fields: kiosk.js fills nothing else.
            fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
            assert all(f.isidentifier() for f in fields), (lang, key)


@pytest.mark.parametrize("reason", list(RefusalReason))
def test_every_refusal_code_has_words_in_both_languages(reason: RefusalReason) -> None:
    for lang in LANGUAGES:
        assert STRINGS[lang].get(f"reason.{reason.value}"), (lang, reason)


@pytest.mark.parametrize(
    ("given", "expected"), [(None, "en"), ("", "en"), ("es", "es"), ("es-MX", "es"), ("EN", "en"), ("de", "en")]
)
def test_pick_language(given: str | None, expected: str) -> None:
    assert pick_language(given) == expected


# -- the live channel ---------------------------------------------------------------------------


class SSEReader:
    """Reads a text/event-stream response one message (or comment) at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next(self) -> dict[str, Any]:
        """The next message's fields (``id``, ``event``, ``data``, ``retry``) and its ``comment`` lines."""
        message: dict[str, Any] = {}
        comments: list[str] = []
        for line in self.lines:
            if line == "":
                if comments:
                    message["comment"] = " ".join(comments)
                if message:
                    if "data" in message:
                        message["data"] = json.loads(message["data"])
                    return message
                continue
            if line.startswith(":"):
                comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            message[name] = value.removeprefix(" ")
        raise EOFError("the stream ended")

    def next_event(self) -> dict[str, Any]:
        while "event" not in (message := self.next()):
            pass
        return message


@pytest.fixture
def sse(hub: Hub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, timeout=httpx.Timeout(5.0)) as client:
        yield client


def open_stream(reader: SSEReader) -> None:
    """Past the opening comment: from here on the stream is subscribed."""
    assert reader.next() == {"retry": str(live.RETRY_MS), "comment": "connected"}


def test_live_sends_this_stations_events_and_those_for_every_screen(hub: Hub, sse: httpx.Client) -> None:
    with sse.stream("GET", "/api/v1/live", params={"station": STATION}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-store"
        reader = SSEReader(r)
        open_stream(reader)
        hub.services.events.publish("attendance", {"name": "Someone Else"}, station_id="back-door")
        mine = hub.services.events.publish(
            "attendance", {"event_id": "e1", "name": "Mai Nguyen", "action": "check_in"}, station_id=STATION
        )
        everyone = hub.services.events.publish("outbox", {"cloud": "offline"})
        first, second = reader.next_event(), reader.next_event()
    assert first["event"] == "attendance"
    assert first["id"].endswith(f"-{mine.id}")
    assert first["data"]["data"] == {"event_id": "e1", "name": "Mai Nguyen", "action": "check_in"}
    assert first["data"]["station_id"] == STATION
    assert first["data"]["kind"] == "attendance"
    assert second["event"] == "outbox"
    assert second["id"].endswith(f"-{everyone.id}")
    assert second["data"]["station_id"] is None


def test_live_sends_only_the_kinds_asked_for(hub: Hub, sse: httpx.Client) -> None:
    with sse.stream("GET", "/api/v1/live", params={"station": STATION, "kinds": "attendance,outbox"}) as r:
        reader = SSEReader(r)
        open_stream(reader)
        hub.services.events.publish("alert", {"message": "restricted person at the door"}, station_id=STATION)
        wanted = hub.services.events.publish("attendance", {"name": "Mai Nguyen"}, station_id=STATION)
        message = reader.next_event()
    assert message["event"] == "attendance"
    assert message["data"]["id"] == wanted.id


def test_live_replays_what_was_missed_after_last_event_id(hub: Hub, sse: httpx.Client) -> None:
    bus = hub.services.events
    with sse.stream("GET", "/api/v1/live", params={"station": STATION}) as r:
        reader = SSEReader(r)
        open_stream(reader)
        bus.publish("attendance", {"n": 1}, station_id=STATION)
        seen = reader.next_event()
    bus.publish("attendance", {"n": 2}, station_id=STATION)
    bus.publish("attendance", {"n": 3}, station_id="back-door")
    bus.publish("attendance", {"n": 4}, station_id=STATION)
    headers = {"Last-Event-ID": seen["id"]}
    with sse.stream("GET", "/api/v1/live", params={"station": STATION}, headers=headers) as r:
        reader = SSEReader(r)
        open_stream(reader)
        replayed = [reader.next_event()["data"]["data"]["n"] for _ in range(2)]
        bus.publish("attendance", {"n": 5}, station_id=STATION)
        live_one = reader.next_event()["data"]["data"]["n"]
    assert replayed == [2, 4]
    assert live_one == 5


def test_live_after_a_restart_replays_the_new_process_buffer(hub: Hub, sse: httpx.Client) -> None:
    """An id from another epoch (the hub restarted) counts another bus: replay all of this one."""
    bus = hub.services.events
    bus.publish("attendance", {"n": 1}, station_id=STATION)
    with sse.stream(
        "GET", "/api/v1/live", params={"station": STATION}, headers={"Last-Event-ID": "0ldep0ch-9999"}
    ) as r:
        reader = SSEReader(r)
        open_stream(reader)
        assert reader.next_event()["data"]["data"] == {"n": 1}


@pytest.mark.parametrize("header", ["", "garbage", "12", "-"])
def test_live_ignores_a_last_event_id_it_never_sent(hub: Hub, sse: httpx.Client, header: str) -> None:
    hub.services.events.publish("attendance", {"n": 1}, station_id=STATION)
    with sse.stream("GET", "/api/v1/live", params={"station": STATION}, headers={"Last-Event-ID": header}) as r:
        reader = SSEReader(r)
        open_stream(reader)
        hub.services.events.publish("attendance", {"n": 2}, station_id=STATION)
        assert reader.next_event()["data"]["data"] == {"n": 2}


def test_live_keeps_the_connection_alive_with_comments(
    hub: Hub, sse: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_S", 0.1)
    with sse.stream("GET", "/api/v1/live", params={"station": STATION}) as r:
        reader = SSEReader(r)
        open_stream(reader)
        assert reader.next() == {"comment": "keep-alive"}


def test_live_unsubscribes_when_the_screen_goes_away(hub: Hub, sse: httpx.Client) -> None:
    bus = hub.services.events
    before = bus.listener_count
    with sse.stream("GET", "/api/v1/live", params={"station": STATION}) as r:
        reader = SSEReader(r)  # held: a collected line iterator would close the stream early
        open_stream(reader)
        assert bus.listener_count == before + 1
    deadline = time.monotonic() + 5
    while bus.listener_count > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert bus.listener_count == before


def read_until_the_end(reader: SSEReader) -> Iterator[int]:
    while True:
        try:
            yield reader.next_event()["data"]["data"]["n"]
        except EOFError:
            return


def test_live_ends_a_stream_that_falls_behind(hub: Hub, sse: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """A screen that stops reading must not make the hub hoard events: the stream closes and
    the browser's reconnect (with Last-Event-ID) catches up from the ring buffer."""
    monkeypatch.setattr(live, "QUEUE_LIMIT", 3)
    bus = hub.services.events
    with sse.stream("GET", "/api/v1/live", params={"station": STATION}) as r:
        reader = SSEReader(r)
        open_stream(reader)
        # Published from this thread faster than the loop hands them over: the queue fills.
        for n in range(200):
            bus.publish("attendance", {"n": n}, station_id=STATION)
        received = list(read_until_the_end(reader))
    assert received == list(range(len(received)))
    assert len(received) < 200


# -- who may listen -----------------------------------------------------------------------------

LAN_SCREEN = ("192.0.2.10", 50_000)  # a browser at another door, not the hub itself
BACK_DOOR_TOKEN = "back-door-token-5d1f"


@pytest.fixture
def lan_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    config = load_config(
        None, data_dir=tmp_path / "lan", center_id="demo-center", station_tokens={"back-door": BACK_DOOR_TOKEN}
    )
    services = build_services(config)
    try:
        with TestClient(create_app(services), client=LAN_SCREEN) as client:
            yield client
    finally:
        services.close()


def test_live_from_the_lan_needs_a_station_token(lan_client: TestClient) -> None:
    r = lan_client.get("/api/v1/live", params={"station": "back-door"})
    assert r.status_code == 401


def test_live_from_the_lan_hears_only_its_own_station(lan_client: TestClient) -> None:
    r = lan_client.get(
        "/api/v1/live", params={"station": STATION}, headers={"Authorization": f"Bearer {BACK_DOOR_TOKEN}"}
    )
    assert r.status_code == 403


def test_the_page_itself_is_public(lan_client: TestClient) -> None:
    """It holds nothing personal; what a PIN reveals goes through the API's station check."""
    assert lan_client.get("/kiosk", params={"station": "back-door"}).status_code == 200
