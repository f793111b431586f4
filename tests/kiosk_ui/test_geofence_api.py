"""The phone API over HTTP (FastAPI's TestClient, a real SQLite file, real Ed25519 signatures):
every refusal of the contract, app check-in and check-out, arrivals, the simulator, the CLI.

The promise of issue 6 is proved at the end: a non-payer, a spoofed ping, a replayed ping and a
stale fix never check anyone out.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloud_sync.phone_simulator import PhoneSimulator, demo_site
from edge import const
from edge.models import AttendanceEvent, AuditEntry, Method, Presence
from kiosk_ui.app import create_app
from kiosk_ui.cli import main
from kiosk_ui.services import Services
from tests.conftest import FakeClock
from tests.door import PINS
from tests.kiosk_ui.fake_clock_hub import hub_services
from tests.phones import (
    APP,
    DOOR,
    INSIDE,
    PINGS,
    Phone,
    headers,
    key,
    phones_export,
    register_pickup_phone,
    site_geojson,
    with_phones,
)

BACK = "back-door"
BACK_TOKEN = "tok-back-door-0123456789"
LAN = ("192.168.1.20", 40000)
SOUTH_20 = (-30.0, -60.0)  # 20 m south of the lot


@pytest.fixture
def services(tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    with hub_services(tmp_path / "data", clock, phones_export(), station_tokens={BACK: BACK_TOKEN}) as built:
        register_pickup_phone(built.store)
        with_phones(built, clock)
        yield built


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as test_client:
        yield test_client


@pytest.fixture
def an(clock: FakeClock) -> Phone:
    """An Nguyen's phone (payer of Mai, C1)."""
    return Phone("D-P1", clock)


def send(client: TestClient, url: str, signed: tuple[bytes, str | None], **kw: Any) -> Any:
    body, signature = signed
    return client.post(url, content=body, headers={**headers(signature), **kw.pop("headers", {})}, **kw)


def ping(client: TestClient, phone: Phone, where: tuple[float, float], accuracy_m: float = 5.0, **kw: Any) -> Any:
    return send(client, PINGS, phone.signed_ping(*where, accuracy_m, **kw))


def app(client: TestClient, phone: Phone, children: list[str], action: str, **kw: Any) -> Any:
    return send(client, APP, phone.signed_app(children, action, **kw))


def state(answer: Any) -> str:
    assert answer.status_code == 200, answer.text
    result: str = answer.json()["state"]
    return result


def reason(answer: Any) -> str:
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert list(body) == ["reason", "message"]
    assert body["message"]
    result: str = body["reason"]
    return result


def arrive(client: TestClient, phone: Phone, clock: FakeClock) -> None:
    """Drive up and park in the lot until on site (the dwell takes two more fixes)."""
    answers = []
    for where in [(0.0, -700.0), (0.0, -400.0), (0.0, -150.0), INSIDE, INSIDE, INSIDE]:
        answers.append(state(ping(client, phone, where)))
        clock.advance(seconds=6)
    assert answers == ["arriving"] * 5 + ["on_site"]


def present(services: Services, child_id: str) -> bool:
    with services.store.read() as session:
        row = session.scalars(select(Presence).where(Presence.subject_id == child_id)).first()
        return bool(row and row.present)


def check_in_by_pin(client: TestClient, child_id: str = "C1") -> None:
    ticket = client.post("/api/v1/identify", json={"station_id": "front-door", "method": "pin", "secret": PINS["P1"]})
    answer = client.post(
        "/api/v1/attendance", json={"ticket": ticket.json()["ticket"], "children": [child_id], "action": "check_in"}
    )
    assert answer.status_code == 200, answer.text


# -- pings: the answers -------------------------------------------------------------------------


def test_a_ping_answers_the_state(client: TestClient, an: Phone, clock: FakeClock) -> None:
    arrive(client, an, clock)
    assert state(ping(client, an, DOOR)) == "on_site"


def test_twenty_meters_outside(client: TestClient, an: Phone, clock: FakeClock) -> None:
    """5 m accuracy: arriving (off the site, inside the ring); 50 m: still not on site, and no
    app check-in either."""
    assert state(ping(client, an, SOUTH_20, 5.0)) == "arriving"
    clock.advance(seconds=5)
    assert state(ping(client, an, SOUTH_20, 50.0)) == "arriving"
    assert reason(app(client, an, ["C1"], "check_in")) == "not_on_site"


