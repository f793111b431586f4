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

from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


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


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``, for a route that takes the request alone.

    What FastAPI does for a body parameter, at a fraction of its cost: on the door's hot path its
    solved parameters cost more than the check-in itself (docs/door.md, "Where the time goes").
    A body that is missing, not sent as JSON, or not the model raises the same
    ``RequestValidationError`` FastAPI would, so it is the same 422 (body-free) as everywhere.
    The route documents its body with ``openapi_extra=body_schema(model)`` (kiosk_ui.schemas)."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    if not _is_json(request.headers.get("content-type", "")):
        # As FastAPI: anything else is a string, and a string is not the object the model wants.
        raise RequestValidationError(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                }
            ]
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False)]
        ) from None


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
