"""QR badges and the geofence, for staff: print a payer's badge or revoke one; see the on-site
area drawn with the phones seen lately, and edit it as GeoJSON (directors).

A badge's token is shown once, on the page that issued it (the appliance keeps only its id:
a copy of the database must not be enough to print someone's badge), so that page is the
print page.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import Annotated

from fastapi import Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from edge import const, reports, roster_views
from edge.badges import BadgeError, BadgeRecord, badge_svg
from edge.geofence import FenceError
from kiosk_ui.auth import DirectorDep
from kiosk_ui.charts import fence_svg
from kiosk_ui.routes.dashboard_base import render, services_of, staff_router

router = staff_router()

PersonId = Annotated[str, Path(max_length=64)]
GEOJSON_MAX_CHARS = 200_000  # a site's outline is a few kB; a pasted city boundary is refused early


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _badges_page(request: Request, q: str | None, *, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    services = services_of(request)
    with services.store.read() as session:
        people = roster_views.payers(session=session, query=q)
    badges: dict[str, list[BadgeRecord]] = defaultdict(list)
    for badge in services.badges.list_badges():
        badges[badge.person_id].append(badge)
    return render(
        request,
        "dashboard/badges.html",
        {"people": people, "badges": badges, "q": q or "", "now": _utc_now(), "error": error},
        status_code=status_code,
    )


@router.get("/dashboard/badges", response_class=HTMLResponse)
def badges_page(request: Request, q: Annotated[str | None, Query(max_length=100)] = None) -> HTMLResponse:
    return _badges_page(request, q)


@router.post("/dashboard/badges/{person_id}/issue", response_class=HTMLResponse)
def issue_badge(request: Request, person_id: PersonId, session: DirectorDep) -> HTMLResponse:
    try:
        badge = services_of(request).badges.issue_badge(person_id, station_id=const.DASHBOARD_STATION_ID)
    except BadgeError as exc:
        return _badges_page(request, None, error=str(exc), status_code=409)
    svg = badge_svg(badge).split("?>", 1)[-1]  # inline: without the XML declaration
    return render(request, "dashboard/badge_print.html", {"badge": badge, "svg": Markup(svg)})  # noqa: S704


@router.post("/dashboard/badges/{person_id}/revoke", response_class=RedirectResponse)
def revoke_badges(request: Request, person_id: PersonId, session: DirectorDep) -> RedirectResponse:
    services_of(request).badges.revoke_badges(person_id, station_id=const.DASHBOARD_STATION_ID)
    return RedirectResponse(f"/dashboard/badges?q={person_id}", status_code=303)


def _geofence_page(
    request: Request,
    *,
    text: str | None = None,
    arriving_m: float | None = None,
    error: str | None = None,
    saved: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    services = services_of(request)
    fence = services.pings.fence()
    with services.store.read() as session:
        fixes = reports.recent_fixes(session=session, since=_utc_now() - dt.timedelta(hours=const.FIX_RETENTION_H))
    current = json.dumps(fence.geojson, indent=2) if fence is not None else ""
    return render(
        request,
        "dashboard/geofence.html",
        {
            "fence": fence,
            "drawing": fence_svg(fence, fixes) if fence is not None else None,
            "fixes": len(fixes),
            "text": current if text is None else text,
            "arriving_m": arriving_m if arriving_m is not None else (fence.arriving_m if fence else const.ARRIVING_M),
            "error": error,
            "saved": saved,
            "limits": (const.ARRIVING_MIN_M, const.ARRIVING_MAX_M),
            "retention_h": const.FIX_RETENTION_H,
        },
        status_code=status_code,
    )


@router.get("/dashboard/geofence", response_class=HTMLResponse)
def geofence_page(request: Request, saved: Annotated[bool, Query()] = False) -> HTMLResponse:
    return _geofence_page(request, saved=saved)


@router.post("/dashboard/geofence", response_class=HTMLResponse)
def set_geofence(
    request: Request,
    session: DirectorDep,
    geojson: Annotated[str, Form(max_length=GEOJSON_MAX_CHARS)],
    arriving_m: Annotated[float, Form()] = const.ARRIVING_M,
) -> Response:
    try:
        document = json.loads(geojson)
    except json.JSONDecodeError as exc:
        error = f"That is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        return _geofence_page(request, text=geojson, arriving_m=arriving_m, error=error, status_code=422)
    try:
        services_of(request).pings.set_fence(document, arriving_m)
    except FenceError as exc:
        return _geofence_page(request, text=geojson, arriving_m=arriving_m, error=f"Not saved: {exc}.", status_code=422)
    return RedirectResponse("/dashboard/geofence?saved=true", status_code=303)
