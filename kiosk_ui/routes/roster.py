"""The synced roster and the last sync report (read-only: the back office owns it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from edge.roster import recent_sync_runs, roster_snapshot
from kiosk_ui.deps import ReadSession, ServicesDep, require_local

router = APIRouter(dependencies=[Depends(require_local)])
router.tags = ["local"]


@router.get("/", include_in_schema=False)
def index() -> RedirectResponse:
    return RedirectResponse("/roster", status_code=303)


@router.get("/roster", response_class=HTMLResponse)
def roster_page(request: Request, session: ReadSession, services: ServicesDep) -> HTMLResponse:
    snapshot = roster_snapshot(session=session)
    runs = recent_sync_runs(session=session, limit=5)
    last_report: dict[str, Any] | None = next((r.report for r in runs if r.report), None)
    rooms = {r["id"]: r["name"] for r in snapshot["rooms"]}
    next_runs = services.schedule.next_runs(services.roster_sync.clock(), 4)
    templates = request.app.state.templates
    return templates.TemplateResponse(  # type: ignore[no-any-return]
        request,
        "dashboard/roster.html",
        {
            "roster": snapshot,
            "rooms": rooms,
            "runs": runs,
            "report": last_report,
            "next_runs": next_runs,
            "zone": services.schedule.zone,
        },
    )
