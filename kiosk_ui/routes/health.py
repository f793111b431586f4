"""Public: whether the hub answers, and how the last roster sync went."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from edge.roster import recent_sync_runs
from kiosk_ui.deps import ReadSession

router = APIRouter()
router.tags = ["public"]


@router.get("/healthz")
def healthz(session: ReadSession) -> dict[str, Any]:
    runs = recent_sync_runs(session=session, limit=1)
    last = runs[0] if runs else None
    return {
        "status": "ok",
        "roster_sync": None
        if last is None
        else {
            "outcome": last.outcome.value,
            "started_at": last.started_at.isoformat(),
            "finished_at": last.finished_at.isoformat() if last.finished_at else None,
        },
    }
