"""The camera scanners' health: ``POST /api/v1/stations/{station_id}/scanner`` (docs/scanner.md).

Each scanner process (``checkin-edge scan``) reports every 10 s and on each change of state:
frames per second, the last frame, the last code read. The hub keeps the last report of each
station in memory (a restart forgets them; the next report, at most 10 s later, brings them
back) and announces it on the live channel as kind ``scanner``, so a dashboard sees a camera
go dark as it happens. ``GET`` the same path answers the last report and whether it is stale.

Who may report is the station API's rule: the hub's own scanner over loopback, a remote one
with its station token, for its own station only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request

from edge import const
from kiosk_ui.deps import ServicesDep, StationDep, station_caller
from kiosk_ui.schemas import BODY_RESPONSES, STATION_RESPONSES, ErrorOut, ScannerReport, ScannerStatusOut

router = APIRouter(prefix="/api/v1", dependencies=[Depends(station_caller)], max_body_size=const.API_MAX_BODY_BYTES)
router.tags = ["station"]

StationPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="The station (door)")]

# Reports are kept per station; a flood of made-up station ids from loopback must not grow memory.
MAX_STATIONS = 256


@dataclass(frozen=True)
class _Held:
    report: dict[str, Any]
    received_at: dt.datetime


def _board(app: FastAPI) -> dict[str, _Held]:
    """The last report per station, on the app (one per hub process; handlers run on its loop)."""
    board: dict[str, _Held] | None = getattr(app.state, "scanner_board", None)
    if board is None:
        board = {}
        app.state.scanner_board = board
    return board


def _status(station_id: str, held: _Held, now: dt.datetime) -> dict[str, Any]:
    age = (now - held.received_at).total_seconds()
    return {
        "station_id": station_id,
        "received_at": held.received_at.isoformat().replace("+00:00", "Z"),
        "stale": age > const.SCAN_HEALTH_STALE_S,
        "report": held.report,
    }


def _check(caller_speaks: bool, station_id: str) -> None:
    if not caller_speaks:
        raise HTTPException(status_code=401, detail=f"This station token or screen is not {station_id}'s")


@router.post(
    "/stations/{station_id}/scanner",
    response_model=ScannerStatusOut,
    responses={**STATION_RESPONSES, **BODY_RESPONSES},
    summary="A camera scanner's health report: frames per second, last frame, last code read",
)
async def report_scanner(
    station_id: StationPath, body: ScannerReport, request: Request, services: ServicesDep, caller: StationDep
) -> dict[str, Any]:
    _check(caller.speaks_for(station_id), station_id)
    board = _board(request.app)
    if station_id not in board and len(board) >= MAX_STATIONS:
        # Forget the station heard from longest ago: a real door reports again within 10 s.
        del board[min(board, key=lambda key: board[key].received_at)]
    now = dt.datetime.now(dt.UTC)
    report = body.model_dump(mode="json")
    board[station_id] = _Held(report, now)
    services.events.publish("scanner", report, station_id=station_id)
    return _status(station_id, board[station_id], now)


@router.get(
    "/stations/{station_id}/scanner",
    response_model=ScannerStatusOut,
    responses={**STATION_RESPONSES, 404: {"model": ErrorOut, "description": "No scanner has reported for it"}},
    summary="The last health report of a station's camera scanner",
)
async def scanner_status(station_id: StationPath, request: Request, caller: StationDep) -> dict[str, Any]:
    _check(caller.speaks_for(station_id), station_id)
    held = _board(request.app).get(station_id)
    if held is None:
        raise HTTPException(status_code=404, detail=f"No scanner has reported for {station_id}")
    return _status(station_id, held, dt.datetime.now(dt.UTC))
