"""The demo and the hub as real processes: they start, sync, answer, and stop on a signal."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloud_sync.standin.generator import generate_roster
from cloud_sync.standin.server import StandinCloud, StandinState
from tests.dbenv import clean_env

CLI = [sys.executable, "-m", "kiosk_ui.cli"]


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = clean_env()
    env.update({"CHECKIN_EDGE_DATA_DIR": str(data_dir), **extra})
    return env


def _read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float = 30) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} not printed; got {lines}")


@pytest.fixture
def stop_later() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


@pytest.mark.slow
def test_demo_starts_synced_and_prints_where_to_go(tmp_path: Path, stop_later: list[subprocess.Popen[str]]) -> None:
    proc = subprocess.Popen(
        [*CLI, "demo", "--port", "0", "--people", "80", "--data-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path / "unused"),
    )
    stop_later.append(proc)
    lines = _read_until(proc, "Press Ctrl-C")
    text = "\n".join(lines)
    assert "Roster sync:    ok" in text
    dashboard = next(line.split()[1] for line in lines if line.startswith("Dashboard:"))
    assert next(line for line in lines if line.startswith("Kiosk:")).endswith("/kiosk?station=front-door")
    assert "payer" in text
    assert "pickup" in text
    assert "restricted" in text
    # The dashboard needs a login: the demo made a director and printed it.
    assert httpx.get(dashboard, timeout=10).status_code == 401
    login = re.search(r"\(log in as (\S+) / (\S+)\)", text)
    assert login, text
    base = dashboard.removesuffix("/dashboard")
    with httpx.Client(base_url=base, timeout=10, follow_redirects=True) as browser:
        form = browser.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        browser.post(
            "/login", data={"username": login.group(1), "password": login.group(2), "csrf_token": token.group(1)}
        )
        page = browser.get("/dashboard/sync-doctor")
    assert page.status_code == 200
    assert "Why some records did not sync" in page.text
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) in (0, 130)


@pytest.mark.slow
def test_serve_pulls_at_startup_when_the_last_pull_is_older_than_the_slot(
    tmp_path: Path, stop_later: list[subprocess.Popen[str]]
) -> None:
    state = StandinState("c1", source_token="tok-source-1", roster=generate_roster(seed=3, people=40, center_id="c1"))
    with StandinCloud(state) as cloud:
        env = _env(
            tmp_path / "data",
            CHECKIN_EDGE_CENTER_ID="c1",
            CHECKIN_EDGE_SOURCE_URL=cloud.url,
            CHECKIN_EDGE_SOURCE_TOKEN="tok-source-1",
            CHECKIN_EDGE_PORT="0",
        )
        proc = subprocess.Popen([*CLI, "serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        stop_later.append(proc)
        _read_until(proc, "roster sync 1 ok")
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        shown = subprocess.run(
            [*CLI, "roster", "show", "--json"], capture_output=True, text=True, env=env, check=True
        ).stdout
    assert json.loads(shown)["school"]["name"]
    assert state.requests["roster"] >= 1


@pytest.mark.slow
def test_serve_stops_promptly_while_a_kiosk_holds_its_live_stream(
    tmp_path: Path, stop_later: list[subprocess.Popen[str]]
) -> None:
    env = _env(tmp_path / "data", CHECKIN_EDGE_PORT="0")
    proc = subprocess.Popen([*CLI, "serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    stop_later.append(proc)
    line = _read_until(proc, "serving on")[-1]
    base = line[line.index("http://") :].split()[0].rstrip(",")
    opened = threading.Event()

    def listen() -> None:
        try:
            with httpx.stream("GET", f"{base}/api/v1/live?station=front-door", timeout=30) as stream:
                for _ in stream.iter_lines():
                    opened.set()
        except httpx.HTTPError:
            pass  # the hub went away: what a kiosk sees, and then reconnects

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    assert opened.wait(10)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down cleanly, then re-raises the signal it caught: -SIGTERM is its clean exit.
    assert proc.wait(10) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 3
    reader.join(5)
