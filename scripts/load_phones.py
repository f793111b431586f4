"""The phones of the peak-hour load (scripts/load), in a process of their own.

``python -m scripts.load_phones HUB_URL SEED DURATION_S INTERVAL_S DEVICE_ID...`` pings the hub
from every device every INTERVAL_S seconds (staggered evenly over the interval) until
DURATION_S, then prints one JSON line: counts by outcome, latencies, its own CPU time.

A process of its own because signing and posting 60 pings a second is the load's busiest
client: in the stations' process it would make their event loop late and their latencies lie.

Each phone drives a loop, as parents do at peak hour: waits away (1-3 km out), drives in at
30-50 km/h, stays parked in the lot for 1-2 minutes, drives out again, and starts anywhere in
that loop. Fixes are signed as the contract says (Ed25519 over the exact body bytes), fresh,
with GPS noise well inside the reported accuracy, never faster than a car: every ping is one the
hub must accept (``200``), so any refusal is an error of the run.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import math
import random
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.phone_simulator import DEMO_DOOR, PINGS
from cloud_sync.standin.generator import device_private_key
from edge.geofence import Projection
from scripts.load_http import HttpError, RawPool

PARKED = (0.0, -5.0)  # in front of the door, in the demo site's lot (meters east, north of the door)
LOCAL = Projection.centred(*DEMO_DOOR)


@dataclass
class Trip:
    """One phone's loop: away, in, parked, out; ``position(t)`` in meters from the door."""

    far: tuple[float, float]
    away_s: float
    drive_s: float
    parked_s: float
    phase_s: float

    @classmethod
    def drawn(cls, rng: random.Random) -> Trip:
        distance = rng.uniform(1_000.0, 3_000.0)
        bearing = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(30.0, 50.0) / 3.6
        trip = cls(
            far=(PARKED[0] + distance * math.sin(bearing), PARKED[1] + distance * math.cos(bearing)),
            away_s=rng.uniform(60.0, 180.0),
            drive_s=distance / speed,
            parked_s=rng.uniform(60.0, 120.0),
            phase_s=0.0,
        )
        trip.phase_s = rng.uniform(0, trip.loop_s)
        return trip

    @property
    def loop_s(self) -> float:
        return self.away_s + 2 * self.drive_s + self.parked_s

    def position(self, t: float) -> tuple[float, float]:
        t = (t + self.phase_s) % self.loop_s
        if t < self.away_s:
            return self.far
        t -= self.away_s
        if t < self.drive_s:
            return _between(self.far, PARKED, t / self.drive_s)
        t -= self.drive_s
        if t < self.parked_s:
            return PARKED
        return _between(PARKED, self.far, (t - self.parked_s) / self.drive_s)


def _between(a: tuple[float, float], b: tuple[float, float], f: float) -> tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Phone:
    device_id: str
    key: Ed25519PrivateKey
    trip: Trip
    rng: random.Random
    seq: int = field(default_factory=lambda: int(time.time() * 1000))

    def signed_ping(self, t: float) -> tuple[bytes, str]:
        x, y = self.trip.position(t)
        accuracy = round(self.rng.uniform(4.0, 12.0), 1)
        noise = accuracy / 3
        lon, lat = LOCAL.inverse(x + self.rng.gauss(0, noise), y + self.rng.gauss(0, noise))
        self.seq += 1
        doc = {
            "device_id": self.device_id,
            "seq": self.seq,
            "lat": round(lat, 7),
            "lon": round(lon, 7),
            "accuracy_m": accuracy,
            "fix_time": _iso(dt.datetime.now(dt.UTC)),
            "mock_location": False,
        }
        body = json.dumps(doc, separators=(",", ":")).encode()
        return body, base64.b64encode(self.key.sign(body)).decode()


async def run_phones(
    url: str, seed: int, devices: list[str], duration_s: float, interval_s: float
) -> dict[str, object]:
    rng = random.Random(seed)
    phones = [Phone(d, device_private_key(seed, d), Trip.drawn(rng), random.Random(f"{seed}:{d}")) for d in devices]
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    late = 0
    began = time.monotonic()
    end = began + duration_s

    async def phone_loop(index: int, phone: Phone, client: RawPool) -> None:
        nonlocal late
        due = began + interval_s * index / max(len(phones), 1)
        while due < end:
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -interval_s:
                late += 1
            # Where the phone is when it sends, with that time as the fix's: a late ping is a fresh one.
            body, signature = phone.signed_ping(time.monotonic() - began)
            started = time.perf_counter()
            try:
                status, answer = await client.post(
                    PINGS, body, {"Content-Type": "application/json", "X-Signature": signature}
                )
            except HttpError as exc:
                outcomes[f"error {exc}"] += 1
            else:
                latencies.append((time.perf_counter() - started) * 1000)
                outcomes[f"{status} {_word(answer, 'state' if status == 200 else 'reason')}".strip()] += 1
            due += interval_s

    client = RawPool(url)
    try:
        await asyncio.gather(*(phone_loop(i, p, client) for i, p in enumerate(phones)))
    finally:
        client.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "phones": len(phones),
        "outcomes": dict(outcomes),
        "latencies_ms": [round(ms, 3) for ms in latencies],
        "late": late,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def _word(answer: bytes, key: str) -> str:
    try:
        doc = json.loads(answer)
    except ValueError:
        return ""
    return str(doc.get(key) or "") if isinstance(doc, dict) else ""


def main(argv: list[str]) -> int:
    url, seed, duration_s, interval_s, *devices = argv
    result = asyncio.run(run_phones(url, int(seed), devices, float(duration_s), float(interval_s)))
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
