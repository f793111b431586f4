"""Staff accounts: who may log in to the dashboard, with which role.

Passwords are kept only as argon2id hashes (argon2-cffi's RFC 9106 low-memory profile). A
login is refused the same way for an unknown name as for a wrong password, and costs the same
time: a hash is checked either way, so nobody can probe which usernames exist.

Too many wrong passwords for one username from one client lock that pair out for a while
(``LoginThrottle``). The count lives in memory: a wrong password costs no disk write (SD card),
and a lockout is audited once. A restart forgets the count; an attacker gains a handful of
guesses per restart, against passwords of ten characters or more.

No web code here: ``kiosk_ui.auth`` keeps the sessions.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from edge import audit, const
from edge.models import StaffAccount, StaffRole, Teacher
from edge.policy import RefusalReason
from edge.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
# The prefix of an account's id where the audit log and attendance name it as the actor.
ACCOUNT_PREFIX = "user:"


class StaffError(ValueError):
    """A request about accounts that cannot be done; the message says why, in plain words."""


@dataclass(frozen=True)
class StaffUser:
    username: str
    role: StaffRole
    teacher_id: str | None  # the roster's teacher this login is, if any
    teacher_name: str | None
    active: bool
    created_at: dt.datetime
    password_changed_at: dt.datetime

    @property
    def is_director(self) -> bool:
        return self.role is StaffRole.DIRECTOR

    @property
    def actor_id(self) -> str:
        """Who the audit log and attendance name: the linked teacher, or the account itself."""
        return self.teacher_id or f"{ACCOUNT_PREFIX}{self.username}"

    @property
    def display_name(self) -> str:
        return self.teacher_name or self.username


@dataclass(frozen=True)
class LoginRefused:
    locked: bool  # False: a wrong username or password (never said which)
    retry_after_s: int | None = None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def normalize_username(username: str) -> str:
    return username.strip().lower()


def check_username(username: str) -> str:
    name = normalize_username(username)
    if not USERNAME_RE.fullmatch(name):
        raise StaffError(
            f"{username!r} is not a usable username: 1 to 32 letters, digits, dots, dashes or underscores, "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < const.STAFF_PASSWORD_MIN_CHARS:
        raise StaffError(f"The password needs at least {const.STAFF_PASSWORD_MIN_CHARS} characters")
    if len(password) > const.STAFF_PASSWORD_MAX_CHARS:
        raise StaffError(f"The password may have at most {const.STAFF_PASSWORD_MAX_CHARS} characters")
    return password


class LoginThrottle:
    """Counts wrong passwords per (username, client) in memory; ``max_failures`` within
    ``lockout_s`` lock that pair for ``lockout_s``. Other clients can still log in as that user:
    a colleague mistyping on the office PC must not lock the director's tablet out."""

    def __init__(
        self,
        *,
        max_failures: int = const.STAFF_LOGIN_MAX_FAILURES,
        lockout_s: float = const.STAFF_LOGIN_LOCKOUT_S,
        monotonic: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.monotonic = monotonic
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._locked_until: dict[tuple[str, str], float] = {}

    def retry_after(self, username: str, client: str) -> int | None:
        key = (username, client)
        now = self.monotonic()
        with self._lock:
            until = self._locked_until.get(key)
            if until is None:
                return None
            if until <= now:
                del self._locked_until[key]
                return None
            return max(1, math.ceil(until - now))

    def failure(self, username: str, client: str) -> bool:
        """Count one wrong password; True when this one locked the pair out."""
        key = (username, client)
        now = self.monotonic()
        with self._lock:
            recent = self._failures.setdefault(key, deque())
            while recent and now - recent[0] >= self.lockout_s:
                recent.popleft()
            recent.append(now)
            if len(recent) < self.max_failures:
                self._trim()
                return False
            recent.clear()
            self._locked_until[key] = now + self.lockout_s
            return True

    def success(self, username: str, client: str) -> None:
        with self._lock:
            self._failures.pop((username, client), None)

    def _trim(self) -> None:
        # A flood of made-up usernames must not grow memory without bound.
        while len(self._failures) > self.max_keys:
            self._failures.pop(next(iter(self._failures)))


class StaffAccounts:
    """Adds, lists and checks dashboard accounts. Each write is its own short transaction."""

    def __init__(
        self,
        store: Store,
        *,
        hasher: PasswordHasher | None = None,
        throttle: LoginThrottle | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.store = store
        self.hasher = hasher if hasher is not None else PasswordHasher()  # argon2id, RFC 9106 low-memory
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self.clock = clock
        # Checked against when the username is unknown, so that costs what a wrong password costs.
        # Made on first use: every CLI command builds this object, few of them log anyone in.
        self._dummy_hash: str | None = None

    # -- accounts -------------------------------------------------------------------------------

    def add(self, username: str, role: StaffRole | str, password: str, *, teacher_id: str | None = None) -> StaffUser:
        name = check_username(username)
        role = StaffRole(role)
        password_hash = self.hasher.hash(check_password(password))  # outside the writer's lock: ~0.1 s of CPU
        now = self.clock()
        with self.store.transaction() as session:
            if session.get(StaffAccount, name) is not None:
                raise StaffError(f"There is already an account called {name}")
            if teacher_id is not None and session.get(Teacher, teacher_id) is None:
                raise StaffError(f"No teacher {teacher_id} in the roster (see `checkin-edge roster show`)")
            session.add(
                StaffAccount(
                    username=name,
                    role=role,
                    password_hash=password_hash,
                    teacher_id=teacher_id,
                    active=True,
                    created_at=now,
                    password_changed_at=now,
                )
            )
        log.info("staff account %s added (%s)", name, role.value)
        user = self.get(name)
        assert user is not None
        return user

    def set_password(self, username: str, password: str) -> None:
        name = normalize_username(username)
        password_hash = self.hasher.hash(check_password(password))
        with self.store.transaction() as session:
            account = session.get(StaffAccount, name)
            if account is None:
                raise StaffError(f"No account called {name}")
            account.password_hash = password_hash
            # Sessions opened with the old password stop counting (kiosk_ui.auth compares this).
            account.password_changed_at = self.clock()
        log.info("staff account %s: password changed", name)

    def set_active(self, username: str, active: bool) -> None:
        name = normalize_username(username)
        with self.store.transaction() as session:
            account = session.get(StaffAccount, name)
            if account is None:
                raise StaffError(f"No account called {name}")
            account.active = active
        log.info("staff account %s %s", name, "enabled" if active else "disabled")

    def get(self, username: str) -> StaffUser | None:
        with self.store.read() as session:
            row = session.execute(
                select(StaffAccount, Teacher.first_name, Teacher.last_name)
                .outerjoin(Teacher, Teacher.id == StaffAccount.teacher_id)
                .where(StaffAccount.username == normalize_username(username))
            ).first()
        return None if row is None else _user(*row)

    def list(self) -> list[StaffUser]:
        with self.store.read() as session:
            rows = session.execute(
                select(StaffAccount, Teacher.first_name, Teacher.last_name)
                .outerjoin(Teacher, Teacher.id == StaffAccount.teacher_id)
                .order_by(StaffAccount.username)
            ).all()
        return [_user(*row) for row in rows]

    # -- logging in -----------------------------------------------------------------------------

    def authenticate(self, username: str, password: str, client: str) -> StaffUser | LoginRefused:
        """The account, or why not. ``client`` is the caller's address: the lockout is per pair."""
        name = normalize_username(username)[:64]
        retry_after = self.throttle.retry_after(name, client)
        if retry_after is not None:
            return LoginRefused(locked=True, retry_after_s=retry_after)
        with self.store.read() as session:
            account = session.get(StaffAccount, name) if USERNAME_RE.fullmatch(name) else None
            stored = account.password_hash if account is not None and account.active else None
        if self._verify(stored, password[: const.STAFF_PASSWORD_MAX_CHARS]):
            self.throttle.success(name, client)
            assert stored is not None
            if self.hasher.check_needs_rehash(stored):
                self._rehash(name, password)
            user = self.get(name)
            assert user is not None
            log.info("staff %s logged in from %s", name, client)
            return user
        if self.throttle.failure(name, client):
            self._audit_lockout(name, client)
            return LoginRefused(locked=True, retry_after_s=math.ceil(self.throttle.lockout_s))
        log.info("staff login refused for %s from %s", name, client)
        return LoginRefused(locked=False)

    def _verify(self, stored: str | None, password: str) -> bool:
        if stored is None and self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        try:
            return self.hasher.verify(stored or self._dummy_hash or "", password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def _rehash(self, name: str, password: str) -> None:
        """The hash was made with weaker settings than today's: redo it while the password is at hand."""
        new_hash = self.hasher.hash(password)
        with self.store.transaction() as session:
            account = session.get(StaffAccount, name)
            if account is not None:
                account.password_hash = new_hash  # the same password: sessions stay valid

    def _audit_lockout(self, name: str, client: str) -> None:
        now = self.clock()
        minutes = self.throttle.lockout_s / 60
        message = (
            f"Dashboard login for {name} locked for {minutes:.0f} min after "
            f"{self.throttle.max_failures} wrong passwords from {client}"
        )
        with self.store.transaction() as session:
            audit.append(
                [
                    audit.audit_row(
                        at=now,
                        action="login",
                        station_id=None,
                        method="password",
                        reason=RefusalReason.LOCKED,
                        rule=message,
                        actor_kind="account",
                        actor_id=f"{ACCOUNT_PREFIX}{name}",
                        detail={"client": client},
                    )
                ],
                db=session,
            )
        log.warning("%s", message)


def _user(account: StaffAccount, first: str | None, last: str | None) -> StaffUser:
    teacher_name = f"{first or ''} {last or ''}".strip() or None
    return StaffUser(
        username=account.username,
        role=account.role,
        teacher_id=account.teacher_id,
        teacher_name=teacher_name,
        active=account.active,
        created_at=account.created_at,
        password_changed_at=account.password_changed_at,
    )
