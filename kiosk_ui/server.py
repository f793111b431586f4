"""uvicorn's server, telling systemd when it listens and when it stops (edge.watchdog).

A subclass rather than an ASGI lifespan hook: ``startup`` returns only once uvicorn serves
on its sockets, which is what ``READY=1`` must mean (the kiosk unit is ordered after the hub
and loads its page at once), and the app factory stays free of process supervision.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Callable

import uvicorn

from edge.watchdog import ServeSupervisor


class SupervisedServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, supervisor: ServeSupervisor, on_stopping: Callable[[], object] | None = None
    ) -> None:
        super().__init__(config)
        self.supervisor = supervisor
        # Ends the open live streams: uvicorn waits for every connection to close before it
        # exits, and a kiosk's stream never closes by itself.
        self.on_stopping = on_stopping

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        # What start-up built (the libraries, the app, the services) lives as long as the process:
        # frozen, the garbage collector's full passes skip it. Otherwise each one walks those
        # ~150,000 objects: a 70-120 ms stall of every door, measured on the development VM (docs/door.md).
        gc.collect()
        gc.freeze()
        if self.started:
            where = ", ".join(_address(s) for s in sockets or [])
            self.supervisor.started(asyncio.get_running_loop(), f"serving on {where}" if where else "serving")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.supervisor.stopping()
        if self.on_stopping is not None:
            self.on_stopping()
        await super().shutdown(sockets=sockets)


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
