"""A payer's phone, simulated: walks a registered device from a few km away to the center's
door against a running hub, for the demo and the tests (``checkin-edge simulate phone``).

It signs what the parent app would sign (Ed25519 over the exact body bytes, the key from
``cloud_sync.standin.generator.device_private_key``), adds GPS noise, and slips in what a real
phone or an attacker would: a fix too vague to use, a stale one, a mock location, a spoofed
jump 50 km away, and a replay of a ping already sent. Each answer is reported as it comes;
at the door it may end with an app check-in and/or check-out.

The clock and the sleep are injectable, so a test can walk the whole path in no real time.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge import const
from edge.geofence import Projection

# The stand-in school's site: the contract's example point in Fresno is the door, on the south
# wall of a 40 x 35 m building, facing an L-shaped parking lot (meters east, north of the door).
DEMO_DOOR = (36.74771, -119.77201)  # (lat, lon)
_BUILDING = ((-20, 0), (20, 0), (20, 35), (-20, 35), (-20, 0))
_LOT = ((-80, -30), (40, -30), (40, 0), (-20, 0), (-20, 35), (-80, 35), (-80, -30))
# Where the walk ends: in front of the door, 5 m into the lot.
_PARKED = (0.0, -5.0)

PINGS = "/api/v1/geofence/pings"
APP_ATTENDANCE = "/api/v1/app/attendance"


class Poster(Protocol):
    """What the simulator needs of an HTTP client: ``httpx.Client`` (or a test client)."""

    def post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> Any: ...


def demo_site(door: tuple[float, float] = DEMO_DOOR) -> dict[str, Any]:
    """The demo's on-site area around ``door`` (lat, lon): a building and an L-shaped lot."""
    local = Projection.centred(*door)

    def polygon(points: Sequence[tuple[int, int]]) -> dict[str, Any]:
        return {"type": "Polygon", "coordinates": [[list(local.inverse(x, y)) for x, y in points]]}

    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"name": "building"}, "geometry": polygon(_BUILDING)},
            {"type": "Feature", "properties": {"name": "parking lot"}, "geometry": polygon(_LOT)},
        ],
    }


