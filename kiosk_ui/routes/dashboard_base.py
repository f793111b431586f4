"""What every dashboard page shares: the staff router, the page headers, rendering, time filters.

A dashboard router is made by ``staff_router()``: the session (and, for a POST, its CSRF token)
is checked at router level, so a new page cannot forget it, and its routes are tagged ``staff``
for the route-table test (kiosk_ui.auth).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from edge.models import School
from kiosk_ui.auth import CSRF_FIELD, Access, StaffSession, require_staff
from kiosk_ui.services import Services

# The Content-Security-Policy (no inline script or style, no framing) and the other security
# headers go on every answer of the hub: kiosk_ui.security_headers.
PAGE_HEADERS = {
    # Names of children on every page: never kept by the browser or a proxy.
    "Cache-Control": "no-store",
}

# The navigation, in the order a director reads it: (path, label, what is there).
NAV = (
    ("/dashboard", "Now", "who is in each room"),
    ("/dashboard/reports", "Reports", "attendance, hours, CSV"),
    ("/dashboard/audit", "Audit log", "every decision"),
    ("/dashboard/roster", "Roster", "families, children, teachers, rooms"),
    ("/dashboard/sync-doctor", "Why not synced?", "records the back office must fix"),
    ("/dashboard/sync", "Sync & health", "sync, cloud, clock, stations"),
    ("/dashboard/badges", "Badges", "QR badges"),
    ("/dashboard/geofence", "Geofence", "the on-site area"),
)


def staff_router(**kwargs: Any) -> APIRouter:
    router = APIRouter(dependencies=[Depends(require_staff)], include_in_schema=False, **kwargs)
    router.tags = [Access.STAFF]
    return router


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def school(services: Services) -> tuple[str, ZoneInfo]:
    """The school's name and time zone (the roster's), for headers and clocks."""
    with services.store.read() as session:
        row = session.execute(select(School.name, School.time_zone).where(School.active).limit(1)).first()
    if row is None:
        return "", ZoneInfo(services.config.sync_time_zone)
    try:
        return row.name, ZoneInfo(row.time_zone)
    except (KeyError, ValueError):
        return row.name, ZoneInfo(services.config.sync_time_zone)


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    session: StaffSession | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    services = services_of(request)
    name, zone = school(services)
    staff = session or getattr(request.state, "staff", None)
    page = {
        "me": staff.user if staff else None,
        "is_director": bool(staff and staff.is_director),
        "csrf": staff.csrf if staff else "",
        "csrf_field": CSRF_FIELD,
        "school_name": name,
        "zone": zone,
        "nav": NAV,
        "path": request.url.path,
        **context,
    }
    templates: Jinja2Templates = request.app.state.templates
    response: HTMLResponse = templates.TemplateResponse(
        request, template, page, status_code=status_code, headers=PAGE_HEADERS
    )
    return response


# -- filters: times in the center's zone ------------------------------------------------------------


def _hm(moment: dt.datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M") if moment else ""


def _when(moment: dt.datetime | None, zone: ZoneInfo, now: dt.datetime | None = None) -> str:
    """08:12 today, "Fri 27 Nov 17:40" another day."""
    if moment is None:
        return ""
    local = moment.astimezone(zone)
    today = (now or dt.datetime.now(dt.UTC)).astimezone(zone).date()
    return local.strftime("%H:%M") if local.date() == today else local.strftime("%a %d %b %H:%M")


def _full(moment: dt.datetime | None, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z") if moment else ""


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def install_filters(app: FastAPI) -> None:
    env = app.state.templates.env
    env.filters["hm"] = _hm
    env.filters["when"] = _when
    env.filters["full"] = _full
    env.filters["age"] = _age
