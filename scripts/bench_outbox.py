"""Outbox: commit -> cloud receipt latency at a steady check-in rate, and the time to drain a
backlog of 10,000 events once the cloud is back. The stand-in cloud runs in its own process
(so it does not share the sender's interpreter lock), on loopback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from cloud_sync.attendance_client import AttendanceClient
from cloud_sync.outbox import OutboxSender
from cloud_sync.standin.server import DEFAULT_CLOUD_TOKEN, DEFAULT_SOURCE_TOKEN
from edge.attendance import record_event
from edge.connectivity import Connectivity
from edge.models import Action, ActorKind, Method, SubjectKind
from edge.store import Store, upgrade

STANDIN = """
import sys, time
from cloud_sync.standin.server import StandinCloud, StandinState
with StandinCloud(StandinState("bench")) as cloud:
    print(cloud.url, flush=True)
    sys.stdin.read()
"""


def _record(store: Store, i: int) -> str:
    with store.transaction() as session:
        event = record_event(
            session,
            subject_kind=SubjectKind.CHILD,
            subject_id=f"C{i % 300}",
            action=(Action.CHECK_IN, Action.CHECK_OUT)[(i // 300) % 2],
            method=Method.PIN,
            actor_kind=ActorKind.PAYER,
            actor_id=f"P{i % 300}",
            station_id="front-door",
            occurred_at=dt.datetime.now(dt.UTC),
            clock_synced=True,
        )
        return event.id


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    rate = 50.0
    steady_events = 500
    backlog = 10_000
    cloud = subprocess.Popen([sys.executable, "-c", STANDIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert cloud.stdout is not None
    url = cloud.stdout.readline().strip()
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
            store = Store(f"sqlite:///{Path(tmp) / 'checkin-edge.db'}")
            upgrade(store)
            poster = AttendanceClient(url, "bench", DEFAULT_CLOUD_TOKEN)
            sender = OutboxSender(store, poster, connectivity=Connectivity(), batch_size=500)

            # 1. steady rate, the sender running and woken on each commit
            stop = threading.Event()
            thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
            thread.start()
            committed: dict[str, float] = {}
            recording: list[float] = []
            next_at = time.perf_counter()
            for i in range(steady_events):
                started = time.perf_counter()
                event_id = _record(store, i)
                committed[event_id] = time.time()
                recording.append(time.perf_counter() - started)
                sender.wake()
                next_at += 1 / rate
                time.sleep(max(0.0, next_at - time.perf_counter()))
            deadline = time.monotonic() + 30
            while sender.stats.delivered < steady_events and time.monotonic() < deadline:
                time.sleep(0.01)
            stop.set()
            sender.wake()
            thread.join(10)
            held = httpx.get(
                f"{url}/_control/attendance", headers={"Authorization": f"Bearer {DEFAULT_SOURCE_TOKEN}"}, timeout=30
            ).json()["events"]
            latency_ms = [
                (e["received_at"] - committed[e["event"]["event_id"]]) * 1000
                for e in held
                if e["event"]["event_id"] in committed
            ]
            rows.append(
                {
                    "case": f"commit -> cloud receipt, {rate:.0f} check-ins/s",
                    "events": len(latency_ms),
                    "p50_ms": statistics.median(latency_ms),
                    "p99_ms": _percentile(latency_ms, 0.99),
                    "seconds": 0.0,
                    "target": "p50 < 10 ms, p99 < 50 ms",
                }
            )
            rows.append(
                {
                    "case": "recording at the door (commit), same run",
                    "events": len(recording),
                    "p50_ms": statistics.median(recording) * 1000,
                    "p99_ms": _percentile(recording, 0.99) * 1000,
                    "seconds": 0.0,
                    "target": "",
                }
            )

            # 2. a backlog recorded while the cloud was away, drained in one go
            for i in range(backlog):
                _record(store, steady_events + i)
            started = time.perf_counter()
            outcome = sender.drain()
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "case": f"drain a backlog of {backlog:,} events",
                    "events": outcome.delivered + outcome.duplicates,
                    "p50_ms": 0.0,
                    "p99_ms": 0.0,
                    "seconds": seconds,
                    "target": "< 5 s",
                }
            )
            poster.close()
            store.close()
    finally:
        if cloud.stdin:
            cloud.stdin.close()
        cloud.wait(10)
        if cloud.stdout:
            cloud.stdout.close()
    return rows
