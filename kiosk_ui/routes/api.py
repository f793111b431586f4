"""The station API (contracts/station-api.md, docs/station-api.md): identify, then act; status.

Thin: parse (kiosk_ui.schemas) -> edge.checkin -> JSON. Every refusal is 403 (423 for a locked
PIN pad, with Retry-After) with the reason code and a sentence from kiosk_ui.presenter, so it
reads the same here and on the kiosk screen.

Handlers are ``async def``. An act goes to the door's writer (edge/group_commit.py) and the
handler awaits its durable answer, so the loop serves other stations while the commit's fsync
runs. An identify runs through ``DoorRunner``: on the event loop itself when nothing can make it
wait, in the threadpool otherwise (see there why).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from edge import const
from edge.group_commit import GroupCommitLoop
from edge.outcomes import Refusal
from edge.policy import RefusalReason
from edge.store import Store
from kiosk_ui import presenter
from kiosk_ui.deps import ServicesDep, StationDep, station_caller
from kiosk_ui.schemas import (
    REFUSAL_RESPONSES,
    STATION_RESPONSES,
    AttendanceOut,
    AttendanceRequest,
    IdentifyRequest,
    PersonIdentified,
    StaffIdentified,
    StatusOut,
    body_schema,
)
from kiosk_ui.services import Services
from kiosk_ui.validation_errors import json_body

# The framework's own body cap (Content-Length checked first, then the bytes counted): the API's
# bodies are a few hundred bytes, and a Pi must not buffer whatever a LAN device sends.
router = APIRouter(prefix="/api/v1", max_body_size=const.API_MAX_BODY_BYTES)
router.tags = ["station"]

T = TypeVar("T")


class DoorRunner:
    """Runs a door call (identify, act) where it costs least without ever stalling the hub.

    Measured here (scripts/bench checkin, 16 busy stations): handing every call to a worker
    thread cost the hub 3.6 ms of CPU per identify + act pair against 2.1 ms inline, in thread
    handoffs and GIL contention, and about halved throughput. So a call runs on the event loop
    itself when nothing can make it wait:
    no other thread holds the single writer (a roster sync, the outbox sender) and no door call
    is already out in a worker (it may hold a ticket's lock). Otherwise it goes to the threadpool,
    and the pages and the live channel keep flowing while it waits. What remains on the loop is
    the call's own work, a commit's fsync included (~0.2 ms here; measure on the Pi's SD card).
    The check is a hint: a writer starting in the microseconds between it and the call makes
    that one call wait inline, for that writer's transaction.
    """

    def __init__(self, store: Store, writer: GroupCommitLoop) -> None:
        self.store = store
        self.writer = writer
        self._in_threads = 0  # only touched on the event loop

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        # The door's own writer holds the lock for one batch, a few milliseconds: worth waiting
        # for inline. A roster sync's seconds are not.
        if self._in_threads == 0 and (not self.store.writer_busy or self.writer.committing):
            return call(*args)
        self._in_threads += 1
        try:
            return await run_in_threadpool(call, *args)
        finally:
            self._in_threads -= 1


def door_runner(request: Request) -> DoorRunner:
    state = request.app.state
    runner: DoorRunner | None = getattr(state, "door_runner", None)
    if runner is None:
        services = state.services
        runner = state.door_runner = DoorRunner(services.store, services.checkin.writer)
    return runner


def _lang(request: Request) -> str:
    return presenter.answer_language(request.headers.get("accept-language"))


def refusal_response(refusal: Refusal, lang: str = "en") -> JSONResponse:
    context: dict[str, Any] = dict(refusal.context)
    headers = None
    status = 403
    if refusal.reason is RefusalReason.LOCKED:
        status = 423
        context["seconds"] = refusal.retry_after_s
        headers = {"Retry-After": str(refusal.retry_after_s or 1)}
    body = {"reason": refusal.reason.value, "message": presenter.message(refusal.reason, lang, **context)}
    return JSONResponse(body, status_code=status, headers=headers)


# The two door routes take the request and the caller alone, and read their body with json_body:
# FastAPI's solved body and header parameters cost each request more than the identify itself
# (docs/door.md, "Where the time goes"). Their answers go out as JSONResponse, without FastAPI's
# second validation. The models still publish the schema, and tests check the answers against it
# (tests/kiosk_ui/test_api.py).


@router.post(
    "/identify",
    response_model=PersonIdentified | StaffIdentified,
    responses=REFUSAL_RESPONSES,
    openapi_extra=body_schema(IdentifyRequest),
    summary="Who is at the station: a ticket, the person and the children they may take",
)
async def identify(request: Request, caller: StationDep) -> JSONResponse:
    body = await json_body(request, IdentifyRequest)
    if not caller.speaks_for(body.station_id):
        raise HTTPException(status_code=401, detail=f"This station token or screen is not {body.station_id}'s")
    services: Services = request.app.state.services
    found = await door_runner(request).run(services.checkin.identify, body.station_id, body.method, body.secret)
    if isinstance(found, Refusal):
        return refusal_response(found, _lang(request))
    return JSONResponse(found.as_json())


@router.post(
    "/attendance",
    response_model=AttendanceOut,
    responses=REFUSAL_RESPONSES,
    openapi_extra=body_schema(AttendanceRequest),
    summary="Check children in or out (or clock a teacher in or out) with a ticket",
)
async def attendance(request: Request, caller: StationDep) -> JSONResponse:
    body = await json_body(request, AttendanceRequest)
    services: Services = request.app.state.services
    if not caller.local and services.checkin.ticket_station(body.ticket) != caller.station_id:
        # Another door's ticket is as good as no ticket here (a dictionary lookup: no hop needed).
        return refusal_response(Refusal(RefusalReason.BAD_TICKET), _lang(request))
    result = await asyncio.wrap_future(services.checkin.start_act(body.ticket, body.children, body.action))
    if isinstance(result, Refusal):
        return refusal_response(result, _lang(request))
    return JSONResponse({"events": [event.as_json() for event in result]})


@router.get(
    "/status",
    response_model=StatusOut,
    responses=STATION_RESPONSES,
    dependencies=[Depends(station_caller)],
    summary="Whether the cloud is reachable and the clock is right",
)
async def status(services: ServicesDep) -> dict[str, Any]:
    # In memory, and the clock check caches its verdict: nothing here blocks.
    return {"cloud": services.connectivity.get().state.value, "clock_synced": services.clock_check.synced()}
