"""The stand-in cloud's HTTP server: the roster export (contracts/desktop-roster.md) and the
attendance receiver (contracts/attendance-push.md) on one real loopback port, with faults
to inject from Python (``state.faults``) or over HTTP (``POST /_control/faults``), and a
demo phone showing a payer's rotating app code (``/demo/phone/{person_id}``, phone.py).

Paging: one record is one employee or one *family* (with all its persons and children), so a
family never straddles two pages. Employees come first, then families. ``school``, ``rooms``
and ``keys`` come on the first page; every page carries ``exported_at`` and ``etag``. The
cursor is opaque to clients: base64url of ``{"etag": ..., "offset": ...}``; a cursor whose
etag is no longer the current one answers 410.

The roster is serialized record by record once, in ``set_roster``; pages are joined from
those bytes and cached per (etag, offset, limit), so a 30,000-person roster serves fast.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import json
import logging
import math
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from fastapi import FastAPI, Request, Response

from cloud_sync.standin.phone import add_phone_routes
from cloud_sync.standin.threaded import STOP_TIMEOUT_S, ThreadedServer

log = logging.getLogger(__name__)

ENDPOINTS = ("roster", "attendance")
DEFAULT_PAGE_LIMIT = 1_000
MAX_PAGE_LIMIT = 10_000
DEFAULT_SOURCE_TOKEN = "standin-source-token"
DEFAULT_CLOUD_TOKEN = "standin-cloud-token"
# Top-level keys of the export that the server lays out itself; any other key (exported_at,
# or fields the contract does not know) is copied onto every page.
_LAID_OUT = frozenset({"etag", "next_cursor", "school", "rooms", "keys", "employees", "families"})
# What a proxy or a crashed exporter sends: the start of a JSON document, cut off.
NOT_JSON = b'{"exported_at": "2026-11-29T11:00:04Z", "families": [{"id": "F1", "na'


@dataclass
class Fault:
    """What goes wrong on one endpoint ("roster" or "attendance"), checked in this order.

    - ``delay_s``: sleep before answering (attendance: the events are recorded first, so
      the cloud has them although the client heard nothing);
    - ``status`` (500, 503, 429, 401, ...): answer that status and record nothing, with a
      ``Retry-After`` header when ``retry_after`` is set (seconds, or a string such as an
      HTTP-date sent as is);
    - ``expire_cursor``: 410 on roster requests that carry a cursor (others pass untouched);
    - ``bad_json``: 200 with a body that is not JSON;
    - ``break_schema``: 200 with JSON that breaks the schema (roster: ``families`` is a
      string; attendance: ``accepted`` is a string).

    ``skip`` lets that many matching requests through first; ``times`` fails the next N
    matching requests and then clears the fault (``None``: until cleared).
    """

    status: int | None = None
    retry_after: float | str | None = None
    times: int | None = None
    skip: int = 0
    delay_s: float = 0.0
    bad_json: bool = False
    break_schema: bool = False
    expire_cursor: bool = False


_FAULT_FIELDS = frozenset(field.name for field in dataclasses.fields(Fault))


class _PageError(Exception):
    """A roster page that cannot be served: a foreign cursor (400), an expired one (410), no
    roster yet (503)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def _encode_cursor(etag: str, offset: int) -> str:
    raw = json.dumps({"etag": etag, "offset": offset}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
        etag, offset = value["etag"], value["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        raise _PageError(400, "this cursor was not made by this server") from exc
    if not isinstance(etag, str) or not isinstance(offset, int) or offset < 0:
        raise _PageError(400, "this cursor was not made by this server")
    return etag, offset


@dataclass(frozen=True)
class _Snapshot:
    """One roster export, serialized: records are employees first, then families."""

    etag: str
    every_page: bytes  # '"exported_at":"…",' and any other unknown top-level fields
    first_page: bytes  # '"keys":[…],"rooms":[…],"school":{…},'
    records: tuple[bytes, ...]
    employee_count: int
    child_ids: frozenset[str]

    def page(self, offset: int, limit: int) -> bytes:
        end = min(offset + limit, len(self.records))
        employees = self.records[offset : max(offset, min(end, self.employee_count))]
        families = self.records[max(offset, self.employee_count) : end]
        next_cursor = _encode_cursor(self.etag, end) if end < len(self.records) else None
        return b"".join(
            (
                b"{",
                self.every_page,
                b'"etag":',
                _dump(self.etag),
                b",",
                self.first_page if offset == 0 else b"",
                b'"employees":[',
                b",".join(employees),
                b'],"families":[',
                b",".join(families),
                b'],"next_cursor":',
                _dump(next_cursor),
                b"}",
            )
        )


def _families_of(export: dict[str, Any]) -> list[Any]:
    families = export.get("families")
    return families if isinstance(families, list) else []


def _snapshot(export: dict[str, Any]) -> _Snapshot:
    every_page = b"".join(
        _dump(key) + b":" + _dump(value) + b"," for key, value in sorted(export.items()) if key not in _LAID_OUT
    )
    # Only what the export holds: an export without a school serves a first page without one.
    first_page = b"".join(
        _dump(key) + b":" + _dump(export[key]) + b"," for key in ("keys", "rooms", "school") if key in export
    )
    # Records are served as given, even broken ones: other tests feed the sync rules bad records.
    employees = [_dump(record) for record in export.get("employees") or []]
    families = [_dump(record) for record in export.get("families") or []]
    digest = hashlib.sha256(every_page + b"\n" + first_page)
    for record in employees:
        digest.update(b"\ne")
        digest.update(record)
    for record in families:
        digest.update(b"\nf")
        digest.update(record)
    child_ids = frozenset(
        str(child["id"])
        for family in _families_of(export)
        if isinstance(family, dict) and isinstance(family.get("children"), list)
        for child in family["children"]
        if isinstance(child, dict) and "id" in child
    )
    return _Snapshot(
        etag=f'W/"{digest.hexdigest()[:16]}"',
        every_page=every_page,
        first_page=first_page,
        records=(*employees, *families),
        employee_count=len(employees),
        child_ids=child_ids,
    )


class StandinState:
    """Everything the stand-in cloud holds, shared between its server thread and the test or
    demo that drives it; every mutation of shared structures takes ``lock``."""

    def __init__(
        self,
        center_id: str = "demo-center",
        *,
        source_token: str = DEFAULT_SOURCE_TOKEN,
        cloud_token: str = DEFAULT_CLOUD_TOKEN,
        roster: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> None:
        self.lock = threading.Lock()
        # The generator's seed behind ``roster``: with it, the demo phone signs app codes with the
        # cloud key the roster advertises (cloud_sync.standin.phone); without it, no app codes.
        self.seed = seed
        self.center_id = center_id
        self.source_token = source_token
        self.cloud_token = cloud_token
        self.faults: dict[str, Fault] = {}
        self.requests: Counter[str] = Counter()
        # Attendance: child ids to reject with a reason, and whether children the roster
        # does not hold are rejected as "unknown child".
        self.reject_children: dict[str, str] = {}
        self.reject_unknown_children = False
        # Accepted events in order of receipt, by id, and when each arrived.
        self.attendance: list[dict[str, Any]] = []
        self.attendance_by_id: dict[str, dict[str, Any]] = {}
        self.received_at: dict[str, float] = {}  # time.time(), comparable with occurred_at
        self.received_monotonic: dict[str, float] = {}  # time.monotonic(), for in-process latency
        self.rejected: list[dict[str, Any]] = []
        self.roster: dict[str, Any] | None = None
        self._snapshot: _Snapshot | None = None
        self._pages: dict[tuple[str, int, int], bytes] = {}
        if roster is not None:
            self.set_roster(roster)

    # -- the roster -----------------------------------------------------------------------

    @property
    def etag(self) -> str | None:
        snapshot = self._snapshot
        return snapshot.etag if snapshot else None

    def set_roster(self, export: dict[str, Any]) -> str:
        """Serve this export from now on (do not mutate it afterwards: call again). The etag
        is a hash of the content, so the same content gives the same etag. Returns it."""
        snapshot = _snapshot(export)
        with self.lock:
            self.roster = export
            self._snapshot = snapshot
            self._pages.clear()
        return snapshot.etag

    def force_etag(self, value: str) -> None:
        """A new ETag over the same content (the "new ETag, same content" case); cursors of
        the previous etag expire."""
        with self.lock:
            if self._snapshot is None:
                raise RuntimeError("no roster yet: call set_roster first")
            self._snapshot = dataclasses.replace(self._snapshot, etag=value)
            self._pages.clear()

    def roster_page(self, cursor: str | None, limit: int) -> tuple[str, bytes]:
        """(etag, page bytes); raises _PageError for a foreign (400) or expired (410) cursor."""
        with self.lock:
            snapshot = self._snapshot
            if snapshot is None:
                raise _PageError(503, "the roster export is not ready yet")
            offset = 0
            if cursor:
                etag, offset = _decode_cursor(cursor)
                if etag != snapshot.etag:
                    raise _PageError(410, "the roster changed since this cursor was made; start over")
                if offset > len(snapshot.records):
                    raise _PageError(400, "this cursor was not made by this server")
            key = (snapshot.etag, offset, limit)
            page = self._pages.get(key)
        if page is None:
            page = snapshot.page(offset, limit)
            with self.lock:
                if self._snapshot is snapshot:
                    self._pages[key] = page
        return snapshot.etag, page

    # -- faults ---------------------------------------------------------------------------

    def set_fault(self, endpoint: str, fault: Fault | None = None, **fields: Any) -> Fault:
        """``set_fault("roster", status=503, times=2)`` or ``set_fault("roster", Fault(...))``."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")
        fault = dataclasses.replace(fault or Fault(), **fields)
        with self.lock:
            self.faults[endpoint] = fault
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, endpoint: str, *, has_cursor: bool = False) -> Fault | None:
        """The fault that fires on this request, if any, counting it against skip and times."""
        with self.lock:
            fault = self.faults.get(endpoint)
            if fault is None or (fault.expire_cursor and not has_cursor):
                return None
            if fault.skip > 0:
                fault.skip -= 1
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self.faults[endpoint]
            return dataclasses.replace(fault)

    def count(self, endpoint: str) -> None:
        with self.lock:
            self.requests[endpoint] += 1

    # -- attendance -----------------------------------------------------------------------

    def receive(self, events: list[Any]) -> dict[str, list[Any]]:
        """Record a batch; the answer per attendance-push.md."""
        accepted: list[str] = []
        duplicates: list[str] = []
        rejected: list[dict[str, str]] = []
        with self.lock:
            known_children = self._snapshot.child_ids if self._snapshot else frozenset()
            for event in events:
                event_id = event.get("event_id") if isinstance(event, dict) else None
                if not isinstance(event_id, str) or not event_id:
                    rejected.append({"event_id": str(event_id or ""), "reason": "event_id is missing"})
                    continue
                if event_id in self.attendance_by_id:
                    duplicates.append(event_id)
                    continue
                reason = self._rejection(event, known_children)
                if reason:
                    rejected.append({"event_id": event_id, "reason": reason})
                    self.rejected.append({"event": event, "reason": reason})
                    continue
                self.attendance.append(event)
                self.attendance_by_id[event_id] = event
                self.received_at[event_id] = time.time()
                self.received_monotonic[event_id] = time.monotonic()
                accepted.append(event_id)
        return {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}

    def _rejection(self, event: dict[str, Any], known_children: frozenset[str]) -> str | None:
        child_id = event.get("child_id")
        if child_id is None:
            return None if event.get("staff_id") else "neither child_id nor staff_id"
        if str(child_id) in self.reject_children:
            return self.reject_children[str(child_id)]
        if self.reject_unknown_children and str(child_id) not in known_children:
            return "unknown child"
        return None


# -- the HTTP app -------------------------------------------------------------------------


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(content=_dump(body), status_code=status, media_type="application/json", headers=headers)


def _unauthorized() -> Response:
    return _json(401, {"detail": "bearer token refused"}, {"WWW-Authenticate": "Bearer"})


def _bearer_ok(request: Request, token: str) -> bool:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(value.strip().encode(), token.encode())


def _fault_status(fault: Fault) -> Response:
    headers: dict[str, str] = {}
    if isinstance(fault.retry_after, str):
        headers["Retry-After"] = fault.retry_after
    elif fault.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(fault.retry_after))
    return _json(fault.status or 500, {"detail": "injected fault"}, headers)


async def _pause(seconds: float, stopping: threading.Event) -> None:
    """Sleep, but wake at once when the server is stopping, so stop() stays fast."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not stopping.is_set():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, 0.02))


def _if_none_match(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = [part.strip() for part in header.split(",")]
    return "*" in candidates or etag in candidates


def create_standin_app(state: StandinState) -> FastAPI:
    """The app serves whatever ``app.state.standin`` holds, so a running server can be handed a
    fresh state (``StandinCloud.state = ...``) between tests."""
    app = FastAPI(title="checkin-edge stand-in cloud", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.standin = state
    # Set by StandinCloud when it stops, to cut injected delays short.
    app.state.stopping = threading.Event()
    stopping: threading.Event = app.state.stopping

    def current(request: Request) -> StandinState:
        standin: StandinState = request.app.state.standin
        return standin

    @app.get("/v1/centers/{center_id}/roster")
    async def roster(
        center_id: str, request: Request, cursor: str | None = None, limit: int = DEFAULT_PAGE_LIMIT
    ) -> Response:
        state = current(request)
        state.count("roster")
        fault = state.take_fault("roster", has_cursor=bool(cursor))
        if fault is not None:
            if fault.delay_s > 0:
                await _pause(fault.delay_s, stopping)
            if fault.status is not None:
                return _fault_status(fault)
            if fault.expire_cursor:
                return _json(410, {"detail": "cursor expired"})
            if fault.bad_json:
                return Response(content=NOT_JSON, media_type="application/json")
        if not _bearer_ok(request, state.source_token):
            return _unauthorized()
        if center_id != state.center_id:
            return _json(404, {"detail": "unknown center"})
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            return _json(400, {"detail": f"limit must be 1 to {MAX_PAGE_LIMIT}"})
        now_etag = state.etag
        if not cursor and now_etag is not None and _if_none_match(request.headers.get("if-none-match"), now_etag):
            return Response(status_code=304, headers={"ETag": now_etag})
        try:
            etag, page = state.roster_page(cursor, limit)
        except _PageError as exc:
            return _json(exc.status, {"detail": exc.detail})
        if fault is not None and fault.break_schema:
            broken = json.loads(page)
            broken["families"] = "see the attached spreadsheet"
            page = _dump(broken)
        return Response(content=page, media_type="application/json", headers={"ETag": etag})

    @app.post("/v1/centers/{center_id}/attendance")
    async def attendance(center_id: str, request: Request) -> Response:
        state = current(request)
        state.count("attendance")
        fault = state.take_fault("attendance")
        if fault is not None and fault.status is not None:
            if fault.delay_s > 0:
                await _pause(fault.delay_s, stopping)
            return _fault_status(fault)
        if not _bearer_ok(request, state.cloud_token):
            return _unauthorized()
        if center_id != state.center_id:
            return _json(404, {"detail": "unknown center"})
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _json(400, {"detail": "the body is not JSON"})
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list):
            return _json(400, {"detail": 'the body must be {"events": [...]}'})
        result = state.receive(events)
        if fault is not None:
            if fault.delay_s > 0:  # recorded first: the cloud has them, the client hears nothing
                await _pause(fault.delay_s, stopping)
            if fault.bad_json:
                return Response(content=NOT_JSON, media_type="application/json")
            if fault.break_schema:
                return _json(200, {"accepted": "all of them", "duplicates": None})
        return _json(200, result)

    @app.get("/_control/faults")
    async def get_faults(request: Request) -> Response:
        state = current(request)
        if not _bearer_ok(request, state.source_token):
            return _unauthorized()
        with state.lock:
            faults = {endpoint: dataclasses.asdict(fault) for endpoint, fault in state.faults.items()}
            requests = dict(state.requests)
        return _json(200, {"faults": faults, "requests": requests})

    @app.get("/_control/attendance")
    async def get_attendance(request: Request) -> Response:
        """What the cloud holds, in order of receipt, with when each arrived (benchmarks, demo)."""
        state = current(request)
        if not _bearer_ok(request, state.source_token):
            return _unauthorized()
        with state.lock:
            events = [
                {"event": event, "received_at": state.received_at[event["event_id"]]} for event in state.attendance
            ]
            rejected = list(state.rejected)
        return _json(200, {"events": events, "rejected": rejected})

    @app.post("/_control/faults")
    async def set_faults(request: Request) -> Response:
        """``{"roster": {"status": 503, "times": 2}, "attendance": null}``: null clears."""
        state = current(request)
        if not _bearer_ok(request, state.source_token):
            return _unauthorized()
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _json(400, {"detail": "the body is not JSON"})
        if not isinstance(body, dict):
            return _json(400, {"detail": "the body must be an object keyed by endpoint"})
        for endpoint, spec in body.items():
            if endpoint not in ENDPOINTS:
                return _json(400, {"detail": f"unknown endpoint {endpoint!r}"})
            if spec is not None and (not isinstance(spec, dict) or not spec.keys() <= _FAULT_FIELDS):
                return _json(400, {"detail": f"{endpoint}: fields are {', '.join(sorted(_FAULT_FIELDS))}"})
        for endpoint, spec in body.items():
            if spec is None:
                with state.lock:
                    state.faults.pop(endpoint, None)
            else:
                state.set_fault(endpoint, Fault(**spec))
        return await get_faults(request)

    add_phone_routes(app, current)
    return app


# -- running it ---------------------------------------------------------------------------


class StandinCloud:
    """The stand-in cloud on a real loopback port, served by uvicorn in a background thread.

    ``down()`` really closes the listening socket (clients get "connection refused") and
    ``up()`` listens again on the same port, with the same state. Assigning ``state`` swaps
    what the running server holds (fresh state for the next test, no restart).
    """

    def __init__(self, state: StandinState | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = create_standin_app(state if state is not None else StandinState())
        self._server = ThreadedServer(
            self.app,
            host=host,
            port=port,
            name="standin-cloud",
            lifespan="off",
            date_header=True,
            timeout_graceful_shutdown=int(STOP_TIMEOUT_S / 2),
        )

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def state(self) -> StandinState:
        standin: StandinState = self.app.state.standin
        return standin

    @state.setter
    def state(self, value: StandinState) -> None:
        self.app.state.standin = value

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the stand-in cloud has not started yet")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server.running

    def start(self) -> StandinCloud:
        self.app.state.stopping.clear()
        self._server.start()
        log.info("stand-in cloud listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server.running:
            self.app.state.stopping.set()  # cut injected delays short
        self._server.stop()

    def down(self) -> None:
        """Close the listening socket: connections are refused until ``up()``."""
        self.stop()

    def up(self) -> None:
        """Listen again on the same port."""
        self.start()

    def __enter__(self) -> StandinCloud:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
