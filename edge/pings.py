"""Phones at the fence: signed pings, each phone's state, arrival notices, and app check-in.

A payer's registered phone (``app_devices``) signs each request body with its Ed25519 key
(contracts/qr-and-geofence.md). A request goes through, in this order, each step refusing
with its own code:

1. the ``X-Signature`` header must be 64 bytes in standard base64 (else ``bad_signature``);
2. the body must be a JSON object naming a ``device_id`` (else ``MalformedRequest``: 422, as
   the station API answers a malformed body; nothing is known about the sender yet);
3. the device must be registered and active, for an active person (else ``unknown_device``);
4. the signature must verify over the exact body bytes (else ``bad_signature``);
5. every other field must have its type (else ``MalformedRequest``); JSON's non-standard
   ``NaN``/``Infinity`` are parsed as numbers so that step 8 refuses them by name;
6. ``seq`` must be above every ``seq`` seen from that device in an authentic request (else
   ``replayed``): every signed message is used at most once, whatever came of it, so a refused
   app check-out cannot be replayed later when its sender happens to be on site. Pings and
   app requests share the counter;
7. the person must be a payer (else ``pin_only``: sync rule R7 drops non-payers' devices, but
   a role can change between syncs and the database is checked anyway);

then for a ping (``judge_fix``, pure): 8. ``mock_location`` false; coordinates in range and
finite, accuracy positive (``bad_coordinates``); 9. ``fix_time`` not beyond the clock
tolerance (``future_fix``), not older than ``MAX_FIX_AGE_S`` nor than the last accepted fix
(``stale_fix``: out of order is stale); 10. no faster than ``MAX_SPEED_KMH`` from the last
accepted fix, counting both accuracies in the phone's favour (``impossible_jump``). An
accepted fix is classified (``edge.geofence``) and answered with the state; poor accuracy is
not a refusal but the state ``uncertain``.

For an app check-in or check-out: the device's latest accepted fix must be ``on_site`` and at
most ``MAX_FIX_AGE_S`` old (else ``not_on_site``); then ``CheckinService.record_for_person``
with method ``geofence`` decides about each child, like any other door.

People's locations: fixes live in memory (the last one per phone) and in ``phone_fixes`` for
``FIX_RETENTION_H`` hours, then are deleted (and the phone's last position blanked); logs
name device ids, never coordinates. The SD card: accepted fixes and phone states are written
in one transaction at most every ``FIX_FLUSH_S`` (by the request that finds a flush due, and
on close), not one per ping; an app request flushes at once, so the ``seq`` it consumed is
durable before anything is decided on it. A crash loses at most the last few seconds of
fixes, never an app request's replay protection.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from edge import audit, const, facts
from edge.attendance import utc_iso_ms
from edge.checkin import CheckinService
from edge.events import EventBus
from edge.geofence import IN_RING, Fence, FenceError, Fix, Rules, Track, classify, parse_fence, settle
from edge.models import (
    Action,
    AppDevice,
    AuditOutcome,
    LinkRelation,
    Method,
    Person,
    PersonRole,
    PhoneFix,
    PhoneTrack,
    PresenceState,
    SiteGeofence,
)
from edge.outcomes import Recorded, Refusal
from edge.prepared import Prepared
from edge.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

DEVICES = cast(Table, AppDevice.__table__)
PERSONS = cast(Table, Person.__table__)
TRACKS = cast(Table, PhoneTrack.__table__)
FIXES = cast(Table, PhoneFix.__table__)
FENCES = cast(Table, SiteGeofence.__table__)

_DEVICE = (
    select(
        DEVICES.c.person_id,
        DEVICES.c.public_key,
        DEVICES.c.active,
        PERSONS.c.first_name,
        PERSONS.c.last_name,
        PERSONS.c.role,
        PERSONS.c.active.label("person_active"),
    )
    .select_from(DEVICES.join(PERSONS, PERSONS.c.id == DEVICES.c.person_id))
    .where(DEVICES.c.device_id == bindparam("id"))
)
_TRACK = select(TRACKS).where(TRACKS.c.device_id == bindparam("id"))
_FENCE_VERSION = select(FENCES.c.version).where(FENCES.c.id == 1)
_FENCE = select(FENCES).where(FENCES.c.id == 1)
# Prepared (edge.prepared): the flush writes one row per phone every few seconds, holding the
# door's writer meanwhile.
_INSERT_FIXES = Prepared(insert(FIXES))
_UPDATE_TRACK = Prepared(update(TRACKS).where(TRACKS.c.device_id == bindparam("key")))
_INSERT_TRACK = Prepared(insert(TRACKS))

EARTH_RADIUS_M = 6_371_008.8
SEQ_MAX = 2**63 - 1
SIGNATURE_B64_CHARS = 88  # 64 bytes in standard base64 with padding
DEVICE_ID_MAX_CHARS = 64
CHILDREN_MAX = 30
PING_FIELDS = frozenset({"device_id", "seq", "lat", "lon", "accuracy_m", "fix_time", "mock_location"})
APP_FIELDS = frozenset({"device_id", "seq", "children", "action"})
APP_ACTIONS = {Action.CHECK_IN.value: Action.CHECK_IN, Action.CHECK_OUT.value: Action.CHECK_OUT}

RULE_PIN_ONLY = "only a payer's registered phone may check children in or out from the app"
RULE_NOT_ON_SITE = "an app check-in or check-out needs the phone's latest fix, at most 2 minutes old, on site"


class PingRefusal(enum.StrEnum):
    """The contract's refusal codes for pings and app requests (qr-and-geofence.md)."""

    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_DEVICE = "unknown_device"
    PIN_ONLY = "pin_only"
    REPLAYED = "replayed"
    STALE_FIX = "stale_fix"
    FUTURE_FIX = "future_fix"
    MOCK_LOCATION = "mock_location"
    IMPOSSIBLE_JUMP = "impossible_jump"
    BAD_COORDINATES = "bad_coordinates"
    NOT_ON_SITE = "not_on_site"


