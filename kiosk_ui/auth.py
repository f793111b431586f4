"""Who may call what: every route's declared access level, and staff sessions.

Access levels. Each router (or route) declares one in its tags, and a test walks
``app.routes`` and fails on a route without one, or whose level is not enforced:

- ``public``  — anyone: the login page, /healthz, /metrics, static files, the kiosk shell page;
- ``phone``   — anyone, but the body must carry a registered phone's signature (checked inside);
- ``station`` — the hub's own screens (loopback), a station token or a paired screen
  (``kiosk_ui.deps.station_caller``);
- ``staff``   — a logged-in staff session (``require_staff``): the whole dashboard. Unsafe
  methods (POST…) also need the session's CSRF token, checked by the same dependency, so a
  dashboard form cannot forget it.

Where a route carries several, the strictest counts (``declared_access``).

Sessions live in memory only (``SessionStore``): a page view writes nothing to the SD card,
and a restart logs everyone out. The cookie holds a random id (HttpOnly, SameSite=Strict,
Secure on https), a new one at each login; each session has its own CSRF token.
"""

from __future__ import annotations

import enum
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

import fastapi.routing
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from edge import const
from edge.models import StaffRole
from edge.staff import StaffUser
from kiosk_ui.services import Services

SESSION_COOKIE = "staff_session"
LOGIN_CSRF_COOKIE = "login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Access(enum.StrEnum):
    """Declared in a router's (or route's) tags; ordered from open to strict."""

    PUBLIC = "public"
    PHONE = "phone"
    STATION = "station"
    STAFF = "staff"


_STRICTNESS = {level: rank for rank, level in enumerate(Access)}
# Framework routes with no tags of their own: the schema of the station API (no data in it)
# and the static files (CSS, JS, fonts).
PUBLIC_FRAMEWORK_PATHS = frozenset({"/openapi.json", "/static"})


