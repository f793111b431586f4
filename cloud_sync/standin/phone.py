"""The stand-in cloud's app codes: what a payer's phone app would show at the door.

``issue_app_code`` signs an app code (edge.tokens' format) with the cloud key the generated
roster advertises in ``keys`` (``cloud_private_key(seed)``, kid ``cloud-2026``), so the demo and
the tests hold real codes. ``GET /demo/phone/{person_id}`` is a page a person can hold up to a
real camera: the payer's current code as a QR, reloaded every 30 s (a plain meta refresh: no
script, nothing from a CDN); ``GET /demo/phone/{person_id}/code.json`` is the same code as JSON.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import segno
from fastapi import FastAPI, Request, Response

from cloud_sync.standin.generator import cloud_private_key
from edge import const
from edge.tokens import TokenKind, parse, sign_token

if TYPE_CHECKING:
    from cloud_sync.standin.server import StandinState

PHONE_REFRESH_S = 30  # a new code well before the last one expires (90 s)


def issue_app_code(seed: int, person_id: str, now: dt.datetime, ttl_s: float = const.APP_CODE_TTL_S) -> str:
    """An app code for ``person_id``, valid from ``now`` for ``ttl_s``, signed as the cloud of
    ``generate_roster(seed=seed)`` would sign it. It does not look at the roster: a test can make
    one for a non-payer, to prove the appliance refuses it."""
    issued = now.replace(microsecond=0)
    return sign_token(cloud_private_key(seed), TokenKind.APP, person_id, issued, issued + dt.timedelta(seconds=ttl_s))


def _payer(roster: dict[str, Any] | None, person_id: str) -> dict[str, Any] | None:
    for family in (roster or {}).get("families") or []:
        for person in family.get("persons") or []:
            if isinstance(person, dict) and person.get("id") == person_id and person.get("payer") is True:
                return person
    return None


def _name(person: dict[str, Any]) -> str:
    return f"{person.get('first_name') or ''} {person.get('last_name') or ''}".strip()


def _not_found(detail: str) -> Response:
    return Response(json.dumps({"detail": detail}), status_code=404, media_type="application/json")


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{refresh}">
<title>{name}: app code</title>
<style>
body {{ font-family: sans-serif; text-align: center; margin: 1rem; background: #f4f4f4; }}
.code {{ background: #fff; display: inline-block; padding: 1rem; border-radius: 1rem; }}
.code svg {{ width: min(80vw, 80vh); height: auto; }}
p {{ color: #444; }}
</style></head>
<body>
<h1>{name}</h1>
<div class="code">{svg}</div>
<p>Hold this to the camera at the door. Valid until {expires} UTC; a new code comes every {refresh} s.</p>
</body></html>
"""


def add_phone_routes(app: FastAPI, current: Callable[[Request], StandinState]) -> None:
    """The demo phone's routes, on the stand-in's app (``current`` finds the state it serves)."""

    def code_for(request: Request, person_id: str) -> tuple[dict[str, Any], str, dt.datetime] | Response:
        state = current(request)
        if state.seed is None:
            return _not_found("this stand-in cloud was started without a seed: it issues no app codes")
        person = _payer(state.roster, person_id)
        if person is None:
            return _not_found("no payer with that id")
        token = issue_app_code(state.seed, person_id, dt.datetime.now(dt.UTC))
        parsed = parse(token)
        assert parsed is not None
        return person, token, parsed.expires_at

    @app.get("/demo/phone/{person_id}")
    async def phone_page(person_id: str, request: Request) -> Response:
        found = code_for(request, person_id)
        if isinstance(found, Response):
            return found
        person, token, expires = found
        svg = segno.make_qr(token, error="m", boost_error=False).svg_inline(scale=4, border=4, omitsize=True)
        body = _PAGE.format(
            refresh=PHONE_REFRESH_S, name=html.escape(_name(person)), svg=svg, expires=expires.strftime("%H:%M:%S")
        )
        # Never cached: a cached page would show a code that has expired, or been used.
        return Response(body, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    @app.get("/demo/phone/{person_id}/code.json")
    async def phone_code(person_id: str, request: Request) -> Response:
        found = code_for(request, person_id)
        if isinstance(found, Response):
            return found
        _person, token, expires = found
        body = json.dumps({"token": token, "expires_at": _iso(expires)})
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})
