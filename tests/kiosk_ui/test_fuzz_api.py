"""Schemathesis against the app's own OpenAPI document (issue #9; docs/station-api.md, "Fuzzing").

The real app, built as the hub builds it: a migrated SQLite file, tests/door.py's roster with its
real PINs (and tests/phones.py's registered phones), a remote station's token. Every ``/api/v1``
operation of the document is fuzzed three ways, each answer checked by schemathesis: no 5xx, the
status code, the content type, the headers and the body all as the document declares them.

- generated requests, valid and invalid (schemathesis' positive and negative modes), from the hub
  itself (loopback) and from a remote station with its token;
- schemathesis' coverage cases: each field's boundaries and just past them;
- hostile bytes the generators never make: ``NaN``, ``1e400``, lone surrogates, duplicate keys,
  a byte-order mark, deep nesting, truncated JSON.

Then a state machine chains real calls: identify with a real PIN (or a signed phone request),
attendance with the ticket it answered, fuzzed bodies in between. After it, what was recorded must
be whole: each event has its outbox row, presence is each subject's last event, no child was taken
by someone who may not take them, the database's integrity check passes.

The suite's run is small and derandomized (the same cases on every machine);
``scripts/fuzz --examples N`` is the long one: ``CHECKIN_EDGE_FUZZ_EXAMPLES`` examples per
operation and mode, ``CHECKIN_EDGE_FUZZ_SEED`` for a random run, and its counts written to
``CHECKIN_EDGE_FUZZ_REPORT``.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, rule, run_state_machine_as_test
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import text

from edge.config import load_config
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services
from kiosk_ui.services import Services
from tests.dbenv import integrity_check
from tests.door import PINS, apply
from tests.fuzzing import COUNTS, EXAMPLES, fuzz_settings, seeded
from tests.phones import INSIDE, Phone, phones_export, site_geojson

# Every /api/v1 operation the document publishes; test_every_operation_is_fuzzed fails on a new
# one until it is listed here.
OPERATIONS = [
    "POST /api/v1/identify",
    "POST /api/v1/attendance",
    "GET /api/v1/status",
    "POST /api/v1/geofence/pings",
    "POST /api/v1/app/attendance",
    "GET /api/v1/arrivals",
    "GET /api/v1/live",
    "POST /api/v1/stations/{station_id}/scanner",
    "GET /api/v1/stations/{station_id}/scanner",
]
BODY_OPERATIONS = [label for label in OPERATIONS if label.startswith("POST")]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

BACK = "back-door"
BACK_TOKEN = "tok-back-door-0123456789"
LAN = ("192.168.1.20", 40000)
FUZZ_DOOR = "fuzz-door"  # the state machine's station: only real PINs, so it is never locked
CHILDREN = ["C1", "C2", "C3", "C5"]
LIVE_READ_S = 0.05  # the live channel never ends: read its first bytes, then hang up


class RemoteStation:
    """The app as a station elsewhere on the LAN reaches it (schemathesis' ASGI client calls itself
    ``testclient``, which the hub takes for loopback)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "client": LAN}
        await self.app(scope, receive, send)


@dataclass
class Hub:
    services: Services
    schemas: dict[str, Any]  # "hub" (loopback) and "remote" (a station with its token)

    def operation(self, label: str, caller: str = "hub") -> Any:
        found = self.schemas[caller].find_operation_by_label(label)
        assert found is not None, label
        return found

    def send(self, case: Case, caller: str = "hub") -> Any:
        """One request, checked by schemathesis; the response for the caller to look at."""
        headers = {"Authorization": f"Bearer {BACK_TOKEN}"} if caller == "remote" else None
        timeout = {"timeout": LIVE_READ_S} if case.operation.path == "/api/v1/live" else {}
        response = case.call(headers=headers, **timeout)
        case.validate_response(response, checks=CHECKS, headers=headers)
        COUNTS[case.operation.label] += 1
        return response


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
        data_dir = tmp_path_factory.mktemp("fuzz") / "data"
        config = load_config(None, data_dir=data_dir, center_id="demo-center", station_tokens={BACK: BACK_TOKEN})
        services = build_services(config)
    try:
        apply(services.roster_sync, copy.deepcopy(phones_export()))
        services.pings.set_fence(site_geojson())
        app = create_app(services)
        local = schemathesis.openapi.from_asgi("/openapi.json", app)
        remote = schemathesis.openapi.from_asgi("/openapi.json", app)
        remote.app = RemoteStation(app)
        yield Hub(services, {"hub": local, "remote": remote})
    finally:
        services.close()


