"""Pairing a kiosk screen at another door: ``GET /kiosk/pair?station=ID&token=TOKEN``.

A browser cannot be told to send a header, so an installer opens this address once on the
new screen; with the station's token right, the hub answers with a cookie (HttpOnly,
SameSite=Strict) that proves the station from then on, and sends the screen on to its kiosk
page. The address leaves the browser's bar at once (a redirect), so the token is not on show.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse

from edge import const
from edge.stations import is_valid_station_id
from kiosk_ui.deps import ServicesDep, count_wrong_token, raise_if_blocked
from kiosk_ui.throttle import client_key, throttles_of

router = APIRouter()
# Public: the station token in the address is what the handler checks (kiosk_ui.auth, access levels).
router.tags = ["public"]


@router.get("/kiosk/pair", response_class=RedirectResponse, status_code=303, responses={401: {}, 429: {}})
def pair(
    request: Request,
    services: ServicesDep,
    station: Annotated[str, Query(max_length=64, description="The station id of this screen's door")],
    token: Annotated[str, Query(max_length=512, description="That station's token (station_tokens)")],
) -> RedirectResponse:
    # The same limit as a wrong token on the station API (kiosk_ui.throttle): this is the other
    # place a token can be guessed.
    limiter, client = throttles_of(request.app).station_token, client_key(request.client.host if request.client else "")
    raise_if_blocked(limiter, client)
    if not is_valid_station_id(station) or not services.stations.token_matches(station, token):
        count_wrong_token(limiter, client)
        raise HTTPException(status_code=401, detail="Unknown station, or not its token")
    response = RedirectResponse(f"/kiosk?station={station}", status_code=303)
    response.set_cookie(
        const.STATION_COOKIE,
        services.stations.cookie_for(station),
        max_age=const.STATION_COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.headers["Cache-Control"] = "no-store"  # Referrer-Policy: kiosk_ui.security_headers
    return response
