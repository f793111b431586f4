"""The hub killed with SIGKILL in the middle of a burst of check-ins: every check-in answered
"done" is in the database with its outbox row, its presence and its audit row, and nothing is
half-written (DESIGN.md: one transaction before the screen says "done")."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from cloud_sync.standin.generator import generate_roster
from edge.store import Store
from tests.dbenv import clean_env, db_url, integrity_check

CLI = [sys.executable, "-m", "kiosk_ui.cli"]
WORKERS = 8
KILL_AFTER_ANSWERS = 150  # answered acts before the kill: well inside the burst
BURST_DEADLINE_S = 8.0


def _env(data_dir: Path) -> dict[str, str]:
    env = clean_env()
    env["CHECKIN_EDGE_DATA_DIR"] = str(data_dir)
    return env


def payer_pins(export: dict[str, Any]) -> list[str]:
    """PINs of payers that only they hold and that are well formed (the export has shared and bad ones)."""
    people = [p for family in export["families"] for p in family["persons"]]
    counts = Counter(str(r.get("pin")) for r in [*export["employees"], *people])
    return [
        p["pin"]
        for p in people
        if p.get("payer") and "id" in p and re.fullmatch(r"\d{4,6}", str(p["pin"])) and counts[p["pin"]] == 1
    ]


def _wait_for_port(log: Path, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"serving on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"the hub did not start:\n{log.read_text(errors='replace')}")


def next_act(children: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """Check in whoever is out; when all are in, check them out (so the burst never runs dry)."""
    out = [c["id"] for c in children if c["allowed"] and not c["present"]]
    if out:
        return "check_in", out
    return "check_out", [c["id"] for c in children if c["allowed"] and c["present"]]


class Burst:
    """Stations doing identify + check-in/check-out as fast as they can, remembering every act
    the hub answered 200 to."""

    def __init__(self, base: str, pins: list[str]) -> None:
        self.base = base
        self.pins = pins
        self.lock = threading.Lock()
        self.answered: dict[str, dict[str, Any]] = {}  # event id -> the event as answered
        self.answers = 0
        self.enough = threading.Event()
        self.errors: list[str] = []
        self.cut = 0  # stations whose request was in flight when the hub died

    def station(self, number: int) -> None:
        station = f"door-{number}"
        with httpx.Client(base_url=self.base, timeout=5) as client:
            index = number
            try:
                while True:
                    pin = self.pins[index % len(self.pins)]
                    index += WORKERS
                    who = client.post("/api/v1/identify", json={"station_id": station, "method": "pin", "secret": pin})
                    if who.status_code != 200:
                        continue
                    body = who.json()
                    action, kids = next_act(body["children"])
                    if not kids:
                        continue
                    done = client.post(
                        "/api/v1/attendance", json={"ticket": body["ticket"], "children": kids, "action": action}
                    )
                    if done.status_code == 200:
                        with self.lock:
                            for event in done.json()["events"]:
                                self.answered[event["event_id"]] = event
                            self.answers += 1
                            if self.answers >= KILL_AFTER_ANSWERS:
                                self.enough.set()
            except httpx.TransportError:
                with self.lock:
                    self.cut += 1  # the hub is gone: this station's burst is over
            except Exception as exc:
                self.errors.append(repr(exc))


@pytest.mark.slow
def test_sigkill_mid_burst_loses_no_answered_check_in(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    export = generate_roster(seed=5, people=300, center_id="demo-center")
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(export))
    applied = subprocess.run(
        [*CLI, "roster", "apply", str(export_file), "--json"],
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["outcome"] == "ok"

    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*CLI, "serve", "--port", "0"], stdout=out, stderr=subprocess.STDOUT, env=_env(data_dir)
        )
    try:
        port = _wait_for_port(log, proc)
        burst = Burst(f"http://127.0.0.1:{port}", payer_pins(export))
        threads = [threading.Thread(target=burst.station, args=(n,), daemon=True) for n in range(WORKERS)]
        for thread in threads:
            thread.start()
        assert burst.enough.wait(BURST_DEADLINE_S), f"only {burst.answers} answers: {burst.errors}"
        proc.send_signal(signal.SIGKILL)  # mid-burst: requests are in flight on every station
        proc.wait(10)
        for thread in threads:
            thread.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert burst.errors == []
    assert burst.cut == WORKERS  # every station was cut off mid-request: the kill came mid-burst
    assert len(burst.answered) >= KILL_AFTER_ANSWERS

    store = Store(db_url(data_dir))  # on SQLite, opening it recovers the WAL
    try:
        with store.engine.connect() as conn:
            events = {
                row.id: row
                for row in conn.execute(text("SELECT id, subject_kind, subject_id, action FROM attendance_events"))
            }
            outbox = {row.event_id for row in conn.execute(text("SELECT event_id FROM outbox"))}
            audited = {
                row.event_id for row in conn.execute(text("SELECT event_id FROM audit_log WHERE event_id IS NOT NULL"))
            }
            presence = {
                (row.subject_kind, row.subject_id): row
                for row in conn.execute(text("SELECT subject_kind, subject_id, present, event_id FROM presence"))
            }
            latest = {
                (row.subject_kind, row.subject_id): row.id
                for row in conn.execute(
                    text(
                        "SELECT id, subject_kind, subject_id FROM attendance_events e WHERE id = "
                        "(SELECT id FROM attendance_events f WHERE f.subject_kind = e.subject_kind "
                        "AND f.subject_id = e.subject_id ORDER BY occurred_at DESC, id DESC LIMIT 1)"
                    )
                )
            }
            integrity = integrity_check(conn)
    finally:
        store.close()

    assert integrity == "ok"
    # Every check-in the hub answered "done" survived the kill, with its outbox and audit rows.
    missing = [event_id for event_id in burst.answered if event_id not in events]
    assert missing == []
    for event_id, answered in burst.answered.items():
        assert events[event_id].subject_id == answered["child_id"]
        assert events[event_id].action == answered["action"]
    # No half-written state: every event has its outbox row and audit row...
    assert set(events) == outbox
    assert set(events) <= audited
    # ...and every subject's presence is its latest event's.
    assert set(presence) == set(latest)
    for subject, row in presence.items():
        assert row.event_id == latest[subject]
        assert bool(row.present) is (events[row.event_id].action == "check_in")
