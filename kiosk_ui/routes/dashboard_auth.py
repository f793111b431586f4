"""Logging in and out of the dashboard: ``/login`` (public), ``/logout`` (staff, CSRF).

The login form carries its own CSRF token as a double-submit cookie (there is no session yet to
keep one in); a successful login starts a new session with a new random id, so an id planted
before the login is worth nothing after it. Wrong passwords are limited twice: per (username,
client) by ``edge.staff.LoginThrottle``, and per client over all usernames by
``kiosk_ui.throttle`` (both ``429`` with ``Retry-After``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edge.staff import LoginRefused
from kiosk_ui import auth, throttle
from kiosk_ui.auth import Access, StaffDep
from kiosk_ui.routes.dashboard_base import render, services_of, staff_router
from kiosk_ui.throttle import throttles_of

public = APIRouter(include_in_schema=False)
public.tags = [Access.PUBLIC]
router = staff_router()


def _login_page(request: Request, next_path: str, *, error: str | None = None, status_code: int = 200) -> Response:
    token = auth.login_csrf_token(request)
    response = render(
        request,
        "dashboard/login.html",
        {"next": next_path, "error": error, "login_csrf": token},
        status_code=status_code,
    )
    auth.set_login_csrf_cookie(response, request, token)
    return response


def _too_many(request: Request, target: str, wait_s: int) -> Response:
    minutes = max(1, round(wait_s / 60))
    error = f"Too many wrong passwords. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
    response = _login_page(request, target, error=error, status_code=429)
    response.headers["Retry-After"] = str(wait_s)
    return response


@public.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str | None, Query(max_length=500)] = None) -> Response:
    if auth.current_session(request) is not None:
        return RedirectResponse(auth.safe_next(next), status_code=303)
    return _login_page(request, auth.safe_next(next))


# A plain ``def``: checking an argon2id hash is ~0.1 s of CPU, run in the threadpool.
@public.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=500)] = "/dashboard",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    target = auth.safe_next(next)
    client = request.client.host if request.client else "unknown"
    # Per client, whatever the usernames (a password sprayed over every name): checked before
    # anything else, so a blocked client costs no password hash either.
    per_client, client_key = throttles_of(request.app).login, throttle.client_key(client)
    wait = per_client.retry_after(client_key)
    if wait is not None:
        return _too_many(request, target, wait)
    if not auth.login_csrf_ok(request, csrf_token):
        return _login_page(request, target, error="The login form had expired. Please try again.", status_code=403)
    result = services_of(request).staff.authenticate(username, password, client)
    if isinstance(result, LoginRefused):
        wait = per_client.failure(client_key)
        if result.locked or wait is not None:
            return _too_many(request, target, max(result.retry_after_s or 0, wait or 0) or 60)
        return _login_page(request, target, error="Wrong username or password.", status_code=401)
    sessions = auth.sessions_of(request.app)
    old = request.cookies.get(auth.SESSION_COOKIE)
    if old:
        sessions.drop(old)
    session = sessions.create(result)
    response = RedirectResponse(target, status_code=303)
    auth.set_session_cookie(response, request, session)
    response.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, session: StaffDep) -> Response:
    auth.sessions_of(request.app).drop(session.id)
    response = RedirectResponse("/login", status_code=303)
    auth.clear_session_cookie(response)
    return response
