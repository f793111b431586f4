"""The door stations and the staff dashboards of the peak-hour load (scripts/load), as asyncio
tasks on one event loop (the phones run in a process of their own: scripts/load_phones.py).

A **station** is a kiosk at a door at peak hour: a parent arrives every 1-2 s (drawn uniformly,
start to start), types the PIN (``POST /api/v1/identify``), taps their children a moment later
(0.3-0.8 s), and checks them in or out (``POST /api/v1/attendance``): out if any is in, else in.
Each station has its own families (one payer PIN each), so two stations never race for a child
and every act is a real change of state. A pair's latency is what the parent waits for the hub:
the identify round trip plus the attendance round trip (not the tap in between).

A **dashboard** is a staff member's Now page: logged in through the form, holding
``/dashboard/live`` (Server-Sent Events) open, and, like dashboard.js, refetching the rooms
fragment after attendance events (one request in flight, the next coalesced, at most one a
second: ``ROOMS_MIN_GAP_S``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

ROOMS_MIN_GAP_S = 1.0  # as dashboard.js: one rooms redraw a second at most


@dataclass
class Recorder:
    """Latencies per operation (with when each started, on the monotonic clock) and errors."""

    began: float = field(default_factory=time.monotonic)
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, op: str, started: float, ms: float) -> None:
        self.samples[op].append((started - self.began, ms))

    def error(self, what: str) -> None:
        self.errors[what] += 1


def _reason(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return ""
    return str(body.get("reason") or body.get("detail") or "") if isinstance(body, dict) else ""


class Station:
    def __init__(
        self, url: str, number: int, pins: list[str], rec: Recorder, *, pace: tuple[float, float], seed: int
    ) -> None:
        self.url, self.station_id, self.pins, self.rec, self.pace = url, f"door-{number}", pins, rec, pace
        self.rng = random.Random(f"{seed}:station:{number}")
        self.events: list[str] = []  # event ids the hub answered with: each must reach the cloud

    async def run(self, end: float) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            due = time.monotonic() + self.rng.uniform(0, self.pace[1])
            turn = 0
            while due < end:
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                elif wait < -1.0:
                    self.rec.counts["station fell behind its pace"] += 1
                    due = time.monotonic()
                await self.one_parent(client, self.pins[turn % len(self.pins)])
                turn += 1
                due += self.rng.uniform(*self.pace)

    async def one_parent(self, client: httpx.AsyncClient, pin: str) -> None:
        rec = self.rec
        started = time.monotonic()
        try:
            who = await client.post(
                "/api/v1/identify", json={"station_id": self.station_id, "method": "pin", "secret": pin}
            )
        except httpx.HTTPError as exc:
            rec.error(f"identify {type(exc).__name__}")
            return
        identify_ms = (time.monotonic() - started) * 1000
        rec.add("identify", started, identify_ms)
        if who.status_code != 200:
            rec.error(f"identify {who.status_code} {_reason(who)}")
            return
        body = who.json()
        inside = [c["id"] for c in body["children"] if c["allowed"] and c["present"]]
        outside = [c["id"] for c in body["children"] if c["allowed"] and not c["present"]]
        action, kids = ("check_out", inside) if inside else ("check_in", outside)
        if not kids:
            rec.counts["parent with no child to act on"] += 1
            return
        await asyncio.sleep(self.rng.uniform(0.3, 0.8))  # the parent taps the children's names
        acted = time.monotonic()
        try:
            done = await client.post(
                "/api/v1/attendance", json={"ticket": body["ticket"], "children": kids, "action": action}
            )
        except httpx.HTTPError as exc:
            rec.error(f"{action} {type(exc).__name__}")
            return
        act_ms = (time.monotonic() - acted) * 1000
        rec.add(action, acted, act_ms)
        if done.status_code != 200:
            rec.error(f"{action} {done.status_code} {_reason(done)}")
            return
        self.events += [event["event_id"] for event in done.json()["events"]]
        rec.add(f"identify + {action.replace('_', '-')}", started, identify_ms + act_ms)


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    """Logs in through the form, as a browser would; returns the session's CSRF token."""
    page = await client.get("/login")
    token = CSRF.search(page.text)
    if token is None:
        raise RuntimeError(f"no CSRF token on the login page ({page.status_code})")
    form = {"username": username, "password": password, "csrf_token": token.group(1), "next": "/dashboard"}
    answer = await client.post("/login", data=form)
    if answer.status_code != 303:
        raise RuntimeError(f"login refused: {answer.status_code}")
    now = await client.get("/dashboard")
    found = CSRF.search(now.text)
    if now.status_code != 200 or found is None:
        raise RuntimeError(f"the Now page after the login: {now.status_code}")
    return found.group(1)