# -- the document ---------------------------------------------------------------------------------


def test_every_operation_is_fuzzed(hub: Hub) -> None:
    paths = hub.schemas["hub"].raw_schema["paths"]
    published = [f"{method.upper()} {path}" for path, item in paths.items() for method in item]
    assert sorted(label for label in published if " /api/v1/" in label) == sorted(OPERATIONS)


def test_the_remote_caller_is_not_loopback(hub: Hub) -> None:
    """The second caller really is a remote station: without its token it is turned away."""
    status = hub.operation("GET /api/v1/status", "remote")
    assert status.Case().call().status_code == 401
    assert hub.send(status.Case(), "remote").status_code == 200


# -- every operation: generated, valid and not ----------------------------------------------------


@pytest.mark.parametrize("caller", ["hub", "remote"])
@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzz_generated_requests(hub: Hub, label: str, caller: str) -> None:
    operation = hub.operation(label, caller)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @seeded
        @fuzz_settings(EXAMPLES)
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Case) -> None:
            hub.send(case, caller)

        try:
            fuzz()
        except Unsatisfiable:
            # Nothing to make invalid (GET /api/v1/status takes no input at all).
            assert mode is GenerationMode.NEGATIVE
    assert_nothing_corrupted(hub)


@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzz_boundaries(hub: Hub, label: str) -> None:
    """Schemathesis' coverage cases: each field at its limits and just past them, each required
    field missing, each type swapped; every one of them, in the suite and in the long run."""
    operation = hub.operation(label)
    schema = hub.schemas["hub"]
    config = schema.config.generation_for(operation=operation, phase="coverage")
    modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    cases = 0
    for case in schema.iter_coverage_cases(operation, generation_modes=modes, generation_config=config):
        hub.send(case)
        cases += 1
    assert cases > 0
    assert_nothing_corrupted(hub)


# -- hostile bytes: what a JSON encoder never writes, but a socket can carry -------------------------

_ODD_SCALARS = [
    "NaN",
    "-Infinity",
    "Infinity",
    "1e400",
    "-1e400",
    "123456789012345678901234567890",
    "-0",
    "1E-400",
    '"\\ud800"',
    '"x\\udfff"',
    '"\\u0000"',
    '"\\u202e7305"',
    "null",
    "true",
    '""',
    '"' + "9" * 3000 + '"',
    "[]",
    "{}",
]
_FIELDS = [
    "station_id",
    "method",
    "secret",
    "ticket",
    "children",
    "action",
    "device_id",
    "seq",
    "lat",
    "lon",
    "accuracy_m",
    "fix_time",
    "mock_location",
    "state",
    "camera",
    "fps",
    "scans",
    "last_frame_at",
]


