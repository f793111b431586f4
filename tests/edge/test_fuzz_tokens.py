"""Fuzzing the QR token parser past its signature (issue #9).

tests/edge/test_tokens.py already fuzzes the text (any text is never a token, any bytes behind
the prefix never raise, any changed character is refused). Those inputs all stop at parsing or at
the signature. Here every token is *validly signed*, by the cloud's key, the appliance's badge key
or a stranger's, over arbitrary field values: any kind byte, a subject length that lies, subjects
that are not UTF-8 or not printable, times from 1970 to 2106 in any order, any nonce. So what the
verifier and the door do after the signature holds is what is fuzzed: they answer a person or
one of the contract's QR refusals, write a nonce only for an accepted app code, and never raise.
"""

from __future__ import annotations

import datetime as dt
import struct

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from edge.badges import BadgeKey
from edge.checkin import CheckinService
from edge.outcomes import Identification, Refusal
from edge.pins import PinHasher
from edge.policy import RefusalReason
from edge.store import Store
from edge.tokens import PREFIX, TokenKind, TokenService, key_fingerprint, parse
from tests.conftest import FakeClock
from tests.door import STATION, make_service
from tests.edge.test_tokens import CLOUD, STRANGER, encode, nonces
from tests.fuzzing import COUNTS, PARSER, seeded

R = RefusalReason
QR_REFUSALS = {R.NOT_A_TOKEN, R.BAD_SIGNATURE, R.UNKNOWN_KEY, R.EXPIRED, R.REPLAYED, R.REVOKED}
# What identify may answer to a scanned code: the QR refusals, and what the door says of the person
# a valid code names (none such, not a payer, not active).
DOOR_REFUSALS = QR_REFUSALS | {R.UNKNOWN_PIN, R.PIN_ONLY, R.PERSON_INACTIVE}


@st.composite
def signed_tokens(draw: st.DrawFn, badge: Ed25519PrivateKey, now: dt.datetime) -> tuple[str, Ed25519PrivateKey]:
    signer = draw(st.sampled_from([CLOUD, badge, STRANGER]))
    fingerprints = [key_fingerprint(k.public_key()) for k in (CLOUD, badge, STRANGER)]
    if draw(st.booleans()):  # as its signer would issue it: the kind and fingerprint that go with the key
        kind = 0x01 if signer is CLOUD else 0x02 if signer is badge else draw(st.sampled_from([0x01, 0x02]))
        fingerprint = key_fingerprint(signer.public_key())
    else:
        kind = draw(st.sampled_from([0x01, 0x02]) | st.integers(0, 255))
        fingerprint = draw(st.sampled_from(fingerprints) | st.binary(min_size=4, max_size=4))
    # Mostly well formed, so that most tokens reach the signature and what follows it.
    honest = draw(st.integers(0, 3)) > 0
    subject = draw(
        st.sampled_from([b"P1", b"P2", b"P9", b"E1", b"P404", b"C1", "Ñ".encode()])
        if honest
        else st.sampled_from([b"", b" P1", b"P1\n", b"\xff\xfe", b"P" * 24])
        | st.text(min_size=1, max_size=23).map(lambda s: s.encode("utf-8", "surrogatepass")[:23])
        | st.binary(max_size=30)
    )
    length = len(subject) if honest else draw(st.integers(0, 255))
    epoch = int(now.timestamp())
    if honest:  # issued in the last few minutes (or a little ahead), for a while
        issued = epoch + draw(st.integers(-300, 60))
        expires = issued + draw(st.integers(1, 600) | st.integers(1, 2**31))
    else:
        issued, expires = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
    expires = min(expires, 2**32 - 1)
    nonce = draw(st.binary(min_size=8, max_size=8))
    body = bytes((kind,)) + fingerprint + bytes((length,)) + subject + struct.pack(">II", issued, expires) + nonce
    return encode(body + signer.sign(PREFIX.encode() + body)), signer


def test_fuzz_signed_tokens_are_verified_or_refused(
    tokens: TokenService, store: Store, badge_key: BadgeKey, clock: FakeClock
) -> None:
    verdicts: set[object] = set()

    @seeded
    @PARSER
    @given(drawn=signed_tokens(badge_key.private_key, clock()))
    def fuzz(drawn: tuple[str, Ed25519PrivateKey]) -> None:
        COUNTS["QR tokens: signed, verified"] += 1
        text, signer = drawn
        before = nonces(store)
        verdict = tokens.verify(text, clock())
        token = parse(text)
        if isinstance(verdict, str) and not isinstance(verdict, RefusalReason):
            # Accepted: only an app code signed by the cloud's key, within its times.
            assert token is not None
            assert token.kind is TokenKind.APP
            assert signer is CLOUD
            assert token.subject == verdict
            assert nonces(store) == before + 1
            assert tokens.verify(text, clock()) is R.REPLAYED  # good once
            verdicts.add("accepted")
        else:
            assert verdict in QR_REFUSALS
            assert nonces(store) == before  # a refused code writes nothing
            verdicts.add(verdict)

    fuzz()
    assert "accepted" in verdicts
    assert {R.NOT_A_TOKEN, R.UNKNOWN_KEY, R.EXPIRED} <= verdicts


def test_fuzz_signed_tokens_at_the_door(
    tokens: TokenService, store: Store, hasher: PinHasher, badge_key: BadgeKey, clock: FakeClock
) -> None:
    door: CheckinService = make_service(store, hasher, clock, token_verifier=tokens)

    @seeded
    @PARSER
    @given(drawn=signed_tokens(badge_key.private_key, clock()))
    def fuzz(drawn: tuple[str, Ed25519PrivateKey]) -> None:
        COUNTS["QR tokens: signed, at the door"] += 1
        answer = door.identify(STATION, "qr", drawn[0])
        if isinstance(answer, Refusal):
            assert answer.reason in DOOR_REFUSALS
        else:
            assert isinstance(answer, Identification)
            assert answer.person.role.value == "payer"  # a code identifies payers only

    fuzz()
