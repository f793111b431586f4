"""QR tokens: the compact Ed25519-signed text a payer shows at the door (docs/qr-tokens.md).

Two kinds, one format: **app codes** (issued by the cloud, short-lived, shown rotating on the
parent's phone) and **badges** (issued and printed by this appliance, valid for a year unless
revoked). The text is ``CE1`` followed by unpadded upper-case base32 of::

    kind(1) | key fingerprint(4) | subject length(1) | subject(n) | issued_at(4) | expires_at(4)
    | nonce(8) | Ed25519 signature(64) over b"CE1" + everything before it

Upper-case base32 stays inside the QR alphanumeric character set (5.5 bits a character instead of
8): a token for a short person id is ~147 characters and a version 6 QR code at error correction
M, where the same bytes in base64 would need version 8.

``parse`` is strict and total: anything that is not exactly a well-formed token (a URL, a product
barcode, random bytes, a 3 KB blob, a token with a byte added) is ``None``, never an exception.
``TokenService.verify`` is the check-in service's ``TokenVerifier``: it answers the person id or
the refusal reason, and writes only on the first sight of a valid app code (its nonce, kept until
the code expires: an SD card is not written for every frame a scanner reads).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import hashlib
import logging
import re
import secrets
import struct
import threading
from dataclasses import dataclass
from typing import cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Table, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from edge import const
from edge.models import Badge, SeenNonce, TrustedKey
from edge.policy import RefusalReason
from edge.store import Store

log = logging.getLogger(__name__)

PREFIX = "CE1"  # "checkin-edge", format 1: a new layout gets a new prefix, never a reinterpretation
_PREFIX_BYTES = PREFIX.encode("ascii")
FINGERPRINT_BYTES = 4
NONCE_BYTES = 8
SIGNATURE_BYTES = 64
# Longest subject (person id, UTF-8 bytes) whose token still fits QR version 7 at error correction M
# (178 alphanumeric characters): 3 + ceil((86 + 23) * 8 / 5) = 178.
MAX_SUBJECT_BYTES = 23
_FIXED_BYTES = 1 + FINGERPRINT_BYTES + 1 + 4 + 4 + NONCE_BYTES + SIGNATURE_BYTES  # 86
_MIN_BYTES = _FIXED_BYTES + 1
_MAX_BYTES = _FIXED_BYTES + MAX_SUBJECT_BYTES
MAX_TOKEN_CHARS = len(PREFIX) + -(-_MAX_BYTES * 8 // 5)  # 178; anything longer is not looked at
_MIN_TOKEN_CHARS = len(PREFIX) + -(-_MIN_BYTES * 8 // 5)
_BASE32_BODY = re.compile(r"[A-Z2-7]+", re.ASCII)
_TIMES = struct.Struct(">II")
_UINT32_MAX = 2**32 - 1
ED25519 = "Ed25519"


class TokenKind(enum.StrEnum):
    APP = "app"  # signed by a cloud key from the roster's ``keys``
    BADGE = "badge"  # signed by this appliance's own badge key


_KIND_BYTE = {TokenKind.APP: 0x01, TokenKind.BADGE: 0x02}
_BYTE_KIND = {value: kind for kind, value in _KIND_BYTE.items()}


@dataclass(frozen=True)
class Token:
    """A parsed token: well formed, but neither its signature nor its times checked yet."""

    kind: TokenKind
    fingerprint: bytes  # of the signing key's raw public key: which key to try
    subject: str  # the person id
    issued_at: dt.datetime
    expires_at: dt.datetime
    nonce: bytes
    signed: bytes  # the message the signature covers: b"CE1" + the bytes before the signature
    signature: bytes

    @property
    def nonce_hex(self) -> str:
        return self.nonce.hex()


def key_fingerprint(public_key: Ed25519PublicKey) -> bytes:
    """The first 4 bytes of SHA-256 of the raw 32-byte public key: a hint naming the key in a token.

    Not a security boundary: two keys sharing a fingerprint are both tried, and only a signature
    that verifies counts."""
    return hashlib.sha256(public_key.public_bytes_raw()).digest()[:FINGERPRINT_BYTES]


def _epoch(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("token times must be timezone-aware")
    return int(moment.timestamp())


def _from_epoch(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def sign_token(
    private_key: Ed25519PrivateKey,
    kind: TokenKind,
    subject: str,
    issued_at: dt.datetime,
    expires_at: dt.datetime,
    *,
    nonce: bytes | None = None,
) -> str:
    """The token text for ``subject``, signed by ``private_key``; ``ValueError`` for what cannot be one."""
    subject_bytes = subject.encode("utf-8")
    if not 1 <= len(subject_bytes) <= MAX_SUBJECT_BYTES or not _subject_ok(subject):
        raise ValueError(f"a token's subject is 1 to {MAX_SUBJECT_BYTES} bytes of printable text")
    issued, expires = _epoch(issued_at), _epoch(expires_at)
    if not 0 <= issued < expires <= _UINT32_MAX:
        raise ValueError("a token expires after it is issued, before 2106")
    nonce = secrets.token_bytes(NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
    body = b"".join(
        (
            bytes((_KIND_BYTE[kind],)),
            key_fingerprint(private_key.public_key()),
            bytes((len(subject_bytes),)),
            subject_bytes,
            _TIMES.pack(issued, expires),
            nonce,
        )
    )
    signature = private_key.sign(_PREFIX_BYTES + body)
    return PREFIX + base64.b32encode(body + signature).decode("ascii").rstrip("=")


def _subject_ok(subject: str) -> bool:
    return subject.isprintable() and subject.strip() == subject


def parse(text: object) -> Token | None:
    """The token in ``text``, or ``None`` for anything that is not exactly one. Never raises."""
    if not isinstance(text, str) or not _MIN_TOKEN_CHARS <= len(text) <= MAX_TOKEN_CHARS:
        return None
    if not text.startswith(PREFIX):
        return None
    body = text[len(PREFIX) :]
    # Lengths 1, 3 and 6 mod 8 cannot end a base32 string; the others decode once padded.
    if not _BASE32_BODY.fullmatch(body) or len(body) % 8 in (1, 3, 6):
        return None
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        return None
    # Canonical only: leftover bits must be zero, so one token has exactly one text.
    if base64.b32encode(raw).decode("ascii").rstrip("=") != body:
        return None
    return _parse_bytes(raw)


def _parse_bytes(raw: bytes) -> Token | None:
    if not _MIN_BYTES <= len(raw) <= _MAX_BYTES:
        return None
    kind = _BYTE_KIND.get(raw[0])
    if kind is None:
        return None
    fingerprint = raw[1 : 1 + FINGERPRINT_BYTES]
    at = 1 + FINGERPRINT_BYTES
    length = raw[at]
    at += 1
    if not 1 <= length <= MAX_SUBJECT_BYTES or len(raw) != _FIXED_BYTES + length:  # no byte more, none less
        return None
    try:
        subject = raw[at : at + length].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not _subject_ok(subject):
        return None
    at += length
    issued, expires = _TIMES.unpack_from(raw, at)
    if expires <= issued:
        return None
    at += _TIMES.size
    nonce = raw[at : at + NONCE_BYTES]
    at += NONCE_BYTES
    return Token(
        kind=kind,
        fingerprint=fingerprint,
        subject=subject,
        issued_at=_from_epoch(issued),
        expires_at=_from_epoch(expires),
        nonce=nonce,
        signed=_PREFIX_BYTES + raw[:at],
        signature=raw[at:],
    )


def public_key_from_b64(text: str) -> Ed25519PublicKey | None:
    """A roster ``keys`` entry's public key (raw 32 bytes, standard base64), or ``None`` if it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True)
