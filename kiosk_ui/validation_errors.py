"""A body or parameter that fails validation, answered ``422`` without echoing what was sent.

FastAPI's own handler puts each error's ``input`` (and ``ctx``) in the answer. Two things go
wrong with that, both found by fuzzing the station API (docs/station-api.md, "Fuzzing"):

- the input is not always JSON: a body of ``NaN`` or ``1e400`` parses to a float JSON cannot
  carry, and a ``"\\ud800"`` escape to a string UTF-8 cannot encode, so rendering the 422
  raised and the station heard ``500``;
- the input can be a secret: a body sent as ``text/plain`` is one string, PIN included, and
  the 422 read it back to whoever sent it.

So the answer keeps FastAPI's shape (``{"detail": [{"type", "loc", "msg"}]}``, the
``HTTPValidationError`` of the OpenAPI document) with only where and why: enough to fix a
request, nothing of its content.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response


def _plain(value: object) -> str:
    # Messages are pydantic's own sentences, but a custom validator's may quote the input: keep
    # them encodable whatever they hold.
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _where(loc: tuple[Any, ...]) -> list[str | int]:
    return [part if isinstance(part, int) else _plain(part) for part in loc]


async def validation_error(request: Request, exc: Exception) -> Response:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "type": _plain(error.get("type", "")),
            "loc": _where(tuple(error.get("loc", ()))),
            "msg": _plain(error.get("msg", "")),
        }
        for error in errors
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