class MalformedRequest(ValueError):
    """The body is not what the contract describes (the web layer answers 422)."""


@dataclass(frozen=True)
class Refused:
    reason: PingRefusal


@dataclass(frozen=True)
class Accepted:
    state: PresenceState


@dataclass(frozen=True)
class Ping:
    device_id: str
    seq: int
    lat: float
    lon: float
    accuracy_m: float
    fix_time: dt.datetime
    mock_location: bool


@dataclass(frozen=True)
class AppRequest:
    device_id: str
    seq: int
    children: tuple[str, ...]
    action: Action


@dataclass(frozen=True)
class Device:
    """A registered phone, with what is needed to trust it, as the roster holds it now."""

    device_id: str
    person_id: str
    name: str
    payer: bool
    usable: bool  # the device and its person are active, and the key is a valid Ed25519 key
    key: Ed25519PublicKey | None


@dataclass(frozen=True)
class LastFix:
    at: dt.datetime
    lat: float
    lon: float
    accuracy_m: float


@dataclass(frozen=True)
class Limits:
    max_fix_age_s: float = const.MAX_FIX_AGE_S
    future_tolerance_s: float = const.FUTURE_FIX_TOLERANCE_S
    max_speed_kmh: float = const.MAX_SPEED_KMH


@dataclass(frozen=True)
class ArrivalChild:
    id: str
    name: str
    room: str | None
    present: bool


@dataclass(frozen=True)
class Arrival:
    """Someone at or near the center, for staff: "An Nguyen arriving for Mai"."""

    person_id: str
    name: str
    children: tuple[ArrivalChild, ...]  # the children they may take
    state: PresenceState  # arriving or on_site
    since: dt.datetime  # when they entered the ring (or the site)
    updated_at: dt.datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "name": self.name,
            "children": [{"id": c.id, "name": c.name, "room": c.room, "present": c.present} for c in self.children],
            "state": self.state.value,
            "since": utc_iso_ms(self.since),
            "updated_at": utc_iso_ms(self.updated_at),
        }


