"""Fuzzing the geofence ping body and the app check-in body (issue #9) past the signature.

Schemathesis (test_fuzz_api.py) cannot sign, so its bodies stop at ``bad_signature``. Here every
body is signed by a registered phone's real key, so what the parser in ``edge.pings`` does with
it is what answers: any body is 200, a 403 refusal or a 422 that says in plain words what is
wrong, never a 5xx. The phone is on site first, so app requests reach the check-in itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from edge.pings import SEQ_MAX, PingRefusal
from edge.policy import RefusalReason
from kiosk_ui.app import create_app
from kiosk_ui.services import Services
from tests.conftest import FakeClock
from tests.fuzzing import COUNTS, PARSER, seeded
from tests.kiosk_ui.fake_clock_hub import hub_services
from tests.phones import APP, INSIDE, PINGS, Phone, headers, phones_export, with_phones

REASONS = {reason.value for reason in PingRefusal} | {reason.value for reason in RefusalReason}


@pytest.fixture
def services(tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    with hub_services(tmp_path / "data", clock, phones_export()) as built:
        with_phones(built, clock)
        yield built


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services), raise_server_exceptions=False) as test_client:
        yield test_client


def on_site(client: TestClient, phone: Phone, clock: FakeClock) -> None:
    """Drive up and park in the lot (tests/kiosk_ui/test_geofence_api.py's arrival)."""
    for where in [(0.0, -700.0), (0.0, -400.0), (0.0, -150.0), INSIDE, INSIDE, INSIDE]:
        body, signature = phone.signed_ping(*where)
        assert client.post(PINGS, content=body, headers=headers(signature)).status_code == 200
        clock.advance(seconds=6)


# -- values a phone (or someone holding its key) might put in a field ------------------------------

_ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.sampled_from(
        [
            "",
            "\ud800",
            "x\udfff",
            "\u0000",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-14:00",
            "2026-11-29T23:40:58",
            "2026-13-01T00:00:00Z",
            "2026-11-29T23:40:58.123456789Z",
            "C1",
            "C404",
            "check_in",
            "check_out",
            "D-P1",
            "D-P9",
        ]
    ),
    st.lists(st.sampled_from(["C1", "C2", "C3", "", "\ud800", "x" * 65, "C1"]), max_size=32),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def mangled(draw: st.DrawFn, doc: dict[str, Any]) -> bytes:
    """``doc`` with fields replaced, dropped or added, as JSON (NaN and Infinity allowed), maybe
    with a key written twice."""
    out = dict(doc)
    for name in draw(st.lists(st.sampled_from(sorted(doc)), max_size=len(doc), unique=True)):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            del out[name]
        else:
            out[name] = draw(_ODD)
    if draw(st.booleans()):
        out[draw(st.text(min_size=1, max_size=10))] = draw(_ODD)
    body = json.dumps(out, allow_nan=True)
    if draw(st.booleans()) and len(body) > 2:
        twice = draw(st.sampled_from(sorted(doc)))
        body = body[:-1] + f", {json.dumps(twice)}: {json.dumps(doc[twice])}" + "}"
    return body.encode("utf-8", "surrogatepass")


def keep_counting(phone: Phone, body: bytes) -> None:
    """A mangled body may carry any seq, and the hub takes an authentic one as the device's new
    counter: the phone counts on from there, as a real one would after sending it."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return
    seq = doc.get("seq") if isinstance(doc, dict) else None
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= SEQ_MAX:
        phone.seq = max(phone.seq, seq)


def _answer_is_clear(answer: Any) -> None:
    assert answer.status_code in (200, 403, 422), (answer.status_code, answer.text)
    body = answer.json()
    if answer.status_code == 422:
        assert isinstance(body["detail"], str)
        assert body["detail"]
    elif answer.status_code == 403:
        assert body["reason"] in REASONS
        assert body["message"]


def test_fuzz_signed_pings(client: TestClient, clock: FakeClock) -> None:
    phone = Phone("D-P1", clock)
    on_site(client, phone, clock)
    statuses: set[int] = set()

    @seeded
    @PARSER
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        COUNTS["geofence: signed ping bodies"] += 1
        clock.advance(seconds=1)
        doc = json.loads(phone.ping_body(*INSIDE))
        body = data.draw(mangled(doc))
        answer = client.post(PINGS, content=body, headers=headers(phone.sign(body)))
        _answer_is_clear(answer)
        statuses.add(answer.status_code)
        keep_counting(phone, body)

    fuzz()
    assert statuses >= {200, 422}


def test_fuzz_signed_app_requests(client: TestClient, services: Services, clock: FakeClock) -> None:
    phone = Phone("D-P9", clock)  # Cal Smith: payer of C2 and C3, restricted for C1
    on_site(client, phone, clock)
    statuses: set[int] = set()

    @seeded
    @PARSER
    @given(data=st.data(), children=st.lists(st.sampled_from(["C1", "C2", "C3", "C5"]), min_size=1, max_size=3))
    def fuzz(data: st.DataObject, children: list[str]) -> None:
        COUNTS["geofence: signed app bodies"] += 1
        clock.advance(seconds=1)
        body, signature = phone.signed_ping(*INSIDE)  # still on site
        # (unless a fuzzed body spent the device's counter: 2^63-1 is a seq like any other)
        expected = 200 if phone.seq <= SEQ_MAX else 422
        assert client.post(PINGS, content=body, headers=headers(signature)).status_code == expected
        doc = json.loads(phone.app_body(children, data.draw(st.sampled_from(["check_in", "check_out"]))))
        body = data.draw(st.one_of(st.just(json.dumps(doc).encode()), mangled(doc)))
        answer = client.post(APP, content=body, headers=headers(phone.sign(body)))
        _answer_is_clear(answer)
        statuses.add(answer.status_code)
        keep_counting(phone, body)

    fuzz()
    assert statuses >= {200, 403, 422}
    with services.store.read() as session:
        taken = session.execute(text("SELECT DISTINCT subject_id FROM attendance_events WHERE method = 'geofence'"))
        assert {row[0] for row in taken} <= {"C2", "C3"}  # never Mai (restricted), never Eli (not his)


@pytest.mark.parametrize(
    ("field", "value", "detail"),
    [
        ("fix_time", "0001-01-01T00:00:00+01:00", "fix_time must be an ISO 8601 time"),
        ("fix_time", "9999-12-31T23:59:59-14:00", "fix_time must be an ISO 8601 time"),
    ],
)
def test_a_fix_time_outside_the_calendar_in_utc_is_422(
    client: TestClient, clock: FakeClock, field: str, value: str, detail: str
) -> None:
    """Found by the fuzzer: a time that exists in its own zone but not in UTC raised OverflowError (500)."""
    phone = Phone("D-P1", clock)
    body = phone.ping_body(*INSIDE, **{field: value})
    answer = client.post(PINGS, content=body, headers=headers(phone.sign(body)))
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(detail)


def test_a_child_id_that_is_not_text_is_422(client: TestClient, clock: FakeClock) -> None:
    """Found by the fuzzer: a lone surrogate in a child id reached SQLite, which cannot encode it (500)."""
    phone = Phone("D-P9", clock)
    body = phone.app_body(["\ud800"], "check_in")  # json.dumps writes it as the escape \\ud800
    answer = client.post(APP, content=body, headers=headers(phone.sign(body)))
    assert answer.status_code == 422
    assert answer.json()["detail"] == "children must be a list of 1 to 30 child ids"