def test_poor_accuracy_is_uncertain_not_refused(client: TestClient, an: Phone) -> None:
    assert state(ping(client, an, INSIDE, 150.0)) == "uncertain"


# -- pings: every refusal -----------------------------------------------------------------------


def test_bad_signatures(client: TestClient, an: Phone) -> None:
    body = an.ping_body(*INSIDE)
    assert reason(send(client, PINGS, (body, None))) == "bad_signature"  # missing
    assert reason(send(client, PINGS, (body, "not base64 at all"))) == "bad_signature"  # malformed
    assert reason(send(client, PINGS, (body, base64.b64encode(b"x" * 64).decode()))) == "bad_signature"  # wrong
    intruder = Ed25519PrivateKey.generate()  # someone else's key, claiming An's device
    assert reason(send(client, PINGS, (body, base64.b64encode(intruder.sign(body)).decode()))) == "bad_signature"
    signature = an.sign(body)
    tampered = body.replace(b'"mock_location": false', b'"mock_location": false ')  # one byte more
    assert reason(send(client, PINGS, (tampered, signature))) == "bad_signature"
    assert state(send(client, PINGS, (body, signature))) == "on_site"  # the untouched original


def test_unknown_device(client: TestClient, clock: FakeClock) -> None:
    assert reason(ping(client, Phone("D-nobody", clock), INSIDE)) == "unknown_device"


def test_a_non_payers_phone_is_pin_only(client: TestClient, clock: FakeClock) -> None:
    answer = ping(client, Phone("D-P2", clock), INSIDE)
    assert reason(answer) == "pin_only"
    assert answer.json()["message"] == "Please use your PIN at the kiosk. The phone app is for parents only."


def test_replayed(client: TestClient, an: Phone, clock: FakeClock) -> None:
    signed = an.signed_ping(*INSIDE)
    assert state(send(client, PINGS, signed)) == "on_site"
    assert reason(send(client, PINGS, signed)) == "replayed"  # the same bytes again
    clock.advance(seconds=5)
    assert reason(ping(client, an, INSIDE, seq=an.seq - 1)) == "replayed"  # an older seq, freshly signed


def test_stale_and_out_of_order(client: TestClient, an: Phone, clock: FakeClock) -> None:
    assert reason(ping(client, an, INSIDE, age_s=const.MAX_FIX_AGE_S + 1)) == "stale_fix"
    newer = an.signed_ping(*INSIDE, age_s=10)
    older = an.signed_ping(*INSIDE, age_s=20)  # a later seq carrying an earlier fix
    assert state(send(client, PINGS, newer)) == "on_site"
    assert reason(send(client, PINGS, older)) == "stale_fix"


def test_future_fix(client: TestClient, an: Phone) -> None:
    assert reason(ping(client, an, INSIDE, age_s=-(const.FUTURE_FIX_TOLERANCE_S + 5))) == "future_fix"


def test_mock_location(client: TestClient, an: Phone) -> None:
    assert reason(ping(client, an, INSIDE, mock=True)) == "mock_location"


def test_impossible_jump(client: TestClient, an: Phone, clock: FakeClock) -> None:
    assert state(ping(client, an, (0.0, -3_000.0))) == "away"
    clock.advance(seconds=30)
    assert reason(ping(client, an, INSIDE)) == "impossible_jump"  # 3 km in 30 s: 360 km/h
    clock.advance(seconds=30)
    assert state(ping(client, an, (0.0, -2_000.0))) == "away"  # 1 km in 60 s from the last accepted fix


@pytest.mark.parametrize(
    "override",
    [{"lat": 91.0}, {"lon": -180.5}, {"accuracy_m": 0}, {"accuracy_m": -1}],
)
def test_bad_coordinates(client: TestClient, an: Phone, override: dict[str, Any]) -> None:
    assert reason(ping(client, an, INSIDE, **override)) == "bad_coordinates"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_bad_coordinates(client: TestClient, an: Phone, literal: str) -> None:
    """JSON has no NaN, but some encoders write one; once the signature checks out, it is refused
    by name rather than as a parse error."""
    doc = json.loads(an.ping_body(*INSIDE))
    body = json.dumps(doc).replace(f'"lat": {json.dumps(doc["lat"])}', f'"lat": {literal}').encode()
    assert literal.encode() in body
    assert reason(send(client, PINGS, (body, an.sign(body)))) == "bad_coordinates"


