"""The door, end to end: PIN identify + check-out (two HTTP requests, one durable commit) against
a real hub (``checkin-edge serve`` in its own process, uvicorn, access log off) on loopback, at
1, 4 and 16 concurrent stations; and the kiosk page's render.

Each station is a coroutine with its own keep-alive connection and its own families, so stations
never race for one child. At each level the stations first check their families in (one row),
then check the same families out (the row the targets are about): every pair is one real state
change and one durable commit, and the check-out rows count check-outs alone. A station stops
when its families are done or the window ends. hub_cpu_ms_per_pair is the hub process's CPU time
per pair (from /proc): steadier than latency when other work shares the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cloud_sync.roster_sync import RosterSyncService
from cloud_sync.standin.generator import generate_roster
from edge.models import SyncOutcome
from edge.pins import PinHasher
from edge.store import Store, upgrade
from scripts.hub_process import Hub

STATIONS = (1, 4, 16)
PEOPLE = 8_000  # about 3,000 families: enough that no station runs out within a window
TARGETS = {  # from issue 3
    ("identify + check-out", 1): "p50 < 5 ms, p99 < 20 ms",
    ("identify + check-out", 16): ">= 500 check-outs/s, p99 < 100 ms",
    ("kiosk page", 1): "p50 < 5 ms",
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def family_pins(export: dict[str, Any]) -> list[str]:
    """One payer PIN per family (well formed, held by nobody else), so no two stations share a child."""
    people = [p for family in export["families"] for p in family["persons"]]
    counts = Counter(str(r.get("pin")) for r in [*export["employees"], *people])
    pins = []
    for family in export["families"]:
        for person in family["persons"]:
            pin = str(person.get("pin"))
            if person.get("payer") and "id" in person and re.fullmatch(r"\d{4,6}", pin) and counts[pin] == 1:
                pins.append(pin)
                break
    return pins


class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for this bench.

    httpx costs the load generator more CPU per request than the hub spends answering it, and
    here both share two cores: a heavy client measures itself. Requests are written as bytes and
    answers read by Content-Length (uvicorn always sends it for these JSON bodies)."""

    def __init__(self, url: str) -> None:
        host_port = url.split("://", 1)[1]
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.writer is not None
        self.writer.close()

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(payload)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + payload)
        answer = await self.reader.readuntil(b"\r\n\r\n")
        length = _CONTENT_LENGTH.search(answer)
        if length is None:
            raise RuntimeError(f"no Content-Length in {answer[:200]!r}")
        return int(answer[9:12]), await self.reader.readexactly(int(length.group(1)))


_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


class Station:
    """A door: identifies each of its families by PIN and checks their children in (or out)."""

    def __init__(self, url: str, number: int, pins: list[str]) -> None:
        self.url, self.station, self.pins = url, f"door-{number}", pins
        self.pair_ms: list[float] = []
        self.done: list[str] = []  # the PINs whose children this window moved
        self.failures: Counter[str] = Counter()

    async def run(self, action: str, until: float) -> None:
        async with Connection(self.url) as conn:
            for pin in self.pins:
                if time.perf_counter() >= until:
                    return
                started = time.perf_counter()
                who = {"station_id": self.station, "method": "pin", "secret": pin}
                status, raw = await conn.request("POST", "/api/v1/identify", who)
                if status != 200:
                    self.failures[f"identify {status}"] += 1
                    continue
                body = json.loads(raw)
                want_present = action == "check_out"
                kids = [c["id"] for c in body["children"] if c["allowed"] and c["present"] is want_present]
                if not kids:  # a family with no child enrolled in a room: nothing to time
                    continue
                act = {"ticket": body["ticket"], "children": kids, "action": action}
                status, raw = await conn.request("POST", "/api/v1/attendance", act)
                if status != 200:
                    self.failures[f"{action} {status} {json.loads(raw).get('reason')}"] += 1
                    continue
                self.pair_ms.append((time.perf_counter() - started) * 1000)
                self.done.append(pin)


