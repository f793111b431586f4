"""The back office's export records, parsed one by one and leniently.

Unknown fields are ignored; a record that lacks a required field, or has a value longer than
the column that keeps it, becomes a ``RecordError`` (skipped with a reason), never an exception
that stops the sync. (PostgreSQL refuses an over-long value where SQLite would keep it: checked
here, both databases skip the same records.)
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from sqlalchemy import String

from edge.models import AppDevice, Child, Person, Room, School, Teacher, TrustedKey


def column_length(column: Any) -> int:
    """The length of the String column a field is written to."""
    kind = column.type
    if not isinstance(kind, String) or kind.length is None:
        raise TypeError(f"{column} is not a String column with a length")
    return int(kind.length)


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SchoolRecord(_Record):
    id: str = Field(min_length=1, max_length=column_length(School.id))
    name: str = Field(min_length=1, max_length=column_length(School.name))
    address: str | None = Field(None, max_length=column_length(School.address))
    phone: str | None = Field(None, max_length=column_length(School.phone))
    director_name: str | None = Field(None, max_length=column_length(School.director_name))
    director_email: str | None = Field(None, max_length=column_length(School.director_email))
    time_zone: str = Field(min_length=1, max_length=column_length(School.time_zone))


class RoomRecord(_Record):
    id: str = Field(min_length=1, max_length=column_length(Room.id))
    name: str = Field(min_length=1, max_length=column_length(Room.name))
    ratio: Any = None


class WorkHistory(_Record):
    start_date: dt.date | None = None
    status: str | None = None
    termination_date: dt.date | None = None


class EmployeeRecord(_Record):
    id: str = Field(min_length=1, max_length=column_length(Teacher.id))
    first_name: str = Field(max_length=column_length(Teacher.first_name))
    last_name: str = Field(max_length=column_length(Teacher.last_name))
    email: str | None = Field(None, max_length=column_length(Teacher.email))
    pin: Any = None
    work_history: WorkHistory | None = None
    primary_work_area: str | None = Field(None, max_length=column_length(Room.id))


class TextMessage(_Record):
    carrier: str | None = Field(None, max_length=column_length(Person.sms_carrier))
    number: str | None = Field(None, max_length=column_length(Person.sms_number))


class AppDeviceRecord(_Record):
    device_id: str = Field(min_length=1, max_length=column_length(AppDevice.device_id))
    public_key: str = Field(min_length=1, max_length=column_length(AppDevice.public_key))


class PersonRecord(_Record):
    id: str = Field(min_length=1, max_length=column_length(Person.id))
    first_name: str = Field(max_length=column_length(Person.first_name))
    last_name: str = Field(max_length=column_length(Person.last_name))
    email: str | None = Field(None, max_length=column_length(Person.email))
    text_message: TextMessage | None = None
    payer: StrictBool = False
    pin: Any = None
    app_devices: list[AppDeviceRecord] = Field(default_factory=list)


class PickupRecord(_Record):
    person_id: str = Field(min_length=1, max_length=column_length(Person.id))
    authorized: StrictBool
    note: str | None = None


class ChildRecord(_Record):
    id: str = Field(min_length=1, max_length=column_length(Child.id))
    first_name: str = Field(max_length=column_length(Child.first_name))
    last_name: str = Field(max_length=column_length(Child.last_name))
    birth_date: dt.date | None = None
    enrollment_status: str | None = None
    classroom: str | None = Field(None, max_length=column_length(Room.id))
    pickups: list[PickupRecord] = Field(default_factory=list)


class KeyRecord(_Record):
    kid: str = Field(min_length=1, max_length=column_length(TrustedKey.kid))
    alg: str = Field(max_length=column_length(TrustedKey.alg))
    public_key: str = Field(max_length=column_length(TrustedKey.public_key))


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
