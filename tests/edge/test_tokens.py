"""QR tokens on a real SQLite file: the byte layout, strict parsing, every refusal reason of the
contract (directly and through CheckinService.identify with method "qr"), replay memory that
survives a restart, and a fuzzed parser that never raises."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from cloud_sync.roster_sync import RosterSyncService
from edge.badges import BadgeKey, BadgeService
from edge.checkin import CheckinService
from edge.models import AttendanceEvent, AuditEntry, SeenNonce
from edge.outcomes import Identification, Refusal
from edge.pins import PinHasher
from edge.policy import RefusalReason
from edge.store import Store
from edge.tokens import (
    MAX_SUBJECT_BYTES,
    MAX_TOKEN_CHARS,
    PREFIX,
    TokenKind,
    TokenService,
    key_fingerprint,
    parse,
    sign_token,
)
from tests.conftest import FakeClock
from tests.door import STATION, apply, door_export, make_service

R = RefusalReason
CLOUD = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test cloud key").digest())
STRANGER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"someone else's key").digest())
CLOUD_KID = "cloud-test"
TTL = dt.timedelta(seconds=90)
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def keys_entry(key: Ed25519PrivateKey = CLOUD, kid: str = CLOUD_KID) -> dict[str, str]:
    public = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    return {"kid": kid, "alg": "Ed25519", "public_key": public}


def roster_with_keys(*keys: dict[str, str]) -> dict[str, Any]:
    page = door_export()
    page["keys"] = list(keys) if keys else [keys_entry()]
    return page


def app_code(person_id: str, now: dt.datetime, *, key: Ed25519PrivateKey = CLOUD, ttl: dt.timedelta = TTL) -> str:
    return sign_token(key, TokenKind.APP, person_id, now, now + ttl)


def body_bytes(token: str) -> bytes:
    body = token[len(PREFIX) :]
    return base64.b32decode(body + "=" * (-len(body) % 8))


def encode(raw: bytes) -> str:
    return PREFIX + base64.b32encode(raw).decode().rstrip("=")


@pytest.fixture
def badges(store: Store, badge_key: BadgeKey, clock: FakeClock) -> BadgeService:
    return BadgeService(store, badge_key, clock=clock)


@pytest.fixture
def door(store: Store, hasher: PinHasher, clock: FakeClock, tokens: TokenService) -> CheckinService:
    return make_service(store, hasher, clock, token_verifier=tokens)


def nonces(store: Store) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(SeenNonce)) or 0)


# -- the format ---------------------------------------------------------------------------------


def test_the_byte_layout_is_as_documented(clock: FakeClock) -> None:
    nonce = bytes(range(1, 9))
    token = sign_token(CLOUD, TokenKind.APP, "P1", clock(), clock() + TTL, nonce=nonce)
    raw = body_bytes(token)
    assert token.startswith("CE1")
    assert raw[0] == 0x01  # kind: app (a badge is 0x02)
    assert raw[1:5] == hashlib.sha256(CLOUD.public_key().public_bytes_raw()).digest()[:4]
    assert raw[5] == 2
    assert raw[6:8] == b"P1"
    assert struct.unpack(">II", raw[8:16]) == (int(clock().timestamp()), int((clock() + TTL).timestamp()))
    assert raw[16:24] == nonce
    assert len(raw) == 24 + 64
    CLOUD.public_key().verify(raw[24:], b"CE1" + raw[:24])  # over the prefix and everything before it
    parsed = parse(token)
    assert parsed is not None
    assert (parsed.kind, parsed.subject, parsed.issued_at, parsed.expires_at, parsed.nonce) == (
        TokenKind.APP,
        "P1",
        clock(),
        clock() + TTL,
        nonce,
    )


def test_a_token_is_alphanumeric_and_fits_qr_version_7_at_m(clock: FakeClock) -> None:
    short = app_code("P123", clock())
    longest = app_code("X" * MAX_SUBJECT_BYTES, clock())
    assert len(short) == 147
    assert len(longest) == MAX_TOKEN_CHARS == 178
    for token in (short, longest):
        qr = segno.make(token, error="m", boost_error=False)
        assert qr.mode == "alphanumeric"
        assert qr.version <= 7
    assert segno.make(short, error="m").version == 6  # a typical person id: version 6, 41 modules
    with pytest.raises(ValueError, match="subject"):
        app_code("X" * (MAX_SUBJECT_BYTES + 1), clock())


def _valid(clock: FakeClock) -> str:
    return app_code("P1", clock())


NOT_TOKENS: list[tuple[str, Callable[[str], str]]] = [
    ("empty", lambda _t: ""),
    ("url", lambda _t: "https://example.org/checkin?person=P1"),
    ("url upper case", lambda _t: "HTTPS://EXAMPLE.ORG/CE1"),
    ("ean-13", lambda _t: "4006381333931"),
    ("random bytes", lambda _t: random.Random(5).randbytes(150).decode("latin-1")),
    ("random bytes behind our prefix", lambda _t: "CE1" + random.Random(6).randbytes(144).decode("latin-1")),
    ("random base32 behind our prefix", lambda _t: "CE1" + "".join(random.Random(7).choices(B32, k=144))),
    ("3 KB blob", lambda _t: "A" * 3072),
    ("3 KB blob with our prefix", lambda t: t + "A" * 3000),
    ("prefix only", lambda _t: "CE1"),
    ("other version", lambda t: "CE2" + t[3:]),
    ("lower case", lambda t: t.lower()),
    ("a character more", lambda t: t + "A"),
    ("a character less", lambda t: t[:-1]),
    ("eight characters less", lambda t: t[:-8]),
    ("padding", lambda t: t + "="),
    ("surrounding space", lambda t: f" {t} "),
    ("a newline inside", lambda t: t[:40] + "\n" + t[40:]),
    ("base32 of nothing", lambda _t: "CE1AAAAAAAA"),
    ("a byte more", lambda t: encode(body_bytes(t) + b"\x00")),
    ("a byte less", lambda t: encode(body_bytes(t)[:-1])),
    ("unknown kind", lambda t: encode(b"\x07" + body_bytes(t)[1:])),
    ("subject length 0", lambda t: encode(body_bytes(t)[:5] + b"\x00" + body_bytes(t)[6:])),
    ("subject length too long", lambda t: encode(body_bytes(t)[:5] + b"\x03" + body_bytes(t)[6:])),
    ("subject not utf-8", lambda t: encode(body_bytes(t)[:6] + b"\xff\xfe" + body_bytes(t)[8:])),
]


def _non_canonical(token: str) -> str:
    # 88 bytes are 141 characters with 1 spare bit; a last character that sets it decodes to the same bytes.
    return token[:-1] + B32[B32.index(token[-1]) | 1]


@pytest.mark.parametrize(("case", "make"), NOT_TOKENS, ids=[case for case, _ in NOT_TOKENS])
def test_anything_else_does_not_parse(clock: FakeClock, case: str, make: Callable[[str], str]) -> None:
    assert parse(make(_valid(clock))) is None


def test_anything_else_is_refused_as_not_a_token(tokens: TokenService, store: Store, clock: FakeClock) -> None:
    for case, make in NOT_TOKENS:
        assert tokens.verify(make(_valid(clock)), clock()) is R.NOT_A_TOKEN, case
    assert nonces(store) == 0  # nothing written for any of them


def test_one_token_has_one_text(tokens: TokenService, clock: FakeClock) -> None:
    token = _valid(clock)
    assert len(body_bytes(token)) * 8 % 5  # leftover bits exist in the last character
    twin = _non_canonical(token)
    assert twin != token
    assert body_bytes(twin) == body_bytes(token)
    assert parse(twin) is None
    assert tokens.verify(twin, clock()) is R.NOT_A_TOKEN


def test_expiry_before_issue_is_not_a_token(clock: FakeClock) -> None:
    raw = bytearray(body_bytes(_valid(clock)))
    raw[8:16] = struct.pack(">II", 2_000_000_000, 1_000_000_000)
    assert parse(encode(bytes(raw))) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_fuzz_text_is_never_a_token(text: str) -> None:
    assert parse(text) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=140))
def test_fuzz_bytes_behind_our_prefix_never_raise(raw: bytes) -> None:
    text = encode(raw)
    parsed = parse(text)
    if parsed is not None:  # structurally a token: it must read back exactly
        assert encode(parsed.signed[3:] + parsed.signature) == text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_any_changed_character_is_refused(tokens: TokenService, clock: FakeClock, data: st.DataObject) -> None:
    token = app_code("P1", clock() - dt.timedelta(hours=1))  # expired, so no nonce is ever written
    index = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from(B32))
    changed = token[:index] + char + token[index + 1 :]
    verdict = tokens.verify(changed, clock())
    if changed == token:
        assert verdict is R.EXPIRED  # the signature held: only the time refused it
    else:
        assert verdict in (R.NOT_A_TOKEN, R.BAD_SIGNATURE, R.UNKNOWN_KEY)


# -- keys and signatures ------------------------------------------------------------------------


def test_a_valid_app_code_names_its_person(tokens: TokenService, clock: FakeClock) -> None:
    assert tokens.verify(app_code("P1", clock()), clock()) == "P1"


def test_a_flipped_signature_bit_is_a_bad_signature(tokens: TokenService, store: Store, clock: FakeClock) -> None:
    raw = bytearray(body_bytes(app_code("P1", clock())))
    raw[-1] ^= 0x01
    assert tokens.verify(encode(bytes(raw)), clock()) is R.BAD_SIGNATURE
    assert nonces(store) == 0


def test_a_changed_subject_is_a_bad_signature(tokens: TokenService, clock: FakeClock) -> None:
    raw = body_bytes(app_code("P1", clock()))
    forged = raw[:6] + b"P9" + raw[8:]  # someone else's id under P1's signature
    assert tokens.verify(encode(forged), clock()) is R.BAD_SIGNATURE


def test_keys_are_trusted_only_for_their_own_kind(tokens: TokenService, badge_key: BadgeKey, clock: FakeClock) -> None:
    now, later = clock(), clock() + TTL
    assert tokens.verify(app_code("P1", now, key=STRANGER), now) is R.UNKNOWN_KEY
    # An app code signed by the appliance's badge key, a badge signed by the cloud's key.
    assert tokens.verify(sign_token(badge_key.private_key, TokenKind.APP, "P1", now, later), now) is R.UNKNOWN_KEY
    assert tokens.verify(sign_token(CLOUD, TokenKind.BADGE, "P1", now, later), now) is R.UNKNOWN_KEY


def test_a_key_the_roster_drops_is_no_longer_trusted(
    tokens: TokenService, roster_sync: RosterSyncService, clock: FakeClock
) -> None:
    new_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"next year's key").digest())
    assert tokens.verify(app_code("P1", clock(), key=new_key), clock()) is R.UNKNOWN_KEY
    clock.advance(minutes=1)
    apply(roster_sync, roster_with_keys(keys_entry(new_key, "cloud-next")))  # rotated: the old one dropped
    assert tokens.verify(app_code("P1", clock(), key=new_key), clock()) == "P1"
    assert tokens.verify(app_code("P1", clock()), clock()) is R.UNKNOWN_KEY


def test_fingerprint_is_four_bytes_of_the_public_keys_sha256() -> None:
    assert key_fingerprint(CLOUD.public_key()) == hashlib.sha256(CLOUD.public_key().public_bytes_raw()).digest()[:4]


# -- time ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds_after_issue", "verdict"),
    [
        (-31, R.EXPIRED),  # issued in the future beyond the tolerance: a clock is wrong
        (-30, "P1"),
        (0, "P1"),
        (90 + 30, "P1"),  # expired, but within the tolerance
        (90 + 31, R.EXPIRED),
        (3600, R.EXPIRED),
    ],
)
def test_expiry_with_30_s_of_tolerance(
    tokens: TokenService, clock: FakeClock, seconds_after_issue: int, verdict: str
) -> None:
    code = app_code("P1", clock())
    clock.advance(seconds=seconds_after_issue)
    assert tokens.verify(code, clock()) == verdict


# -- replay -------------------------------------------------------------------------------------


def test_an_app_code_is_good_once_even_after_a_restart(
    tokens: TokenService, store: Store, badge_key: BadgeKey, clock: FakeClock
) -> None:
    code = app_code("P1", clock())
    assert tokens.verify(code, clock()) == "P1"
    assert tokens.verify(code, clock()) is R.REPLAYED
    assert nonces(store) == 1  # written once, on first sight
    restarted_store = Store(store.url)
    try:
        restarted = TokenService(restarted_store, badge_key.private_key.public_key(), badge_kid=badge_key.kid)
        clock.advance(seconds=60)
        assert restarted.verify(code, clock()) is R.REPLAYED
    finally:
        restarted_store.close()


def test_nonces_are_forgotten_once_their_code_has_expired(tokens: TokenService, store: Store, clock: FakeClock) -> None:
    for _ in range(3):
        assert tokens.verify(app_code("P1", clock()), clock()) == "P1"
    assert nonces(store) == 3
    clock.advance(seconds=90 + 31)  # all three are past expiry and tolerance: refused anyway
    assert tokens.verify(app_code("P1", clock()), clock()) == "P1"
    assert nonces(store) == 1  # pruned by the next first sight, in the same write


# -- through the check-in service ---------------------------------------------------------------


def identified(result: Identification | Refusal) -> Identification:
    assert isinstance(result, Identification), result
    return result


def refused(result: Identification | Refusal, reason: RefusalReason) -> None:
    assert isinstance(result, Refusal), result
    assert result.reason is reason


def attendance_count(store: Store) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(AttendanceEvent)) or 0)


def last_audit(store: Store) -> AuditEntry:
    with store.read() as session:
        row = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
    assert row is not None
    return row


def test_a_payers_app_code_identifies_and_checks_in(door: CheckinService, store: Store, clock: FakeClock) -> None:
    found = identified(door.identify(STATION, "qr", app_code("P1", clock())))
    assert (found.person.id, found.person.role.value) == ("P1", "payer")
    result = door.act(found.ticket, ["C1"], "check_in")
    assert not isinstance(result, Refusal), result
    assert [(e.subject_id, e.method.value) for e in result] == [("C1", "qr")]


def test_a_non_payers_valid_code_is_pin_only_and_checks_nobody_in(
    door: CheckinService, store: Store, clock: FakeClock
) -> None:
    code = app_code("P2", clock())  # Binh: an authorized pickup, not a payer
    refused(door.identify(STATION, "qr", code), R.PIN_ONLY)
    assert (last_audit(store).reason, last_audit(store).actor_id) == ("pin_only", "P2")
    assert attendance_count(store) == 0


def test_an_inactive_persons_valid_code_is_refused(
    door: CheckinService, roster_sync: RosterSyncService, store: Store, clock: FakeClock
) -> None:
    page = roster_with_keys()
    smith = page["families"][1]
    smith["persons"] = []  # Cal (P9) leaves the roster: deactivated, not deleted
    clock.advance(minutes=1)
    apply(roster_sync, page)
    refused(door.identify(STATION, "qr", app_code("P9", clock())), R.PERSON_INACTIVE)
    refused(door.identify(STATION, "qr", app_code("P404", clock())), R.PERSON_INACTIVE)  # never in it
    assert attendance_count(store) == 0


def test_every_token_refusal_through_identify_is_audited(
    door: CheckinService, badges: BadgeService, store: Store, clock: FakeClock
) -> None:
    now = clock()
    flipped = bytearray(body_bytes(app_code("P1", now)))
    flipped[-5] ^= 0x10
    used = app_code("P1", now)
    identified(door.identify(STATION, "qr", used))
    badge = badges.issue_badge("P1")
    badges.revoke_badges("P1")
    cases = [
        ("https://example.org/", R.NOT_A_TOKEN),
        (encode(bytes(flipped)), R.BAD_SIGNATURE),
        (app_code("P1", now, key=STRANGER), R.UNKNOWN_KEY),
        (app_code("P1", now - dt.timedelta(hours=1)), R.EXPIRED),
        (used, R.REPLAYED),
        (badge.token, R.REVOKED),
    ]
    for text, reason in cases:
        refused(door.identify(STATION, "qr", text), reason)
        row = last_audit(store)
        assert (row.action, row.method, row.reason) == ("identify", "qr", reason.value)
    assert attendance_count(store) == 0
