"""Phones for the geofence tests: the center's lot, signed pings, a roster with registered phones.

The site, in meters east (x) and north (y) of the contract's example point in Fresno:

    building, 40 x 35 m:         x 0..40,   y -10..25   (the door on its south wall, at (20, -10))
    parking lot, L-shaped:       the west arm x -60..0, y -40..25, and the south arm x -60..60,
                                 y -40..-10
    together a non-convex outline: a notch at x 40..60, y -10..25 is off site.

Roster (tests/door.py's, plus phones): payer P1 An Nguyen has phone D-P1 (child C1 Mai; an
authorized pickup of C3 Ava, so PIN only for her); payer P9 Cal Smith has D-P9 (children C2
Noah and C3 Ava; restricted for Mai); pickup P2 Binh (not a payer) gets D-P2 straight into the
database, since sync rule R7 drops non-payers' phones.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert

from cloud_sync.standin.generator import device_private_key, public_key_b64
from edge.geofence import Projection
from edge.models import AppDevice
from edge.pings import PingService
from edge.store import Store
from tests.door import door_export

SEED = 7
ORIGIN = (36.74771, -119.77201)  # (lat, lon)
LOCAL = Projection.centred(*ORIGIN)
PINGS = "/api/v1/geofence/pings"
APP = "/api/v1/app/attendance"

BUILDING = [(0, -10), (40, -10), (40, 25), (0, 25), (0, -10)]
LOT = [(-60, -40), (60, -40), (60, -10), (0, -10), (0, 25), (-60, 25), (-60, -40)]
DOOR = (20.0, -10.0)
INSIDE = (-30.0, -25.0)  # the middle of the lot: 15 m from the nearest edge
NOTCH = (50.0, 10.0)  # off site, in the notch between the building and the lot's south arm


def at(x: float, y: float) -> tuple[float, float]:
    """(lat, lon) of a point x m east and y m north of the origin."""
    lon, lat = LOCAL.inverse(x, y)
    return lat, lon


def ring(points: list[tuple[int, int]]) -> list[list[float]]:
    return [[lon, lat] for lat, lon in (at(x, y) for x, y in points)]


def site_geojson() -> dict[str, Any]:
    """The building and the lot, as staff would draw them: a FeatureCollection of two Polygons."""
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"name": "building"}, "geometry": _polygon(BUILDING)},
            {"type": "Feature", "properties": {"name": "parking lot"}, "geometry": _polygon(LOT)},
        ],
    }


def _polygon(points: list[tuple[int, int]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring(points)]}


def key(device_id: str) -> Ed25519PrivateKey:
    return device_private_key(SEED, device_id)


def device(device_id: str) -> dict[str, str]:
    return {"device_id": device_id, "public_key": public_key_b64(key(device_id))}


def phones_export() -> dict[str, Any]:
    page = door_export()
    people = {p["id"]: p for f in page["families"] for p in f["persons"]}
    people["P1"]["app_devices"] = [device("D-P1")]
    people["P9"]["app_devices"] = [device("D-P9")]
    return page


def register_pickup_phone(store: Store, device_id: str = "D-P2", person_id: str = "P2") -> None:
    """A non-payer's phone in app_devices anyway (R7 would have dropped it at sync)."""
    with store.transaction() as session:
        session.execute(
            insert(AppDevice).values(
                device_id=device_id, person_id=person_id, public_key=public_key_b64(key(device_id)), active=True
            )
        )


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Phone:
    """Signs what a payer's phone would sign, on the test's clock."""

    device_id: str
    clock: Callable[[], dt.datetime]
    seq: int = 0
    private_key: Ed25519PrivateKey = field(init=False)

    def __post_init__(self) -> None:
        self.private_key = key(self.device_id)

    def next_seq(self, seq: int | None) -> int:
        if seq is None:
            self.seq += 1
            return self.seq
        self.seq = max(self.seq, seq)
        return seq

    def ping_body(
        self,
        x: float,
        y: float,
        accuracy_m: float = 5.0,
        *,
        age_s: float = 0.0,
        mock: bool = False,
        seq: int | None = None,
        **override: Any,
    ) -> bytes:
        lat, lon = at(x, y)
        doc = {
            "device_id": self.device_id,
            "seq": self.next_seq(seq),
            "lat": lat,
            "lon": lon,
            "accuracy_m": accuracy_m,
            "fix_time": iso(self.clock() - dt.timedelta(seconds=age_s)),
            "mock_location": mock,
        }
        doc.update(override)
        return json.dumps(doc).encode()

    def app_body(self, children: list[str], action: str, *, seq: int | None = None) -> bytes:
        doc = {"device_id": self.device_id, "seq": self.next_seq(seq), "children": children, "action": action}
        return json.dumps(doc).encode()

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.private_key.sign(body)).decode()

    def signed_ping(self, x: float, y: float, accuracy_m: float = 5.0, **kw: Any) -> tuple[bytes, str]:
        body = self.ping_body(x, y, accuracy_m, **kw)
        return body, self.sign(body)

    def signed_app(self, children: list[str], action: str, **kw: Any) -> tuple[bytes, str]:
        body = self.app_body(children, action, **kw)
        return body, self.sign(body)


def headers(signature: str | None) -> dict[str, str]:
    out = {"Content-Type": "application/json"}
    if signature is not None:
        out["X-Signature"] = signature
    return out


def with_phones(built: Any, clock: Callable[[], dt.datetime]) -> None:
    """The phones' service of a hub's ``built`` services on ``clock``, with the site's geofence."""
    built.pings = PingService(built.store, built.events, built.checkin, clock=clock)
    built.pings.set_fence(site_geojson())