class Dashboard:
    def __init__(
        self, url: str, number: int, rec: Recorder, username: str, password: str, *, refresh: bool = True
    ) -> None:
        self.url, self.number, self.rec, self.refresh = url, number, rec, refresh
        self.username, self.password = username, password
        self.client = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=60))
        self.csrf = ""
        self.kinds: Counter[str] = Counter()
        self.sync_events: list[tuple[float, dict[str, Any]]] = []  # (received, data), monotonic
        self._busy = False
        self._again = False
        self._last_refresh = 0.0
        self._refreshes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.csrf = await login(self.client, self.username, self.password)

    async def close(self) -> None:
        for task in list(self._refreshes):
            await task
        await self.client.aclose()

    async def run(self, end: float) -> None:
        """Holds the live feed until ``end``; reconnects (counted as an error) if the hub ends it."""
        while time.monotonic() < end:
            opened = time.time()
            try:
                async with self.client.stream("GET", "/dashboard/live") as stream:
                    if stream.status_code != 200:
                        self.rec.error(f"dashboard live {stream.status_code}")
                        await asyncio.sleep(1)
                        continue
                    await asyncio.wait_for(self._read(stream, opened), max(0.1, end - time.monotonic()))
            except TimeoutError:
                return  # the run is over
            except httpx.HTTPError as exc:
                self.rec.error(f"dashboard live {type(exc).__name__}")
                await asyncio.sleep(1)
                continue
            self.rec.error("dashboard live ended by the hub")

    async def _read(self, stream: httpx.Response, opened: float) -> None:
        kind, data = "", ""
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and data:
                self._on_event(kind, json.loads(data), opened)
                kind, data = "", ""

    def _on_event(self, kind: str, event: dict[str, Any], opened: float) -> None:
        received = time.time()
        at = dt.datetime.fromisoformat(event["at"]).timestamp()
        if at < opened:
            return  # the backlog a new page opens with
        self.kinds[kind] += 1
        self.rec.add("live event delay", time.monotonic() - (received - at), (received - at) * 1000)
        if kind == "sync":
            self.sync_events.append((time.monotonic(), event["data"]))
        if kind == "attendance" and self.refresh:
            self._refresh()

    def _refresh(self) -> None:
        if self._busy:
            self._again = True
            return
        self._busy = True
        task = asyncio.create_task(self._fetch_rooms())
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _fetch_rooms(self) -> None:
        try:
            while True:
                self._again = False
                wait = self._last_refresh + ROOMS_MIN_GAP_S - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last_refresh = started = time.monotonic()
                try:
                    answer = await self.client.get("/dashboard/now/rooms", headers={"Accept": "text/html"})
                except httpx.HTTPError as exc:
                    self.rec.error(f"rooms fragment {type(exc).__name__}")
                else:
                    self.rec.add("dashboard rooms refresh", started, (time.monotonic() - started) * 1000)
                    if answer.status_code != 200:
                        self.rec.error(f"rooms fragment {answer.status_code}")
                if not self._again:
                    return
        finally:
            self._busy = False

    async def sync_now(self) -> float:
        """The director's *Sync now*; returns when it was pressed (monotonic)."""
        page = await self.client.get("/dashboard/sync")
        found = CSRF.search(page.text)
        pressed = time.monotonic()
        answer = await self.client.post(
            "/dashboard/sync/run", headers={"x-csrf-token": found.group(1) if found else ""}
        )
        where = answer.headers.get("location", "")
        if answer.status_code != 303 or "sync=started" not in where:
            self.rec.error(f"sync now {answer.status_code} {where}")
        return pressed
