"""Who may call what, checked from the app's own route table, so a new route cannot be forgotten:
every route declares an access level, the level is enforced, every dashboard route refuses
without a session, every dashboard form refuses without its CSRF token. And the login itself."""

from __future__ import annotations

import re
from http.cookies import Morsel, SimpleCookie
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from kiosk_ui import auth
from kiosk_ui.auth import Access, declared_access, dependency_calls, require_director, require_staff
from kiosk_ui.deps import station_caller
from tests.kiosk_ui.dashboard_helpers import PASSWORD, Dash, csrf_of, dash, login

__all__ = ["dash"]  # the fixture, imported

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def session_cookie(headers: list[str]) -> Morsel[str]:
    for header in headers:
        jar: SimpleCookie = SimpleCookie(header)
        if auth.SESSION_COOKIE in jar:
            return jar[auth.SESSION_COOKIE]
    raise AssertionError(f"no session cookie in {headers}")


def concrete(path: str) -> str:
    """A path of the route table with its parameters filled in."""
    return re.sub(r"\{[^}]+\}", "1", path)


def api_routes(dash: Dash) -> list[Any]:
    """The app's FastAPI routes as served (with the tags and dependencies of their routers)."""
    return [route for route in auth.route_table(dash.app.routes) if isinstance(route.original_route, APIRoute)]


def staff_requests(dash: Dash) -> list[tuple[str, str]]:
    return sorted(
        (method, concrete(route.path))
        for route in api_routes(dash)
        if declared_access(route) is Access.STAFF
        for method in route.methods
        if method != "HEAD"
    )


def test_every_route_declares_an_access_level(dash: Dash) -> None:
    assert auth.routes_without_access(dash.app.routes) == []
    levels = {route.path: declared_access(route) for route in auth.route_table(dash.app.routes)}
    assert levels["/healthz"] is levels["/metrics"] is levels["/static"] is levels["/login"] is Access.PUBLIC
    assert levels["/api/v1/identify"] is levels["/api/v1/attendance"] is levels["/api/v1/live"] is Access.STATION
    assert levels["/dashboard"] is levels["/dashboard/live"] is levels["/logout"] is Access.STAFF


def test_a_route_without_a_level_is_caught(dash: Dash) -> None:
    @dash.app.get("/forgotten")
    def forgotten() -> str:
        return "oops"

    assert auth.routes_without_access(dash.app.routes) == ["/forgotten"]


def test_each_declared_level_is_enforced(dash: Dash) -> None:
    wrong = []
    for route in api_routes(dash):
        level, calls = declared_access(route), dependency_calls(route)
        if level is Access.STAFF and require_staff not in calls:
            wrong.append(f"{route.path}: staff without require_staff")
        if level is Access.STATION and station_caller not in calls:
            wrong.append(f"{route.path}: station without station_caller")
        if level in (Access.PUBLIC, Access.PHONE) and calls & {require_staff, station_caller}:
            wrong.append(f"{route.path}: {level} but guarded: declare its real level")
        if (route.path.startswith("/dashboard") or require_staff in calls) and level is not Access.STAFF:
            wrong.append(f"{route.path}: a dashboard route not declared staff")
    assert wrong == []
    assert len(staff_requests(dash)) >= 20


def test_every_dashboard_route_refuses_without_a_session(dash: Dash) -> None:
    for cookie in (None, "forged-session-id"):
        dash.client.cookies.clear()
        if cookie:
            dash.client.cookies.set(auth.SESSION_COOKIE, cookie)
        for method, path in staff_requests(dash):
            page = dash.client.request(method, path, headers={"accept": "text/html"}, follow_redirects=False)
            if method == "GET":
                assert (page.status_code, page.headers.get("location", "").split("?")[0]) == (303, "/login"), path
            else:
                assert page.status_code == 401, (method, path)
            api = dash.client.request(method, path, headers={"accept": "application/json"}, follow_redirects=False)
            assert api.status_code == 401, (method, path)
            assert "Mai" not in page.text + api.text


def test_every_dashboard_form_refuses_without_its_csrf_token(dash: Dash) -> None:
    token = login(dash.client, "maria")
    posts = [path for method, path in staff_requests(dash) if method in UNSAFE]
    assert "/dashboard/children/1/fix" in posts
    assert "/logout" in posts
    for path in posts:
        for data in ({}, {"csrf_token": "not-the-token"}, {"csrf_token": token + "x"}):
            answer = dash.client.post(path, data=data, follow_redirects=False)
            assert answer.status_code == 403, (path, data)
    # The header works too (for scripts), and the right token passes the check.
    assert dash.client.post("/logout", headers={"x-csrf-token": token}, follow_redirects=False).status_code == 303


def test_director_routes_refuse_a_teacher(dash: Dash) -> None:
    director_only = sorted(
        concrete(route.path) for route in api_routes(dash) if require_director in dependency_calls(route)
    )
    assert "/dashboard/sync/run" in director_only
    token = login(dash.client, "lee")
    for path in director_only:
        answer = dash.client.post(path, data={"csrf_token": token}, follow_redirects=False)
        assert answer.status_code == 403, path
        assert "director" in answer.json()["detail"]


