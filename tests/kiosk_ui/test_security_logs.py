"""No secret in any log (issue 9): a busy morning through the real hub, ``checkin-edge --verbose
serve`` as its own process (the logging it configures: the root logger at DEBUG, uvicorn's own),
then every line it wrote, and the audit log, alerts and outbox it recorded, are searched for what
must never be there: PINs (right and wrong), station tokens, QR codes, phone signatures, precise
coordinates, passwords, session ids, CSRF tokens and tickets.

The morning: parents at the kiosk with their PINs (check-in, check-out, a teacher clocking in),
a child trying PINs until the pad locks, QR app codes (good, forged, replayed), a phone driving up
and checking a child out with signed pings, a scanner at another door with its station token (and
someone guessing tokens and pairing codes), staff logging in (and mistyping) and reading the
dashboard.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cloud_sync.standin.generator import CLOUD_KEY_ID, cloud_private_key, public_key_b64
from cloud_sync.standin.phone import issue_app_code
from edge.config import load_config
from edge.models import Base
from edge.staff import StaffAccounts
from edge.store import Store
from kiosk_ui.cli import build_services
from tests.dbenv import clean_env
from tests.door import PINS, STATION, apply
from tests.phones import APP, INSIDE, PINGS, Phone, at, phones_export, site_geojson

SEED = 21
BACK = "back-door"
BACK_TOKEN = "st-7Hq2Lx9Vw4Rk8Pz3"
PASSWORD = "Tulip-Meadow-Quarry-42"
WRONG_PASSWORD = "Tulip-Meadow-Quarry-41"
WRONG_PINS = ["8642", "9137", "6081", "3958", "7712"]
LAN = {"X-Forwarded-For": "192.168.1.20"}  # uvicorn trusts it from 127.0.0.1: a station on the LAN


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The roster (phones and the cloud's QR key), the fence and a director, set up beforehand."""
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    data = tmp_path / "data"
    services = build_services(load_config(None, data_dir=data, center_id="demo-center"))
    try:
        page = phones_export()
        page["keys"] = [{"kid": CLOUD_KEY_ID, "alg": "Ed25519", "public_key": public_key_b64(cloud_private_key(SEED))}]
        apply(services.roster_sync, page)
        services.pings.set_fence(site_geojson())
        StaffAccounts(services.store).add("maria", "director", PASSWORD)
    finally:
        services.close()
    return data


