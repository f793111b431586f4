"""The data model: the synced roster, and the sync runs that explain it.

Every synced table keys its rows by the source's own id, so a record keeps its row (and the
history that points at it) across syncs, renames and deactivations; sync never deletes.
Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, Boolean, Date, Float, ForeignKey, Index, Integer, String, Text, TypeDecorator
from sqlalchemy import DateTime as SADateTime
from sqlalchemy import Enum as SAEnum
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = SADateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def enum_column(enum_cls: type[enum.StrEnum]) -> SAEnum:
    """Store a StrEnum as its value in a plain string column (no native DB enum to migrate)."""
    return SAEnum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=max(len(m.value) for m in enum_cls),
        values_callable=lambda cls: [m.value for m in cls],
    )


class PinState(enum.StrEnum):
    SET = "set"
    AMBIGUOUS = "ambiguous"
    NONE = "none"


class PersonRole(enum.StrEnum):
    PAYER = "payer"
    PICKUP = "pickup"


class LinkRelation(enum.StrEnum):
    PAYER = "payer"
    PICKUP = "pickup"
    RESTRICTED = "restricted"


class SyncOutcome(enum.StrEnum):
    RUNNING = "running"
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    FAILED = "failed"


class SyncTrigger(enum.StrEnum):
    SCHEDULE = "schedule"
    STARTUP = "startup"
    MANUAL = "manual"
    FILE = "file"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime, dict[str, Any]: JSON}


class SyncedRow:
    """Columns every synced row carries."""

    active: Mapped[bool] = mapped_column(Boolean, default=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[dt.datetime]


class School(SyncedRow, Base):
    __tablename__ = "school"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(300))
    phone: Mapped[str | None] = mapped_column(String(40))
    director_name: Mapped[str | None] = mapped_column(String(200))
    director_email: Mapped[str | None] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(64))


class Room(SyncedRow, Base):
    __tablename__ = "rooms"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    ratio: Mapped[int | None] = mapped_column(Integer)


class Teacher(SyncedRow, Base):
    __tablename__ = "teachers"
    __table_args__ = (Index("ix_teachers_pin_hmac", "pin_hmac"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(200))
    room_id: Mapped[str | None] = mapped_column(ForeignKey("rooms.id"))
    pin_hmac: Mapped[str | None] = mapped_column(String(64))
    pin_state: Mapped[PinState] = mapped_column(enum_column(PinState), default=PinState.NONE)

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Person(SyncedRow, Base):
    """A parent/guardian (payer) or an authorized pickup person (non-payer)."""

    __tablename__ = "persons"
    __table_args__ = (Index("ix_persons_pin_hmac", "pin_hmac"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[PersonRole] = mapped_column(enum_column(PersonRole))
    sms_number: Mapped[str | None] = mapped_column(String(40))
    sms_carrier: Mapped[str | None] = mapped_column(String(60))
    pin_hmac: Mapped[str | None] = mapped_column(String(64))
    pin_state: Mapped[PinState] = mapped_column(enum_column(PinState), default=PinState.NONE)

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class Child(SyncedRow, Base):
    __tablename__ = "children"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    room_id: Mapped[str | None] = mapped_column(ForeignKey("rooms.id"))

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class ChildLink(Base):
    """Who may (payer, pickup) or may never (restricted) take a child.

    ``person_id`` is deliberately not a foreign key: a restriction often names someone who is
    not in the roster at all, and must hold the day they appear in it.
    Links are part of the child's content hash and are rewritten with the child.
    """

    __tablename__ = "child_links"
    __table_args__ = (Index("ix_child_links_person", "person_id"),)

    child_id: Mapped[str] = mapped_column(ForeignKey("children.id"), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    relation: Mapped[LinkRelation] = mapped_column(enum_column(LinkRelation), primary_key=True)
    note: Mapped[str | None] = mapped_column(Text)


class AppDevice(Base):
    """A payer's registered phone; part of the person's content hash."""

    __tablename__ = "app_devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    public_key: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class TrustedKey(Base):
    """Public keys that may sign QR app codes (the cloud's, from the roster)."""

    __tablename__ = "trusted_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(20))
    public_key: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    changed_at: Mapped[dt.datetime]


class SyncRun(Base):
    """One roster sync attempt, kept so a director can see what happened and why."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trigger: Mapped[SyncTrigger] = mapped_column(enum_column(SyncTrigger))
    started_at: Mapped[dt.datetime] = mapped_column(index=True)
    finished_at: Mapped[dt.datetime | None]
    outcome: Mapped[SyncOutcome] = mapped_column(enum_column(SyncOutcome))
    error: Mapped[str | None] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(String(200))
    pages: Mapped[int] = mapped_column(Integer, default=0)
    # The run report as `roster apply --json` prints it (counts, skipped, demoted, hints).
    report: Mapped[dict[str, Any] | None]


# -- the door: attendance, presence, outbox, audit, alerts, lockouts ---------------------------
# Local data the appliance owns: a roster sync never touches these tables.


class Action(enum.StrEnum):
    CHECK_IN = "check_in"
    CHECK_OUT = "check_out"
    CLOCK_IN = "clock_in"
    CLOCK_OUT = "clock_out"


class Method(enum.StrEnum):
    PIN = "pin"
    QR = "qr"
    GEOFENCE = "geofence"
    STAFF = "staff"


class ActorKind(enum.StrEnum):
    PAYER = "payer"
    PICKUP = "pickup"
    STAFF = "staff"


class SubjectKind(enum.StrEnum):
    CHILD = "child"
    STAFF = "staff"


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    REJECTED = "rejected"


class AuditOutcome(enum.StrEnum):
    ALLOWED = "allowed"
    REFUSED = "refused"


class AttendanceEvent(Base):
    """A check-in/out of a child or a clock-in/out of a teacher. Append-only; id is a UUID v7."""

    __tablename__ = "attendance_events"
    __table_args__ = (
        Index("ix_attendance_subject_time", "subject_kind", "subject_id", "occurred_at"),
        Index("ix_attendance_time", "occurred_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_kind: Mapped[SubjectKind] = mapped_column(enum_column(SubjectKind))
    # The child's or the teacher's source id (no FK: a child's row is never deleted anyway,
    # and the event must outlive any schema change of the roster tables).
    subject_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[Action] = mapped_column(enum_column(Action))
    occurred_at: Mapped[dt.datetime]
    method: Mapped[Method] = mapped_column(enum_column(Method))
    actor_kind: Mapped[ActorKind] = mapped_column(enum_column(ActorKind))
    actor_id: Mapped[str] = mapped_column(String(64))
    station_id: Mapped[str] = mapped_column(String(64))
    clock_synced: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)  # a staff override's reason


class Presence(Base):
    """Who is in now: one row per child or teacher, changed with each event (same transaction)."""

    __tablename__ = "presence"

    subject_kind: Mapped[SubjectKind] = mapped_column(enum_column(SubjectKind), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    present: Mapped[bool] = mapped_column(Boolean)
    since: Mapped[dt.datetime]
    event_id: Mapped[str] = mapped_column(ForeignKey("attendance_events.id"))


class OutboxEntry(Base):
    """One event waiting for (or done with) delivery to the cloud; ``id`` orders delivery."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state_id", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("attendance_events.id"), unique=True)
    subject_key: Mapped[str] = mapped_column(String(80))  # "child:C1": events of one subject stay in order
    payload: Mapped[dict[str, Any]]  # the event exactly as attendance-push.md sends it
    created_at: Mapped[dt.datetime]
    state: Mapped[OutboxState] = mapped_column(enum_column(OutboxState), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[dt.datetime | None]
    reject_reason: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """Every decision, allowed or refused, with the rule and role as they stood. Append-only."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_child", "child_id"),
        Index("ix_audit_person", "actor_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime]
    station_id: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str | None] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(40))  # identify, check_in, check_out, clock_in, override, …
    outcome: Mapped[AuditOutcome] = mapped_column(enum_column(AuditOutcome))
    reason: Mapped[str | None] = mapped_column(String(40))  # a refusal code
    actor_kind: Mapped[str | None] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    child_id: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str | None] = mapped_column(Text)  # what allowed or refused it, in words
    event_id: Mapped[str | None] = mapped_column(String(36))
    detail: Mapped[dict[str, Any] | None]


class Alert(Base):
    """Something staff must see: a restricted person at the door, a locked PIN pad, the cloud refusing us."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_open", "resolved_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime]
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    station_id: Mapped[str | None] = mapped_column(String(64))
    person_id: Mapped[str | None] = mapped_column(String(64))
    child_id: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[dt.datetime | None]


class StationLockout(Base):
    """A station's PIN pad lockout, persisted so a restart does not reset it."""

    __tablename__ = "station_lockouts"

    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    locked_until: Mapped[dt.datetime]
    lockouts: Mapped[int] = mapped_column(Integer)  # consecutive lockouts: each doubles the next
    updated_at: Mapped[dt.datetime]


# -- QR tokens: badges this appliance issued, app-code nonces it has seen (edge.tokens, edge.badges) --
# Local data, like the door's: a roster sync never touches these tables.


class Badge(Base):
    """A badge this appliance signed: verification accepts only badges listed here and not revoked.

    Keyed by the token's nonce (16 hex digits). The token itself is not kept: it is a bearer
    credential, and a database copy must not be enough to print someone's badge.
    """

    __tablename__ = "badges"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # the token's nonce, hex
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    kid: Mapped[str] = mapped_column(String(64))  # the appliance key that signed it
    issued_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


class SeenNonce(Base):
    """An app code's nonce, kept until the code expires (plus the clock tolerance): a replay is refused."""

    __tablename__ = "seen_nonces"

    nonce: Mapped[str] = mapped_column(String(16), primary_key=True)  # hex
    keep_until: Mapped[dt.datetime] = mapped_column(index=True)


# -- phones at the fence: the center's geofence, each phone's state, accepted fixes (edge.pings) --
# Local data the appliance owns: a roster sync never touches these tables.


class PresenceState(enum.StrEnum):
    """Where a phone's fixes put its person (edge.geofence)."""

    AWAY = "away"
    ARRIVING = "arriving"
    ON_SITE = "on_site"
    UNCERTAIN = "uncertain"


class SiteGeofence(Base):
    """The center's on-site area (GeoJSON, as staff set it) and its arriving ring; one row, id 1."""

    __tablename__ = "geofence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    on_site: Mapped[dict[str, Any]]
    arriving_m: Mapped[float] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer)  # bumped on each change: a running hub reloads
    updated_at: Mapped[dt.datetime]


