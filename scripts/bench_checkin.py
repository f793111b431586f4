"""The door, end to end: PIN identify + check-out (two HTTP requests, one durable commit) against
a real hub (``checkin-edge serve`` in its own process, uvicorn, access log off) on loopback, at
1, 4 and 16 concurrent stations; and the kiosk page's render.

Each station is a thread with its own keep-alive httpx client and its own families, so stations
never race for one child. A station alternates: it checks a family's children in, and the next
time round out, so every pair is one real state change and one durable commit (the dedup window
never answers for it). A check-in pair and a check-out pair cost the same (the same requests,
one durable commit each), so latencies and pairs/s are over every pair; checkouts_per_s counts
the check-outs alone. hub_cpu_ms_per_pair is the hub process's CPU time per pair (from /proc):
steadier than latency when other work shares the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from cloud_sync.roster_sync import RosterSyncService
from cloud_sync.standin.generator import generate_roster
from edge.models import SyncOutcome
from edge.pins import PinHasher
from edge.store import Store, upgrade
from scripts.hub_process import Hub

STATIONS = (1, 4, 16)
PEOPLE = 1_000
TARGETS = {  # from issue 3
    ("identify + check-in/out", 1): "p50 < 5 ms, p99 < 20 ms",
    ("identify + check-in/out", 16): ">= 500 check-outs/s, p99 < 100 ms",
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


class Station(threading.Thread):
    def __init__(self, url: str, number: int, pins: list[str], start: threading.Barrier, stop: threading.Event):
        super().__init__(daemon=True)
        self.url, self.number, self.pins = url, number, pins
        self.start_line, self.stop = start, stop
        self.pair_ms: list[float] = []
        self.pairs = 0
        self.checkouts = 0
        self.failures: Counter[str] = Counter()

    def run(self) -> None:
        station = f"door-{self.number}"
        with httpx.Client(base_url=self.url, timeout=10) as client:
            self.start_line.wait()
            index = 0
            while not self.stop.is_set():
                pin = self.pins[index % len(self.pins)]
                index += 1
                started = time.perf_counter()
                who = client.post("/api/v1/identify", json={"station_id": station, "method": "pin", "secret": pin})
                if who.status_code != 200:
                    self.failures[f"identify {who.status_code}"] += 1
                    continue
                body = who.json()
                inside = [c["id"] for c in body["children"] if c["allowed"] and c["present"]]
                outside = [c["id"] for c in body["children"] if c["allowed"] and not c["present"]]
                action, kids = ("check_out", inside) if inside else ("check_in", outside)
                if not kids:
                    continue
                done = client.post(
                    "/api/v1/attendance", json={"ticket": body["ticket"], "children": kids, "action": action}
                )
                elapsed_ms = (time.perf_counter() - started) * 1000
                if done.status_code != 200:
                    self.failures[f"{action} {done.status_code} {done.json().get('reason')}"] += 1
                    continue
                self.pairs += 1
                self.pair_ms.append(elapsed_ms)
                if action == "check_out":
                    self.checkouts += 1


class PageReader(threading.Thread):
    def __init__(self, url: str, start: threading.Barrier, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.start_line, self.stop = url, start, stop
        self.ms: list[float] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            self.start_line.wait()
            while not self.stop.is_set():
                started = time.perf_counter()
                page = client.get("/kiosk", params={"station": "front-door"})
                page.raise_for_status()
                self.ms.append((time.perf_counter() - started) * 1000)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc): what the hub spends per pair,
    a steadier figure than latency on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(
    threads: list[Any], start: threading.Barrier, stop: threading.Event, seconds: float, pid: int
) -> tuple[float, float]:
    """Runs the threads for ``seconds``; returns the wall time and the hub's CPU time meanwhile."""
    for thread in threads:
        thread.start()
    start.wait()
    began, cpu_before = time.perf_counter(), cpu_seconds(pid)
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(30)
    return time.perf_counter() - began, cpu_seconds(pid) - cpu_before


def bench_pairs(hub: Hub, pins: list[str], stations: int, seconds: float) -> dict[str, Any]:
    start, stop = threading.Barrier(stations + 1), threading.Event()
    threads = [Station(hub.url, n, pins[n::stations], start, stop) for n in range(stations)]
    elapsed, cpu = _measure(threads, start, stop, seconds, hub.proc.pid)
    latencies = [ms for t in threads for ms in t.pair_ms]
    failures: Counter[str] = sum((t.failures for t in threads), Counter())
    pairs = sum(t.pairs for t in threads)
    checkouts = sum(t.checkouts for t in threads)
    return {
        "case": "identify + check-in/out",
        "stations": stations,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": _percentile(latencies, 0.99) if latencies else float("nan"),
        "pairs_per_s": pairs / elapsed,
        "checkouts_per_s": checkouts / elapsed,
        "hub_cpu_ms_per_pair": cpu * 1000 / max(pairs, 1),
        "failures": sum(failures.values()),
        "target": TARGETS.get(("identify + check-in/out", stations), ""),
        "notes": ", ".join(f"{k}: {v}" for k, v in failures.items()) or "each pair one durable commit",
    }


def bench_page(hub: Hub, readers: int, seconds: float) -> dict[str, Any]:
    start, stop = threading.Barrier(readers + 1), threading.Event()
    threads = [PageReader(hub.url, start, stop) for _ in range(readers)]
    elapsed, cpu = _measure(threads, start, stop, seconds, hub.proc.pid)
    latencies = [ms for t in threads for ms in t.ms]
    return {
        "case": "kiosk page",
        "stations": readers,
        "p50_ms": statistics.median(latencies),
        "p99_ms": _percentile(latencies, 0.99),
        "pairs_per_s": len(latencies) / elapsed,
        "checkouts_per_s": 0.0,
        "hub_cpu_ms_per_pair": cpu * 1000 / max(len(latencies), 1),
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
                rows.append(bench_pairs(hub, pins, stations, seconds))
            for readers in STATIONS:
                rows.append(bench_page(hub, readers, min(seconds, 2.0)))
        finally:
            hub.stop()
    return rows
