"""The phone API (contracts/qr-and-geofence.md, docs/geofence.md): signed geofence pings, app
check-in and check-out, and the arrivals list for staff.

Phones are not stations: the ping and app routes take no station token and answer any caller,
because the Ed25519 signature over the exact body bytes is what proves the sender. So they
read the body as bytes (a parsed-and-reserialized body would not be what was signed) and hand
it, with the ``X-Signature`` header, to ``edge.pings``. The arrivals list is staff-facing and
guarded like the station API's reads (loopback or a station token) until staff logins exist.

Refusals are 403 ``{"reason", "message"}`` like the station API's; a body that is not the
contract's JSON object is 422, as the station API answers one.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from edge import const
from edge.models import PresenceState
from edge.outcomes import Refusal
from edge.pings import MalformedRequest, PingRefusal, Refused
from kiosk_ui import presenter
from kiosk_ui.deps import ServicesDep, station_caller
from kiosk_ui.geofence_schemas import (
    PHONE_RESPONSES,
    AppAttendanceIn,
    ArrivalsOut,
    PingIn,
    PingOut,
    signed_body,
)
from kiosk_ui.schemas import STATION_RESPONSES, AttendanceOut
from kiosk_ui.services import Services

router = APIRouter(prefix="/api/v1", max_body_size=const.GEOFENCE_MAX_BODY_BYTES)
router.tags = ["phone"]

# The four possible answers of a ping, encoded once: returned as bytes, they skip the response
# model's validation and serialization on every ping (the model still documents them).
_STATE_BODIES = {state: json.dumps({"state": state.value}).encode() for state in PresenceState}

# The phone's sentences for the geofence's own codes; the station API's codes read as at the door.
_MESSAGES: dict[str, dict[PingRefusal, str]] = {
    "en": {
        PingRefusal.BAD_SIGNATURE: "This phone could not be verified. Please use your PIN at the kiosk.",
        PingRefusal.UNKNOWN_DEVICE: "This phone is not registered with the center. Please see the front desk.",
        PingRefusal.PIN_ONLY: "Please use your PIN at the kiosk. The phone app is for parents only.",
        PingRefusal.REPLAYED: "That request was already received.",
        PingRefusal.STALE_FIX: "Your location is out of date. Please try again.",
        PingRefusal.FUTURE_FIX: "Your phone's clock looks wrong. Please check its date and time.",
        PingRefusal.MOCK_LOCATION: "Please turn off mock locations on your phone.",
        PingRefusal.IMPOSSIBLE_JUMP: "Your location jumped too far too fast. Please try again.",
        PingRefusal.BAD_COORDINATES: "Your phone sent a location that is not valid. Please try again.",
        PingRefusal.NOT_ON_SITE: "You need to be at the center to do this from your phone. Please use the kiosk.",
    },
    "es": {
        PingRefusal.BAD_SIGNATURE: "No se pudo verificar este teléfono. Use su PIN en el quiosco.",
        PingRefusal.UNKNOWN_DEVICE: "Este teléfono no está registrado en el centro. Pase por la recepción.",
        PingRefusal.PIN_ONLY: "Use su PIN en el quiosco. La aplicación es solo para los padres.",
        PingRefusal.REPLAYED: "Esa solicitud ya se recibió.",
        PingRefusal.STALE_FIX: "Su ubicación no está actualizada. Inténtelo de nuevo.",
        PingRefusal.FUTURE_FIX: "La hora de su teléfono parece incorrecta. Revise la fecha y la hora.",
        PingRefusal.MOCK_LOCATION: "Desactive las ubicaciones simuladas en su teléfono.",
        PingRefusal.IMPOSSIBLE_JUMP: "Su ubicación cambió demasiado rápido. Inténtelo de nuevo.",
        PingRefusal.BAD_COORDINATES: "Su teléfono envió una ubicación no válida. Inténtelo de nuevo.",
        PingRefusal.NOT_ON_SITE: "Debe estar en el centro para hacer esto desde su teléfono. Use el quiosco.",
    },
}


def phone_message(reason: PingRefusal, lang: str = "en") -> str:
    return _MESSAGES["es" if lang == "es" else "en"][reason]


def _refused(result: Refused | Refusal, lang: str) -> JSONResponse:
    if isinstance(result, Refused):
        message = phone_message(result.reason, lang)
        reason = result.reason.value
    else:
        message = presenter.message(result.reason, lang, **result.context)
        reason = result.reason.value
    return JSONResponse({"reason": reason, "message": message}, status_code=403)


def _malformed(exc: MalformedRequest) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


# The headers are read from the request, not declared as parameters: signed_body() documents
# X-Signature, a missing or malformed one is a refusal (bad_signature) rather than a validation
# error, and each declared parameter costs FastAPI time on every ping.


@router.post(
    "/geofence/pings",
    response_model=PingOut,
    responses=PHONE_RESPONSES,
    openapi_extra=signed_body(PingIn),
    summary="A payer's phone reports its position; the answer is the person's state",
)
async def ping(request: Request) -> Response:
    services: Services = request.app.state.services
    body = await request.body()
    try:
        # In the threadpool, not on the event loop: cryptography releases the interpreter lock
        # while it verifies (verifications run side by side on a Pi's cores, and a flood of
        # forged pings does not stall the kiosk pages), and a due batch write or an uncached
        # device is SQLite.
        result = await run_in_threadpool(services.pings.ping, body, request.headers.get("x-signature"))
    except MalformedRequest as exc:
        return _malformed(exc)
    if isinstance(result, Refused):
        return _refused(result, presenter.answer_language(request.headers.get("accept-language")))
    return Response(_STATE_BODIES[result.state], media_type="application/json")


@router.post(
    "/app/attendance",
    response_model=AttendanceOut,
    responses=PHONE_RESPONSES,
    openapi_extra=signed_body(AppAttendanceIn),
    summary="Check children in or out from the payer's phone, on site",
)
async def app_attendance(request: Request) -> dict[str, Any] | JSONResponse:
    services: Services = request.app.state.services
    body = await request.body()
    try:
        result = await run_in_threadpool(services.pings.app_attendance, body, request.headers.get("x-signature"))
    except MalformedRequest as exc:
        return _malformed(exc)
    if isinstance(result, Refused | Refusal):
        return _refused(result, presenter.answer_language(request.headers.get("accept-language")))
    return {"events": [event.as_json() for event in result]}


@router.get(
    "/arrivals",
    response_model=ArrivalsOut,
    dependencies=[Depends(station_caller)],
    tags=["station"],
    responses=STATION_RESPONSES,
    summary="Who is arriving or on site, with the children they may take (for staff)",
)
async def arrivals(services: ServicesDep) -> dict[str, Any]:
    return {"arrivals": [arrival.as_json() for arrival in services.pings.arrivals()]}
