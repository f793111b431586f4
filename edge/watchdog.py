"""Telling systemd how the hub is: ``READY=1``, ``WATCHDOG=1`` pings, ``STOPPING=1``.

The sd_notify protocol is one datagram on the unix socket named by ``$NOTIFY_SOCKET``; no
library is needed for that, so none is used (libsystemd bindings would be one more thing to
build on a Pi). Outside systemd the variable is unset and every call here does nothing.

The watchdog pings only while the hub can still answer a request: its event loop runs a
no-op within a deadline and the database answers ``SELECT 1``. A hub whose loop is wedged or
whose database is gone stops pinging, and systemd restarts it after ``WatchdogSec``. A ping
sent from a thread that merely exists would keep a dead hub "alive" for years.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import TimeoutError as FutureTimeout

from sqlalchemy import text as sql_text

from edge.store import Store

log = logging.getLogger(__name__)

Probe = Callable[[], bool]


class Notifier:
    """Sends sd_notify messages; ``enabled`` is false outside systemd (no ``$NOTIFY_SOCKET``)."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=…"``) as one message; true when it was sent.

        Never raises: a failed notification must not take the hub down. systemd notices a
        missing READY or ping on its own and acts on it.
        """
        if self.address is None or not fields:
            return False
        # A leading "@" names a socket in the abstract namespace (a NUL byte on the wire).
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")


def watchdog_interval_s(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """How often to ping: half of ``WatchdogSec`` (``$WATCHDOG_USEC``), as sd_watchdog_enabled(3)
    advises; None when no watchdog is asked for, or when it is meant for another process."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2 / 1_000_000


def loop_answers(loop: asyncio.AbstractEventLoop, timeout_s: float) -> bool:
    """Whether ``loop`` runs a no-op within ``timeout_s``: a loop stuck in a blocking call, or
    closed, does not. Called from another thread."""
    if loop.is_closed():
        return False

    async def _noop() -> bool:
        return True

    try:
        future = asyncio.run_coroutine_threadsafe(_noop(), loop)
    except RuntimeError:  # the loop closed between the check and the call
        return False
    try:
        return bool(future.result(timeout_s))
    except FutureTimeout:
        future.cancel()
        return False


def database_answers(store: Store) -> bool:
    """Whether the database runs ``SELECT 1``. A read: it takes no write lock, so a long roster
    sync holding the writer does not look like a dead hub."""
    try:
        with store.read() as session:
            return bool(session.execute(sql_text("SELECT 1")).scalar_one() == 1)
    except Exception as exc:
        log.warning("watchdog: the database does not answer: %s", exc)
        return False


class WatchdogLoop:
    """Pings systemd every ``interval_s`` while every probe passes; runs until ``stop`` is set."""

    def __init__(self, notifier: Notifier, interval_s: float, probes: Mapping[str, Probe]) -> None:
        self.notifier = notifier
        self.interval_s = interval_s
        self.probes = dict(probes)
        self.pings = 0
        self._failing: str | None = None

    def failing_probe(self) -> str | None:
        """The first probe that fails (its name), or None when the hub answers."""
        for name, probe in self.probes.items():
            try:
                ok = probe()
            except Exception:
                log.exception("watchdog probe %s raised", name)
                ok = False
            if not ok:
                return name
        return None

    def tick(self, stop: threading.Event | None = None) -> bool:
        """One round: probe, then ping when all is well. True when a ping was sent."""
        failing = self.failing_probe()
        if stop is not None and stop.is_set():
            return False  # shutting down: a loop that is closing is no alarm
        if failing != self._failing:
            # Log a change of state once, not every round.
            if failing is None:
                log.info("watchdog: the hub answers again; pinging systemd")
            else:
                log.error("watchdog: %s does not answer; not pinging (systemd restarts the hub)", failing)
            self._failing = failing
        if failing is not None:
            return False
        sent = self.notifier.watchdog()
        self.pings += sent
        return sent

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            self.tick(stop)


class ServeSupervisor:
    """What ``serve`` tells systemd: READY once the server listens, watchdog pings while it
    answers, STOPPING when it begins to shut down. The web layer calls ``started`` from its
    event loop and ``stopping`` at shutdown; this module knows nothing of the web framework."""

    def __init__(
        self,
        notifier: Notifier,
        store: Store,
        *,
        interval_s: float | None,
        extra_probes: Mapping[str, Probe] | None = None,
    ) -> None:
        self.notifier = notifier
        self.store = store
        self.interval_s = interval_s
        self.extra_probes = dict(extra_probes or {})
        self.loop: WatchdogLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, store: Store, environ: Mapping[str, str] | None = None) -> ServeSupervisor:
        return cls(Notifier.from_env(environ), store, interval_s=watchdog_interval_s(environ))

    def started(self, event_loop: asyncio.AbstractEventLoop, status: str) -> None:
        self.notifier.ready(status)
        if self.interval_s is None or not self.notifier.enabled:
            return
        # A probe gets a third of the interval: two rounds fit in WatchdogSec even when one
        # probe times out, so one slow moment never costs a restart.
        timeout_s = self.interval_s / 3
        probes: dict[str, Probe] = {
            "the event loop": lambda: loop_answers(event_loop, timeout_s),
            "the database": lambda: database_answers(self.store),
            **self.extra_probes,
        }
        self.loop = WatchdogLoop(self.notifier, self.interval_s, probes)
        # Ping once now, without probing: this runs on the event loop itself, which plainly
        # answers (and would deadlock waiting for itself), and the database was just migrated.
        self.notifier.watchdog()
        self._thread = threading.Thread(target=self.loop.run, args=(self._stop,), name="sd-watchdog", daemon=True)
        self._thread.start()
        log.info("systemd watchdog: pinging every %.1f s while the hub answers", self.interval_s)

    def stopping(self) -> None:
        self._stop.set()
        self.notifier.stopping("shutting down")
