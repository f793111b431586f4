"""The station API in-process (FastAPI's TestClient) on a real SQLite file: the contract's
shapes and codes, station auth, pairing, body limits, and the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edge.policy import RefusalReason
from kiosk_ui import presenter
from kiosk_ui.app import create_app
from kiosk_ui.deps import is_loopback
from kiosk_ui.services import Services
from tests.conftest import FakeClock
from tests.door import PINS, STATION, door_export
from tests.kiosk_ui.fake_clock_hub import hub_services

BACK = "back-door"
BACK_TOKEN = "tok-back-door-0123456789"
LAN = ("192.168.1.20", 40000)


@pytest.fixture
def services(tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    with hub_services(tmp_path / "data", clock, door_export(), station_tokens={BACK: BACK_TOKEN}) as built:
        yield built


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as test_client:
        yield test_client


@pytest.fixture
def remote(services: Services) -> Iterator[TestClient]:
    """A station elsewhere on the LAN (not loopback)."""
    with TestClient(create_app(services), client=LAN, follow_redirects=False) as test_client:
        yield test_client


def identify(client: TestClient, secret: str, station: str = STATION, **kw: Any) -> Any:
    return client.post("/api/v1/identify", json={"station_id": station, "method": "pin", "secret": secret}, **kw)


def ticket_for(client: TestClient, who: str, station: str = STATION, **kw: Any) -> str:
    answer = identify(client, PINS[who], station, **kw)
    assert answer.status_code == 200, answer.text
    ticket: str = answer.json()["ticket"]
    return ticket


def act(client: TestClient, ticket: str, children: list[str], action: str, **kw: Any) -> Any:
    return client.post("/api/v1/attendance", json={"ticket": ticket, "children": children, "action": action}, **kw)


# -- identify, then act --------------------------------------------------------------------------


def test_identify_answers_the_contracts_shape(client: TestClient) -> None:
    answer = identify(client, PINS["P1"])
    assert answer.status_code == 200
    body = answer.json()
    assert list(body) == ["ticket", "person", "children"]
    assert body["person"] == {"id": "P1", "name": "An Nguyen", "role": "payer"}
    assert body["children"] == [
        {"id": "C3", "name": "Ava Smith", "room": "Toddlers", "present": False, "allowed": True, "reason": None},
        {"id": "C1", "name": "Mai Nguyen", "room": "Infants", "present": False, "allowed": True, "reason": None},
    ]


def test_the_answers_are_exactly_their_published_models(client: TestClient) -> None:
    """The door's answers bypass FastAPI's response-model pass (speed): each must still be
    exactly what its model publishes, no field more, none less, every value of its type."""
    from kiosk_ui.schemas import AttendanceOut, PersonIdentified, StaffIdentified

    for who, model in (("P1", PersonIdentified), ("E1", StaffIdentified)):
        body = identify(client, PINS[who]).json()
        assert model.model_validate(body).model_dump(mode="json") == body
        action = {"children": ["C1"], "action": "check_in"} if who == "P1" else {"action": "clock_in"}
        done = client.post("/api/v1/attendance", json={"ticket": body["ticket"], **action}).json()
        assert AttendanceOut.model_validate(done).model_dump(mode="json", exclude_none=True) == done


def test_a_teacher_gets_the_clock_and_no_children(client: TestClient) -> None:
    body = identify(client, PINS["E1"]).json()
    assert body["person"] == {"id": "E1", "name": "Lee Park", "role": "staff"}
    assert (body["children"], body["clock"]) == ([], {"present": False, "since": None})
    answer = client.post("/api/v1/attendance", json={"ticket": body["ticket"], "action": "clock_in"})
    assert answer.status_code == 200
    (event,) = answer.json()["events"]
    assert set(event) == {"event_id", "staff_id", "name", "action", "occurred_at"}
    assert (event["staff_id"], event["action"]) == ("E1", "clock_in")
    again = identify(client, PINS["E1"]).json()["clock"]
    assert again == {"present": True, "since": "2026-11-29T18:00:00.000Z"}


def test_check_in_and_the_double_tap(client: TestClient) -> None:
    ticket = ticket_for(client, "P1")
    first = act(client, ticket, ["C1"], "check_in")
    assert first.status_code == 200
    (event,) = first.json()["events"]
    assert set(event) == {"event_id", "child_id", "name", "action", "occurred_at"}
    assert (event["child_id"], event["name"], event["action"], event["occurred_at"]) == (
        "C1",
        "Mai Nguyen",
        "check_in",
        "2026-11-29T18:00:00.000Z",
    )
    again = act(client, ticket, ["C1"], "check_in")
    assert again.json() == first.json()
    assert identify(client, PINS["P2"]).json()["children"][0]["present"] is True


# -- refusals ------------------------------------------------------------------------------------


def test_a_wrong_pin_is_403_with_a_sentence(client: TestClient) -> None:
    answer = identify(client, "0000")
    assert answer.status_code == 403
    assert answer.json() == {"reason": "unknown_pin", "message": "That PIN was not recognized. Please try again."}


def test_the_sentence_speaks_spanish_when_asked(client: TestClient) -> None:
    answer = identify(client, "0000", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})
    assert answer.json()["message"] == presenter.message(RefusalReason.UNKNOWN_PIN, "es")


def test_restricted_is_403_and_names_the_child(client: TestClient) -> None:
    answer = act(client, ticket_for(client, "P9"), ["C1"], "check_out")
    assert answer.status_code == 403
    assert answer.json() == {"reason": "restricted", "message": "Please see a staff member about Mai Nguyen."}


@pytest.mark.parametrize(
    ("who", "children", "action", "reason"),
    [
        ("P1", ["C1"], "check_out", "already_out"),
        ("P1", ["C2"], "check_in", "not_authorized"),
        ("P1", [], "clock_in", "not_authorized"),
        ("E1", ["C1"], "check_in", "not_authorized"),
    ],
)
def test_act_refusals(client: TestClient, who: str, children: list[str], action: str, reason: str) -> None:
    answer = act(client, ticket_for(client, who), children, action)
    assert (answer.status_code, answer.json()["reason"]) == (403, reason)
    assert answer.json()["message"]


def test_a_ticket_is_single_use_and_expires(client: TestClient, clock: FakeClock) -> None:
    ticket = ticket_for(client, "P1")
    assert act(client, ticket, ["C1"], "check_in").status_code == 200
    assert act(client, ticket, ["C3"], "check_in").json()["reason"] == "bad_ticket"
    later = ticket_for(client, "P1")
    clock.advance(seconds=121)
    answer = act(client, later, ["C3"], "check_in")
    assert answer.json() == {"reason": "bad_ticket", "message": "That took too long. Please enter your PIN again."}


def test_a_locked_pad_is_423_with_retry_after(client: TestClient, clock: FakeClock) -> None:
    answers = [identify(client, "9999") for _ in range(5)]
    assert [a.status_code for a in answers] == [403] * 4 + [423]
    assert answers[-1].headers["retry-after"] == "30"
    assert answers[-1].json() == {
        "reason": "locked",
        "message": "Too many wrong PINs. Please wait 30 seconds and try again.",
    }
    clock.advance(seconds=25)
    locked = identify(client, PINS["P1"])
    assert (locked.status_code, locked.headers["retry-after"]) == (423, "5")


# -- malformed requests --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"station_id": STATION, "method": "pin", "secret": "7305", "extra": 1},
        {"station_id": STATION, "method": "geofence", "secret": "7305"},
        {"station_id": "front door", "method": "pin", "secret": "7305"},
        {"station_id": "", "method": "pin", "secret": "7305"},
        {"method": "pin", "secret": "7305"},
        {"station_id": STATION, "method": "pin", "secret": 7305},
        [],
    ],
)
def test_malformed_identify_is_422(client: TestClient, body: Any) -> None:
    assert client.post("/api/v1/identify", json=body).status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"ticket": "t", "children": ["C1"], "action": "check_in", "station_id": STATION},
        {"ticket": "t", "children": ["C1"], "action": "dance"},
        {"ticket": "", "children": ["C1"], "action": "check_in"},
        {"ticket": "t", "children": "C1", "action": "check_in"},
        {"ticket": "t", "children": [f"C{i}" for i in range(31)], "action": "check_in"},
    ],
)
def test_malformed_attendance_is_422(client: TestClient, body: Any) -> None:
    assert client.post("/api/v1/attendance", json=body).status_code == 422


@pytest.mark.parametrize("child", ["\x00", "C1\x00", "C\n1"])
def test_a_child_id_with_a_control_character_is_422_on_every_database(client: TestClient, child: str) -> None:
    """With a good ticket: SQLite would look the id up and find nothing, PostgreSQL cannot take
    a NUL in a text at all (a 500 before the schema refused control characters)."""
    answer = client.post(
        "/api/v1/attendance", json={"ticket": ticket_for(client, "P1"), "children": [child], "action": "check_in"}
    )
    assert answer.status_code == 422, answer.text


def test_not_json_is_422(client: TestClient) -> None:
    answer = client.post("/api/v1/identify", content=b"station_id=front-door", headers={"Content-Type": "text/plain"})
    assert answer.status_code == 422


def test_a_body_over_16_kb_is_413(client: TestClient) -> None:
    big = {"station_id": STATION, "method": "qr", "secret": "x" * 17_000}
    assert client.post("/api/v1/identify", json=big).status_code == 413


def test_a_chunked_body_over_16_kb_is_413_too(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"station_id": "front-door", "method": "qr", "secret": "'
        for _ in range(20):
            yield b"x" * 1024
        yield b'"}'

    answer = client.post("/api/v1/identify", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413


def test_a_3_kb_scan_reaches_the_verifier(client: TestClient) -> None:
    answer = client.post("/api/v1/identify", json={"station_id": STATION, "method": "qr", "secret": "x" * 3000})
    assert (answer.status_code, answer.json()["reason"]) == (403, "not_a_token")


# -- who may call --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("testclient", True),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("::ffff:192.168.1.20", False),
        ("fe80::1", False),
        ("", False),
        ("not-an-address", False),
    ],
)
def test_loopback(host: str, local: bool) -> None:
    assert is_loopback(host) is local


def test_a_remote_station_needs_its_token(remote: TestClient) -> None:
    assert identify(remote, PINS["P1"], BACK).status_code == 401
    wrong = identify(remote, PINS["P1"], BACK, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert remote.get("/api/v1/status").status_code == 401
    auth = {"Authorization": f"Bearer {BACK_TOKEN}"}
    assert identify(remote, PINS["P1"], BACK, headers=auth).status_code == 200
    assert remote.get("/api/v1/status", headers=auth).status_code == 200


def test_a_station_token_speaks_only_for_its_station(remote: TestClient, client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {BACK_TOKEN}"}
    assert identify(remote, PINS["P1"], STATION, headers=auth).status_code == 401
    # Another door's ticket is no ticket here.
    front_ticket = ticket_for(client, "P1", STATION)
    answer = act(remote, front_ticket, ["C1"], "check_in", headers=auth)
    assert (answer.status_code, answer.json()["reason"]) == (403, "bad_ticket")
    back_ticket = ticket_for(remote, "P1", BACK, headers=auth)
    assert act(remote, back_ticket, ["C1"], "check_in", headers=auth).status_code == 200


def test_pairing_a_screen_sets_a_cookie_that_proves_the_station(remote: TestClient) -> None:
    assert remote.get("/kiosk/pair", params={"station": BACK, "token": "wrong"}).status_code == 401
    assert remote.get("/kiosk/pair", params={"station": "nowhere", "token": BACK_TOKEN}).status_code == 401
    answer = remote.get("/kiosk/pair", params={"station": BACK, "token": BACK_TOKEN})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/kiosk?station={BACK}"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("station=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert BACK_TOKEN not in cookie
    # The client keeps the cookie: from now on the screen is the back door's.
    assert identify(remote, PINS["P1"], BACK).status_code == 200
    assert identify(remote, PINS["P1"], STATION).status_code == 401
    remote.cookies.clear()
    remote.cookies.set("station", "back-door.forged")
    assert identify(remote, PINS["P1"], BACK).status_code == 401


def test_the_hub_itself_speaks_for_any_of_its_screens(client: TestClient) -> None:
    assert identify(client, PINS["P1"], "hub-screen-2").status_code == 200


# -- status and the document ----------------------------------------------------------------------


def test_status(client: TestClient, services: Services) -> None:
    assert client.get("/api/v1/status").json() == {"cloud": "unknown", "clock_synced": services.clock_check.synced()}


def test_the_openapi_document_describes_the_api(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    identify_op = doc["paths"]["/api/v1/identify"]["post"]
    assert set(identify_op["responses"]) >= {"200", "401", "403", "413", "422", "423"}
    assert "Retry-After" in identify_op["responses"]["423"]["headers"]
    ok = identify_op["responses"]["200"]["content"]["application/json"]["schema"]
    refs = json.dumps(ok)
    assert "PersonIdentified" in refs
    assert "StaffIdentified" in refs
    refusal = doc["components"]["schemas"]["RefusalOut"]
    reason_schema = json.dumps(refusal["properties"]["reason"])
    assert "RefusalReason" in reason_schema
    assert set(doc["components"]["schemas"]["RefusalReason"]["enum"]) == {r.value for r in RefusalReason}
    attendance = doc["paths"]["/api/v1/attendance"]["post"]
    assert "ChildEventOut" in json.dumps(doc["components"]["schemas"]["AttendanceOut"])
    assert set(attendance["responses"]) >= {"200", "403", "413", "422"}
    assert doc["paths"]["/api/v1/status"]["get"]["responses"]["200"]


# -- the presenter ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", list(RefusalReason))
@pytest.mark.parametrize("lang", presenter.LANGS)
def test_every_refusal_has_a_sentence_in_each_language(reason: RefusalReason, lang: str) -> None:
    sentence = presenter.message(reason, lang)
    assert sentence
    assert sentence != presenter.message("no-such-code", lang)
    assert "{" not in sentence
    named = presenter.message(reason, lang, child="Mai", seconds=30)
    assert "{" not in named


def test_the_sentences_differ_between_languages() -> None:
    for reason in RefusalReason:
        assert presenter.message(reason, "en") != presenter.message(reason, "es"), reason


def test_an_unknown_language_is_english() -> None:
    assert presenter.message("restricted", "fr") == presenter.message("restricted", "en")


# -- where a door call runs ------------------------------------------------------------------------


def test_door_calls_run_on_the_loop_unless_something_could_make_them_wait(services: Services) -> None:
    import asyncio
    import threading

    from kiosk_ui.routes.api import DoorRunner

    runner = DoorRunner(services.store, services.checkin.writer)
    where: list[str] = []

    def call(tag: str) -> str:
        where.append(threading.current_thread().name)
        return tag

    async def scenario() -> None:
        loop_thread = threading.current_thread().name
        assert await runner.run(call, "free") == "free"
        assert where[-1] == loop_thread
        # A roster sync (or the outbox sender) holds the single writer: the call must not stall
        # the event loop waiting for it.
        held, release = threading.Event(), threading.Event()

        def writer() -> None:
            with services.store.transaction():
                held.set()
                release.wait(5)

        thread = threading.Thread(target=writer)
        thread.start()
        held.wait(5)
        pending = asyncio.ensure_future(runner.run(call, "busy"))
        await asyncio.sleep(0.05)
        assert services.store.writer_busy
        release.set()
        assert await pending == "busy"
        thread.join(5)
        assert where[-1] != loop_thread
        assert not services.store.writer_busy
        # The door's own writer holds the lock for one batch only: worth waiting for inline.
        held.clear()
        release.clear()
        thread = threading.Thread(target=writer)
        thread.start()
        held.wait(5)
        services.checkin.writer.committing = True
        try:
            assert await runner.run(call, "batch") == "batch"
            assert where[-1] == loop_thread
        finally:
            services.checkin.writer.committing = False
            release.set()
            thread.join(5)

    asyncio.run(scenario())
