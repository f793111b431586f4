"""sd_notify without libsystemd: messages on a real unix datagram socket, the watchdog that pings
only while the hub answers, and `checkin-edge serve` talking to a socket as systemd would."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.store import Store
from edge.watchdog import (
    Notifier,
    ServeSupervisor,
    WatchdogLoop,
    database_answers,
    loop_answers,
    watchdog_interval_s,
)
from tests.dbenv import clean_env


class FakeSystemd:
    """The receiving end of $NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.messages: list[str] = []

    def receive(self, timeout_s: float = 5.0) -> str | None:
        self.sock.settimeout(timeout_s)
        try:
            message = self.sock.recv(4096).decode()
        except TimeoutError:
            return None
        self.messages.append(message)
        return message

    def wait_for(self, field: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = self.receive(deadline - time.monotonic())
            if message is not None and field in message.split("\n"):
                return message
        raise AssertionError(f"{field} not received; got {self.messages}")

    def drain(self) -> list[str]:
        got = []
        while (message := self.receive(0.01)) is not None:
            got.append(message)
        return got


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    fake = FakeSystemd(str(tmp_path / "notify"))
    yield fake
    fake.sock.close()


@pytest.fixture
def running_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_notify_sends_one_datagram_of_newline_separated_fields(systemd: FakeSystemd) -> None:
    notifier = Notifier(systemd.address)
    assert notifier.enabled
    assert notifier.ready("serving on http://127.0.0.1:8080")
    assert systemd.receive() == "READY=1\nSTATUS=serving on http://127.0.0.1:8080"
    assert notifier.watchdog()
    assert systemd.receive() == "WATCHDOG=1"
    assert notifier.stopping()
    assert systemd.receive() == "STOPPING=1"


def test_abstract_socket_address(tmp_path: Path) -> None:
    fake = FakeSystemd(f"@checkin-edge-test-{os.getpid()}-{tmp_path.name}")
    try:
        assert Notifier(fake.address).watchdog()
        assert fake.receive() == "WATCHDOG=1"
    finally:
        fake.sock.close()


def test_outside_systemd_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier.from_env({}).enabled
    assert Notifier.from_env({}).ready() is False
    # A socket that is not there: a warning, never an exception that would stop the hub.
    assert Notifier(str(tmp_path / "gone")).watchdog() is False


@pytest.mark.parametrize(
    ("env", "pid", "expected"),
    [
        ({}, 10, None),
        ({"WATCHDOG_USEC": "30000000"}, 10, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "10"}, 10, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "11"}, 10, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, 10, None),
        ({"WATCHDOG_USEC": "soon"}, 10, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_sec(env: dict[str, str], pid: int, expected: float | None) -> None:
    assert watchdog_interval_s(env, pid=pid) == expected


def test_loop_answers_while_it_runs_not_while_blocked(running_loop: asyncio.AbstractEventLoop) -> None:
    assert loop_answers(running_loop, 1.0)
    running_loop.call_soon_threadsafe(time.sleep, 0.6)  # a blocking call on the loop
    time.sleep(0.05)
    assert not loop_answers(running_loop, 0.2)
    time.sleep(0.6)
    assert loop_answers(running_loop, 1.0)


def test_a_closed_loop_does_not_answer() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    assert not loop_answers(loop, 0.1)


def test_database_answers(store: Store, tmp_path: Path) -> None:
    assert database_answers(store)
    (tmp_path / "a-directory.db").mkdir()
    broken = Store(f"sqlite:///{tmp_path / 'a-directory.db'}")
    try:
        assert not database_answers(broken)
    finally:
        broken.close()


def test_pings_only_while_every_probe_passes(systemd: FakeSystemd, caplog: pytest.LogCaptureFixture) -> None:
    healthy = {"db": True}
    loop = WatchdogLoop(Notifier(systemd.address), 0.01, {"loop": lambda: True, "db": lambda: healthy["db"]})
    assert loop.tick()
    assert systemd.receive() == "WATCHDOG=1"
    healthy["db"] = False
    with caplog.at_level("ERROR", logger="edge.watchdog"):
        assert not loop.tick()
        assert not loop.tick()
    assert systemd.drain() == []
    # The change of state is logged once, not every round.
    assert [r.getMessage() for r in caplog.records].count(
        "watchdog: db does not answer; not pinging (systemd restarts the hub)"
    ) == 1
    healthy["db"] = True
    assert loop.tick()
    assert loop.pings == 2


def test_a_probe_that_raises_counts_as_failing(systemd: FakeSystemd) -> None:
    def boom() -> bool:
        raise RuntimeError("wedged")

    loop = WatchdogLoop(Notifier(systemd.address), 0.01, {"boom": boom})
    assert loop.failing_probe() == "boom"
    assert not loop.tick()


def test_supervisor_stops_pinging_while_the_event_loop_is_stuck(
    systemd: FakeSystemd, store: Store, running_loop: asyncio.AbstractEventLoop
) -> None:
    supervisor = ServeSupervisor(Notifier(systemd.address), store, interval_s=0.1)
    supervisor.started(running_loop, "serving on http://127.0.0.1:1")
    try:
        assert systemd.receive() == "READY=1\nSTATUS=serving on http://127.0.0.1:1"
        systemd.wait_for("WATCHDOG=1", 2)
        running_loop.call_soon_threadsafe(time.sleep, 1.0)
        time.sleep(0.15)  # a round in flight may still have pinged just before the block
        systemd.drain()
        time.sleep(0.6)
        assert systemd.drain() == []  # stuck: no ping, so systemd would restart the hub
        systemd.wait_for("WATCHDOG=1", 3)  # unstuck: pings again
    finally:
        supervisor.stopping()
    systemd.wait_for("STOPPING=1", 2)


def test_supervisor_without_a_watchdog_only_says_ready(systemd: FakeSystemd, store: Store) -> None:
    supervisor = ServeSupervisor(Notifier(systemd.address), store, interval_s=None)
    loop = asyncio.new_event_loop()
    try:
        supervisor.started(loop, "serving")
    finally:
        loop.close()
    assert systemd.receive() == "READY=1\nSTATUS=serving"
    assert supervisor.loop is None
    assert systemd.drain() == []


@pytest.mark.slow
def test_serve_tells_systemd_ready_pings_and_stopping(systemd: FakeSystemd, data_dir: Path) -> None:
    env = clean_env(("CHECKIN_EDGE_", "WATCHDOG_", "NOTIFY_"))
    env |= {"CHECKIN_EDGE_DATA_DIR": str(data_dir), "NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "400000"}
    log = data_dir.parent / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kiosk_ui.cli", "serve", "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        ready = systemd.wait_for("READY=1")
        assert "STATUS=serving on http://127.0.0.1:" in ready
        for _ in range(3):  # every 0.2 s: half of WatchdogSec
            systemd.wait_for("WATCHDOG=1", 2)
        proc.send_signal(signal.SIGTERM)
        systemd.wait_for("STOPPING=1", 10)
        # uvicorn shuts down cleanly, then re-raises the signal it caught: systemd counts a
        # SIGTERM it sent as a clean stop.
        assert proc.wait(15) in (0, -signal.SIGTERM)
        said = log.read_text()
        assert "systemd watchdog: pinging every 0.2 s while the hub answers" in said
        assert "does not answer" not in said  # no false alarm, at start-up or at the end
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
