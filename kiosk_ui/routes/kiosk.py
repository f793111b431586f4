"""The touchscreen page at a door: ``GET /kiosk?station=ID&lang=en|es``.

The page is a shell: kiosk.js drives it against the station API (identify, attendance,
status) and the live channel. It carries no personal data, only the school's name and time
zone, so it is public like the static files it loads; what a PIN reveals goes through the
API and its station check.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from edge.models import School
from edge.stations import is_valid_station_id
from kiosk_ui.deps import ReadSession
from kiosk_ui.i18n import LANGUAGES, STRINGS, pick_language

router = APIRouter()
router.tags = ["public"]

# The Content-Security-Policy (no inline script or style, no framing) and the other security
# headers go on every answer of the hub: kiosk_ui.security_headers.
PAGE_HEADERS = {
    # A hub upgraded in place must serve the new page on the next load, not a cached one.
    "Cache-Control": "no-store",
}


@router.get("/kiosk", response_class=HTMLResponse)
def kiosk_page(
    request: Request,
    session: ReadSession,
    station: Annotated[str | None, Query(max_length=64, description="This door's station id")] = None,
    lang: Annotated[str | None, Query(max_length=8, description="en or es")] = None,
) -> HTMLResponse:
    templates = request.app.state.templates
    if station is None or not is_valid_station_id(station):
        # Whoever sets up the screen reads this, not a parent: say what to type.
        return templates.TemplateResponse(  # type: ignore[no-any-return]
            request,
            "kiosk/setup.html",
            {"station": station},
            status_code=400,
            headers=PAGE_HEADERS,
        )
    school = session.scalars(select(School).where(School.active).limit(1)).first()
    language = pick_language(lang)
    return templates.TemplateResponse(  # type: ignore[no-any-return]
        request,
        "kiosk/page.html",
        {
            "station": station,
            "lang": language,
            # Only an explicit ?lang= beats the choice remembered on that screen.
            "lang_forced": lang is not None and language == (lang or "").strip().lower()[:2],
            "t": STRINGS[language],
            "strings": {code: STRINGS[code] for code in LANGUAGES},
            "school_name": school.name if school else "",
            "time_zone": school.time_zone if school else "",
        },
        headers=PAGE_HEADERS,
    )
