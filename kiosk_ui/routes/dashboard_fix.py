"""Fix by hand, and the audit log.

A staff member checks a child in or out with a reason: through the one check-in service
(``CheckinService.staff_override``, method ``staff``), so the policy, the audit row, the outbox
row and the live event are the door's own. The actor is the teacher the login is linked to, or
else the login itself (``user:<name>``). Teachers and directors may both do it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edge import const, reports
from edge import now as now_model
from edge.models import Action
from edge.outcomes import Refusal
from edge.policy import RefusalReason
from kiosk_ui import presenter
from kiosk_ui.auth import StaffDep
from kiosk_ui.routes.dashboard_base import render, school, services_of, staff_router

router = staff_router()

ChildId = Annotated[str, Path(max_length=64)]

# Refusals in staff's words (the presenter's are for the parent at the door).
_STAFF_WORDS = {
    RefusalReason.ALREADY_IN: "{child} is already checked in: nothing was changed.",
    RefusalReason.ALREADY_OUT: "{child} is already checked out: nothing was changed.",
    RefusalReason.CHILD_INACTIVE: (
        "{child} is not Currently Enrolled in an active room, so cannot be checked in or out. "
        "Fix the enrollment in the back office, then sync."
    ),
    RefusalReason.PERSON_INACTIVE: (
        "Your teacher record is not active in the roster, so your login cannot check children in or out. "
        "Ask a director."
    ),
    RefusalReason.NOT_AUTHORIZED: "A check-in or check-out by hand needs a reason.",
}


def _refusal_words(refusal: Refusal, child_name: str) -> str:
    words = _STAFF_WORDS.get(refusal.reason)
    if words is None:
        return presenter.message(refusal.reason, "en", **refusal.context)
    return words.format(child=child_name)


def _fix_page(
    request: Request,
    child_id: str,
    *,
    error: str | None = None,
    reason: str = "",
    done: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    services = services_of(request)
    with services.store.read() as session:
        child = now_model.child_detail(child_id, session=session)
    if child is None:
        raise HTTPException(status_code=404, detail="No such child in the roster")
    return render(
        request,
        "dashboard/fix.html",
        {
            "child": child,
            "action": Action.CHECK_OUT if child.present else Action.CHECK_IN,
            "error": error,
            "reason": reason,
            "done": done,
            "max_reason": const.OVERRIDE_REASON_MAX_CHARS,
        },
        status_code=status_code,
    )


@router.get("/dashboard/children/{child_id}/fix", response_class=HTMLResponse)
def fix_page(request: Request, child_id: ChildId, done: Annotated[bool, Query()] = False) -> HTMLResponse:
    return _fix_page(request, child_id, done=done)


@router.post("/dashboard/children/{child_id}/fix", response_class=HTMLResponse)
def fix(
    request: Request,
    child_id: ChildId,
    session: StaffDep,
    action: Annotated[Action, Form()],
    reason: Annotated[str, Form(max_length=2 * const.OVERRIDE_REASON_MAX_CHARS)] = "",
) -> Response:
    if action not in (Action.CHECK_IN, Action.CHECK_OUT):
        raise HTTPException(status_code=422, detail="Only check_in or check_out")
    if not reason.strip():
        return _fix_page(
            request, child_id, error="Please write the reason: it goes into the audit log.", status_code=422
        )
    user = session.user
    services = services_of(request)
    result = services.checkin.staff_override(
        user.actor_id,
        child_id,
        action,
        reason,
        const.DASHBOARD_STATION_ID,
        account_name=None if user.teacher_id else user.username,
    )
    if isinstance(result, Refusal):
        with services.store.read() as db:
            detail = now_model.child_detail(child_id, session=db)
        words = _refusal_words(result, detail.name if detail else child_id)
        return _fix_page(request, child_id, error=words, reason=reason, status_code=409)
    return RedirectResponse(f"/dashboard/children/{child_id}/fix?done=true", status_code=303)


@router.get("/dashboard/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    child: Annotated[str | None, Query(max_length=100)] = None,
    person: Annotated[str | None, Query(max_length=100)] = None,
    day: Annotated[str | None, Query(max_length=10)] = None,
) -> HTMLResponse:
    services = services_of(request)
    _name, zone = school(services)
    error = None
    the_day = None
    if day:
        try:
            the_day = dt.date.fromisoformat(day)
        except ValueError:
            error = f"{day!r} is not a date like 2026-11-30"
    with services.store.read() as session:
        lines = reports.search_audit(
            session=session, zone=zone, child=child or None, person=person or None, day=the_day
        )
    return render(
        request,
        "dashboard/audit.html",
        {"lines": lines, "child": child or "", "person": person or "", "day": day or "", "error": error},
    )
