"""Badges on a real SQLite file: the appliance's key, issuing to payers only, revoking, listing,
the door refusing revoked badges, and the printed SVG and PNG scanning back to the token."""

from __future__ import annotations

import datetime as dt
import re
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import zxingcpp
from sqlalchemy import select

from cloud_sync.roster_sync import RosterSyncService
from edge.badges import BadgeError, BadgeKey, BadgeService, IssuedBadge, badge_svg, write_badge
from edge.checkin import CheckinService
from edge.models import AuditEntry
from edge.outcomes import Identification, Refusal
from edge.pins import PinHasher
from edge.policy import RefusalReason
from edge.store import Store
from edge.tokens import TokenKind, TokenService, key_fingerprint, parse, sign_token
from tests.conftest import FakeClock
from tests.door import STATION, apply, door_export, make_service

R = RefusalReason
YEAR = dt.timedelta(days=365)


@pytest.fixture
def badges(store: Store, roster_sync: RosterSyncService, badge_key: BadgeKey, clock: FakeClock) -> BadgeService:
    apply(roster_sync)
    return BadgeService(store, badge_key, clock=clock)


@pytest.fixture
def tokens(store: Store, badge_key: BadgeKey) -> TokenService:
    return TokenService(store, badge_key.private_key.public_key(), badge_kid=badge_key.kid)


@pytest.fixture
def door(store: Store, hasher: PinHasher, clock: FakeClock, tokens: TokenService) -> CheckinService:
    return make_service(store, hasher, clock, token_verifier=tokens)


# -- the key ------------------------------------------------------------------------------------


def test_the_badge_key_is_made_once_private_and_kept(data_dir: Path) -> None:
    first = BadgeKey.from_data_dir(data_dir)
    path = data_dir / "badge.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    again = BadgeKey.from_data_dir(data_dir)
    assert again.private_key.private_bytes_raw() == first.private_key.private_bytes_raw()
    assert re.fullmatch(r"appliance-[0-9a-f]{8}", first.kid)
    assert first.kid == "appliance-" + key_fingerprint(first.private_key.public_key()).hex()


# -- issuing ------------------------------------------------------------------------------------


def test_a_payer_gets_a_year_long_signed_badge(
    badges: BadgeService, badge_key: BadgeKey, store: Store, clock: FakeClock
) -> None:
    badge = badges.issue_badge("P1")
    token = parse(badge.token)
    assert token is not None
    assert (token.kind, token.subject) == (TokenKind.BADGE, "P1")
    assert token.fingerprint == key_fingerprint(badge_key.private_key.public_key())
    assert (token.issued_at, token.expires_at) == (clock(), clock() + YEAR)
    assert (badge.person_name, badge.center_name, badge.badge_id) == (
        "An Nguyen",
        "Maple Street Early Learning",
        token.nonce_hex,
    )
    (record,) = badges.list_badges("P1")
    assert (record.badge_id, record.kid, record.status(clock())) == (badge.badge_id, badge_key.kid, "valid")
    with store.read() as session:
        row = session.scalars(select(AuditEntry).where(AuditEntry.action == "badge_issue")).one()
    assert (row.actor_id, row.detail) == (
        "P1",
        {"badge_id": badge.badge_id, "kid": badge_key.kid, "expires_at": (clock() + YEAR).isoformat()},
    )
    assert badge.token not in str(row.detail)


@pytest.mark.parametrize(
    ("person_id", "words"),
    [("P2", "not a payer"), ("P404", "No person P404"), ("P9", "not active")],
)
def test_only_active_payers_get_badges(
    badges: BadgeService, roster_sync: RosterSyncService, clock: FakeClock, person_id: str, words: str
) -> None:
    page = door_export()
    page["families"][1]["persons"] = []  # P9 leaves the roster: inactive
    clock.advance(minutes=1)
    apply(roster_sync, page)
    with pytest.raises(BadgeError, match=words):
        badges.issue_badge(person_id)
    assert badges.list_badges() == []


# -- at the door --------------------------------------------------------------------------------


def identified(result: Identification | Refusal) -> Identification:
    assert isinstance(result, Identification), result
    return result


def refused(result: Identification | Refusal, reason: RefusalReason) -> None:
    assert isinstance(result, Refusal), result
    assert result.reason is reason


