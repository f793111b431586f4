"""Badges: printed QR codes this appliance issues to its payers, and revokes (docs/qr-tokens.md).

A badge is a token of kind ``badge`` signed by the appliance's own Ed25519 key, created on first
start in the data directory (``badge.key``, 0600). Each badge issued is recorded (by its nonce,
never the token) so staff can list and revoke them; verification accepts only recorded,
unrevoked badges (edge.tokens). ``BadgeService`` is what the command line and the dashboard call.

Rendering: an SVG sized like an ID card (CR80 portrait, 54 x 85.6 mm) with the QR code as wide as
the card allows and the person's and the center's names under it, drawn from segno's module
matrix; or a PNG of the QR code alone (segno writes PNG itself; text on a PNG would need Pillow,
which the appliance does not carry: print the SVG for a badge with names).
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Table, insert, select, update

from edge import audit, const
from edge.models import Badge, Person, PersonRole, School
from edge.pins import load_or_create_key
from edge.store import Store
from edge.tokens import TokenKind, key_fingerprint, parse, sign_token

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
BADGES = cast(Table, Badge.__table__)
RULE_ISSUE = "badges are issued to active payers only; a badge is valid until it expires or is revoked"
RULE_REVOKE = "staff revoked every badge of this person: each one is refused at the door from now on"

# The card: CR80 portrait, in millimetres.
CARD_W_MM = 54.0
CARD_H_MM = 85.6
CARD_MARGIN_MM = 3.0
PNG_SCALE = 10  # pixels a module: a v6 code is 490 px wide with its quiet zone, crisp at 300 dpi


class BadgeError(ValueError):
    """A badge that cannot be issued; the message says why, in words for the person at the command line."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class BadgeKey:
    """The appliance's badge-signing key pair; ``kid`` names it in logs and in the badges table."""

    private_key: Ed25519PrivateKey

    @property
    def kid(self) -> str:
        return "appliance-" + key_fingerprint(self.private_key.public_key()).hex()

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> BadgeKey:
        """Read ``badge.key``, creating it (0600, atomically, keeping a concurrent creator's) on first start.

        The file holds the raw 32-byte Ed25519 private key; any 32 random bytes are one."""
        # The PIN key's careful creation, reused: it makes 32 random bytes, the size of an Ed25519 seed.
        raw = load_or_create_key(data_dir / const.BADGE_KEY_FILE)
        return cls(Ed25519PrivateKey.from_private_bytes(raw))


@dataclass(frozen=True)
class IssuedBadge:
    person_id: str
    person_name: str
    center_name: str
    token: str
    badge_id: str  # the token's nonce in hex: how the badges table and the dashboard name it
    issued_at: dt.datetime
    expires_at: dt.datetime


