"""Sync & health: roster sync runs and the next ones, *Sync now*, the outbox to the cloud and
what it rejected, the clock, stations and scanners, PIN pad lockouts (unlock: directors)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from cloud_sync.outbox import outbox_status
from edge import const, reports
from edge.roster import recent_sync_runs
from kiosk_ui.auth import DirectorDep
from kiosk_ui.routes.dashboard_base import render, school, services_of, staff_router
from kiosk_ui.services import Services
from kiosk_ui.sync_now import ManualSync

router = staff_router()

StationId = Annotated[str, Path(max_length=64)]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def manual_sync(request: Request) -> ManualSync:
    runner: ManualSync | None = getattr(request.app.state, "manual_sync", None)
    if runner is None:
        services = services_of(request)
        runner = request.app.state.manual_sync = ManualSync(
            services.roster_sync, services.roster_source, services.events
        )
    return runner


@dataclass(frozen=True)
class ScannerRow:
    station_id: str
    report: dict[str, Any]  # as the scanner sent it (kiosk_ui.schemas.ScannerReport)
    received_at: dt.datetime
    stale: bool  # no report for a while: the scanner process is not running or cannot reach the hub


def _scanners(request: Request, now: dt.datetime) -> list[ScannerRow]:
    """The last health report of each camera scanner (kept in memory by kiosk_ui.routes.scanner)."""
    board: dict[str, Any] = getattr(request.app.state, "scanner_board", None) or {}
    return [
        ScannerRow(
            station_id,
            held.report,
            held.received_at,
            (now - held.received_at).total_seconds() > const.SCAN_HEALTH_STALE_S,
        )
        for station_id, held in sorted(board.items())
    ]


def last_event_id(services: Services) -> int:
    recent = services.events.since(0)
    return recent[-1].id if recent else 0


def _sync_context(request: Request) -> dict[str, Any]:
    services = services_of(request)
    now = _utc_now()
    _name, zone = school(services)
    with services.store.read() as session:
        runs = recent_sync_runs(session=session, limit=10)
        rejected = reports.rejected_events(session=session)
        stations = reports.stations(session=session, now=now, configured=services.config.station_tokens)
    return {
        "runs": runs,
        "next_runs": services.schedule.next_runs(now, 4),
        "pacific": services.schedule.zone,
        "outbox": outbox_status(services.store, services.connectivity, now),
        "cloud_configured": services.config.cloud_url is not None,
        "rejected": rejected,
        "clock_synced": services.clock_check.synced(),
        "drift_s": services.clock_check.drift_s(),
        "stations": stations,
        "scanners": _scanners(request, now),
        "sync": manual_sync(request),
        "live_after": last_event_id(services_of(request)),
        "now": now,
        "local_zone": zone,
    }


# Post/redirect/get: what the button did travels as a word in the address, so a reload of the
# page never presses the button again.
SYNC_MESSAGES = {
    "started": "Sync started. Its outcome shows here when it ends (a few seconds).",
    "busy": "A sync is already running; its outcome shows here when it ends.",
    "nosource": "No roster source is set on this appliance (source_url), so there is nothing to pull from.",
}


@router.get("/dashboard/sync", response_class=HTMLResponse)
def sync_page(request: Request, sync: Annotated[str | None, Query(max_length=20)] = None) -> HTMLResponse:
    context = _sync_context(request)
    context["sync_message"] = SYNC_MESSAGES.get(sync or "")
    context["sync_problem"] = sync in ("busy", "nosource")
    return render(request, "dashboard/sync.html", context)


@router.post("/dashboard/sync/run", response_class=RedirectResponse)
def sync_now(request: Request, session: DirectorDep) -> RedirectResponse:
    runner = manual_sync(request)
    problem = runner.start(by=session.user.username)
    word = "started" if problem is None else ("nosource" if not runner.available else "busy")
    return RedirectResponse(f"/dashboard/sync?sync={word}#sync-runs", status_code=303)


@router.post("/dashboard/stations/{station_id}/unlock", response_class=RedirectResponse)
def unlock(request: Request, station_id: StationId, session: DirectorDep) -> RedirectResponse:
    services_of(request).checkin.lockout.unlock(station_id, by=session.user.actor_id)
    return RedirectResponse("/dashboard/sync#stations", status_code=303)
