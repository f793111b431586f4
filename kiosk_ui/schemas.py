"""The station API's request and response bodies (contracts/station-api.md), as pydantic models:
they validate what comes in and describe, in the OpenAPI document, exactly what goes out.

Requests are strict (``extra="forbid"``): a misspelled field is a 422 naming it, not a silently
ignored value.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from edge.disk import StorageFault
from edge.policy import RefusalReason

StationId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="The station (door) asking: letters, digits, '.', '_' or '-', up to 64",
        examples=["front-door"],
    ),
]
# No control characters: an id never has one, and PostgreSQL cannot even compare a text with NUL.
ChildId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentifyRequest(_Strict):
    station_id: StationId
    method: Literal["pin", "qr"] = Field(description="pin: the digits typed; qr: the text a camera scanned")
    # Long enough for anything a camera decodes (a refused 3 KB blob must reach the verifier to be
    # refused as not_a_token); the body limit caps it anyway.
    secret: str = Field(max_length=8_192, description="The PIN, or the scanned text. Never logged.")


class PersonOut(BaseModel):
    id: str
    name: str
    role: Literal["payer", "pickup", "staff"]


class ChildOut(BaseModel):
    id: str
    name: str
    room: str | None = Field(description="The room's name")
    present: bool = Field(description="Checked in now")
    allowed: bool = Field(description="Whether this person may, by this method, check the child in (or out)")
    reason: RefusalReason | None = Field(description="Why not, when allowed is false")


class ClockOut(BaseModel):
    present: bool = Field(description="The teacher is clocked in now")
    since: str | None = Field(description="Since when (UTC, ISO 8601), when clocked in")


class PersonIdentified(BaseModel):
    ticket: str = Field(description="Opaque, good for one set of children and one action, for 120 s")
    person: PersonOut
    children: list[ChildOut] = Field(description="The children this person may take; restricted ones are not listed")


class StaffIdentified(BaseModel):
    ticket: str = Field(description="Opaque, good for one clock_in or clock_out, for 120 s")
    person: PersonOut
    children: list[ChildOut] = Field(description="Always empty: staff take children only by override")
    clock: ClockOut


class AttendanceRequest(_Strict):
    ticket: str = Field(min_length=1, max_length=200)
    children: list[ChildId] = Field(
        default_factory=list, max_length=30, description="Children to act on; empty for clock_in / clock_out"
    )
    action: Literal["check_in", "check_out", "clock_in", "clock_out"]


class ChildEventOut(BaseModel):
    event_id: str
    child_id: str
    name: str = Field(description="The child's name, for the confirmation on screen")
    action: Literal["check_in", "check_out"]
    occurred_at: str = Field(description="UTC, ISO 8601 with milliseconds and Z")


class StaffEventOut(BaseModel):
    event_id: str
    staff_id: str
    name: str = Field(description="The teacher's name")
    action: Literal["clock_in", "clock_out"]
    occurred_at: str


class AttendanceOut(BaseModel):
    events: list[ChildEventOut | StaffEventOut] = Field(
        description="One per child (or the teacher's own); a repeated request returns the same events"
    )


class RefusalOut(BaseModel):
    reason: RefusalReason
    message: str = Field(description="Plain words for the screen (English; Spanish with Accept-Language: es)")


class StatusOut(BaseModel):
    cloud: Literal["unknown", "online", "offline", "refused"] = Field(
        description="What the hub last heard from the cloud; offline means check-ins are saved and sent later"
    )
    clock_synced: bool = Field(description="Whether the hub's clock is known to be right")


class ErrorOut(BaseModel):
    """The framework's own refusals (no station token, too many wrong ones, a body that is not JSON)."""

    detail: str


def body_schema(model: type[BaseModel]) -> dict[str, object]:
    """``openapi_extra`` for a route that reads its JSON body itself (as ``model``)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


class FieldErrorOut(BaseModel):
    type: str = Field(description="pydantic's error type")
    loc: list[str | int] = Field(description="Where: body, then the field")
    msg: str


class ValidationErrorOut(BaseModel):
    """FastAPI's 422, without each error's input (kiosk_ui.validation_errors says why)."""

    detail: list[FieldErrorOut]


class FaultOut(BaseModel):
    reason: StorageFault = Field(description="Why the hub could not save; nothing was half written")
    message: str = Field(description="Plain words for the screen: what to do (tell staff)")


# Every answer a station route can give besides its 200, as the OpenAPI document publishes them:
# the fuzzer (tests/kiosk_ui/test_fuzz_api.py) fails on a status code, a content type or a body
# that is not declared here.
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}
STATION_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "Not the hub itself, and no valid station token or pairing cookie"},
    429: {
        "model": ErrorOut,
        "description": "Too many wrong station tokens from this address (the right one included, for a while)",
        "headers": _RETRY_AFTER,
    },
}
BODY_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "The body is not JSON at all"},
    422: {"model": ValidationErrorOut, "description": "The body is not the operation's JSON object"},
    413: {
        "description": "The body is larger than 16 KB",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
}
FAULT_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {
        "model": FaultOut,
        "description": "The disk refused the write (full, or read-only): nothing was saved; staff are alerted",
        "headers": _RETRY_AFTER,
    },
}
REFUSAL_RESPONSES: dict[int | str, dict[str, object]] = {
    403: {"model": RefusalOut, "description": "Refused: the reason code and a sentence for the screen"},
    423: {
        "model": RefusalOut,
        "description": "The station's PIN pad is locked after too many wrong PINs; Retry-After says for how long",
        "headers": {
            "Retry-After": {"description": "Seconds until the pad takes PINs again", "schema": {"type": "integer"}}
        },
    },
    **STATION_RESPONSES,
    **BODY_RESPONSES,
    **FAULT_RESPONSES,
}


# -- the camera scanner's health (kiosk_ui.routes.scanner, docs/scanner.md) -----------------------


class ScannerReport(_Strict):
    """What a scanner process (``checkin-edge scan``) reports every 10 s and on each change."""

    state: Literal["starting", "scanning", "camera_lost", "ended", "stopped"] = Field(
        description="camera_lost: the camera is missing or stopped delivering; the scanner is reconnecting"
    )
    camera: str = Field(max_length=300, description="The camera source, without credentials")
    fps: float = Field(ge=0, le=1_000, description="Frames decoded per second over the last interval")
    camera_fps: float = Field(0.0, ge=0, le=1_000, description="Frames the camera delivered per second")
    decode_ms: float | None = Field(None, ge=0, le=60_000, description="Mean time to decode one frame")
    last_frame_at: AwareDatetime | None = Field(None, description="When the last frame arrived")
    last_decode_at: AwareDatetime | None = Field(None, description="When a QR code was last read")
    scans: int = Field(0, ge=0, le=2**63 - 1, description="Scanned codes sent to the hub since the scanner started")
    detail: str | None = Field(None, max_length=500, description="Why the camera is lost, say")


class ScannerStatusOut(BaseModel):
    station_id: str
    received_at: str = Field(description="When the hub got the last report (UTC, ISO 8601)")
    stale: bool = Field(description="No report for 30 s: the scanner process is not running or cannot reach the hub")
    report: dict[str, object] = Field(description="The last report, as sent")
