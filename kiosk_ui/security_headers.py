"""The browser-facing security headers, on every answer the hub sends.

One policy for the whole hub (kiosk, dashboard, JSON, static files, live streams, errors):
everything a page loads comes from the hub itself, no inline script or style (a roster name
that somehow got markup into a page still cannot run code), no page may be framed (a
touchscreen or a dashboard inside someone else's page could be clicked through), no
``Referer`` leaves a page (kiosk and dashboard addresses carry station ids and filters), and
no answer is sniffed into another type.

A pure ASGI middleware, installed outermost: it only prepends a header list built once at
import, so the door's hot path pays one closure and one list concatenation per answer, not
Starlette's ``BaseHTTPMiddleware`` (a task and a stream per request). Outermost also means the
framework's own answers carry the headers: the 500 of an unhandled error, the 413 of a body
over the app's limit.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No ``data:`` images: icons, charts, the geofence drawing and badges are SVG inside the page.
# ``form-action 'self'``: the dashboard's forms post back here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
RAW_HEADERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in HEADERS.items()
)


class SecurityHeaders:
    """Prepends ``RAW_HEADERS`` to every HTTP answer's start message."""

    def __init__(self, app: ASGIApp, headers: tuple[tuple[bytes, bytes], ...] = RAW_HEADERS) -> None:
        self.app = app
        self.headers = list(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = self.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A new list: the response object's own raw_headers stay as they were.
                message["headers"] = headers + list(message.get("headers", ()))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Wraps the app's whole middleware stack, outside even the framework's error middleware
    (``add_middleware`` would sit inside it, and a 500 would go out bare)."""
    build = app.build_middleware_stack

    def build_with_headers() -> ASGIApp:
        return SecurityHeaders(build())

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]