def test_login_sets_a_strict_httponly_cookie_and_rotates_it(dash: Dash) -> None:
    dash.client.cookies.set(auth.SESSION_COOKIE, "planted-by-someone")
    page = dash.client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    answer = dash.client.post(
        "/login",
        data={"username": "maria", "password": PASSWORD, "csrf_token": token.group(1), "next": "/dashboard/audit"},
        follow_redirects=False,
    )
    assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard/audit")
    cookie = session_cookie(answer.headers.get_list("set-cookie"))
    assert cookie["httponly"]
    assert cookie["samesite"] == "strict"
    assert not cookie["secure"]
    first = cookie.value
    assert first != "planted-by-someone"
    assert len(first) >= 40
    # Logged in already, /login sends the browser on; a login form from another tab starts a new
    # session all the same, and ends the one the browser had.
    assert dash.client.get("/login", follow_redirects=False).headers["location"] == "/dashboard"
    dash.client.cookies.clear()
    token = re.search(r'name="csrf_token" value="([^"]+)"', dash.client.get("/login").text)
    assert token
    dash.client.cookies.set(auth.SESSION_COOKIE, first)  # the form posted with the old session beside it
    answer = dash.client.post(
        "/login",
        data={"username": "maria", "password": PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    second = session_cookie(answer.headers.get_list("set-cookie")).value
    assert second != first
    dash.client.cookies.clear()
    dash.client.cookies.set(auth.SESSION_COOKIE, first)
    assert dash.client.get("/dashboard/api/now").status_code == 401
    dash.client.cookies.set(auth.SESSION_COOKIE, second)
    assert dash.client.get("/dashboard/api/now").status_code == 200


def test_the_cookie_is_secure_over_https(dash: Dash) -> None:
    with TestClient(dash.app, base_url="https://hub.local") as client:
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        answer = client.post(
            "/login",
            data={"username": "maria", "password": PASSWORD, "csrf_token": token.group(1)},
            follow_redirects=False,
        )
    assert session_cookie(answer.headers.get_list("set-cookie"))["secure"]


def test_the_login_form_needs_its_own_token(dash: Dash) -> None:
    dash.client.get("/login")
    answer = dash.client.post("/login", data={"username": "maria", "password": PASSWORD, "csrf_token": "made-up"})
    assert answer.status_code == 403
    assert auth.SESSION_COOKIE not in answer.cookies


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "\\\\evil", "dashboard"])
def test_login_never_sends_the_browser_elsewhere(dash: Dash, target: str) -> None:
    page = dash.client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    answer = dash.client.post(
        "/login",
        data={"username": "maria", "password": PASSWORD, "csrf_token": token.group(1), "next": target},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/dashboard"


def test_wrong_passwords_lock_the_login_out(dash: Dash) -> None:
    page = dash.client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    codes = [
        dash.client.post(
            "/login", data={"username": "maria", "password": "wrong password", "csrf_token": token.group(1)}
        ).status_code
        for _ in range(6)
    ]
    assert codes == [401, 401, 401, 401, 429, 429]
    locked = dash.client.post("/login", data={"username": "maria", "password": PASSWORD, "csrf_token": token.group(1)})
    assert locked.status_code == 429
    assert "Try again in 5 minutes" in locked.text


def test_logout_ends_the_session(dash: Dash) -> None:
    token = login(dash.client, "maria")
    session_id = dash.client.cookies.get(auth.SESSION_COOKIE)
    answer = dash.client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/login")
    dash.client.cookies.set(auth.SESSION_COOKIE, session_id or "")
    assert dash.client.get("/dashboard/api/now").status_code == 401


def test_a_password_change_or_a_disabled_account_ends_open_sessions(dash: Dash) -> None:
    sessions = auth.sessions_of(dash.app)
    ticks = [1000.0]
    sessions.monotonic = lambda: ticks[0]
    login(dash.client, "maria")
    dash.services.staff.set_active("maria", False)
    assert dash.client.get("/dashboard/api/now").status_code == 200  # read back at most every 5 s
    ticks[0] += 5
    assert dash.client.get("/dashboard/api/now").status_code == 401
    dash.services.staff.set_active("maria", True)
    sessions.recheck_s = 0
    login(dash.client, "maria")
    assert dash.client.get("/dashboard/api/now").status_code == 200
    dash.services.staff.set_password("maria", "a brand new password")
    assert dash.client.get("/dashboard/api/now").status_code == 401
    login(dash.client, "lee")
    dash.services.staff.set_active("lee", False)
    assert dash.client.get("/dashboard/api/now").status_code == 401


def test_pages_carry_a_strict_content_security_policy(dash: Dash) -> None:
    login(dash.client, "maria")
    for path in ("/login", "/dashboard", "/dashboard/reports"):
        headers = dash.client.get(path, follow_redirects=False).headers
        if path == "/login":
            assert headers.get("location") == "/dashboard"  # already logged in
            continue
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert headers["cache-control"] == "no-store"
        assert headers["x-frame-options"] == "DENY"
    assert csrf_of(dash.client)