@dataclass
class _Phone:
    """One phone's memory (mutated only under the service's lock)."""

    person_id: str
    last_seq: int = -1
    last_fix: LastFix | None = None
    track: Track = field(default_factory=Track)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- parsing and judging (pure) -----------------------------------------------------------------


def decode_signature(header: str | None) -> bytes | None:
    """The 64 signature bytes from ``X-Signature`` (standard base64, padded), or None."""
    if header is None:
        return None
    text = header.strip()
    if len(text) != SIGNATURE_B64_CHARS:
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 64 else None


def public_key(text: str) -> Ed25519PublicKey | None:
    """The roster's raw 32-byte key in standard base64, or None when it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw) if len(raw) == 32 else None
    except (binascii.Error, ValueError):
        return None


def verify(key: Ed25519PublicKey, signature: bytes, body: bytes) -> bool:
    try:
        key.verify(signature, body)
    except InvalidSignature:
        return False
    return True


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two "lat"s in one signed body: parsers disagree on which wins, so neither does.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedRequest(f"the key {key!r} appears twice")
        out[key] = value
    return out


def load_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (no duplicate keys), or ``MalformedRequest``."""
    try:
        doc = json.loads(body, object_pairs_hook=_unique_keys)
    except MalformedRequest:
        raise
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MalformedRequest("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise MalformedRequest("the body is not a JSON object")
    return doc


def device_id_of(doc: dict[str, Any]) -> str:
    device_id = doc.get("device_id")
    if not isinstance(device_id, str) or not 0 < len(device_id) <= DEVICE_ID_MAX_CHARS or not device_id.isprintable():
        raise MalformedRequest("device_id must be a string of 1 to 64 printable characters")
    return device_id


def _fields(doc: dict[str, Any], expected: frozenset[str]) -> None:
    missing, extra = sorted(expected - doc.keys()), sorted(doc.keys() - expected)
    if missing or extra:
        words = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        raise MalformedRequest("; ".join(words))


def _seq(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEQ_MAX:
        raise MalformedRequest("seq must be an integer from 0 to 2^63-1")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedRequest(f"{name} must be a number")
    try:
        return float(value)
    except OverflowError:  # an integer with hundreds of digits: out of any range
        return math.inf


def parse_time(value: Any, name: str = "fix_time") -> dt.datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise MalformedRequest(f"{name} must be an ISO 8601 time such as 2026-11-29T23:40:58Z")
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise MalformedRequest(f"{name} must be an ISO 8601 time such as 2026-11-29T23:40:58Z") from None
    if when.tzinfo is None:
        raise MalformedRequest(f"{name} needs a zone (Z or +HH:MM)")
    try:
        return when.astimezone(dt.UTC)
    except OverflowError:  # found by fuzzing: 0001-01-01T00:00:00+01:00 is a year before year 1 in UTC
        raise MalformedRequest(f"{name} must be an ISO 8601 time such as 2026-11-29T23:40:58Z") from None


def parse_ping(doc: dict[str, Any]) -> Ping:
    _fields(doc, PING_FIELDS)
    mock = doc["mock_location"]
    if not isinstance(mock, bool):
        raise MalformedRequest("mock_location must be true or false")
    return Ping(
        device_id=device_id_of(doc),
        seq=_seq(doc["seq"]),
        lat=_number(doc["lat"], "lat"),
        lon=_number(doc["lon"], "lon"),
        accuracy_m=_number(doc["accuracy_m"], "accuracy_m"),
        fix_time=parse_time(doc["fix_time"]),
        mock_location=mock,
    )


def parse_app_request(doc: dict[str, Any]) -> AppRequest:
    _fields(doc, APP_FIELDS)
    children = doc["children"]
    if (
        not isinstance(children, list)
        or not 0 < len(children) <= CHILDREN_MAX
        # Printable: a lone surrogate ("\ud800" in the JSON) is text SQLite cannot store (found by fuzzing).
        or not all(isinstance(c, str) and 0 < len(c) <= 64 and c.isprintable() for c in children)
    ):
        raise MalformedRequest(f"children must be a list of 1 to {CHILDREN_MAX} child ids")
    action = APP_ACTIONS.get(doc["action"]) if isinstance(doc["action"], str) else None
    if action is None:
        raise MalformedRequest("action must be check_in or check_out")
    return AppRequest(device_id_of(doc), _seq(doc["seq"]), tuple(dict.fromkeys(children)), action)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine): plenty for a speed check."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def speed_kmh(last: LastFix, ping: Ping) -> float:
    """The slowest speed that explains both fixes: their distance less both accuracy radii."""
    gap = distance_m(last.lat, last.lon, ping.lat, ping.lon) - last.accuracy_m - ping.accuracy_m
    if gap <= 0:
        return 0.0
    seconds = (ping.fix_time - last.at).total_seconds()
    return math.inf if seconds <= 0 else gap / seconds * 3.6


def judge_fix(ping: Ping, last: LastFix | None, now: dt.datetime, limits: Limits) -> PingRefusal | None:
    """Whether an authentic ping's fix can be believed (steps 8-10 of the module docstring)."""
    if ping.mock_location:
        return PingRefusal.MOCK_LOCATION
    if not (
        -90.0 <= ping.lat <= 90.0
        and -180.0 <= ping.lon <= 180.0
        and 0.0 < ping.accuracy_m < math.inf  # NaN fails every comparison
    ):
        return PingRefusal.BAD_COORDINATES
    age_s = (now - ping.fix_time).total_seconds()
    if age_s < -limits.future_tolerance_s:
        return PingRefusal.FUTURE_FIX
    if age_s > limits.max_fix_age_s or (last is not None and ping.fix_time < last.at):
        return PingRefusal.STALE_FIX
    if last is not None and speed_kmh(last, ping) > limits.max_speed_kmh:
        return PingRefusal.IMPOSSIBLE_JUMP
    return None


def on_site_now(phone_state: PresenceState | None, last: LastFix | None, now: dt.datetime, limits: Limits) -> bool:
    """May this phone act at the door now: its latest accepted fix is on site and fresh."""
    if phone_state is not PresenceState.ON_SITE or last is None:
        return False
    age_s = (now - last.at).total_seconds()
    return -limits.future_tolerance_s <= age_s <= limits.max_fix_age_s


# -- the service ----------------------------------------------------------------------------------


class PingService:
    """Pings in, states out; app check-ins through the check-in service; arrivals for staff."""

    def __init__(
        self,
        store: Store,
        events: EventBus,
        checkin: CheckinService,
        *,
        clock: Clock = utc_now,
        limits: Limits | None = None,
        rules: Rules | None = None,
        min_dwell_s: float = const.MIN_DWELL_S,
        gap_s: float = const.TRACK_GAP_S,
        retention_h: float = const.FIX_RETENTION_H,
        flush_s: float = const.FIX_FLUSH_S,
        device_ttl_s: float = const.DEVICE_CACHE_TTL_S,
        fence_reload_s: float = const.FENCE_RELOAD_S,
    ) -> None:
        self.store = store
        self.events = events
        self.checkin = checkin
        self.clock = clock
        self.limits = limits or Limits()
        self.rules = rules or Rules()
        self.min_dwell_s = min_dwell_s
        self.gap_s = gap_s
        self.retention = dt.timedelta(hours=retention_h)
        self.flush_s = flush_s
        self.device_ttl_s = device_ttl_s
        self.fence_reload_s = fence_reload_s
        self._lock = threading.Lock()  # phones, pending writes, arrivals
        self._flush_lock = threading.Lock()
        self._fence_lock = threading.Lock()
        self._devices: OrderedDict[str, tuple[dt.datetime, Device | None]] = OrderedDict()
        self._phones: dict[str, _Phone] = {}
        self._pending_fixes: list[dict[str, Any]] = []
        self._dirty: set[str] = set()
        self._arrivals: dict[str, Arrival] = {}
        self._fence: Fence | None = None
        self._fence_version: int | None = None
        self._fence_checked: dt.datetime | None = None
        self._last_flush = clock()
        self._last_prune: dt.datetime | None = None

    # -- the fence ------------------------------------------------------------------------------

    def fence(self) -> Fence | None:
        """The current fence; another process (``geofence set``) may have changed it."""
        now = self.clock()
        checked = self._fence_checked
        if checked is None or abs((now - checked).total_seconds()) >= self.fence_reload_s:
            self._fence_checked = now
            self._reload_fence()
        return self._fence

    def _reload_fence(self) -> None:
        with self.store.read() as session:
            version = session.connection().execute(_FENCE_VERSION).scalar()
            if version == self._fence_version:
                return
            row = session.connection().execute(_FENCE).first() if version is not None else None
        fence = None
        if row is not None:
            try:
                fence = parse_fence(row.on_site, row.arriving_m, self.rules)
            except FenceError as exc:
                log.error("the stored geofence is not usable: %s", exc)
        self._install(fence, version)

    def _install(self, fence: Fence | None, version: int | None) -> None:
        with self._fence_lock:
            if version == self._fence_version:
                return
            self._fence, self._fence_version = fence, version
        with self._lock:
            # A new fence: the old places mean nothing against it; the next fix decides.
            for phone in self._phones.values():
                phone.track = Track()
        log.info("geofence version %s loaded", version)

    def set_fence(self, geojson: Any, arriving_m: float = const.ARRIVING_M) -> Fence:
        """Validate and store the on-site area; ``FenceError`` says what is wrong with it."""
        fence = parse_fence(geojson, arriving_m, self.rules)
        now = self.clock()
        with self.store.transaction() as session:
            conn = session.connection()
            version = conn.execute(_FENCE_VERSION).scalar()
            values = {"on_site": geojson, "arriving_m": fence.arriving_m, "updated_at": now}
            if version is None:
                version = 1
                conn.execute(insert(FENCES).values(id=1, version=version, **values))
            else:
                version += 1
                conn.execute(update(FENCES).where(FENCES.c.id == 1).values(version=version, **values))
        self._install(fence, version)
        return fence

    def fence_record(self) -> dict[str, Any] | None:
        """The stored fence for ``geofence show``: its summary, version and when it was set."""
        with self.store.read() as session:
            row = session.connection().execute(_FENCE).first()
        if row is None:
            return None
        fence = parse_fence(row.on_site, row.arriving_m, self.rules)
        return {**fence.summary(), "version": row.version, "updated_at": utc_iso_ms(row.updated_at)}

    # -- devices --------------------------------------------------------------------------------

    def _device(self, device_id: str, now: dt.datetime, *, fresh: bool = False) -> Device | None:
        cached = self._devices.get(device_id)
        if not fresh and cached is not None and 0 <= (now - cached[0]).total_seconds() < self.device_ttl_s:
            return cached[1]
        with self.store.read() as session:
            row = session.connection().execute(_DEVICE, {"id": device_id}).first()
        device = None
        if row is not None:
            key = public_key(row.public_key)
            device = Device(
                device_id=device_id,
                person_id=row.person_id,
                name=f"{row.first_name or ''} {row.last_name or ''}".strip(),
                payer=row.role is PersonRole.PAYER,
                usable=bool(row.active and row.person_active and key is not None),
                key=key,
            )
        with self._lock:
            # Unknown ids are cached too, so a flood of made-up ids costs one read each per TTL.
            self._devices[device_id] = (now, device)
            self._devices.move_to_end(device_id)
            while len(self._devices) > const.DEVICE_CACHE_MAX:
                self._devices.popitem(last=False)
        return device

    def _phone(self, device: Device) -> _Phone:
        phone = self._phones.get(device.device_id)
        if phone is not None:
            return phone
        with self.store.read() as session:
            row = session.connection().execute(_TRACK, {"id": device.device_id}).first()
        loaded = _Phone(device.person_id)
        if row is not None:
            loaded.last_seq = row.last_seq
            if row.fix_at is not None and row.lat is not None and row.lon is not None and row.accuracy_m is not None:
                loaded.last_fix = LastFix(row.fix_at, row.lat, row.lon, row.accuracy_m)
                loaded.track = Track(row.state, row.place, row.place_since, None, None, row.fix_at)
        with self._lock:
            return self._phones.setdefault(device.device_id, loaded)

    def _authenticate(
        self, body: bytes, signature: str | None, now: dt.datetime, *, fresh: bool
    ) -> tuple[dict[str, Any], Device] | Refused:
        """Steps 1-4: the signed body and the device that signed it, or the refusal."""
        signature_bytes = decode_signature(signature)
        doc = load_body(body)
        device_id = device_id_of(doc)
        if signature_bytes is None:
            return self._refused(device_id, PingRefusal.BAD_SIGNATURE)
        device = self._device(device_id, now, fresh=fresh)
        if device is None or not device.usable or device.key is None:
            return self._refused(device_id, PingRefusal.UNKNOWN_DEVICE)
        if not verify(device.key, signature_bytes, body):
            return self._refused(device_id, PingRefusal.BAD_SIGNATURE)
        return doc, device

    @staticmethod
    def _refused(device_id: str, reason: PingRefusal) -> Refused:
        # Device ids only: never a position (and %r: the id may be anyone's made-up string).
        log.info("phone %r refused: %s", device_id, reason.value)
        return Refused(reason)

    # -- pings ----------------------------------------------------------------------------------

    def ping(self, body: bytes, signature: str | None) -> Accepted | Refused:
        """One signed ping: the person's state after it, or why it was refused."""
        now = self.clock()
        authentic = self._authenticate(body, signature, now, fresh=False)
        if isinstance(authentic, Refused):
            return authentic
        doc, device = authentic
        ping = parse_ping(doc)
        fence = self.fence()
        phone = self._phone(device)
        change: tuple[PresenceState | None, PresenceState | None] | None = None
        state = PresenceState.UNCERTAIN
        with self._lock:
            refusal = self._consume_seq(phone, device, ping.seq)
            if refusal is None:
                refusal = judge_fix(ping, phone.last_fix, now, self.limits)
            if refusal is None:
                fix = Fix(ping.lat, ping.lon, ping.accuracy_m)
                before = phone.track.place
                raw = classify(fix, fence, before) if fence is not None else PresenceState.UNCERTAIN
                phone.track = settle(phone.track, raw, ping.fix_time, min_dwell_s=self.min_dwell_s, gap_s=self.gap_s)
                phone.last_fix = LastFix(ping.fix_time, ping.lat, ping.lon, ping.accuracy_m)
                state = phone.track.state or PresenceState.UNCERTAIN  # never None after a fix
                self._pending_fixes.append(
                    {
                        "device_id": device.device_id,
                        "person_id": device.person_id,
                        "fix_at": ping.fix_time,
                        "received_at": now,
                        "lat": ping.lat,
                        "lon": ping.lon,
                        "accuracy_m": ping.accuracy_m,
                        "state": state,
                    }
                )
                if len(self._pending_fixes) > const.FIX_BUFFER_MAX:
                    del self._pending_fixes[: len(self._pending_fixes) - const.FIX_BUFFER_MAX]
                if phone.track.place is not before:
                    change = (before, phone.track.place)
        if change is not None:
            self._arrival_change(device, *change)
        self._flush_if_due(now)
        if refusal is not None:
            return self._refused(device.device_id, refusal)
        return Accepted(state)

    def _consume_seq(self, phone: _Phone, device: Device, seq: int) -> PingRefusal | None:
        """Steps 6 and 7, under the lock: each authentic message is used once, then the role."""
        if seq <= phone.last_seq:
            return PingRefusal.REPLAYED
        phone.last_seq = seq
        self._dirty.add(device.device_id)
        return None if device.payer else PingRefusal.PIN_ONLY

    def state_of(self, device_id: str) -> PresenceState | None:
        """A phone's state after its last accepted fix (None: no fix since start or a new fence)."""
        phone = self._phones.get(device_id)
        return phone.track.state if phone is not None else None

    # -- app check-in / check-out ---------------------------------------------------------------

    def app_attendance(self, body: bytes, signature: str | None) -> Recorded | Refusal | Refused:
        """A signed check-in or check-out from the parent's phone, on site."""
        now = self.clock()
        # A fresh look at the roster: a check-out must not ride on a cached device.
        authentic = self._authenticate(body, signature, now, fresh=True)
        if isinstance(authentic, Refused):
            return authentic
        doc, device = authentic
        request = parse_app_request(doc)
        phone = self._phone(device)
        with self._lock:
            refusal = self._consume_seq(phone, device, request.seq)
            if refusal is None and not on_site_now(phone.track.state, phone.last_fix, now, self.limits):
                refusal = PingRefusal.NOT_ON_SITE
        self.flush()  # the seq just consumed is durable before anything rides on it
        if refusal is not None:
            if refusal is not PingRefusal.REPLAYED:  # a replay is a repeat: logged, not audited again
                self._audit_refusal(device, request, refusal, now)
            return self._refused(device.device_id, refusal)
        return self.checkin.record_for_person(
            device.person_id, Method.GEOFENCE, const.APP_STATION_ID, request.children, request.action
        )

    def _audit_refusal(self, device: Device, request: AppRequest, reason: PingRefusal, now: dt.datetime) -> None:
        rule = RULE_PIN_ONLY if reason is PingRefusal.PIN_ONLY else RULE_NOT_ON_SITE
        row = audit.audit_row(
            at=now,
            action=request.action.value,
            station_id=const.APP_STATION_ID,
            method=Method.GEOFENCE.value,
            reason=None,
            rule=rule,
            actor_kind=(PersonRole.PAYER if device.payer else PersonRole.PICKUP).value,
            actor_id=device.person_id,
            child_id=request.children[0] if len(request.children) == 1 else None,
            detail={"device_id": device.device_id, "children": list(request.children)},
        )
        # The geofence's own codes are not station-API RefusalReasons: set them on the row as is.
        row.update(outcome=AuditOutcome.REFUSED, reason=reason.value)
        with self.store.transaction() as session:
            audit.append([row], db=session)
        self.events.publish(
            "refusal",
            {"reason": reason.value, "method": Method.GEOFENCE.value, "action": request.action.value},
            station_id=const.APP_STATION_ID,
        )

    # -- arrivals -------------------------------------------------------------------------------

    def _arrival_change(self, device: Device, before: PresenceState | None, after: PresenceState | None) -> None:
        """A settled change of place: entering the ring or the site raises a notice for staff."""
        if before not in IN_RING and after not in IN_RING:
            return
        now = self.clock()
        if after in IN_RING:
            assert after is not None
            children = self._children(device.person_id)
            with self._lock:
                known = self._arrivals.get(device.person_id)
                since = known.since if known is not None else now
                arrival = Arrival(device.person_id, device.name, children, after, since, now)
                self._arrivals[device.person_id] = arrival
            data = arrival.as_json()
        else:
            with self._lock:
                self._arrivals.pop(device.person_id, None)
            data = {"person_id": device.person_id, "name": device.name, "children": [], "state": "away"}
            data["since"] = data["updated_at"] = utc_iso_ms(now)
        log.info("phone %r of %s: %s", device.device_id, device.person_id, after.value if after else "-")
        self.events.publish("arrival", data)

    def _children(self, person_id: str) -> tuple[ArrivalChild, ...]:
        with self.store.read() as session:
            loaded = facts.children_of(person_id, db=session)
        takes = [
            ArrivalChild(child.id, child.name, child.room, child.present)
            for child, _presence in loaded.values()
            if child.relation in (LinkRelation.PAYER, LinkRelation.PICKUP) and child.active and child.room
        ]
        return tuple(sorted(takes, key=lambda c: (c.name, c.id)))

    def arrivals(self) -> list[Arrival]:
        """People arriving or on site, newest first; each notice stays ``ARRIVALS_KEEP_S``."""
        cutoff = self.clock() - dt.timedelta(seconds=const.ARRIVALS_KEEP_S)
        with self._lock:
            for person_id in [p for p, a in self._arrivals.items() if a.updated_at < cutoff]:
                del self._arrivals[person_id]
            recent = sorted(self._arrivals.values(), key=lambda a: a.since, reverse=True)
        # The children as they are now: a child may have been checked out since the notice.
        return [
            replace(arrival, children=self._children(arrival.person_id)) for arrival in recent[: const.ARRIVALS_MAX]
        ]

    # -- writing --------------------------------------------------------------------------------

    def _flush_if_due(self, now: dt.datetime) -> None:
        if (now - self._last_flush).total_seconds() < self.flush_s:
            return
        if self._flush_lock.acquire(blocking=False):  # one flusher; the others go on answering
            try:
                self._flush(now)
            finally:
                self._flush_lock.release()

    def flush(self) -> None:
        """Write the accepted fixes and phone states now (and prune, when due)."""
        with self._flush_lock:
            self._flush(self.clock())

    def _flush(self, now: dt.datetime) -> None:
        self._last_flush = now
        prune = self._last_prune is None or (now - self._last_prune).total_seconds() >= const.FIX_PRUNE_INTERVAL_S
        with self._lock:
            fixes, self._pending_fixes = self._pending_fixes, []
            rows = [self._track_row(device_id, now) for device_id in self._dirty]
            self._dirty.clear()
            if prune:
                self._forget_old_positions(now)
        if not (fixes or rows or prune):
            return
        cutoff = now - self.retention
        try:
            with self.store.writing() as conn:
                if fixes:
                    _INSERT_FIXES.run(conn, fixes)
                for row in rows:
                    if _UPDATE_TRACK.run(conn, {**row, "key": row["device_id"]}) == 0:
                        _INSERT_TRACK.run(conn, row)
                if prune:
                    pruned = conn.execute(delete(FIXES).where(FIXES.c.fix_at < cutoff)).rowcount
                    conn.execute(
                        update(TRACKS)
                        .where(TRACKS.c.fix_at < cutoff, TRACKS.c.lat.is_not(None))
                        .values(lat=None, lon=None, accuracy_m=None)
                    )
                    if pruned:
                        log.info("deleted %d phone fixes older than %s", pruned, self.retention)
        except SQLAlchemyError:
            log.exception("phone fixes could not be written; kept for the next attempt")
            with self._lock:
                self._pending_fixes[:0] = fixes[-const.FIX_BUFFER_MAX :]
                self._dirty.update(row["device_id"] for row in rows)
            return
        if prune:
            self._last_prune = now

    def _track_row(self, device_id: str, now: dt.datetime) -> dict[str, Any]:
        phone = self._phones[device_id]
        last, track = phone.last_fix, phone.track
        return {
            "device_id": device_id,
            "person_id": phone.person_id,
            "last_seq": phone.last_seq,
            "fix_at": last.at if last else None,
            "lat": last.lat if last else None,
            "lon": last.lon if last else None,
            "accuracy_m": last.accuracy_m if last else None,
            "state": track.state,
            "place": track.place,
            "place_since": track.place_since,
            "updated_at": now,
        }

    def _forget_old_positions(self, now: dt.datetime) -> None:
        """In memory as on disk: a position older than the retention is dropped (under the lock)."""
        cutoff = now - self.retention
        for phone in self._phones.values():
            if phone.last_fix is not None and phone.last_fix.at < cutoff:
                phone.last_fix = None
                phone.track = Track()

    def close(self) -> None:
        self.flush()

    # -- for tests and tools --------------------------------------------------------------------

    def phone_fixes(self, device_id: str) -> Sequence[Any]:
        """The stored fixes of one phone, oldest first (tests and support; flushes first)."""
        self.flush()
        with self.store.read() as session:
            return list(
                session.connection().execute(
                    select(FIXES).where(FIXES.c.device_id == device_id).order_by(FIXES.c.fix_at, FIXES.c.id)
                )
            )
