"""An ASGI app served by uvicorn on a loopback port in a background thread.

Used for the stand-in cloud (demo, tests, benchmarks) and for the hub in browser tests:
``stop()`` then ``start()`` listens again on the same port, as a restarted server would.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class ThreadedServer:
    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "asgi-server", **options: Any
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        # Quiet and lean by default; callers add what they need (lifespan, graceful shutdown, …).
        self.options: dict[str, Any] = {"log_config": None, "log_level": "warning", "access_log": False, "ws": "none"}
        self.options.update(options)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> int:
        """Listen (on the same port as before, once one was chosen); returns the port."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} is already running")
        server = uvicorn.Server(uvicorn.Config(self.app, host=self.host, port=self.port, **self.options))
        thread = threading.Thread(target=server.run, name=self.name, daemon=True)
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(STOP_TIMEOUT_S)
                raise RuntimeError(f"{self.name} could not listen on {self.host}:{self.port}")
            time.sleep(0.002)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        self._server, self._thread = server, thread
        return self.port

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        self._server = self._thread = None
        if thread.is_alive():
            raise RuntimeError(f"{self.name} did not stop in time")