def test_a_badge_works_every_day_until_revoked(
    badges: BadgeService, door: CheckinService, tokens: TokenService, clock: FakeClock
) -> None:
    badge = badges.issue_badge("P1")
    older = badges.issue_badge("P1")
    found = identified(door.identify(STATION, "qr", badge.token))
    assert not isinstance(door.act(found.ticket, ["C1"], "check_in"), Refusal)
    clock.advance(hours=9)
    identified(door.identify(STATION, "qr", badge.token))  # not single use, unlike an app code
    assert badges.revoke_badges("P1") == 2
    assert badges.revoke_badges("P1") == 0
    refused(door.identify(STATION, "qr", badge.token), R.REVOKED)
    assert tokens.verify(older.token, clock()) is R.REVOKED
    clock.advance(days=30)
    refused(door.identify(STATION, "qr", badge.token), R.REVOKED)  # and stays refused
    assert {record.status(clock()) for record in badges.list_badges("P1")} == {"revoked"}


def test_a_badge_expires_after_a_year(badges: BadgeService, tokens: TokenService, clock: FakeClock) -> None:
    badge = badges.issue_badge("P1")
    clock.advance(days=365, seconds=30)
    assert tokens.verify(badge.token, clock()) == "P1"
    clock.advance(seconds=1)
    assert tokens.verify(badge.token, clock()) is R.EXPIRED
    assert badges.list_badges()[0].status(clock()) == "expired"


def test_a_badge_this_appliance_has_no_record_of_is_refused(
    badges: BadgeService, badge_key: BadgeKey, tokens: TokenService, clock: FakeClock
) -> None:
    # Signed by our key but never recorded: a database restored from before it was issued.
    unrecorded = sign_token(badge_key.private_key, TokenKind.BADGE, "P1", clock(), clock() + YEAR)
    assert tokens.verify(unrecorded, clock()) is R.REVOKED


def test_a_payer_who_becomes_a_pickup_is_pin_only_with_their_badge(
    badges: BadgeService, door: CheckinService, roster_sync: RosterSyncService, clock: FakeClock
) -> None:
    badge = badges.issue_badge("P1")
    page = door_export()
    page["families"][0]["persons"][0]["payer"] = False
    clock.advance(minutes=1)
    apply(roster_sync, page)
    refused(door.identify(STATION, "qr", badge.token), R.PIN_ONLY)


# -- printing -----------------------------------------------------------------------------------


def svg_root(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 (our own output, not untrusted input)


def _decode(image: np.ndarray) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def _raster_of_svg_path(svg: str, scale: int = 6) -> np.ndarray:
    """Draw the QR path's runs ("M{x} {y}h{n}v1h-{n}z", module units) into a grey image."""
    runs = [tuple(map(int, m)) for m in re.findall(r"M(\d+) (\d+)h(\d+)", svg)]
    size = max(x + n for x, _y, n in runs) + 4
    modules = np.full((size, size), 255, np.uint8)
    for x, y, n in runs:
        modules[y, x : x + n] = 0
    return np.kron(modules, np.ones((scale, scale), np.uint8))


def test_the_svg_card_has_the_names_and_scans_back(badges: BadgeService, tmp_path: Path) -> None:
    badge = badges.issue_badge("P1")
    path = write_badge(badge, tmp_path / "badge.svg")
    svg = path.read_text()
    root = svg_root(svg)
    texts = [el.text for el in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "An Nguyen" in texts
    assert "Maple Street Early Learning" in texts
    assert (root.get("width"), root.get("height")) == ("54.0mm", "85.6mm")
    assert _decode(_raster_of_svg_path(svg)) == [badge.token]


def test_the_png_is_the_qr_code_and_scans_back(badges: BadgeService, tmp_path: Path) -> None:
    import cv2

    badge = badges.issue_badge("P1")
    path = write_badge(badge, tmp_path / "out" / "badge.PNG")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _decode(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)) == [badge.token]
    assert not list(path.parent.glob("*.tmp"))


def test_names_are_escaped_and_long_ones_squeezed_to_fit() -> None:
    now = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    badge = IssuedBadge(
        "P1", "Zoë <Ortiz> & María-José de la Cruz Hernández", "Little Oaks", "CE1AAAA", "00", now, now + YEAR
    )
    root = svg_root(badge_svg(badge))
    name = next(el for el in root.iter("{http://www.w3.org/2000/svg}text") if el.text and "Zoë" in el.text)
    assert name.text == "Zoë <Ortiz> & María-José de la Cruz Hernández"
    assert name.get("textLength") == "48.0"


def test_only_svg_or_png(badges: BadgeService, tmp_path: Path) -> None:
    with pytest.raises(BadgeError, match=r"\.svg or \.png"):
        write_badge(badges.issue_badge("P1"), tmp_path / "badge.pdf")
