"""The live channel: ``GET /api/v1/live?station=ID`` as Server-Sent Events.

A screen opens one ``EventSource`` and hears what happens at its door without asking: a QR
scan or a phone check-in pops up on the kiosk, an alert reaches the dashboard. Each event is
one SSE message::

    id: 3f9a1c-42
    event: attendance
    data: {"id": 42, "kind": "attendance", "at": "...", "station_id": "front-door", "data": {...}}

The ``id`` is ``{epoch}-{n}``: the bus numbers its events from 1 in every process, so the
epoch (drawn once per app) tells a screen reconnecting after a hub restart that its
``Last-Event-ID`` counts the previous process's events. The same epoch replays what was
missed from the bus's ring buffer; another epoch replays the new process's whole buffer (a
screen ignores pop-ups that are too old); no header replays nothing. ``kinds=`` narrows
the stream to the kinds a screen shows (the kiosk: attendance, refusal, outbox).

Who may listen is the station API's rule (``kiosk_ui.deps.station_caller``): the hub's own
screens over loopback hear any station (or all, without ``station=``); a remote door, by its
token or its paired screen's cookie, hears only its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from edge.events import SHUTDOWN, EventBus, LiveEvent
from kiosk_ui.deps import ServicesDep, StationDep

log = logging.getLogger(__name__)

router = APIRouter()
router.tags = ["station"]

# Proxies and NAT boxes drop a TCP connection that is silent for a minute or two; a comment
# line every 15 s keeps it open and lets the server notice a screen that went away.
HEARTBEAT_S = 15.0
# How soon a browser retries after the hub went away (EventSource's default is about 3 s).
RETRY_MS = 2_000
# A screen that stops reading (asleep, network stalled) must not make the hub hoard events
# for it: past this many unsent events the stream ends, and the browser reconnects and
# catches up from the ring buffer with Last-Event-ID.
QUEUE_LIMIT = 256

STREAM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # a reverse proxy in front must not buffer the stream
}


def live_epoch(app: FastAPI) -> str:
    """A token drawn once per app (per hub process), the first half of every event id."""
    epoch: str | None = getattr(app.state, "live_epoch", None)
    if epoch is None:
        epoch = secrets.token_hex(4)
        app.state.live_epoch = epoch
    return epoch


def parse_last_event_id(value: str | None, epoch: str) -> int | None:
    """The bus id to replay after, or None for no replay (no header, or one we never sent)."""
    if not value:
        return None
    their_epoch, sep, number = value.strip().rpartition("-")
    if not sep or not number.isdigit():
        return None
    return int(number) if their_epoch == epoch else 0


def sse_frame(event: LiveEvent, epoch: str) -> str:
    payload: dict[str, Any] = {
        "id": event.id,
        "kind": event.kind,
        "at": event.at.astimezone(dt.UTC).isoformat(),
        "station_id": event.station_id,
        "data": event.data,
    }
    # One line of JSON (no newlines inside), so one ``data:`` field holds it.
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    return f"id: {epoch}-{event.id}\nevent: {event.kind}\ndata: {body}\n\n"


@router.get("/api/v1/live", response_class=StreamingResponse, responses={401: {}, 403: {}})
async def live(
    request: Request,
    *,
    services: ServicesDep,
    caller: StationDep,
    station: Annotated[
        str | None, Query(max_length=64, description="Only this station's events (and those for every screen)")
    ] = None,
    kinds: Annotated[
        str | None,
        Query(max_length=200, description="Comma-separated event kinds to send (default: every kind)"),
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    if not caller.local:
        # A remote door hears its own station (and what is meant for every screen), nothing else.
        if station is not None and not caller.speaks_for(station):
            raise HTTPException(status_code=403, detail=f"This station token or screen is not {station}'s")
        station = caller.station_id
    epoch = live_epoch(request.app)
    replay_after = parse_last_event_id(last_event_id, epoch)
    # A door screen asks only for what it shows: staff alerts (who is restricted for whom)
    # then never travel to a browser standing in the entrance.
    wanted = frozenset(k for k in (kinds or "").replace(" ", "").split(",") if k) or None

    def relevant(event: LiveEvent) -> bool:
        return event.for_station(station) and (wanted is None or event.kind in wanted)

    return StreamingResponse(
        _stream(services.events, relevant, epoch, replay_after), media_type="text/event-stream", headers=STREAM_HEADERS
    )


async def _stream(
    events: EventBus, relevant: Callable[[LiveEvent], bool], epoch: str, replay_after: int | None
) -> AsyncIterator[str]:
    # Everything happens inside the generator, so the finally below is what unsubscribes:
    # a subscription taken in the handler would leak if the client left before the first byte.
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue()

    def offer(event: LiveEvent) -> None:  # on the event loop
        if queue.qsize() >= QUEUE_LIMIT:
            queue.put_nowait(None)  # the consumer ends the stream
            return
        queue.put_nowait(event)

    def listener(event: LiveEvent) -> None:  # on the publisher's thread
        if event.kind == SHUTDOWN:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, None)
            return
        if not relevant(event):
            return
        # A closed loop (the hub is stopping) raises RuntimeError: the stream is gone with it.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(offer, event)

    # Subscribe before reading the backlog, so nothing published in between is lost; the id
    # check below drops what arrives twice.
    unsubscribe = events.subscribe(listener)
    last_sent = replay_after or 0
    try:
        backlog = [e for e in events.since(replay_after) if relevant(e)] if replay_after is not None else []
        # The comment line starts the response at once, so the browser's EventSource reports
        # "open" without waiting for the first event.
        yield f"retry: {RETRY_MS}\n: connected\n\n"
        for event in backlog:
            yield sse_frame(event, epoch)
            last_sent = event.id
        while True:
            try:
                queued = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if queued is None:  # fell behind, or the hub is stopping: the screen reconnects
                return
            if queued.id <= last_sent:
                continue
            yield sse_frame(queued, epoch)
            last_sent = queued.id
    finally:
        # Runs on a normal end, on a client that went away and on server shutdown.
        unsubscribe()