def _json_ish() -> st.SearchStrategy[str]:
    """JSON text as a hostile sender writes it: odd numbers, lone surrogates, duplicate keys."""
    scalars = st.sampled_from(_ODD_SCALARS) | st.from_regex(r'"[ -~]{0,12}"', fullmatch=True)
    keys = st.sampled_from(_FIELDS) | st.from_regex(r"[a-z_]{1,8}", fullmatch=True)

    def nest(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        # min_size=1: hypothesis warns when an extension can end up never drawing from ``inner``
        arrays = st.lists(inner, min_size=1, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
        pairs = st.lists(st.tuples(keys, inner), min_size=1, max_size=6)  # a list, so a key can repeat
        objects = pairs.map(lambda kv: "{" + ",".join(f'"{k}":{v}' for k, v in kv) + "}")
        return arrays | objects

    return st.recursive(scalars, nest, max_leaves=12)


def _hostile_bodies() -> st.SearchStrategy[bytes]:
    text = _json_ish()
    return st.one_of(
        text.map(str.encode),
        text.map(lambda t: b"\xef\xbb\xbf" + t.encode()),  # a byte-order mark
        text.map(lambda t: t.encode()[: max(1, len(t) // 2)]),  # cut off mid-way
        st.integers(1, 1500).map(lambda n: b"[" * n + b"]" * n),  # nested past Python's recursion limit
        st.binary(max_size=64),
    )


@pytest.mark.parametrize("label", BODY_OPERATIONS)
def test_fuzz_hostile_bytes(hub: Hub, label: str) -> None:
    operation = hub.operation(label)
    signature = base64.b64encode(bytes(64)).decode()

    @seeded
    @fuzz_settings(EXAMPLES * 4)
    @given(body=_hostile_bodies())
    def fuzz(body: bytes) -> None:
        case = operation.Case(
            body=body,
            media_type="application/json",
            path_parameters={"station_id": FUZZ_DOOR} if "{station_id}" in label else None,
            headers={"X-Signature": signature} if "/api/v1/geofence" in label or "/app/" in label else None,
        )
        response = hub.send(case)
        assert 400 <= response.status_code < 500, (body[:80], response.status_code)

    fuzz()
    assert_nothing_corrupted(hub)


@pytest.mark.parametrize(
    ("body", "media_type"),
    [
        (b"NaN", "application/json"),
        (b'{"station_id": "front-door", "method": "pin", "secret": 1e400}', "application/json"),
        (b'{"station_id": "front-door", "method": "pin", "secret": "\\ud800"}', "application/json"),
        (b'{"station_id": "front-door", "method": "pin", "secret": "7305"}', "text/plain"),
    ],
    ids=["NaN", "1e400", "lone surrogate", "text/plain"],
)
def test_a_422_says_where_and_why_but_never_echoes_the_body(hub: Hub, body: bytes, media_type: str) -> None:
    """Found by the fuzzer: FastAPI's 422 echoed each error's input, which JSON could not carry
    (NaN, infinity, a lone surrogate: 500), and which was the whole body, PIN included, for a
    body sent as text/plain."""
    case = hub.operation("POST /api/v1/identify").Case(body=body, media_type=media_type)
    response = hub.send(case)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert errors
    assert all(set(error) == {"type", "loc", "msg"} for error in errors)
    assert "7305" not in response.text


# -- stateful: identify, then act, with real tickets ------------------------------------------------


@dataclass
class Ticket:
    token: str
    person_id: str
    children: list[str]  # the ones identify listed (allowed or not)
    staff: bool
    station: str = FUZZ_DOOR


class DoorSequences(RuleBasedStateMachine):
    """Real PINs, real tickets and signed phone requests, with fuzzed bodies in between."""

    hub: Hub
    tickets = Bundle("tickets")
    acted = Bundle("acted")

    def __init__(self) -> None:
        super().__init__()
        self.identify_op = self.hub.operation("POST /api/v1/identify")
        self.attendance_op = self.hub.operation("POST /api/v1/attendance")
        now = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
        self.phones = {"P1": Phone("D-P1", now), "P9": Phone("D-P9", now)}

    def _attendance(self, caller: str) -> Any:
        return self.hub.operation("POST /api/v1/attendance", caller)

    def _send(self, case: Case, caller: str = "hub") -> Any:
        COUNTS["stateful steps"] += 1
        return self.hub.send(case, caller)

    @rule(target=tickets, who=st.sampled_from(sorted(PINS)), lang=st.sampled_from(["en", "es"]))
    def identify(self, who: str, lang: str) -> Any:
        body = {"station_id": FUZZ_DOOR, "method": "pin", "secret": PINS[who]}
        case = self.identify_op.Case(body=body, media_type="application/json", headers={"Accept-Language": lang})
        response = self._send(case)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["person"]["id"] == who
        return Ticket(answer["ticket"], who, [c["id"] for c in answer["children"]], "clock" in answer)

    @rule(target=tickets)
    def identify_remote(self) -> Any:
        body = {"station_id": BACK, "method": "pin", "secret": PINS["P1"]}
        remote = self.hub.operation("POST /api/v1/identify", "remote")
        response = self._send(remote.Case(body=body, media_type="application/json"), "remote")
        assert response.status_code == 200, response.text
        answer = response.json()
        return Ticket(answer["ticket"], "P1", [c["id"] for c in answer["children"]], False, station=BACK)

    # The fuzzed bodies in between come from plain strategies: schemathesis' own learn from the
    # answers, and a state machine must draw the same data when hypothesis replays a sequence.
    @rule(method=st.sampled_from(["pin", "qr"]), secret=st.text(max_size=40) | st.sampled_from(sorted(PINS.values())))
    def identify_fuzzed(self, method: str, secret: str) -> None:
        # Another door: wrong PINs lock its pad (423), never the machine's own.
        body = {"station_id": "side-door", "method": method, "secret": secret}
        self._send(self.identify_op.Case(body=body, media_type="application/json"))

    @rule(
        target=acted,
        ticket=consumes(tickets),
        pick=st.lists(st.sampled_from([*CHILDREN, "C404", ""]), max_size=4),
        listed=st.booleans(),
        action=st.sampled_from(["check_in", "check_out", "clock_in", "clock_out"]),
        caller=st.sampled_from(["hub", "remote"]),
    )
    def act(self, ticket: Ticket, pick: list[str], listed: bool, action: str, caller: str) -> Any:
        children = [] if ticket.staff else (ticket.children if listed else pick)
        body = {"ticket": ticket.token, "children": children, "action": action}
        response = self._send(self._attendance(caller).Case(body=body, media_type="application/json"), caller)
        if caller == "remote" and ticket.station != BACK:
            # Another door's ticket is no ticket here (a malformed body is 422 before that).
            assert response.status_code in (403, 422)
            if response.status_code == 403:
                assert response.json()["reason"] == "bad_ticket"
        if response.status_code == 200:
            events = response.json()["events"]
            ids = {e.get("child_id", e.get("staff_id")) for e in events}
            assert ids == ({ticket.person_id} if ticket.staff else set(children))
        return (body, caller, response.status_code, response.json())

    @rule(done=acted)
    def act_again(self, done: tuple[dict[str, Any], str, int, dict[str, Any]]) -> None:
        """A double tap: the same request answers the same events and records nothing new."""
        body, caller, status, answer = done
        response = self._send(self._attendance(caller).Case(body=body, media_type="application/json"), caller)
        if status == 200:
            assert response.status_code == 200
            assert response.json() == answer

    @rule(
        ticket=tickets,
        children=st.lists(st.sampled_from(CHILDREN) | st.text(max_size=70), max_size=32),
        action=st.sampled_from(["check_in", "check_out", "clock_in", "clock_out"]) | st.text(max_size=12),
        extra=st.dictionaries(st.sampled_from(["station_id", "secret", "x"]), st.text(max_size=5), max_size=1),
    )
    def act_fuzzed(self, ticket: Ticket, children: list[str], action: str, extra: dict[str, str]) -> None:
        """A fuzzed attendance body carrying a real ticket."""
        body = {"ticket": ticket.token, "children": children, "action": action, **extra}
        self._send(self.attendance_op.Case(body=body, media_type="application/json"))

    @rule(who=st.sampled_from(["P1", "P9"]), children=st.lists(st.sampled_from(CHILDREN), min_size=1, max_size=3))
    def phone_check(self, who: str, children: list[str]) -> None:
        """A payer's phone on site, then its signed check-in or check-out."""
        phone = self.phones[who]
        pings = self.hub.operation("POST /api/v1/geofence/pings")
        body, signature = phone.signed_ping(*INSIDE)
        self._send(pings.Case(body=body, media_type="application/json", headers={"X-Signature": signature}))
        app = self.hub.operation("POST /api/v1/app/attendance")
        for action in ("check_in", "check_out"):
            body, signature = phone.signed_app(children, action)
            self._send(app.Case(body=body, media_type="application/json", headers={"X-Signature": signature}))


def test_fuzz_stateful_sequences(hub: Hub) -> None:
    DoorSequences.hub = hub
    before = _events(hub)
    run_state_machine_as_test(DoorSequences, settings=fuzz_settings(max(EXAMPLES, 4), stateful_step_count=12))
    assert _events(hub) > before, "no sequence reached the attendance write"
    assert_nothing_corrupted(hub)


def _events(hub: Hub) -> int:
    with hub.services.store.read() as session:
        return int(session.execute(text("SELECT count(*) FROM attendance_events")).scalar_one())


# -- after all of it: nothing recorded is corrupted -------------------------------------------------


def assert_nothing_corrupted(hub: Hub) -> None:
    """Over everything the fuzzers recorded so far (each fuzz test ends with it)."""
    with hub.services.store.read() as session:
        run = lambda sql: session.execute(text(sql)).all()  # noqa: E731
        assert integrity_check(session.connection()) == "ok"  # and every row's parent exists
        # Every event has exactly one outbox row, and every outbox row its event.
        assert (
            run("SELECT e.id FROM attendance_events e LEFT JOIN outbox o ON o.event_id = e.id WHERE o.id IS NULL") == []
        )
        assert (
            run("SELECT o.id FROM outbox o LEFT JOIN attendance_events e ON e.id = o.event_id WHERE e.id IS NULL") == []
        )
        # Presence is each subject's last event.
        assert (
            run(
                """SELECT p.subject_kind, p.subject_id FROM presence p JOIN attendance_events e ON e.id = p.event_id
                   WHERE p.present != (e.action IN ('check_in', 'clock_in'))
                      OR e.subject_id != p.subject_id OR e.subject_kind != p.subject_kind
                      OR EXISTS (SELECT 1 FROM attendance_events later
                                 WHERE later.subject_kind = p.subject_kind AND later.subject_id = p.subject_id
                                   AND later.occurred_at > e.occurred_at)"""
            )
            == []
        )
        assert (
            run(
                """SELECT DISTINCT e.subject_kind, e.subject_id FROM attendance_events e
                   WHERE NOT EXISTS (SELECT 1 FROM presence p
                                     WHERE p.subject_kind = e.subject_kind AND p.subject_id = e.subject_id)"""
            )
            == []
        )
        # No child taken by someone who may not take them (staff overrides are not on this API).
        assert (
            run(
                """SELECT e.id, e.subject_id, e.actor_id FROM attendance_events e
                   WHERE e.subject_kind = 'child' AND e.method != 'staff'
                     AND (NOT EXISTS (SELECT 1 FROM child_links l WHERE l.child_id = e.subject_id
                                      AND l.person_id = e.actor_id AND l.relation IN ('payer', 'pickup'))
                          OR EXISTS (SELECT 1 FROM child_links l WHERE l.child_id = e.subject_id
                                     AND l.person_id = e.actor_id AND l.relation = 'restricted'))"""
            )
            == []
        )
        # Phones check in only their own payers' children.
        assert (
            run(
                """SELECT e.id FROM attendance_events e WHERE e.method = 'geofence'
                   AND NOT EXISTS (SELECT 1 FROM child_links l WHERE l.child_id = e.subject_id
                                   AND l.person_id = e.actor_id AND l.relation = 'payer')"""
            )
            == []
        )