def route_table(routes: Iterable[BaseRoute]) -> list[Any]:
    """Every route as the app serves it, with the tags and dependencies of the routers it was
    included through. FastAPI 0.16x keeps included routers unflattened in ``app.routes`` and
    walks them with ``iter_route_contexts``; older versions flatten them there already."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(iterate(list(routes))) if iterate is not None else list(routes)


def declared_access(route: Any) -> Access | None:
    """The access level a route declares (the strictest of its tags), or None."""
    tags = getattr(route, "tags", None)
    if tags is None:  # not a FastAPI route: a Mount, the OpenAPI document
        return Access.PUBLIC if getattr(route, "path", None) in PUBLIC_FRAMEWORK_PATHS else None
    levels = [Access(tag) for tag in tags if tag in Access.__members__.values()]
    return max(levels, key=_STRICTNESS.__getitem__) if levels else None


def dependency_calls(route: Any) -> set[Callable[..., Any]]:
    """Every dependency function a route runs (router-level ones included), to check a declared
    level is actually enforced."""
    found: set[Callable[..., Any]] = set()
    stack = [getattr(route, "dependant", None)]
    while stack:
        dependant = stack.pop()
        if dependant is None:
            continue
        if dependant.call is not None:
            found.add(dependant.call)
        stack.extend(dependant.dependencies)
    return found


def routes_without_access(routes: Iterable[BaseRoute]) -> list[str]:
    """The paths of routes that declare no access level."""
    return [str(getattr(route, "path", route)) for route in route_table(routes) if declared_access(route) is None]


# -- sessions -----------------------------------------------------------------------------------


@dataclass
class StaffSession:
    id: str
    user: StaffUser
    csrf: str
    created: float  # time.monotonic()
    last_seen: float
    account_checked: float = 0.0  # when the account was last read back (see current_session)

    @property
    def is_director(self) -> bool:
        return self.user.role is StaffRole.DIRECTOR


@dataclass
class SessionStore:
    """Server-side sessions in memory, oldest evicted first past ``max_sessions``."""

    idle_s: float = const.STAFF_SESSION_IDLE_S
    max_age_s: float = const.STAFF_SESSION_MAX_S
    max_sessions: int = const.STAFF_SESSIONS_MAX
    # How stale the account behind a session may be: a password change or a disabled account
    # (`checkin-edge user`, another process) ends its sessions within this long, and a page
    # view costs no account read in between.
    recheck_s: float = 5.0
    monotonic: Callable[[], float] = time.monotonic
    _sessions: OrderedDict[str, StaffSession] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self, user: StaffUser) -> StaffSession:
        now = self.monotonic()
        session = StaffSession(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str) -> StaffSession | None:
        now = self.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.last_seen > self.idle_s or now - session.created > self.max_age_s:
                del self._sessions[session_id]
                return None
            session.last_seen = now
            return session

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)


def sessions_of(app: FastAPI) -> SessionStore:
    store: SessionStore | None = getattr(app.state, "staff_sessions", None)
    if store is None:
        store = app.state.staff_sessions = SessionStore()
    return store


class LoginRequired(Exception):
    """No valid session: a page sends the browser to the login page, an API call gets 401."""


class CsrfRejected(Exception):
    pass


class DirectorOnly(Exception):
    pass


def wants_html(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def safe_next(path: str | None) -> str:
    """Where to go after the login: only a path on this hub (never ``//elsewhere``)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/dashboard"
    return path


def _login_required(request: Request, _exc: Exception) -> Response:
    if wants_html(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    return JSONResponse({"detail": "Log in to the dashboard first"}, status_code=401)


def _csrf_rejected(_request: Request, _exc: Exception) -> Response:
    return JSONResponse(
        {"detail": "This form has expired or did not come from the dashboard: reload the page and try again"},
        status_code=403,
    )


def _director_only(_request: Request, _exc: Exception) -> Response:
    return JSONResponse({"detail": "Only a director may do this"}, status_code=403)


def install(app: FastAPI) -> None:
    """The session store and the answers for a missing session, CSRF token or role."""
    sessions_of(app)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(CsrfRejected, _csrf_rejected)
    app.add_exception_handler(DirectorOnly, _director_only)


def current_session(request: Request) -> StaffSession | None:
    """The caller's session, if any: also checks the account is still active with the same password
    (``user passwd`` or ``user disable`` in another process ends sessions at once)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    store = sessions_of(request.app)
    session = store.get(session_id)
    if session is None:
        return None
    if store.monotonic() - session.account_checked < store.recheck_s:
        return session
    services: Services = request.app.state.services
    account = services.staff.get(session.user.username)
    if account is None or not account.active or account.password_changed_at != session.user.password_changed_at:
        store.drop(session_id)
        return None
    session.user = account  # a role or teacher link changed since the login counts now
    session.account_checked = store.monotonic()
    return session


async def require_staff(request: Request) -> StaffSession:
    """The router-level dependency of the dashboard: a session, and for a POST its CSRF token."""
    session = current_session(request)
    if session is None:
        raise LoginRequired
    if request.method in UNSAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()  # Starlette keeps it: the handler's Form() fields read the same
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise CsrfRejected
    request.state.staff = session
    return session


async def require_director(session: Annotated[StaffSession, Depends(require_staff)]) -> StaffSession:
    if not session.is_director:
        raise DirectorOnly
    return session


StaffDep = Annotated[StaffSession, Depends(require_staff)]
DirectorDep = Annotated[StaffSession, Depends(require_director)]


# -- cookies --------------------------------------------------------------------------------------


def set_session_cookie(response: Response, request: Request, session: StaffSession) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


def login_csrf_token(request: Request) -> str:
    """The login form's token: a double-submit cookie (no session exists yet to keep it in)."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)


def set_login_csrf_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def login_csrf_ok(request: Request, sent: str | None) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    return bool(cookie and sent and hmac.compare_digest(cookie.encode(), sent.encode()))
