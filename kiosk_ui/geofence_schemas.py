"""The phone API's bodies (contracts/qr-and-geofence.md), as pydantic models for the OpenAPI
document.

Requests are *not* parsed with them: a phone signs the exact body bytes, so the route reads the
bytes, and ``edge.pings`` verifies the signature and then parses them itself (strictly: no
duplicate keys, no missing or unknown fields). These models describe the same shapes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from kiosk_ui.schemas import FAULT_RESPONSES, body_schema

# No control characters (as ChildId): PostgreSQL cannot even compare a text with NUL.
DeviceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$", examples=["D-7f3a"])]
Seq = Annotated[
    int,
    Field(
        ge=0,
        le=2**63 - 1,
        description="Above every seq this device sent before (pings and app requests share the counter)",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PingIn(_Strict):
    device_id: DeviceId
    seq: Seq
    lat: float = Field(ge=-90, le=90, examples=[36.74771])
    lon: float = Field(ge=-180, le=180, examples=[-119.77201])
    accuracy_m: float = Field(gt=0, description="Radius of the fix's accuracy circle; over 100 m answers uncertain")
    fix_time: str = Field(description="When the fix was taken: ISO 8601 with a zone", examples=["2026-11-29T23:40:58Z"])
    mock_location: bool = Field(description="The phone's own mock-location flag: true is refused")


class PingOut(BaseModel):
    state: Literal["away", "arriving", "on_site", "uncertain"] = Field(description="The person's state after this fix")


class AppAttendanceIn(_Strict):
    device_id: DeviceId
    seq: Seq
    children: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=30)
    action: Literal["check_in", "check_out"]


class ArrivalChildOut(BaseModel):
    id: str
    name: str
    room: str | None
    present: bool = Field(description="Checked in now")


class ArrivalOut(BaseModel):
    person_id: str
    name: str
    children: list[ArrivalChildOut] = Field(description="The children this person may take")
    state: Literal["arriving", "on_site"]
    since: str = Field(description="When they entered the arriving ring (UTC, ISO 8601)")
    updated_at: str


class ArrivalsOut(BaseModel):
    arrivals: list[ArrivalOut] = Field(description="Newest first; a notice stays 30 minutes after its last change")


class PhoneRefusalOut(BaseModel):
    reason: str = Field(
        description="bad_signature, unknown_device, pin_only, replayed, stale_fix, future_fix, mock_location, "
        "impossible_jump, bad_coordinates; for app check-ins also not_on_site and the station API's codes"
    )
    message: str = Field(description="Plain words for the phone's screen (Spanish with Accept-Language: es)")


SIGNATURE_HEADER = {
    "name": "X-Signature",
    "in": "header",
    "required": True,
    "description": "Ed25519 signature of the exact body bytes by the device's key: 64 bytes, standard base64, padded",
    "schema": {"type": "string", "minLength": 88, "maxLength": 88},
}


class MalformedOut(BaseModel):
    detail: str = Field(description="What is wrong with the body, in plain words (never its content)")


PHONE_RESPONSES: dict[int | str, dict[str, object]] = {
    403: {"model": PhoneRefusalOut, "description": "Refused: the reason code and a sentence for the phone"},
    413: {"description": "The body is larger than 4 KB", "content": {"text/plain": {"schema": {"type": "string"}}}},
    422: {
        "model": MalformedOut,
        "description": "The body is not the contract's JSON object (no signature could be checked against it)",
    },
    **FAULT_RESPONSES,
}


def signed_body(model: type[BaseModel]) -> dict[str, object]:
    """``openapi_extra`` for a route that reads its signed body as bytes."""
    return {"parameters": [SIGNATURE_HEADER], **body_schema(model)}
