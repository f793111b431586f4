"""The "Now" page: who is in each room, ratios, open alerts, arrivals, and the live feed.

``/dashboard/live`` is the staff's own stream of the live channel: every kind (check-ins,
refusals, alerts, arrivals, scanner, sync, outbox) from every station, after a login, where the
station stream (``/api/v1/live``) is for door screens. It opens with the last events the hub
remembers, so a page just loaded is not blank; the browser's ``Last-Event-ID`` takes over on a
reconnect.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from edge import const
from edge import now as now_model
from edge.events import ATTENDANCE, SYNC
from kiosk_ui.auth import StaffDep
from kiosk_ui.routes.dashboard_base import PAGE_HEADERS, render, school, services_of, staff_router
from kiosk_ui.routes.live import STREAM_HEADERS, _stream, live_epoch, parse_last_event_id

router = staff_router()

BACKLOG = 40  # events a new page is shown at once


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@router.get("/", response_class=RedirectResponse)
def index() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=303)


@router.get("/roster", response_class=RedirectResponse)
def old_roster_page() -> RedirectResponse:
    """The page before the dashboard had logins lived here; old bookmarks still land."""
    return RedirectResponse("/dashboard/roster", status_code=303)


def _now_context(request: Request) -> dict[str, Any]:
    services = services_of(request)
    with services.store.read() as session:
        view = now_model.now_view(session=session, now=_utc_now())
        alerts = now_model.open_alerts(session=session)
    return {"view": view, "alerts": alerts, "arrivals": services.pings.arrivals()}


@router.get("/dashboard", response_class=HTMLResponse)
def now_page(request: Request) -> HTMLResponse:
    return render(request, "dashboard/now.html", _now_context(request))


class RoomsFragment:
    """The rooms part rendered once per change and shared by every open dashboard.

    Each dashboard refetches it after check-ins: at 5:45 PM, three of them rendering 300 children
    each time cost the hub more CPU than the doors themselves (scripts/load). The fragment shows
    no one's own data (no name, no CSRF token), so one render serves all. It is made again when
    a check-in (or a fix) or a roster sync is announced, when the day changes, and after
    ROOMS_FRAGMENT_MAX_AGE_S at most (a roster applied by another process announces nothing
    here)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[int, dt.date] | None = None
        self._body = b""
        self._made = 0.0

    def get(self, key: tuple[int, dt.date], make: Callable[[], bytes]) -> bytes:
        with self._lock:  # a second dashboard asking meanwhile waits for this render
            if key != self._key or time.monotonic() - self._made > const.ROOMS_FRAGMENT_MAX_AGE_S:
                self._body, self._key, self._made = make(), key, time.monotonic()
            return self._body


@router.get("/dashboard/now/rooms", response_class=HTMLResponse)
def now_rooms(request: Request) -> HTMLResponse:
    """The rooms part of the page alone: the page swaps it in after a live event."""
    services = services_of(request)
    state = request.app.state
    fragment: RoomsFragment | None = getattr(state, "rooms_fragment", None)
    if fragment is None:
        fragment = state.rooms_fragment = RoomsFragment()
    _name, zone = school(services)
    # What the rooms show changes with check-ins (and fixes) and roster syncs, not with the
    # arrivals and scanner reports that keep the live channel busy.
    key = (services.events.last_id(ATTENDANCE, SYNC), _utc_now().astimezone(zone).date())
    body = fragment.get(key, lambda: bytes(render(request, "dashboard/_rooms.html", _now_context(request)).body))
    return HTMLResponse(body, headers=PAGE_HEADERS)


@router.get("/dashboard/api/now")
def now_json(request: Request) -> dict[str, Any]:
    services = services_of(request)
    with services.store.read() as session:
        view = now_model.now_view(session=session, now=_utc_now())
    return {
        "at": view.at.isoformat(),
        "children_in": view.children_in,
        "enrolled": view.enrolled,
        "teachers_in": view.teachers_in,
        "rooms": [
            {
                "id": room.id,
                "name": room.name,
                "ratio": room.ratio,
                "children_in": room.children_in,
                "enrolled": room.enrolled,
                "teachers_in": room.teachers_in,
                "teachers_needed": room.teachers_needed,
                "over_ratio": room.over_ratio,
                "children": [
                    {
                        "id": c.id,
                        "name": c.name,
                        "present": c.present,
                        "since": c.since.isoformat() if c.since else None,
                    }
                    for c in room.children
                ],
                "teachers": [
                    {
                        "id": t.id,
                        "name": t.name,
                        "present": t.present,
                        "since": t.since.isoformat() if t.since else None,
                    }
                    for t in room.teachers
                ],
            }
            for room in view.rooms
        ],
    }


@router.post("/dashboard/alerts/{alert_id}/resolve", response_class=RedirectResponse)
def resolve_alert(request: Request, alert_id: Annotated[int, Path(ge=1)], session: StaffDep) -> RedirectResponse:
    services = services_of(request)
    with services.store.transaction() as db:
        now_model.resolve_alert(alert_id, session=db, at=_utc_now())
    return RedirectResponse("/dashboard#alerts", status_code=303)


@router.get("/dashboard/live", response_class=StreamingResponse)
async def live(
    request: Request,
    session: StaffDep,
    kinds: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[int | None, Query(ge=0, description="Replay only events after this bus id")] = None,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    services = services_of(request)
    epoch = live_epoch(request.app)
    replay_after = parse_last_event_id(last_event_id, epoch)
    recent = services.events.since(0) if replay_after is None else []
    if replay_after is None and after is not None:
        # A page that knows the last event at the time it was drawn (the sync page): only newer
        # ones. Never past the bus's last id: the stream would skip events until it caught up.
        replay_after = min(after, recent[-1].id if recent else 0)
    if replay_after is None:
        replay_after = recent[-BACKLOG].id - 1 if len(recent) > BACKLOG else 0
    wanted = frozenset(k for k in (kinds or "").replace(" ", "").split(",") if k) or None
    return StreamingResponse(
        _stream(services.events, lambda event: wanted is None or event.kind in wanted, epoch, replay_after),
        media_type="text/event-stream",
        headers=STREAM_HEADERS,
    )
