"""Pings and app check-in below the web layer: parsing and judging (pure tables), and the service
on a real SQLite file: replay counters across restarts, batched writes, retention, arrivals,
logs without coordinates, roster changes."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cloud_sync.roster_sync import RosterSyncService
from edge import const
from edge.events import EventBus, LiveEvent
from edge.models import AppDevice, PhoneFix, PhoneTrack, PresenceState
from edge.pings import (
    Accepted,
    LastFix,
    Limits,
    MalformedRequest,
    Ping,
    PingRefusal,
    PingService,
    Refused,
    decode_signature,
    judge_fix,
    load_body,
    parse_app_request,
    parse_ping,
)
from edge.pins import PinHasher
from edge.store import Store
from tests.conftest import FakeClock
from tests.door import apply, make_service
from tests.phones import DOOR, INSIDE, ORIGIN, Phone, at, phones_export, site_geojson

NOW = dt.datetime(2026, 11, 29, 18, 0, tzinfo=dt.UTC)
LIMITS = Limits()


# -- pure: judging a fix ------------------------------------------------------------------------


def a_ping(north_m: float = 0.0, accuracy_m: float = 5.0, age_s: float = 0.0, **over: Any) -> Ping:
    lat, lon = at(0.0, north_m)
    values: dict[str, Any] = {
        "device_id": "D-1",
        "seq": 1,
        "lat": lat,
        "lon": lon,
        "accuracy_m": accuracy_m,
        "fix_time": NOW - dt.timedelta(seconds=age_s),
        "mock_location": False,
    }
    values.update(over)
    return Ping(**values)


def last_fix(age_s: float, north_m: float = 0.0, accuracy_m: float = 5.0) -> LastFix:
    lat, lon = at(0.0, north_m)
    return LastFix(NOW - dt.timedelta(seconds=age_s), lat, lon, accuracy_m)


@pytest.mark.parametrize(
    ("ping", "last", "expected"),
    [
        pytest.param(a_ping(), None, None, id="a good fix"),
        pytest.param(a_ping(mock_location=True), None, PingRefusal.MOCK_LOCATION, id="mock location"),
        pytest.param(a_ping(lat=90.5), None, PingRefusal.BAD_COORDINATES, id="lat > 90"),
        pytest.param(a_ping(lon=-180.01), None, PingRefusal.BAD_COORDINATES, id="lon < -180"),
        pytest.param(a_ping(lat=math.nan), None, PingRefusal.BAD_COORDINATES, id="NaN lat"),
        pytest.param(a_ping(lon=math.inf), None, PingRefusal.BAD_COORDINATES, id="infinite lon"),
        pytest.param(a_ping(accuracy_m=0.0), None, PingRefusal.BAD_COORDINATES, id="zero accuracy"),
        pytest.param(a_ping(accuracy_m=-3.0), None, PingRefusal.BAD_COORDINATES, id="negative accuracy"),
        pytest.param(a_ping(accuracy_m=math.nan), None, PingRefusal.BAD_COORDINATES, id="NaN accuracy"),
        pytest.param(a_ping(accuracy_m=5_000.0), None, None, id="poor accuracy is no refusal (uncertain)"),
        pytest.param(a_ping(age_s=-29), None, None, id="29 s ahead: clock tolerance"),
        pytest.param(a_ping(age_s=-31), None, PingRefusal.FUTURE_FIX, id="31 s ahead"),
        pytest.param(a_ping(age_s=119), None, None, id="119 s old"),
        pytest.param(a_ping(age_s=121), None, PingRefusal.STALE_FIX, id="121 s old"),
        pytest.param(a_ping(age_s=10), last_fix(5), PingRefusal.STALE_FIX, id="older than the last: out of order"),
        pytest.param(a_ping(age_s=5), last_fix(5), None, id="as old as the last: the same fix again"),
        pytest.param(a_ping(1_000), last_fix(5), PingRefusal.IMPOSSIBLE_JUMP, id="1 km in 5 s"),
        pytest.param(a_ping(200), last_fix(5), None, id="200 m in 5 s, 5 m fixes: 137 km/h"),
        pytest.param(a_ping(300), last_fix(5), PingRefusal.IMPOSSIBLE_JUMP, id="300 m in 5 s: 209 km/h"),
        pytest.param(
            a_ping(300, accuracy_m=50), last_fix(5, accuracy_m=50), None, id="300 m with 50 m fixes: 144 km/h"
        ),
        pytest.param(a_ping(50, age_s=5), last_fix(5), PingRefusal.IMPOSSIBLE_JUMP, id="50 m at the same instant"),
    ],
)
def test_judge_fix(ping: Ping, last: LastFix | None, expected: PingRefusal | None) -> None:
    assert judge_fix(ping, last, NOW, LIMITS) is expected


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (None, False),
        ("", False),
        ("A" * 86, False),  # unpadded
        ("A" * 86 + "==", True),
        ("A" * 85 + "!==", False),
        ("A" * 88, False),  # 66 bytes
        (" " + "A" * 86 + "== ", True),
    ],
)
def test_decode_signature(header: str | None, ok: bool) -> None:
    assert (decode_signature(header) is not None) is ok


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'"D-1"', b'{"device_id": "a", "device_id": "b"}', b"\xff\xfe{", b"[" * 100_000],
)
def test_a_body_that_is_not_a_json_object_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        load_body(body)


def test_nan_and_infinity_parse_so_that_the_fix_check_can_refuse_them() -> None:
    doc = load_body(b'{"lat": NaN, "lon": -Infinity}')
    assert math.isnan(doc["lat"])
    assert doc["lon"] == -math.inf


GOOD_PING = {
    "device_id": "D-1",
    "seq": 7,
    "lat": 36.7,
    "lon": -119.7,
    "accuracy_m": 5,
    "fix_time": "2026-11-29T18:00:00Z",
    "mock_location": False,
}


@pytest.mark.parametrize(
    "change",
    [
        {"seq": True},
        {"seq": -1},
        {"seq": 1.0},
        {"seq": 2**63},
        {"lat": "36.7"},
        {"accuracy_m": None},
        {"fix_time": "2026-11-29T18:00:00"},  # no zone
        {"fix_time": "yesterday"},
        {"fix_time": 1_764_439_200},
        {"mock_location": 0},
        {"device_id": ""},
        {"device_id": "D\n1"},
        {"extra": 1},
    ],
)
def test_parse_ping_is_strict(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedRequest):
        parse_ping({**GOOD_PING, **change})


def test_parse_ping_names_what_is_missing() -> None:
    with pytest.raises(MalformedRequest, match="missing fix_time, mock_location"):
        parse_ping({k: v for k, v in GOOD_PING.items() if k not in ("fix_time", "mock_location")})


def test_parse_ping() -> None:
    ping = parse_ping({**GOOD_PING, "fix_time": "2026-11-29T10:00:00.250-08:00", "lat": 10**400})
    assert ping.fix_time == dt.datetime(2026, 11, 29, 18, 0, 0, 250_000, tzinfo=dt.UTC)
    assert ping.lat == math.inf  # out of any range: refused as bad_coordinates, not a crash


@pytest.mark.parametrize(
    "change",
    [{"children": []}, {"children": "C1"}, {"children": [1]}, {"action": "clock_out"}, {"seq": "1"}, {"child": "C1"}],
)
def test_parse_app_request_is_strict(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedRequest):
        parse_app_request({"device_id": "D-1", "seq": 1, "children": ["C1"], "action": "check_out", **change})


# -- the service --------------------------------------------------------------------------------


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def service(
    store: Store, hasher: PinHasher, roster_sync: RosterSyncService, clock: FakeClock, bus: EventBus
) -> Iterator[PingService]:
    apply(roster_sync, phones_export())
    checkin = make_service(store, hasher, clock, bus)
    pings = PingService(store, bus, checkin, clock=clock)
    pings.set_fence(site_geojson())
    yield pings
    pings.close()


@pytest.fixture
def phone(clock: FakeClock) -> Phone:
    return Phone("D-P1", clock)


def walk_in(service: PingService, phone: Phone, clock: FakeClock) -> PresenceState:
    """Drive up from 700 m out and park in the lot until the state settles on site."""
    state = None
    for where in [(0.0, -700.0), (0.0, -400.0), (0.0, -150.0), INSIDE, INSIDE, INSIDE]:
        result = service.ping(*phone.signed_ping(*where))
        assert isinstance(result, Accepted), result
        state = result.state
        clock.advance(seconds=6)
    assert state is PresenceState.ON_SITE
    return state


def count(store: Store, model: Any) -> int:
    with store.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_fixes_are_written_in_batches_not_one_by_one(
    service: PingService, phone: Phone, store: Store, clock: FakeClock
) -> None:
    for _ in range(4):
        assert isinstance(service.ping(*phone.signed_ping(*INSIDE)), Accepted)
        clock.advance(seconds=1)
    assert count(store, PhoneFix) == 0  # within FIX_FLUSH_S: still in memory
    clock.advance(seconds=const.FIX_FLUSH_S)
    service.ping(*phone.signed_ping(*INSIDE))
    assert count(store, PhoneFix) == 5  # one transaction wrote them all
    assert count(store, PhoneTrack) == 1


def test_the_replay_counter_survives_a_restart(
    service: PingService, phone: Phone, store: Store, clock: FakeClock, bus: EventBus
) -> None:
    body, signature = phone.signed_ping(*INSIDE)
    assert isinstance(service.ping(body, signature), Accepted)
    service.close()  # a clean stop; an app request would have flushed at once anyway
    restarted = PingService(store, bus, service.checkin, clock=clock)
    assert restarted.ping(body, signature) == Refused(PingRefusal.REPLAYED)
    # The last accepted fix came back too: an older one is still out of order.
    clock.advance(seconds=10)
    assert restarted.ping(*phone.signed_ping(*INSIDE, age_s=20)) == Refused(PingRefusal.STALE_FIX)


def test_an_app_request_makes_its_seq_durable_at_once(
    service: PingService, phone: Phone, store: Store, clock: FakeClock, bus: EventBus
) -> None:
    body, signature = phone.signed_app(["C1"], "check_out")
    assert service.app_attendance(body, signature) == Refused(PingRefusal.NOT_ON_SITE)
    crashed = PingService(store, bus, service.checkin, clock=clock)  # no close(): a power cut
    assert crashed.app_attendance(body, signature) == Refused(PingRefusal.REPLAYED)


def test_fixes_are_deleted_after_the_retention(
    service: PingService, phone: Phone, store: Store, clock: FakeClock
) -> None:
    walk_in(service, phone, clock)
    service.flush()
    assert count(store, PhoneFix) == 6
    clock.advance(hours=const.FIX_RETENTION_H, seconds=1)
    other = Phone("D-P9", clock)
    service.ping(*other.signed_ping(*INSIDE))
    clock.advance(seconds=const.FIX_PRUNE_INTERVAL_S)
    service.flush()
    with store.read() as session:
        kept = session.execute(select(PhoneFix.device_id)).scalars().all()
        tracks = {t.device_id: t for t in session.scalars(select(PhoneTrack))}
    assert kept == ["D-P9"]
    # D-P1's replay counter stays; where it was does not.
    assert tracks["D-P1"].last_seq == phone.seq
    assert (tracks["D-P1"].lat, tracks["D-P1"].lon, tracks["D-P1"].accuracy_m) == (None, None, None)
    assert tracks["D-P9"].lat is not None


def test_logs_name_devices_never_coordinates(
    service: PingService, phone: Phone, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    walk_in(service, phone, clock)
    service.ping(*phone.signed_ping(*DOOR, mock=True))
    service.ping(*phone.signed_ping(0, 50_000))
    service.app_attendance(*phone.signed_app(["C1"], "check_in"))
    service.flush()
    text = caplog.text
    assert "D-P1" in text
    lat, lon = at(*INSIDE)
    for number in (ORIGIN[0], ORIGIN[1], lat, lon):
        assert f"{number:.3f}" not in text
        assert f"{number:.3f}".rstrip("0") not in text


def test_arrivals_are_announced_and_listed(service: PingService, phone: Phone, clock: FakeClock, bus: EventBus) -> None:
    seen: list[LiveEvent] = []
    bus.subscribe(seen.append)
    walk_in(service, phone, clock)
    arrivals = [e.data for e in seen if e.kind == "arrival"]
    assert [a["state"] for a in arrivals] == ["arriving", "on_site"]
    first = arrivals[0]
    assert (first["person_id"], first["name"]) == ("P1", "An Nguyen")
    # Mai (a payer's child) and Ava (P1 is her authorized pickup): the children staff bring out.
    assert [c["name"] for c in first["children"]] == ["Ava Smith", "Mai Nguyen"]
    (listed,) = service.arrivals()
    assert (listed.person_id, listed.state) == ("P1", PresenceState.ON_SITE)
    assert listed.since == clock.now - dt.timedelta(seconds=36)  # the first fix, already inside the ring
    # Driving off at 120 km/h: away after the dwell, off the list, and said so on the live channel.
    for north in (-100, -300, -500, -700, -900, -1_000, -1_100):
        assert isinstance(service.ping(*phone.signed_ping(0.0, north)), Accepted)
        clock.advance(seconds=6)
    assert service.state_of("D-P1") is PresenceState.AWAY
    assert service.arrivals() == []
    assert [e.data["state"] for e in seen if e.kind == "arrival"] == ["arriving", "on_site", "arriving", "away"]
    assert seen[-1].kind == "arrival"
    assert seen[-1].data["state"] == "away"


def test_a_notice_leaves_the_list_after_half_an_hour(service: PingService, phone: Phone, clock: FakeClock) -> None:
    walk_in(service, phone, clock)
    clock.advance(seconds=const.ARRIVALS_KEEP_S + 1)
    assert service.arrivals() == []


def test_a_phone_removed_from_the_roster_is_refused_within_the_cache_ttl(
    service: PingService, phone: Phone, store: Store, clock: FakeClock
) -> None:
    assert isinstance(service.ping(*phone.signed_ping(*INSIDE)), Accepted)
    with store.transaction() as session:
        session.execute(update(AppDevice).where(AppDevice.device_id == "D-P1").values(active=False))
    # An app request looks at the roster afresh, every time.
    assert service.app_attendance(*phone.signed_app(["C1"], "check_in")) == Refused(PingRefusal.UNKNOWN_DEVICE)
    clock.advance(seconds=const.DEVICE_CACHE_TTL_S)
    assert service.ping(*phone.signed_ping(*INSIDE)) == Refused(PingRefusal.UNKNOWN_DEVICE)


def test_a_fence_set_by_another_process_is_picked_up(
    service: PingService, phone: Phone, store: Store, clock: FakeClock, bus: EventBus
) -> None:
    walk_in(service, phone, clock)
    service.fence()  # checked just now: the next check is FENCE_RELOAD_S away
    cli = PingService(store, bus, service.checkin, clock=clock)  # `checkin-edge geofence set`
    moved = json.loads(json.dumps(site_geojson()).replace("-119.77", "-119.87"))  # the lot, 9 km west
    cli.set_fence(moved)
    assert service.ping(*phone.signed_ping(*INSIDE)) == Accepted(PresenceState.ON_SITE)  # not yet reloaded
    clock.advance(seconds=const.FENCE_RELOAD_S)
    # The new fence: the old place is forgotten and the next fix decides alone.
    assert service.ping(*phone.signed_ping(*INSIDE)) == Accepted(PresenceState.AWAY)


def test_no_fence_set_means_uncertain(
    store: Store, hasher: PinHasher, roster_sync: RosterSyncService, clock: FakeClock, phone: Phone
) -> None:
    apply(roster_sync, phones_export())
    pings = PingService(store, EventBus(), make_service(store, hasher, clock), clock=clock)
    assert pings.fence() is None
    assert pings.ping(*phone.signed_ping(*INSIDE)) == Accepted(PresenceState.UNCERTAIN)
    assert pings.app_attendance(*phone.signed_app(["C1"], "check_in")) == Refused(PingRefusal.NOT_ON_SITE)