class PhoneTrack(Base):
    """Each registered phone's replay counter and latest state. ``last_seq`` is kept for good (it
    refuses replays); the position columns are cleared after the fix retention."""

    __tablename__ = "phone_tracks"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64))
    last_seq: Mapped[int] = mapped_column(BigInteger)
    fix_at: Mapped[dt.datetime | None]
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    state: Mapped[PresenceState | None] = mapped_column(enum_column(PresenceState))
    place: Mapped[PresenceState | None] = mapped_column(enum_column(PresenceState))
    place_since: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime]


class PhoneFix(Base):
    """An accepted fix: people's locations, so kept hours, not years (const.FIX_RETENTION_H)."""

    __tablename__ = "phone_fixes"
    __table_args__ = (Index("ix_phone_fixes_fix_at", "fix_at"), Index("ix_phone_fixes_device", "device_id", "fix_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    person_id: Mapped[str] = mapped_column(String(64))
    fix_at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime]
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    accuracy_m: Mapped[float] = mapped_column(Float)
    state: Mapped[PresenceState] = mapped_column(enum_column(PresenceState))


# -- staff accounts: who may log in to the dashboard (edge.staff) ---------------------------------
# Local data, like the door's: a roster sync never touches this table.


class StaffRole(enum.StrEnum):
    DIRECTOR = "director"  # everything, including sync, unlocking a PIN pad, badges, the geofence
    TEACHER = "teacher"  # sees everything, and checks children in or out by hand


class StaffAccount(Base):
    """A dashboard login. Only an argon2id hash of the password is kept."""

    __tablename__ = "staff_accounts"

    username: Mapped[str] = mapped_column(String(32), primary_key=True)  # lower case
    role: Mapped[StaffRole] = mapped_column(enum_column(StaffRole))
    password_hash: Mapped[str] = mapped_column(String(200))
    # The roster's teacher this login is, when it is one: overrides are then recorded as that
    # teacher; otherwise as the account itself ("user:<username>").
    teacher_id: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime]
    # Changed with the password: a session opened before no longer counts.
    password_changed_at: Mapped[dt.datetime]