async def _page_reader(url: str, until: float, ms: list[float]) -> None:
    async with Connection(url) as conn:
        while time.perf_counter() < until:
            started = time.perf_counter()
            status, _ = await conn.request("GET", "/kiosk?station=front-door")
            if status != 200:
                raise RuntimeError(f"kiosk page answered {status}")
            ms.append((time.perf_counter() - started) * 1000)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc): what the hub spends per pair,
    a steadier figure than latency on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _timed(pid: int, work: list[Any]) -> tuple[float, float]:
    """Runs the coroutines together; returns the wall time and the hub's CPU time meanwhile."""
    began, cpu_before = time.perf_counter(), cpu_seconds(pid)
    await asyncio.gather(*work)
    return time.perf_counter() - began, cpu_seconds(pid) - cpu_before


def bench_pairs(hub: Hub, pins: list[str], stations: int, seconds: float) -> list[dict[str, Any]]:
    """Checks the families in, then out: one row per action. Each station owns its families, and
    stops when it has done them all or the time is up; check-outs take only the families that
    were checked in."""
    rows = []
    doors = [Station(hub.url, n, pins[n::stations]) for n in range(stations)]
    for action in ("check_in", "check_out"):
        for door in doors:
            door.pair_ms, door.done, door.failures = [], [], Counter()
        until = time.perf_counter() + seconds
        elapsed, cpu = asyncio.run(_timed(hub.pid, [door.run(action, until) for door in doors]))
        latencies = [ms for door in doors for ms in door.pair_ms]
        failures: Counter[str] = sum((door.failures for door in doors), Counter())
        pairs = len(latencies)
        case = f"identify + {action.replace('_', '-')}"
        rows.append(
            {
                "case": case,
                "stations": stations,
                "p50_ms": statistics.median(latencies) if latencies else float("nan"),
                "p99_ms": _percentile(latencies, 0.99) if latencies else float("nan"),
                "pairs_per_s": pairs / elapsed,
                "hub_cpu_ms_per_pair": cpu * 1000 / max(pairs, 1),
                "failures": sum(failures.values()),
                "target": TARGETS.get((case, stations), ""),
                "notes": ", ".join(f"{k}: {v}" for k, v in failures.items()) or "each pair one durable commit",
            }
        )
        if action == "check_in":
            for door in doors:  # check out exactly the families that went in
                door.pins = door.done
    return rows


def bench_page(hub: Hub, readers: int, seconds: float) -> dict[str, Any]:
    ms: list[float] = []
    until = time.perf_counter() + seconds
    elapsed, cpu = asyncio.run(_timed(hub.pid, [_page_reader(hub.url, until, ms) for _ in range(readers)]))
    return {
        "case": "kiosk page",
        "stations": readers,
        "p50_ms": statistics.median(ms),
        "p99_ms": _percentile(ms, 0.99),
        "pairs_per_s": len(ms) / elapsed,
        "hub_cpu_ms_per_pair": cpu * 1000 / max(len(ms), 1),
        "failures": 0,
        "target": TARGETS.get(("kiosk page", readers), ""),
        "notes": "GET /kiosk?station=front-door (pages/s in pairs_per_s, CPU per page)",
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    seconds = float(getattr(args, "seconds", None) or 4.0)
    export = generate_roster(seed=3, people=PEOPLE, center_id="demo-center")
    pins = family_pins(export)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-checkin-") as tmp:
        data_dir = Path(tmp)
        store = Store(f"sqlite:///{data_dir / 'checkin-edge.db'}")
        upgrade(store)
        report = RosterSyncService(store, PinHasher.from_data_dir(data_dir)).apply_export([export])
        store.close()
        if report.outcome is not SyncOutcome.OK:
            raise RuntimeError(f"roster did not apply: {report.error}")
        hub = Hub(data_dir)
        try:
            bench_pairs(hub, pins, 4, 1.0)  # warm up: imports, statement caches, the page cache
            for stations in STATIONS:
                rows.extend(bench_pairs(hub, pins, stations, seconds))
            for readers in STATIONS:
                rows.append(bench_page(hub, readers, min(seconds, 2.0)))
        finally:
            hub.stop()
    return rows
