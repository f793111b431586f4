"""Logging in and out of the dashboard: ``/login`` (public), ``/logout`` (staff, CSRF).

The login form carries its own CSRF token as a double-submit cookie (there is no session yet to
keep one in); a successful login starts a new session with a new random id, so an id planted
before the login is worth nothing after it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edge.staff import LoginRefused
from kiosk_ui import auth
from kiosk_ui.auth import Access, StaffDep
from kiosk_ui.routes.dashboard_base import render, services_of, staff_router

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
    if not auth.login_csrf_ok(request, csrf_token):
        return _login_page(request, target, error="The login form had expired. Please try again.", status_code=403)
    client = request.client.host if request.client else "unknown"
    result = services_of(request).staff.authenticate(username, password, client)
    if isinstance(result, LoginRefused):
        if result.locked:
            minutes = max(1, round((result.retry_after_s or 60) / 60))
            error = f"Too many wrong passwords. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
            return _login_page(request, target, error=error, status_code=429)
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
