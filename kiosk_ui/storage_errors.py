"""A write the disk refused (full, or remounted read-only), turned into an answer a screen can show.

Any route can hit it (a check-in, a wrong PIN's audit row, a staff override, a phone's ping), so
it is one exception handler for the app rather than a ``try`` in each route. The transaction was
rolled back whole: nothing is half written. The station hears ``503`` with the usual refusal
body (``reason`` a ``StorageFault`` code, ``message`` plain words in its language) and
``Retry-After``; staff hear it at once on the live channel, and ``StorageAlarm`` keeps it in
memory (on /healthz) until a write succeeds again (``edge.disk.DiskWatch``). Errors that are not
a storage fault are raised on unchanged.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError

from edge.disk import ALERT_STORAGE, StorageFault, storage_fault
from kiosk_ui import presenter
from kiosk_ui.services import Services

log = logging.getLogger(__name__)

RETRY_AFTER_S = 30  # a kiosk may try again; staff are the ones who can fix it


def note_storage_fault(services: Services, fault: StorageFault, where: str) -> None:
    """Count one refused write; the first of a run is logged and announced to staff."""
    if services.storage.failed(fault, dt.datetime.now(dt.UTC)):
        log.error("a write failed: storage %s (%s); the door refuses check-ins until it recovers", fault.value, where)
        message = presenter.fault_message(fault, "en").replace(" tell staff.", " see Sync & health.")
        services.events.publish("alert", {"kind": ALERT_STORAGE, "fault": fault.value, "message": f"Staff: {message}"})


async def storage_error(request: Request, exc: Exception) -> Response:
    services: Services = request.app.state.services
    db_path = services.store.engine.url.database if services.store.is_sqlite else None
    fault = storage_fault(exc, Path(db_path).parent if db_path else services.config.data_dir)
    if fault is None:
        raise exc
    note_storage_fault(services, fault, request.url.path)
    body = {
        "reason": fault.value,
        "message": presenter.fault_message(fault, presenter.answer_language(request.headers.get("accept-language"))),
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def install(app: FastAPI) -> None:
    app.add_exception_handler(DBAPIError, storage_error)