@pytest.fixture
def hub(data_dir: Path) -> Iterator[tuple[str, Path]]:
    log = data_dir.parent / "serve.log"
    port = free_port()
    env = clean_env()
    env.update(
        {
            "CHECKIN_EDGE_DATA_DIR": str(data_dir),
            "CHECKIN_EDGE_CENTER_ID": "demo-center",
            "CHECKIN_EDGE_STATION_TOKENS": json.dumps({BACK: BACK_TOKEN}),
        }
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kiosk_ui.cli", "--verbose", "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "the hub did not answer within a minute"
            time.sleep(0.05)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Secrets:
    """Everything the morning sent or received that no log may hold."""

    def __init__(self) -> None:
        self.exact: set[str] = set()
        self.pins: set[str] = set()
        self.coordinates: set[str] = set()

    def add(self, *values: str | None) -> None:
        self.exact.update(v for v in values if v)

    def coordinate(self, value: float) -> None:
        # To four decimals (about 10 m), truncated or rounded, as any formatting might print it.
        sign = "-" if value < 0 else ""
        whole, _, decimals = f"{abs(value):.9f}".partition(".")
        self.coordinates.add(f"{sign}{whole}.{decimals[:4]}")
        self.coordinates.add(f"{value:.4f}")

    def found_in(self, text: str) -> list[str]:
        found = [f"secret {v[:6]}…" for v in self.exact if v in text]
        found += [f"PIN {pin}" for pin in self.pins if re.search(rf"(?<![0-9A-Za-z]){pin}(?![0-9A-Za-z])", text)]
        found += [f"coordinate {c}" for c in self.coordinates if re.search(rf"{re.escape(c)}", text)]
        return found


def identify(client: httpx.Client, secret: str, method: str = "pin", **kw: Any) -> httpx.Response:
    return client.post("/api/v1/identify", json={"station_id": STATION, "method": method, "secret": secret}, **kw)


def act(client: httpx.Client, ticket: str, children: list[str], action: str, **kw: Any) -> httpx.Response:
    return client.post("/api/v1/attendance", json={"ticket": ticket, "children": children, "action": action}, **kw)


def csrf_from(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def morning(client: httpx.Client, secrets: Secrets) -> None:
    secrets.pins.update(PINS.values(), WRONG_PINS)
    secrets.add(BACK_TOKEN, PASSWORD, WRONG_PASSWORD)

    # Parents at the kiosk: An checks Mai in, Cal his two in, Lee clocks in.
    for pin, children in ((PINS["P1"], ["C1"]), (PINS["P9"], ["C2", "C3"])):
        found = identify(client, pin)
        assert found.status_code == 200, found.text
        secrets.add(found.json()["ticket"])
        assert act(client, found.json()["ticket"], children, "check_in").status_code == 200
        assert act(client, found.json()["ticket"], children, "check_in").status_code == 200  # a double tap
    teacher = identify(client, PINS["E1"])
    assert teacher.status_code == 200, teacher.text
    secrets.add(teacher.json()["ticket"])
    client.post("/api/v1/attendance", json={"ticket": teacher.json()["ticket"], "action": "clock_in"})
    # A child at the pad: wrong PINs until it locks; then the right one, refused while locked.
    codes = [identify(client, pin).status_code for pin in WRONG_PINS]
    assert codes[-1] == 423, codes
    assert identify(client, PINS["P2"]).status_code == 423

    # QR app codes at the back door's scanner (its station token, from the LAN).
    scanner = {**LAN, "Authorization": f"Bearer {BACK_TOKEN}"}
    code = issue_app_code(SEED, "P9", utc_now())
    secrets.add(code, code[3:40])
    found = client.post("/api/v1/identify", json={"station_id": BACK, "method": "qr", "secret": code}, headers=scanner)
    assert found.status_code == 200, found.text
    secrets.add(found.json()["ticket"])
    assert act(client, found.json()["ticket"], ["C2"], "check_out", headers=scanner).status_code == 200
    replayed = client.post(
        "/api/v1/identify", json={"station_id": BACK, "method": "qr", "secret": code}, headers=scanner
    )
    assert replayed.json()["reason"] == "replayed"
    forged = code[:-6] + ("AAAAAA" if not code.endswith("AAAAAA") else "BBBBBB")
    secrets.add(forged)
    assert identify(client, forged, "qr").status_code == 403
    # Someone on the Wi-Fi guessing station tokens and pairing codes.
    for n in range(3):
        guess = f"guess-{n}-Zq81mXv"
        secrets.add(guess)
        wrong = {"X-Forwarded-For": "192.168.1.66", "Authorization": f"Bearer {guess}"}
        assert client.get("/api/v1/status", headers=wrong).status_code == 401
        paired = client.get(
            "/kiosk/pair", params={"station": BACK, "token": guess}, headers={"X-Forwarded-For": "192.168.1.66"}
        )
        assert paired.status_code == 401
    paired = client.get("/kiosk/pair", params={"station": BACK, "token": BACK_TOKEN}, headers=LAN)
    assert paired.status_code == 303
    secrets.add(paired.cookies.get("station"))

    # An's phone drives up, parks, and checks Mai out; then a spoofed ping.
    phone = Phone("D-P1", utc_now)
    route = [(0.0, -700.0), (0.0, -400.0), (0.0, -150.0), INSIDE, INSIDE, INSIDE]
    for n, where in enumerate(route):
        body, signature = phone.signed_ping(*where, age_s=6.0 * (len(route) - 1 - n))
        secrets.add(signature, signature[:24])
        for value in at(*where):
            secrets.coordinate(value)
        answer = client.post(
            PINGS, content=body, headers={"Content-Type": "application/json", "X-Signature": signature}
        )
        assert answer.status_code == 200, answer.text
    body, signature = phone.signed_app(["C1"], "check_out")
    secrets.add(signature)
    answer = client.post(APP, content=body, headers={"Content-Type": "application/json", "X-Signature": signature})
    assert answer.status_code in (200, 403), answer.text
    spoof = Phone("D-P9", utc_now).ping_body(-10.0, -20.0)
    bad = base64.b64encode(b"\x01" * 64).decode()
    secrets.add(bad)
    for value in at(-10.0, -20.0):
        secrets.coordinate(value)
    assert (
        client.post(PINGS, content=spoof, headers={"Content-Type": "application/json", "X-Signature": bad}).status_code
        == 403
    )

    # Staff: a mistyped password, then the director logs in and reads the dashboard.
    for password in (WRONG_PASSWORD, PASSWORD):
        page = client.get("/login")
        token = csrf_from(page)
        secrets.add(token, page.cookies.get("login_csrf"))
        client.post("/login", data={"username": "maria", "password": password, "csrf_token": token})
    session = client.cookies.get("staff_session")
    assert session
    secrets.add(session)
    for path in ("/dashboard", "/dashboard/audit", "/dashboard/roster", "/dashboard/sync", "/dashboard/geofence"):
        assert client.get(path).status_code == 200, path
    secrets.add(csrf_from(client.get("/dashboard/audit")))


# The appliance's own records that are logs too: what staff read and what goes to the cloud.
# (phone_fixes keeps positions on purpose, for the geofence, pruned by retention.)
RECORD_TABLES = ("audit_log", "alerts", "outbox", "attendance_events", "station_lockouts", "seen_nonces")


def records_as_text(data_dir: Path) -> str:
    config = load_config(None, data_dir=data_dir, center_id="demo-center")
    store = Store(config.db_url)
    try:
        with store.read() as session:
            return "\n".join(
                repr(tuple(row))
                for table in RECORD_TABLES
                for row in session.execute(select(Base.metadata.tables[table]))
            )
    finally:
        store.close()


def test_a_busy_morning_leaves_no_secret_in_the_log(hub: tuple[str, Path], data_dir: Path) -> None:
    url, log = hub
    secrets = Secrets()
    with httpx.Client(base_url=url, timeout=httpx.Timeout(10.0)) as client:
        morning(client, secrets)
    records = records_as_text(data_dir)
    time.sleep(0.3)  # the last lines of a request handled in another thread
    logged = log.read_text(errors="replace")
    # The log holds the morning (refusals, the lockout, QR, phones, logins), so the search means something.
    for expected in ("unknown_pin", "locked", "QR app refused", "phone 'D-P1'", "logged in"):
        assert expected in logged, expected
    assert "check_out" in records
    assert "unknown_pin" in records
    for name, body in (("serve's log", logged), ("audit log and outbox", records)):
        lines = [line for line in body.splitlines() if secrets.found_in(line)][:10]
        assert lines == [], f"{name}:\n" + "\n".join(lines)


def test_the_scan_finds_what_it_looks_for() -> None:
    """The search itself: a PIN inside a longer number is no PIN; a coordinate printed rounded
    or with more decimals is found."""
    secrets = Secrets()
    secrets.pins.add("7305")
    secrets.coordinate(36.747531)
    secrets.coordinate(-119.772049)
    assert secrets.found_in("port 47305, 17:30:55,730") == []
    assert secrets.found_in("PIN=7305 refused") == ["PIN 7305"]
    assert secrets.found_in("fix at 36.74753,-119.77205") != []
    assert secrets.found_in("fix at 36.7475 -119.7720") != []
    assert secrets.found_in("fix at 36.74 -119.77") == []