def test_refusals_speak_spanish(client: TestClient, an: Phone) -> None:
    answer = send(client, PINGS, an.signed_ping(*INSIDE, mock=True), headers={"Accept-Language": "es-MX,es;q=0.9"})
    assert answer.json()["message"] == "Desactive las ubicaciones simuladas en su teléfono."


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b"{}", b'{"device_id": 7}', b'{"device_id": "D-P1", "device_id": "D-P9"}'],
)
def test_a_body_without_a_device_is_422(client: TestClient, an: Phone, body: bytes) -> None:
    assert send(client, PINGS, (body, an.sign(body))).status_code == 422


def test_a_signed_body_missing_a_field_is_422(client: TestClient, an: Phone) -> None:
    doc = json.loads(an.ping_body(*INSIDE))
    del doc["accuracy_m"]
    body = json.dumps(doc).encode()
    answer = send(client, PINGS, (body, an.sign(body)))
    assert answer.status_code == 422
    assert answer.json() == {"detail": "missing accuracy_m"}


def test_a_big_body_is_413(client: TestClient, an: Phone) -> None:
    body = an.ping_body(*INSIDE, padding="x" * const.GEOFENCE_MAX_BODY_BYTES)
    assert send(client, PINGS, (body, an.sign(body))).status_code == 413


def test_phones_need_no_station_token(services: Services, an: Phone) -> None:
    """A phone is anywhere on the internet or the LAN: its signature, not a station token, proves it."""
    with TestClient(create_app(services), client=LAN) as remote:
        assert state(ping(remote, an, INSIDE)) == "on_site"


# -- app check-in and check-out -----------------------------------------------------------------


def test_on_site_a_payer_checks_in_and_out(client: TestClient, services: Services, an: Phone, clock: FakeClock) -> None:
    arrive(client, an, clock)
    answer = app(client, an, ["C1"], "check_in")
    assert answer.status_code == 200, answer.text
    (event,) = answer.json()["events"]
    assert set(event) == {"event_id", "child_id", "name", "action", "occurred_at"}
    assert (event["child_id"], event["name"], event["action"]) == ("C1", "Mai Nguyen", "check_in")
    assert present(services, "C1")
    clock.advance(seconds=20)
    assert state(ping(client, an, DOOR)) == "on_site"
    assert app(client, an, ["C1"], "check_out").status_code == 200
    assert not present(services, "C1")
    with services.store.read() as session:
        events = session.scalars(select(AttendanceEvent).order_by(AttendanceEvent.occurred_at)).all()
    assert [(e.action.value, e.method, e.actor_id, e.station_id) for e in events] == [
        ("check_in", Method.GEOFENCE, "P1", const.APP_STATION_ID),
        ("check_out", Method.GEOFENCE, "P1", const.APP_STATION_ID),
    ]


@pytest.mark.parametrize(
    ("phone_id", "children", "action", "code"),
    [
        pytest.param("D-P9", ["C1"], "check_in", "restricted", id="restricted for that child"),
        pytest.param("D-P1", ["C2"], "check_in", "not_authorized", id="not their child"),
        pytest.param("D-P1", ["C3"], "check_in", "pin_only", id="an authorized pickup only: PIN at the kiosk"),
        pytest.param("D-P1", ["C1"], "check_out", "already_out", id="already out"),
    ],
)
def test_the_check_in_services_own_refusals(
    client: TestClient, clock: FakeClock, phone_id: str, children: list[str], action: str, code: str
) -> None:
    phone = Phone(phone_id, clock)
    arrive(client, phone, clock)
    assert reason(app(client, phone, children, action)) == code


def test_the_latest_fix_must_be_on_site_and_fresh(client: TestClient, an: Phone, clock: FakeClock) -> None:
    arrive(client, an, clock)
    clock.advance(seconds=const.MAX_FIX_AGE_S + 1)
    assert reason(app(client, an, ["C1"], "check_in")) == "not_on_site"
    assert state(ping(client, an, INSIDE, 150.0)) == "uncertain"  # a vague latest fix proves nothing
    assert reason(app(client, an, ["C1"], "check_in")) == "not_on_site"


def test_an_app_refusal_is_audited(client: TestClient, services: Services, an: Phone) -> None:
    assert reason(app(client, an, ["C1"], "check_in")) == "not_on_site"
    with services.store.read() as session:
        row = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert row is not None
    assert (row.reason, row.method, row.actor_id, row.child_id, row.station_id) == (
        "not_on_site",
        "geofence",
        "P1",
        "C1",
        const.APP_STATION_ID,
    )