@dataclass(frozen=True)
class BadgeRecord:
    badge_id: str
    person_id: str
    kid: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None

    def status(self, now: dt.datetime) -> str:
        """``revoked``, ``expired`` or ``valid``: what the dashboard shows."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at < now else "valid"


class BadgeService:
    """Issues, lists and revokes badges; each issue and revocation is audited."""

    def __init__(
        self, store: Store, key: BadgeKey, *, clock: Clock = utc_now, ttl_days: float = const.BADGE_TTL_DAYS
    ) -> None:
        self.store = store
        self.key = key
        self.clock = clock
        self.ttl = dt.timedelta(days=ttl_days)

    def issue_badge(self, person_id: str, *, station_id: str | None = None) -> IssuedBadge:
        """A new badge for an active payer; ``BadgeError`` for anyone else."""
        now = self.clock().replace(microsecond=0)  # the token holds whole seconds
        expires = now + self.ttl
        with self.store.transaction() as session:
            person = session.get(Person, person_id)
            if person is None:
                raise BadgeError(f"No person {person_id} in the roster")
            if not person.active:
                raise BadgeError(f"{person.name} ({person_id}) is not active in the roster: no badge")
            if person.role is not PersonRole.PAYER:
                raise BadgeError(
                    f"{person.name} ({person_id}) is not a payer: badges are for payers; "
                    "other pickup people use their PIN at the kiosk"
                )
            try:
                token = sign_token(self.key.private_key, TokenKind.BADGE, person_id, now, expires)
            except ValueError as exc:
                raise BadgeError(f"No badge for {person_id}: {exc}") from None
            badge_id = _nonce_hex(token)
            school = session.scalars(select(School).where(School.active.is_(True))).first()
            session.execute(
                insert(BADGES).values(
                    id=badge_id,
                    person_id=person_id,
                    kid=self.key.kid,
                    issued_at=now,
                    expires_at=expires,
                    revoked_at=None,
                )
            )
            audit.append(
                [
                    audit.audit_row(
                        at=now,
                        action="badge_issue",
                        station_id=station_id,
                        method=None,
                        reason=None,
                        rule=RULE_ISSUE,
                        actor_kind=person.role.value,
                        actor_id=person_id,
                        detail={"badge_id": badge_id, "kid": self.key.kid, "expires_at": expires.isoformat()},
                    )
                ],
                db=session,
            )
            name, center = person.name, school.name if school is not None else ""
        log.info("badge %s issued to %s", badge_id, person_id)
        return IssuedBadge(person_id, name, center, token, badge_id, now, expires)

    def revoke_badges(self, person_id: str, *, station_id: str | None = None) -> int:
        """Revoke every unrevoked badge of the person; how many were revoked (0: nothing to do)."""
        now = self.clock()
        with self.store.transaction() as session:
            ids = list(
                session.scalars(
                    select(Badge.id).where(Badge.person_id == person_id, Badge.revoked_at.is_(None)).order_by(Badge.id)
                )
            )
            if not ids:
                return 0
            session.execute(update(BADGES).where(BADGES.c.id.in_(ids)).values(revoked_at=now))
            audit.append(
                [
                    audit.audit_row(
                        at=now,
                        action="badge_revoke",
                        station_id=station_id,
                        method=None,
                        reason=None,
                        rule=RULE_REVOKE,
                        actor_id=person_id,
                        detail={"badge_ids": ids},
                    )
                ],
                db=session,
            )
        log.info("%d badge(s) of %s revoked", len(ids), person_id)
        return len(ids)

    def list_badges(self, person_id: str | None = None) -> list[BadgeRecord]:
        """Badges issued (all, or one person's), newest first, revoked and expired ones included."""
        query = select(Badge).order_by(Badge.issued_at.desc(), Badge.id)
        if person_id is not None:
            query = query.where(Badge.person_id == person_id)
        with self.store.read() as session:
            return [
                BadgeRecord(row.id, row.person_id, row.kid, row.issued_at, row.expires_at, row.revoked_at)
                for row in session.scalars(query)
            ]


def _nonce_hex(token: str) -> str:
    parsed = parse(token)
    assert parsed is not None  # we just signed it
    return parsed.nonce_hex


# -- rendering -------------------------------------------------------------------------------------


def qr_code(token: str) -> segno.QRCode:
    """The badge's QR code: error correction M (the contract's size budget), never boosted, so the
    modules stay as large as the card allows."""
    return segno.make_qr(token, error="m", boost_error=False)


def badge_svg(badge: IssuedBadge) -> str:
    """A printable SVG card: the QR code (with its 4-module quiet zone) across the card's width,
    the person's name and the center's name under it."""
    qr = qr_code(badge.token)
    width_modules = qr.symbol_size(scale=1, border=4)[0]
    side = CARD_W_MM - 2 * CARD_MARGIN_MM
    module = side / width_modules
    top = CARD_MARGIN_MM
    name_y = top + side + 10.0
    center_y = name_y + 7.0
    expires_y = CARD_H_MM - CARD_MARGIN_MM - 1.0
    text_w = CARD_W_MM - 2 * CARD_MARGIN_MM
    return "".join(
        (
            '<?xml version="1.0" encoding="UTF-8"?>\n',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{CARD_W_MM}mm" height="{CARD_H_MM}mm" ',
            f'viewBox="0 0 {CARD_W_MM} {CARD_H_MM}">\n',
            f"<title>{html.escape(badge.person_name)} · {html.escape(badge.center_name)}</title>\n",
            f'<rect width="{CARD_W_MM}" height="{CARD_H_MM}" rx="3" fill="#fff" stroke="#999" stroke-width="0.2"/>\n',
            f'<g transform="translate({CARD_MARGIN_MM} {top}) scale({module:.6f})">',
            f'<path fill="#000" d="{_modules_path(qr)}"/></g>\n',
            _text(badge.person_name, name_y, 6.0, text_w, bold=True),
            _text(badge.center_name, center_y, 3.6, text_w),
            _text(f"Valid until {badge.expires_at:%Y-%m-%d}", expires_y, 2.6, text_w),
            "</svg>\n",
        )
    )


def _modules_path(qr: segno.QRCode) -> str:
    """One path of horizontal runs of dark modules, in module units (the quiet zone included)."""
    parts = []
    for y, row in enumerate(qr.matrix_iter(scale=1, border=4, verbose=False)):
        x = 0
        cells = list(row)
        while x < len(cells):
            if not cells[x]:
                x += 1
                continue
            start = x
            while x < len(cells) and cells[x]:
                x += 1
            parts.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
    return "".join(parts)


def _text(words: str, y: float, size: float, max_w: float, *, bold: bool = False) -> str:
    if not words:
        return ""
    # A long name is squeezed to the card's width rather than cut: every letter must print.
    squeeze = f' textLength="{max_w}" lengthAdjust="spacingAndGlyphs"' if len(words) * size * 0.55 > max_w else ""
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{CARD_W_MM / 2}" y="{y:.2f}" font-family="sans-serif" font-size="{size}"{weight} '
        f'text-anchor="middle"{squeeze}>{html.escape(words)}</text>\n'
    )


def write_badge(badge: IssuedBadge, path: Path) -> Path:
    """Write the badge as ``.svg`` (card with names) or ``.png`` (the QR code alone)."""
    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise BadgeError(f"{path}: a badge is written as .svg or .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".svg":
        tmp.write_text(badge_svg(badge), encoding="utf-8")
    else:
        qr_code(badge.token).save(str(tmp), kind="png", scale=PNG_SCALE, border=4)
    tmp.replace(path)  # a half-written file never sits where the printer looks
    return path