@dataclass(frozen=True)
class Step:
    """One request the phone sent and what the hub answered."""

    kind: str  # ping, poor_accuracy, stale, mock_location, spoofed_jump, replay, check_in, check_out
    seq: int
    elapsed_s: float  # since the walk began, on the simulator's clock
    distance_m: float  # from the door, where the phone really is
    accuracy_m: float | None
    status: int
    answer: dict[str, Any]

    @property
    def outcome(self) -> str:
        """``200 on_site``, ``403 stale_fix``, ``200 1 event``..."""
        if self.status == 200 and "state" in self.answer:
            return f"200 {self.answer['state']}"
        if self.status == 200 and "events" in self.answer:
            return f"200 {len(self.answer['events'])} event(s)"
        return f"{self.status} {self.answer.get('reason') or self.answer.get('detail') or ''}".strip()

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "seq": self.seq,
            "elapsed_s": round(self.elapsed_s, 1),
            "distance_m": round(self.distance_m, 1),
            "accuracy_m": self.accuracy_m,
            "status": self.status,
            "answer": self.answer,
        }


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class PhoneSimulator:
    def __init__(
        self,
        client: Poster,
        device_id: str,
        key: Ed25519PrivateKey,
        *,
        door: tuple[float, float] = DEMO_DOOR,
        from_km: float = 3.0,
        speed_kmh: float = 40.0,
        interval_s: float = 5.0,
        seed: int = 0,
        clock: Callable[[], dt.datetime] = utc_now,
        sleep: Callable[[float], object] = time.sleep,
        start_seq: int | None = None,
    ) -> None:
        if from_km <= 0 or speed_kmh <= 0 or interval_s <= 0:
            raise ValueError("distance, speed and interval must be positive")
        self.client = client
        self.device_id = device_id
        self.key = key
        self.local = Projection.centred(*door)
        self.from_m = from_km * 1000.0
        self.speed_ms = speed_kmh / 3.6
        self.interval_s = interval_s
        self.rng = random.Random(seed)
        self.clock = clock
        self.sleep = sleep
        # Above anything an earlier run sent: a real app keeps its counter, this one uses the time.
        self.seq = start_seq if start_seq is not None else int(clock().timestamp() * 1000)
        self.began = clock()
        self._last_sent: tuple[bytes, str] | None = None

    # -- the path ---------------------------------------------------------------------------

    def path(self) -> list[tuple[float, float]]:
        """True positions (meters from the door) every interval: the drive in, then waiting
        parked long enough for the hub's dwell to settle on on_site."""
        bearing = self.rng.uniform(0, 2 * math.pi)
        start = (_PARKED[0] + self.from_m * math.sin(bearing), _PARKED[1] + self.from_m * math.cos(bearing))
        step_m = self.speed_ms * self.interval_s
        steps = max(1, math.ceil(self.from_m / step_m))
        drive = [
            (start[0] + (_PARKED[0] - start[0]) * i / steps, start[1] + (_PARKED[1] - start[1]) * i / steps)
            for i in range(steps)
        ]
        parked = max(3, math.ceil(const.MIN_DWELL_S / self.interval_s) + 2)
        return drive + [_PARKED] * parked

    # -- sending ----------------------------------------------------------------------------

    def _send(self, url: str, doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = json.dumps(doc, separators=(",", ":")).encode()
        signature = base64.b64encode(self.key.sign(body)).decode()
        self._last_sent = (body, signature)
        return self._post(url, body, signature)

    def _post(self, url: str, body: bytes, signature: str) -> tuple[int, dict[str, Any]]:
        answer = self.client.post(
            url, content=body, headers={"Content-Type": "application/json", "X-Signature": signature}
        )
        try:
            parsed = answer.json()
        except ValueError:
            parsed = {}
        return int(answer.status_code), parsed if isinstance(parsed, dict) else {"answer": parsed}

    def _ping(self, kind: str, x: float, y: float, accuracy_m: float, *, age_s: float = 0.0, **extra: Any) -> Step:
        self.seq += 1
        now = self.clock()
        # GPS noise: the reported position wanders about the true one, well within the accuracy.
        noise = accuracy_m / 3 if kind == "ping" else 0.0
        lon, lat = self.local.inverse(x + self.rng.gauss(0, noise), y + self.rng.gauss(0, noise))
        doc = {
            "device_id": self.device_id,
            "seq": self.seq,
            "lat": round(extra.pop("lat", lat), 7),
            "lon": round(extra.pop("lon", lon), 7),
            "accuracy_m": accuracy_m,
            "fix_time": _iso(now - dt.timedelta(seconds=age_s)),
            "mock_location": extra.pop("mock", False),
        }
        status, answer = self._send(PINGS, doc)
        return Step(kind, self.seq, (now - self.began).total_seconds(), math.hypot(x, y), accuracy_m, status, answer)

    def _replay(self, x: float, y: float) -> Step:
        assert self._last_sent is not None
        status, answer = self._post(PINGS, *self._last_sent)
        elapsed = (self.clock() - self.began).total_seconds()
        return Step("replay", self.seq, elapsed, math.hypot(x, y), None, status, answer)

    def act(self, action: str, children: Sequence[str]) -> Step:
        self.seq += 1
        doc = {"device_id": self.device_id, "seq": self.seq, "children": list(children), "action": action}
        status, answer = self._send(APP_ATTENDANCE, doc)
        elapsed = (self.clock() - self.began).total_seconds()
        return Step(action, self.seq, elapsed, math.hypot(*_PARKED), None, status, answer)

    def run(
        self,
        *,
        check_in: Sequence[str] = (),
        check_out: Sequence[str] = (),
        on_step: Callable[[Step], object] | None = None,
    ) -> list[Step]:
        """Walk to the door, then act; every step is passed to ``on_step`` as it happens."""
        steps: list[Step] = []

        def record(step: Step) -> None:
            steps.append(step)
            if on_step is not None:
                on_step(step)

        path = self.path()
        drive = len(path) - max(3, math.ceil(const.MIN_DWELL_S / self.interval_s) + 2)
        tricks = {
            max(1, drive // 5): "poor_accuracy",
            max(2, 2 * drive // 5): "stale",
            max(3, 3 * drive // 5): "mock_location",
            max(4, 4 * drive // 5): "spoofed_jump",
        }
        for index, (x, y) in enumerate(path):
            if index:
                self.sleep(self.interval_s)
            # Sharper when parked in the open lot than on the road between buildings and trees.
            accuracy = round(self.rng.uniform(3.0, 6.0) if index >= drive else self.rng.uniform(5.0, 15.0), 1)
            record(self._ping("ping", x, y, accuracy))
            trick = tricks.get(index)
            if trick == "poor_accuracy":
                record(self._ping(trick, x, y, 150.0))
            elif trick == "stale":
                record(self._ping(trick, x, y, accuracy, age_s=const.MAX_FIX_AGE_S + 180))
            elif trick == "mock_location":
                record(self._ping(trick, x, y, accuracy, mock=True))
            elif trick == "spoofed_jump":
                # 50 km north in no time: someone replaying a location from elsewhere.
                lon, lat = self.local.inverse(x, y + 50_000.0)
                record(self._ping(trick, x, y, accuracy, lat=lat, lon=lon))
                record(self._replay(x, y))
        if check_in:
            record(self.act("check_in", check_in))
        if check_out:
            record(self.act("check_out", check_out))
        return steps
