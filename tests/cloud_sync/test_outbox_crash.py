"""SIGKILL of `serve` during a burst of 1,000 check-ins while attendance flows to the cloud, then a
restart: the cloud ends up with every recorded event exactly once, each child's in order."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from cloud_sync.standin.generator import generate_roster
from cloud_sync.standin.server import StandinCloud, StandinState
from edge.store import Store
from tests.dbenv import clean_env, db_url
from tests.kiosk_ui.test_crash import next_act, payer_pins

CLI = [sys.executable, "-m", "kiosk_ui.cli"]
TOTAL = 1_000
KILL_AT = 350
STATIONS = 6


class Burst:
    """Stations checking children in and out until ``target`` events were answered "done"."""

    def __init__(self, pins: list[str]) -> None:
        self.pins = pins
        self.lock = threading.Lock()
        self.answered: list[str] = []
        self.reached = threading.Event()
        self.target = KILL_AT

    def run(self, base: str, number: int, stop: threading.Event) -> None:
        index = number
        with httpx.Client(base_url=base, timeout=5) as client:
            while not stop.is_set():
                pin = self.pins[index % len(self.pins)]
                index += STATIONS
                try:
                    who = client.post(
                        "/api/v1/identify", json={"station_id": f"door-{number}", "method": "pin", "secret": pin}
                    )
                    if who.status_code != 200:
                        continue
                    body = who.json()
                    action, kids = next_act(body["children"])
                    if not kids:
                        continue
                    done = client.post(
                        "/api/v1/attendance", json={"ticket": body["ticket"], "children": kids, "action": action}
                    )
                except httpx.TransportError:
                    return  # the hub is gone
                if done.status_code == 200:
                    with self.lock:
                        self.answered += [e["event_id"] for e in done.json()["events"]]
                        if len(self.answered) >= self.target:
                            self.reached.set()


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with log.open("ab") as out:
        proc = subprocess.Popen([*CLI, "serve", "--port", "0"], stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ports = re.findall(r"serving on http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
        if ports and proc.poll() is None:
            base = f"http://127.0.0.1:{ports[-1]}"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    return proc, base
            except httpx.TransportError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(log.read_text(errors="replace"))


def _burst(burst: Burst, base: str) -> None:
    stop = threading.Event()
    threads = [threading.Thread(target=burst.run, args=(base, n, stop), daemon=True) for n in range(STATIONS)]
    for thread in threads:
        thread.start()
    assert burst.reached.wait(60), f"only {len(burst.answered)} check-ins answered"
    stop.set()
    for thread in threads:
        thread.join(10)


@pytest.mark.slow
def test_sigkill_during_a_burst_then_restart_delivers_each_event_once_in_order(tmp_path: Path) -> None:
    export = generate_roster(seed=5, people=300, center_id="c-crash")
    state = StandinState("c-crash", cloud_token="cloud-tok-crash")
    data_dir = tmp_path / "data"
    with StandinCloud(state) as cloud:
        env = clean_env()
        env.update(
            CHECKIN_EDGE_DATA_DIR=str(data_dir),
            CHECKIN_EDGE_CENTER_ID="c-crash",
            CHECKIN_EDGE_CLOUD_URL=cloud.url,
            CHECKIN_EDGE_CLOUD_TOKEN="cloud-tok-crash",
        )
        export_file = tmp_path / "export.json"
        export_file.write_text(json.dumps(export))
        subprocess.run(
            [*CLI, "roster", "apply", str(export_file)], env=env, check=True, capture_output=True, timeout=60
        )
        log = tmp_path / "serve.log"
        burst = Burst(payer_pins(export))

        proc, base = _start(env, log)
        stop = threading.Event()
        threads = [threading.Thread(target=burst.run, args=(base, n, stop), daemon=True) for n in range(STATIONS)]
        for thread in threads:
            thread.start()
        try:
            assert burst.reached.wait(60), f"only {len(burst.answered)} answered before the kill"
            proc.send_signal(signal.SIGKILL)  # requests and attendance POSTs are in flight
            proc.wait(10)
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            for thread in threads:
                thread.join(10)
        delivered_before_restart = len(state.attendance)

        burst.target = TOTAL
        burst.reached.clear()
        proc, base = _start(env, log)
        try:
            _burst(burst, base)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if httpx.get(f"{base}/healthz", timeout=5).json()["outbox"]["pending"] == 0:
                    break
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

        store = Store(db_url(data_dir))
        try:
            with store.engine.connect() as conn:
                recorded = [
                    (row.id, row.subject_id)
                    for row in conn.execute(
                        text("SELECT id, subject_id FROM attendance_events ORDER BY occurred_at, id")
                    )
                ]
                pending = conn.execute(text("SELECT count(*) FROM outbox WHERE state = 'pending'")).scalar()
        finally:
            store.close()
        cloud_ids = [e["event_id"] for e in state.attendance]

    assert delivered_before_restart > 0  # the cloud was receiving when the hub died
    assert len(burst.answered) >= TOTAL
    assert pending == 0
    # Exactly once: every recorded event, nothing else, no event twice.
    assert len(cloud_ids) == len(set(cloud_ids))
    assert set(cloud_ids) == {event_id for event_id, _ in recorded}
    assert set(burst.answered) <= set(cloud_ids)
    # In order per child, as recorded.
    per_child_recorded: dict[str, list[str]] = defaultdict(list)
    for event_id, child in recorded:
        per_child_recorded[child].append(event_id)
    per_child_cloud: dict[str, list[str]] = defaultdict(list)
    for event in state.attendance:
        per_child_cloud[event["child_id"]].append(event["event_id"])
    assert per_child_cloud == per_child_recorded
