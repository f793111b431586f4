"""The back office's export records, parsed one by one and leniently.

Unknown fields are ignored; a record that lacks a required field becomes a ``RecordError``
(skipped with a reason), never an exception that stops the sync.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SchoolRecord(_Record):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    address: str | None = None
    phone: str | None = None
    director_name: str | None = None
    director_email: str | None = None
    time_zone: str = Field(min_length=1)


class RoomRecord(_Record):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    ratio: Any = None


class WorkHistory(_Record):
    start_date: dt.date | None = None
    status: str | None = None
    termination_date: dt.date | None = None


class EmployeeRecord(_Record):
    id: str = Field(min_length=1)
    first_name: str
    last_name: str
    email: str | None = None
    pin: Any = None
    work_history: WorkHistory | None = None
    primary_work_area: str | None = None


class TextMessage(_Record):
    carrier: str | None = None
    number: str | None = None


class AppDeviceRecord(_Record):
    device_id: str = Field(min_length=1)
    public_key: str = Field(min_length=1)


class PersonRecord(_Record):
    id: str = Field(min_length=1)
    first_name: str
    last_name: str
    email: str | None = None
    text_message: TextMessage | None = None
    payer: StrictBool = False
    pin: Any = None
    app_devices: list[AppDeviceRecord] = Field(default_factory=list)


class PickupRecord(_Record):
    person_id: str = Field(min_length=1)
    authorized: StrictBool
    note: str | None = None


class ChildRecord(_Record):
    id: str = Field(min_length=1)
    first_name: str
    last_name: str
    birth_date: dt.date | None = None
    enrollment_status: str | None = None
    classroom: str | None = None
    pickups: list[PickupRecord] = Field(default_factory=list)


class KeyRecord(_Record):
    kid: str = Field(min_length=1)
    alg: str
    public_key: str


class RecordError(Exception):
    """A record that cannot be read; ``source_id`` and ``label`` say which, as far as known."""

    def __init__(self, source_id: str | None, label: str, problem: str) -> None:
        super().__init__(problem)
        self.source_id = source_id
        self.label = label
        self.problem = problem


R = TypeVar("R", bound=_Record)


def parse_record(model: type[R], raw: Any) -> R:
    if not isinstance(raw, dict):
        raise RecordError(None, "", f"is a {type(raw).__name__}, not an object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        source_id = raw.get("id") if isinstance(raw.get("id"), str) and raw.get("id") else None
        label = " ".join(str(raw.get(k) or "") for k in ("first_name", "last_name")).strip()
        label = label or str(raw.get("name") or "")
        raise RecordError(source_id, label, _describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        field = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"no {field}" if err["type"] == "missing" else f"{field} is not valid")
    return ", ".join(parts)
