"""``checkin-edge serve`` as a process of its own (its own interpreter lock), for benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Hub:
    """The hub on a fresh loopback port; ``started_s`` is exec to the first ``/healthz`` 200.

    ``settings`` become ``CHECKIN_EDGE_*`` variables (``center_id="c1"`` → ``CHECKIN_EDGE_CENTER_ID``)."""

    def __init__(self, data_dir: Path, log: Path | None = None, **settings: str) -> None:
        log = log or data_dir / "serve.log"
        # The test run's database (the PostgreSQL run names one per test) stays; the rest goes.
        env = {
            k: v
            for k, v in os.environ.items()
            if k == "CHECKIN_EDGE_DATABASE_URL" or not k.startswith(("CHECKIN_EDGE_", "NOTIFY_", "WATCHDOG_"))
        }
        env["CHECKIN_EDGE_DATA_DIR"] = str(data_dir)
        env |= {f"CHECKIN_EDGE_{k.upper()}": v for k, v in settings.items()}
        self.url = f"http://127.0.0.1:{free_port()}"
        with log.open("ab") as out:
            began = time.perf_counter()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kiosk_ui.cli", "serve", "--port", self.url.rsplit(":", 1)[1]],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.pid = self.proc.pid
        deadline = began + 60
        while time.perf_counter() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    self.started_s = time.perf_counter() - began
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"the hub did not start:\n{log.read_text(errors='replace')[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextmanager
def running(data_dir: Path, log: Path | None = None, **settings: str) -> Iterator[Hub]:
    hub = Hub(data_dir, log, **settings)
    try:
        yield hub
    finally:
        hub.stop()