def test_an_app_request_is_malformed_422(client: TestClient, an: Phone) -> None:
    body = json.dumps({"device_id": "D-P1", "seq": 5, "children": [], "action": "check_in"}).encode()
    assert send(client, APP, (body, an.sign(body))).status_code == 422


# -- the promise: a non-payer, a spoofed ping, a replayed ping and a stale fix never check anyone out


@pytest.fixture
def mai_is_in(client: TestClient, services: Services) -> None:
    check_in_by_pin(client)
    assert present(services, "C1")


def no_app_checkout(services: Services) -> None:
    assert present(services, "C1")
    with services.store.read() as session:
        outs = session.scalars(select(AttendanceEvent).where(AttendanceEvent.action == "check_out")).all()
    assert outs == []


@pytest.mark.usefixtures("mai_is_in")
def test_a_non_payer_never_checks_anyone_out(client: TestClient, services: Services, clock: FakeClock) -> None:
    binh = Phone("D-P2", clock)  # Mai's authorized pickup, not a payer; his phone is in the database anyway
    assert reason(ping(client, binh, INSIDE)) == "pin_only"
    assert reason(app(client, binh, ["C1"], "check_out")) == "pin_only"
    no_app_checkout(services)


@pytest.mark.usefixtures("mai_is_in")
def test_a_spoofed_ping_never_checks_anyone_out(
    client: TestClient, services: Services, an: Phone, clock: FakeClock
) -> None:
    assert state(ping(client, an, (0.0, -3_000.0))) == "away"  # An is 3 km away
    forger = Ed25519PrivateKey.generate()
    for _ in range(3):  # someone else claims An's phone is parked at the door
        clock.advance(seconds=6)
        body = an.ping_body(*DOOR)
        assert reason(send(client, PINGS, (body, base64.b64encode(forger.sign(body)).decode()))) == "bad_signature"
    forged = an.app_body(["C1"], "check_out")
    assert reason(send(client, APP, (forged, base64.b64encode(forger.sign(forged)).decode()))) == "bad_signature"
    # An's phone, genuinely signing a spoofed (mock) location or a teleport, fares no better.
    assert reason(ping(client, an, DOOR, mock=True)) == "mock_location"
    assert reason(ping(client, an, DOOR)) == "impossible_jump"
    assert reason(app(client, an, ["C1"], "check_out")) == "not_on_site"
    no_app_checkout(services)


@pytest.mark.usefixtures("mai_is_in")
def test_a_replayed_ping_never_checks_anyone_out(
    client: TestClient, services: Services, an: Phone, clock: FakeClock
) -> None:
    arrive(client, an, clock)
    captured = an.signed_ping(*INSIDE)  # recorded off the air while An was in the lot
    assert state(send(client, PINGS, captured)) == "on_site"
    captured_check_in = an.signed_app(["C3"], "check_in")  # Ava: PIN only for An, but signed all the same
    assert reason(send(client, APP, captured_check_in)) == "pin_only"
    # An drives off; an hour later someone replays what they captured.
    for north in (-100.0, -300.0, -500.0, -700.0, -900.0, -1_100.0):
        clock.advance(seconds=6)
        ping(client, an, (0.0, north))
    clock.advance(hours=1)
    assert reason(send(client, PINGS, captured)) == "replayed"
    assert reason(send(client, APP, captured_check_in)) == "replayed"
    assert reason(app(client, an, ["C1"], "check_out")) == "not_on_site"  # An's own phone, from afar
    no_app_checkout(services)


@pytest.mark.usefixtures("mai_is_in")
def test_a_stale_fix_never_checks_anyone_out(
    client: TestClient, services: Services, an: Phone, clock: FakeClock
) -> None:
    assert state(ping(client, an, (0.0, -3_000.0))) == "away"
    clock.advance(minutes=10)
    # A genuine on-site fix from 3 minutes ago, sent late (a phone that just woke up, or a replay
    # with a fresh seq): refused, and not counted as being on site.
    assert reason(ping(client, an, INSIDE, age_s=180)) == "stale_fix"
    assert reason(app(client, an, ["C1"], "check_out")) == "not_on_site"
    # And an on-site fix that was fresh once is not enough two minutes later.
    arrive(client, an, clock)
    clock.advance(seconds=const.MAX_FIX_AGE_S + 1)
    assert reason(app(client, an, ["C1"], "check_out")) == "not_on_site"
    no_app_checkout(services)