class _Key:
    kid: str
    public_key: Ed25519PublicKey
    fingerprint: bytes


NONCES = cast(Table, SeenNonce.__table__)
BADGES = cast(Table, Badge.__table__)
KEYS = cast(Table, TrustedKey.__table__)
_ACTIVE_KEYS = select(KEYS.c.kid, KEYS.c.public_key).where(KEYS.c.active.is_(True), KEYS.c.alg == ED25519)
_NONCE_SEEN = select(NONCES.c.nonce).where(NONCES.c.nonce == bindparam("nonce"))
_PRUNE_NONCES = delete(NONCES).where(NONCES.c.keep_until < bindparam("now"))
_BADGE = select(BADGES.c.person_id, BADGES.c.revoked_at).where(BADGES.c.id == bindparam("id"))


class TokenService:
    """Verifies scanned QR texts for the check-in service (``edge.checkin.TokenVerifier``).

    Cloud keys come from the roster (``trusted_keys``, active, Ed25519) and sign app codes only;
    the appliance's badge key signs badges only: a badge signed by a cloud key, or an app code
    signed by the badge key, names a key this kind does not trust (``unknown_key``).
    """

    def __init__(
        self,
        store: Store,
        badge_public_key: Ed25519PublicKey,
        *,
        badge_kid: str,
        tolerance_s: float = const.TOKEN_CLOCK_TOLERANCE_S,
    ) -> None:
        self.store = store
        self.badge_key = _Key(badge_kid, badge_public_key, key_fingerprint(badge_public_key))
        self.tolerance = dt.timedelta(seconds=tolerance_s)
        # Decoded cloud keys by (kid, base64 text): decoding is cheap, but not free on a Pi, and the
        # roster changes them a few times a year.
        self._decoded: dict[tuple[str, str], _Key | None] = {}
        self._decoded_lock = threading.Lock()

    def verify(self, text: str, now: dt.datetime) -> str | RefusalReason:
        """The person id a valid token names, or why it is refused."""
        token = parse(text)
        if token is None:
            return RefusalReason.NOT_A_TOKEN
        candidates = self._keys_for(token)
        if not candidates:
            log.info("QR %s refused: no trusted key has its fingerprint (person %s)", token.kind.value, token.subject)
            return RefusalReason.UNKNOWN_KEY
        signer = next((key for key in candidates if _signed_by(token, key.public_key)), None)
        if signer is None:
            log.info("QR %s refused: bad signature (person %s)", token.kind.value, token.subject)
            return RefusalReason.BAD_SIGNATURE
        # Outside issued_at - tolerance .. expires_at + tolerance: expired, or not valid yet (a code
        # from the future means a clock is wrong; the screen's "expired" is the useful advice either way).
        if now + self.tolerance < token.issued_at or now - self.tolerance > token.expires_at:
            log.info("QR %s refused: expired (key %s, person %s)", token.kind.value, signer.kid, token.subject)
            return RefusalReason.EXPIRED
        refusal = self._check_app_code(token, now) if token.kind is TokenKind.APP else self._check_badge(token)
        if refusal is not None:
            log.info(
                "QR %s refused: %s (key %s, person %s)", token.kind.value, refusal.value, signer.kid, token.subject
            )
            return refusal
        return token.subject

    # -- keys -------------------------------------------------------------------------------------

    def _keys_for(self, token: Token) -> list[_Key]:
        if token.kind is TokenKind.BADGE:
            return [self.badge_key] if token.fingerprint == self.badge_key.fingerprint else []
        with self.store.read() as session:
            rows = session.connection().execute(_ACTIVE_KEYS).all()
        keys = (self._decode(kid, public_key) for kid, public_key in rows)
        return [key for key in keys if key is not None and key.fingerprint == token.fingerprint]

    def _decode(self, kid: str, public_key: str) -> _Key | None:
        cache_key = (kid, public_key)
        with self._decoded_lock:
            if cache_key in self._decoded:
                return self._decoded[cache_key]
        decoded = public_key_from_b64(public_key)
        key = _Key(kid, decoded, key_fingerprint(decoded)) if decoded is not None else None
        if key is None:
            log.warning("trusted key %s is not a valid Ed25519 public key: ignored", kid)
        with self._decoded_lock:
            if len(self._decoded) > 64:  # keys rotated many times over: start afresh
                self._decoded.clear()
            self._decoded[cache_key] = key
        return key

    # -- app codes: replay ------------------------------------------------------------------------

    def _check_app_code(self, token: Token, now: dt.datetime) -> RefusalReason | None:
        params = {"nonce": token.nonce_hex}
        # A read first: a replayed code (a phone held up past the scanner's debounce, a photo of
        # a phone) costs no write and never waits for the writer.
        with self.store.read() as session:
            if session.connection().execute(_NONCE_SEEN, params).first() is not None:
                return RefusalReason.REPLAYED
        keep_until = token.expires_at + self.tolerance
        try:
            with self.store.transaction() as session:
                conn = session.connection()
                if conn.execute(_NONCE_SEEN, params).first() is not None:  # another door, a moment ago
                    return RefusalReason.REPLAYED
                # Pruning rides on this write: no writes of its own, and the table holds only the
                # codes of the last minute or two.
                conn.execute(_PRUNE_NONCES, {"now": now})
                conn.execute(insert(NONCES), {"nonce": token.nonce_hex, "keep_until": keep_until})
        except IntegrityError:  # another process wrote it between our check and our insert
            return RefusalReason.REPLAYED
        return None

    # -- badges: revocation -----------------------------------------------------------------------

    def _check_badge(self, token: Token) -> RefusalReason | None:
        with self.store.read() as session:
            row = session.connection().execute(_BADGE, {"id": token.nonce_hex}).first()
        # Only badges this appliance's database lists are good: one it has no record of was issued
        # against a database since restored or replaced, and is refused like a revoked one (a
        # restore must never bring a revoked badge back to life).
        if row is None or row.revoked_at is not None or row.person_id != token.subject:
            return RefusalReason.REVOKED
        return None


def _signed_by(token: Token, public_key: Ed25519PublicKey) -> bool:
    try:
        public_key.verify(token.signature, token.signed)
    except InvalidSignature:
        return False
    return True
