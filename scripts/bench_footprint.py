"""The appliance's footprint: what `checkin-edge serve` costs a Raspberry Pi when nobody is at
the door, how fast it answers after a (re)start, and how much it writes to the SD card.

The hub runs as a real process (``python -m kiosk_ui.cli serve``) on a temporary data directory
holding a roster of ~300 children applied with ``checkin-edge roster apply``.

- **cold start**: from exec to the first ``200`` on ``/healthz`` (imports, database open, the
  app built, uvicorn serving); the median of ``--repeat`` starts. The page cache is warm
  (dropping it needs root and hits the whole machine), so a Pi's first boot is slower.
- **idle RSS and CPU**: ``VmRSS`` from ``/proc/PID/status`` after 10 s with no request, then
  the CPU it uses over the next 10 s (``/proc/PID/stat`` utime + stime).
- **bytes written per check-in**: 1,000 check-ins and check-outs driven over HTTP (identify by
  a real PIN from the export, then act on the family's children; one station, as at a door),
  measured by the hub's ``write_bytes`` in ``/proc/PID/io``: what it sent to the block layer,
  WAL frames and checkpoints included. Once with no cloud (the events stay in the outbox), once
  with the stand-in cloud receiving them (the outbox rows are then also marked delivered).
- **bytes written per other request**: identify, the kiosk page and ``/healthz`` must write
  nothing (tickets, lockout counters, live events and metrics live in memory).
- **the floor**: what the smallest durable commit costs on the same disk, measured the same way:
  a one-row insert into a one-column table, SQLite WAL with ``synchronous=FULL``, 1,000 times.
  No durable check-in can write less than this, whatever its tables look like: the block layer
  takes whole 4 KB pages, a commit dirties the WAL's last page and its fsync writes it out, and
  the checkpoint writes the changed page into the database file again.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

from cloud_sync.standin.generator import generate_roster
from cloud_sync.standin.server import DEFAULT_CLOUD_TOKEN, StandinCloud, StandinState
from scripts.bench_checkin import cpu_seconds, family_pins
from scripts.hub_process import Hub, running

PEOPLE = 550  # the generator makes ~300 children of 550 people
CENTER = "demo-center"
CHECKINS = 1_000
IDLE_S = 10.0
TARGET_RSS_MB = 120.0
TARGET_START_S = 3.0
TARGET_BYTES_PER_CHECKIN = 4 * 1024


def proc_status(pid: int, field: str) -> int:
    """A ``kB`` line of /proc/PID/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def proc_io(pid: int) -> dict[str, int]:
    pairs = (line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {key: int(value) for key, value in pairs}


def drive_checkins(url: str, pins: list[str], wanted: int) -> tuple[int, int]:
    """Check families in and out until ``wanted`` attendance events; returns (events, commits)."""
    events = commits = 0
    index = 0
    with httpx.Client(base_url=url, timeout=10) as client:
        while events < wanted:
            pin = pins[index % len(pins)]
            index += 1
            who = client.post("/api/v1/identify", json={"station_id": "front-door", "method": "pin", "secret": pin})
            who.raise_for_status()
            body = who.json()
            inside = [c["id"] for c in body["children"] if c["allowed"] and c["present"]]
            outside = [c["id"] for c in body["children"] if c["allowed"] and not c["present"]]
            action, kids = ("check_out", inside) if inside else ("check_in", outside)
            if not kids:
                continue
            act = {"ticket": body["ticket"], "children": kids, "action": action}
            done = client.post("/api/v1/attendance", json=act)
            done.raise_for_status()
            events += len(done.json()["events"])
            commits += 1
    return events, commits


def drive_other_requests(url: str, pins: list[str], count: int) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(count // 3):
            pin = pins[i % len(pins)]
            client.post("/api/v1/identify", json={"station_id": "front-door", "method": "pin", "secret": pin})
            client.get("/kiosk", params={"station": "front-door"}).raise_for_status()
            client.get("/healthz").raise_for_status()


def wait_for_outbox(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/healthz", timeout=5).json()["outbox"]["pending"] == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("the outbox did not drain")


def db_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("checkin-edge.db*"))


def settled_db_bytes(data_dir: Path) -> int:
    """The database's size with its WAL folded in: what stays on the card."""
    with closing(sqlite3.connect(data_dir / "checkin-edge.db")) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db_bytes(data_dir)


def measure_writes(hub: Hub, data_dir: Path, pins: list[str]) -> dict[str, float]:
    drive_checkins(hub.url, pins, 50)  # warm up: statement caches, the first WAL frames
    settled_before = settled_db_bytes(data_dir)
    io_before = proc_io(hub.pid)
    events, commits = drive_checkins(hub.url, pins, CHECKINS)
    io_after = proc_io(hub.pid)
    return {
        "events": events,
        "commits": commits,
        "write_bytes": (io_after["write_bytes"] - io_before["write_bytes"]) / events,
        "wchar": (io_after["wchar"] - io_before["wchar"]) / events,
        "growth": (settled_db_bytes(data_dir) - settled_before) / events,
    }


def durable_commit_floor(directory: Path, page_size: int, commits: int = CHECKINS) -> float:
    """Block-layer bytes per durable one-row commit, in this process (see the module's text)."""
    path = directory / f"floor-{page_size}.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(f"PRAGMA page_size={page_size}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (v TEXT)")
        for _ in range(50):
            conn.execute("INSERT INTO t VALUES ('warm')")
        before = proc_io(os.getpid())["write_bytes"]
        for _ in range(commits):
            conn.execute("INSERT INTO t VALUES ('one check-in')")
        written = proc_io(os.getpid())["write_bytes"] - before
    return written / commits


def _row(measure: str, value: float, unit: str, *, target: str, ok: bool | None, notes: str) -> dict[str, Any]:
    verdict = "-" if ok is None else ("yes" if ok else "NO")
    return {"measure": measure, "value": value, "unit": unit, "target": target, "met": verdict, "notes": notes}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    repeat = max(1, int(getattr(args, "repeat", None) or 3))
    export = generate_roster(seed=5, people=PEOPLE, center_id=CENTER)
    children = sum(len(f["children"]) for f in export["families"])
    pins = family_pins(export)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        work = Path(tmp)
        data_dir, log = work / "data", work / "serve.log"  # the log outside the measured directory
        (work / "export.json").write_text(json.dumps(export))
        applied = subprocess.run(
            [sys.executable, "-m", "kiosk_ui.cli", "roster", "apply", str(work / "export.json"), "--json"],
            capture_output=True,
            text=True,
            check=False,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("CHECKIN_EDGE_")}}
            | {"CHECKIN_EDGE_DATA_DIR": str(data_dir), "CHECKIN_EDGE_CENTER_ID": CENTER},
        )
        if applied.returncode != 0 or json.loads(applied.stdout)["outcome"] != "ok":
            raise RuntimeError(f"roster apply failed: {applied.stdout}{applied.stderr}")

        starts = []
        for _ in range(repeat):
            with running(data_dir, log, center_id=CENTER) as hub:
                starts.append(hub.started_s)
        start_s = statistics.median(starts)
        rows.append(
            _row(
                "cold start to first /healthz 200",
                start_s,
                "s",
                target=f"< {TARGET_START_S:.0f} s",
                ok=start_s < TARGET_START_S,
                notes=f"median of {repeat}, max {max(starts):.2f} s; page cache warm",
            )
        )

        with running(data_dir, log, center_id=CENTER) as hub:
            time.sleep(IDLE_S)
            rss = proc_status(hub.pid, "VmRSS") / 1024 / 1024
            cpu_before, began = cpu_seconds(hub.pid), time.perf_counter()
            time.sleep(IDLE_S)
            cpu_pct = (cpu_seconds(hub.pid) - cpu_before) / (time.perf_counter() - began) * 100
            rows.append(
                _row(
                    "idle RSS",
                    rss,
                    "MB",
                    target=f"< {TARGET_RSS_MB:.0f} MB",
                    ok=rss < TARGET_RSS_MB,
                    notes=f"VmRSS after {IDLE_S:.0f} s idle; {children} children, {PEOPLE} people",
                )
            )
            rows.append(
                _row(
                    "idle CPU", cpu_pct, "% of a core", target="", ok=None, notes=f"over {IDLE_S:.0f} s with no request"
                )
            )

            # Warm up first: a module imported on first use writes its .pyc once (a fresh tree;
            # the appliance's install compiles them), which is no per-request write.
            drive_other_requests(hub.url, pins, 30)
            io_before = proc_io(hub.pid)
            drive_other_requests(hub.url, pins, 999)
            quiet = proc_io(hub.pid)["write_bytes"] - io_before["write_bytes"]
            rows.append(
                _row(
                    "written per 1,000 other requests",
                    float(quiet),
                    "bytes",
                    target="0",
                    ok=quiet == 0,
                    notes="identify (no action), GET /kiosk, GET /healthz: nothing but attendance is written",
                )
            )

            local = measure_writes(hub, data_dir, pins)
            rss_after = proc_status(hub.pid, "VmRSS") / 1024 / 1024
        rows.append(
            _row(
                "written per check-in, no cloud",
                local["write_bytes"],
                "bytes",
                target=f"< {TARGET_BYTES_PER_CHECKIN} B",
                ok=local["write_bytes"] < TARGET_BYTES_PER_CHECKIN,
                notes=f"/proc io write_bytes over {local['events']:.0f} events in {local['commits']:.0f} commits; "
                f"write() calls {local['wchar']:.0f} B/event; database grew {local['growth']:.0f} B/event",
            )
        )
        rows.append(
            _row("RSS after the check-ins", rss_after, "MB", target=f"< {TARGET_RSS_MB:.0f} MB", ok=None, notes="")
        )

        floors = {size: durable_commit_floor(work, size) for size in (4096, 512)}
        floor = min(floors.values())
        rows.append(
            _row(
                "the floor: one durable one-row commit",
                floor,
                "bytes",
                target=f"< {TARGET_BYTES_PER_CHECKIN} B",
                ok=floor < TARGET_BYTES_PER_CHECKIN,
                notes="SQLite WAL + synchronous=FULL, the same disk, the same measure; "
                + ", ".join(f"{size} B pages: {written:.0f} B" for size, written in floors.items())
                + ": no check-in answered only once durable writes less",
            )
        )

        with StandinCloud(StandinState(CENTER, cloud_token=DEFAULT_CLOUD_TOKEN)) as cloud:
            settings = {"cloud_url": cloud.url, "cloud_token": DEFAULT_CLOUD_TOKEN}
            with running(data_dir, log, center_id=CENTER, **settings) as hub:
                wait_for_outbox(hub.url)  # the backlog of the first run goes out first
                io_before = proc_io(hub.pid)
                events, _commits = drive_checkins(hub.url, pins, CHECKINS)
                wait_for_outbox(hub.url)
                delivered = proc_io(hub.pid)["write_bytes"] - io_before["write_bytes"]
        per_event = delivered / events
        rows.append(
            _row(
                "written per check-in, delivered to the cloud",
                per_event,
                "bytes",
                target=f"< {TARGET_BYTES_PER_CHECKIN} B",
                ok=per_event < TARGET_BYTES_PER_CHECKIN,
                notes=f"as above plus the outbox marking each event delivered ({events} events)",
            )
        )
    return rows
