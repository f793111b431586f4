"""QR check-in end to end: app codes from the stand-in cloud and badges from the command line,
through ``POST /api/v1/identify`` with method "qr" on the hub build_services makes (real SQLite),
and every token refusal of the contract as the station API answers it."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cloud_sync.standin.generator import CLOUD_KEY_ID, cloud_private_key, generate_roster, public_key_b64
from cloud_sync.standin.phone import issue_app_code
from cloud_sync.standin.server import StandinState, create_standin_app
from edge.badges import BadgeService
from edge.config import load_config
from edge.models import AttendanceEvent, SyncOutcome, SyncTrigger
from edge.policy import RefusalReason
from edge.tokens import TokenService, parse
from kiosk_ui import presenter
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services, main
from kiosk_ui.services import Services
from tests.conftest import FakeClock
from tests.door import STATION, apply, door_export
from tests.kiosk_ui.fake_clock_hub import hub_services

SEED = 21
R = RefusalReason


def hub_export() -> dict[str, Any]:
    """The door's small roster, with the stand-in cloud's key for SEED in ``keys``."""
    page = door_export()
    page["keys"] = [{"kid": CLOUD_KEY_ID, "alg": "Ed25519", "public_key": public_key_b64(cloud_private_key(SEED))}]
    return page


def identify(client: TestClient, text: str) -> Any:
    return client.post("/api/v1/identify", json={"station_id": STATION, "method": "qr", "secret": text})


@pytest.fixture
def config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("CHECKIN_EDGE_DATA_DIR", str(data_dir))
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    return data_dir


def real_hub(data_dir: Path) -> Services:
    """The services ``serve`` builds, on the real clock."""
    return build_services(load_config(None, data_dir=data_dir, center_id="demo-center"))


@pytest.fixture
def services(config_env: Path, clock: FakeClock) -> Iterator[Services]:
    # The hub's own verifier, the door on the fake clock (codes expire on it).
    with hub_services(config_env, clock, hub_export()) as built:
        assert isinstance(built.checkin.token_verifier, TokenService)  # what build_services wires in
        yield built


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services)) as test_client:
        yield test_client


# -- the real hub, the real clock ---------------------------------------------------------------


def test_an_app_code_checks_a_child_in_on_the_hub_build_services_makes(config_env: Path) -> None:
    built = real_hub(config_env)
    try:
        apply(built.roster_sync, hub_export())
        with TestClient(create_app(built)) as client:
            answer = identify(client, issue_app_code(SEED, "P1", dt.datetime.now(dt.UTC)))
            assert answer.status_code == 200, answer.text
            assert answer.json()["person"] == {"id": "P1", "name": "An Nguyen", "role": "payer"}
            act = client.post(
                "/api/v1/attendance",
                json={"ticket": answer.json()["ticket"], "children": ["C1"], "action": "check_in"},
            )
            assert act.status_code == 200, act.text
            assert [e["child_id"] for e in act.json()["events"]] == ["C1"]
    finally:
        built.close()


# -- every refusal over HTTP --------------------------------------------------------------------


def _flip_signature_bit(token: str) -> str:
    body = token[3:]
    raw = bytearray(base64.b32decode(body + "=" * (-len(body) % 8)))
    raw[-3] ^= 0x04
    return "CE1" + base64.b32encode(bytes(raw)).decode().rstrip("=")


def _refused(answer: Any, reason: RefusalReason) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.json() == {"reason": reason.value, "message": presenter.message(reason, "en")}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "https://example.org/checkin?person=P1",
        "4006381333931",  # an EAN-13 product barcode
        random.Random(3).randbytes(120).decode("latin-1"),
        "Q" * 3072,
    ],
    ids=["empty", "url", "ean-13", "random bytes", "3 KB blob"],
)
def test_what_is_not_a_token_is_refused_as_such(client: TestClient, text: str) -> None:
    _refused(identify(client, text), R.NOT_A_TOKEN)


def test_a_forged_code_is_a_bad_signature(client: TestClient, clock: FakeClock) -> None:
    _refused(identify(client, _flip_signature_bit(issue_app_code(SEED, "P1", clock()))), R.BAD_SIGNATURE)


def test_a_code_from_another_cloud_is_an_unknown_key(client: TestClient, clock: FakeClock) -> None:
    _refused(identify(client, issue_app_code(SEED + 1, "P1", clock())), R.UNKNOWN_KEY)


def test_an_expired_code_is_refused_after_the_tolerance(client: TestClient, clock: FakeClock) -> None:
    late, later = issue_app_code(SEED, "P1", clock()), issue_app_code(SEED, "P1", clock())
    clock.advance(seconds=90 + 30)
    assert identify(client, late).status_code == 200  # a slow phone clock is forgiven 30 s
    clock.advance(seconds=1)
    _refused(identify(client, later), R.EXPIRED)


def test_a_replayed_code_is_refused_even_after_a_restart(
    client: TestClient, services: Services, config_env: Path, clock: FakeClock
) -> None:
    code = issue_app_code(SEED, "P1", clock())
    assert identify(client, code).status_code == 200
    _refused(identify(client, code), R.REPLAYED)
    # A new process on the same data directory:
    with hub_services(config_env, clock) as restarted, TestClient(create_app(restarted)) as again:
        _refused(identify(again, code), R.REPLAYED)


def test_a_revoked_badge_is_refused(client: TestClient, services: Services, clock: FakeClock) -> None:
    badges = BadgeService(services.store, services.badges.key, clock=clock)  # the hub's key, the fake clock
    badge = badges.issue_badge("P1")
    assert identify(client, badge.token).status_code == 200
    badges.revoke_badges("P1")
    _refused(identify(client, badge.token), R.REVOKED)


def test_a_non_payers_valid_code_is_pin_only_and_checks_nobody_in(
    client: TestClient, services: Services, clock: FakeClock
) -> None:
    _refused(identify(client, issue_app_code(SEED, "P2", clock())), R.PIN_ONLY)
    with services.store.read() as session:
        assert session.scalar(select(func.count()).select_from(AttendanceEvent)) == 0


def test_an_inactive_persons_valid_code_is_refused(client: TestClient, services: Services, clock: FakeClock) -> None:
    page = hub_export()
    page["families"][1]["persons"] = []  # P9 leaves the roster
    clock.advance(minutes=1)
    apply(services.roster_sync, page)
    _refused(identify(client, issue_app_code(SEED, "P9", clock())), R.PERSON_INACTIVE)


# -- the stand-in cloud's demo phone ------------------------------------------------------------


@pytest.fixture
def phone() -> Iterator[TestClient]:
    state = StandinState("demo-center", roster=hub_export(), seed=SEED)
    with TestClient(create_standin_app(state)) as test_client:
        yield test_client


def test_the_demo_phone_shows_a_payers_current_code(phone: TestClient, client: TestClient) -> None:
    page = phone.get("/demo/phone/P1")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "An Nguyen" in page.text
    assert '<meta http-equiv="refresh" content="30">' in page.text
    assert "<svg" in page.text
    assert "<script" not in page.text
    code = phone.get("/demo/phone/P1/code.json").json()
    assert list(code) == ["token", "expires_at"]
    token = parse(code["token"])
    assert token is not None
    assert token.subject == "P1"
    assert code["expires_at"] == token.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert token.expires_at - token.issued_at == dt.timedelta(seconds=90)


def test_the_demo_phone_serves_payers_only(phone: TestClient) -> None:
    assert phone.get("/demo/phone/P2").status_code == 404  # an authorized pickup: no app code
    assert phone.get("/demo/phone/P404/code.json").status_code == 404
    unseeded = StandinState("demo-center", roster=hub_export())
    with TestClient(create_standin_app(unseeded)) as no_seed:
        assert no_seed.get("/demo/phone/P1").status_code == 404


def test_a_generated_rosters_payer_checks_in_with_the_phones_code(config_env: Path) -> None:
    export = generate_roster(seed=SEED, people=40, center_id="demo-center")
    payer = next(p for f in export["families"] for p in f["persons"] if p.get("payer") and "id" in p)
    state = StandinState("demo-center", roster=export, seed=SEED)
    built = real_hub(config_env)
    try:
        report = built.roster_sync.apply_export([copy.deepcopy(export)], SyncTrigger.FILE)
        assert report.outcome is SyncOutcome.OK
        with TestClient(create_standin_app(state)) as phone, TestClient(create_app(built)) as hub:
            token = phone.get(f"/demo/phone/{payer['id']}/code.json").json()["token"]
            answer = identify(hub, token)
            assert answer.status_code == 200, answer.text
            assert answer.json()["person"]["id"] == payer["id"]
    finally:
        built.close()


# -- the command line ---------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def roster_applied(config_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(hub_export()))
    code, _out, err = run(capsys, "roster", "apply", str(export_file), "--json")
    assert code == 0, err
    return config_env


def test_badge_json_is_the_contracts_shape_and_the_badge_opens_the_door(
    roster_applied: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "print" / "an.svg"
    code, out, err = run(capsys, "badge", "P1", "--out", str(out_file), "--json")
    assert code == 0, err
    issued = json.loads(out)
    assert list(issued) == ["person_id", "token", "expires_at", "file"]
    assert (issued["person_id"], issued["file"]) == ("P1", str(out_file))
    assert "An Nguyen" in out_file.read_text()
    token = parse(issued["token"])
    assert token is not None
    assert issued["expires_at"] == token.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert token.expires_at - token.issued_at == dt.timedelta(days=365)
    built = real_hub(roster_applied)
    try:
        with TestClient(create_app(built)) as hub:
            assert identify(hub, issued["token"]).status_code == 200
            code, out, _ = run(capsys, "badge", "revoke", "P1", "--json")
            assert (code, json.loads(out)) == (0, {"person_id": "P1", "revoked": 1})
            _refused(identify(hub, issued["token"]), R.REVOKED)
    finally:
        built.close()
    code, out, _ = run(capsys, "badge", "list", "P1", "--json")
    (listed,) = json.loads(out)
    assert (listed["person_id"], listed["status"], listed["revoked_at"] is not None) == ("P1", "revoked", True)


def test_badge_is_refused_for_a_non_payer_with_a_clear_message(
    roster_applied: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "badge", "P2", "--out", str(tmp_path / "binh.svg"), "--json")
    assert code == 1
    assert out == ""
    assert "Binh Tran (P2) is not a payer" in err
    assert not (tmp_path / "binh.svg").exists()
    code, _out, err = run(capsys, "badge", "P404")
    assert (code, "No person P404" in err) == (1, True)


def test_badge_png_and_the_default_file(
    roster_applied: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, "badge", "P1", "--out", str(tmp_path / "an.png"), "--json")
    assert code == 0
    assert (tmp_path / "an.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "badge", "P1")
    assert code == 0
    assert (tmp_path / "badge-P1.svg").exists()
    assert "badge-P1.svg" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["badge", "revoke"],
        ["badge", "P1", "P2"],
        ["badge", "P1", "--out", "x.pdf"],
        ["badge", "revoke", "P1", "--out", "x.svg"],
    ],
)
def test_badge_usage_errors(roster_applied: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("checkin-edge: ")