# -- arrivals -----------------------------------------------------------------------------------


def test_arrivals_for_staff(services: Services, client: TestClient, an: Phone, clock: FakeClock) -> None:
    assert client.get("/api/v1/arrivals").json() == {"arrivals": []}
    arrive(client, an, clock)
    (arrival,) = client.get("/api/v1/arrivals").json()["arrivals"]
    assert arrival["person_id"] == "P1"
    assert arrival["name"] == "An Nguyen"
    assert arrival["state"] == "on_site"
    assert [c["name"] for c in arrival["children"]] == ["Ava Smith", "Mai Nguyen"]
    with TestClient(create_app(services), client=LAN) as remote:
        assert remote.get("/api/v1/arrivals").status_code == 401
        token = {"Authorization": f"Bearer {BACK_TOKEN}"}
        assert remote.get("/api/v1/arrivals", headers=token).json()["arrivals"][0]["person_id"] == "P1"


def test_the_openapi_document_describes_the_phone_api(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    ping_op = doc["paths"]["/api/v1/geofence/pings"]["post"]
    assert [p["name"] for p in ping_op["parameters"]] == ["X-Signature"]
    schema = ping_op["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"device_id", "seq", "lat", "lon", "accuracy_m", "fix_time", "mock_location"}
    assert "403" in doc["paths"]["/api/v1/app/attendance"]["post"]["responses"]
    assert "/api/v1/arrivals" in doc["paths"]


# -- the simulator and the command line ---------------------------------------------------------


def test_the_phone_simulator_walks_to_the_door_and_checks_in(
    services: Services, client: TestClient, clock: FakeClock
) -> None:
    services.pings.set_fence(demo_site())
    simulator = PhoneSimulator(
        client,
        "D-P1",
        key("D-P1"),
        from_km=1.5,
        speed_kmh=50,
        interval_s=5,
        seed=3,
        clock=clock,
        sleep=lambda seconds: clock.advance(seconds=seconds),
    )
    steps = simulator.run(check_in=["C1"], check_out=["C1"])
    outcomes = {step.kind: step.outcome for step in steps if step.kind != "ping"}
    assert outcomes == {
        "poor_accuracy": "200 uncertain",
        "stale": "403 stale_fix",
        "mock_location": "403 mock_location",
        "spoofed_jump": "403 impossible_jump",
        "replay": "403 replayed",
        "check_in": "200 1 event(s)",
        "check_out": "200 1 event(s)",
    }
    pings = [step.answer["state"] for step in steps if step.kind == "ping"]
    assert pings[0] == "away"
    assert "arriving" in pings
    assert pings[-1] == "on_site"
    assert all(step.status == 200 for step in steps if step.kind == "ping")


@pytest.fixture
def env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHECKIN_EDGE_DATA_DIR", str(data_dir))
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    return data_dir


def test_geofence_set_and_show(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["geofence", "show", "--json"]) == 2
    assert "No geofence is set" in capsys.readouterr().err
    path = tmp_path / "site.geojson"
    path.write_text(json.dumps(site_geojson()))
    assert main(["geofence", "set", str(path), "--arriving-m", "600"]) == 0
    assert "arriving ring: 600 m" in capsys.readouterr().out
    assert main(["geofence", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["on_site"] == site_geojson()
    assert shown["arriving_m"] == 600
    assert shown["version"] == 1
    assert shown["area_m2"] == pytest.approx(7_100, abs=1)
    assert shown["arriving_ring"]["type"] == "Polygon"


def test_geofence_set_refuses_a_bad_file_saying_why(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bowtie.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}))
    assert main(["geofence", "set", str(path)]) == 2
    assert "Self-intersection" in capsys.readouterr().err
    assert main(["geofence", "set", str(tmp_path / "missing.geojson")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_simulate_phone_says_when_the_hub_is_not_there(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "phone", "--hub", "http://127.0.0.1:9", "--seed", "1", "--device", "D-P1"]
    assert main(argv) == 2
    assert "cannot reach the hub at http://127.0.0.1:9" in capsys.readouterr().err
    assert main([*argv, "--to", "north"]) == 2
    assert "is not LAT,LON" in capsys.readouterr().err
