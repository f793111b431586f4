"""The roster, read-only (the back office owns it; every synced field shows a lock), and the
sync doctor: every record that did not sync or was demoted, with the rule, the report's reason
and what to change in the back office."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse

from edge import roster_views
from kiosk_ui.routes.dashboard_base import render, services_of, staff_router

router = staff_router()

Search = Annotated[str | None, Query(max_length=100)]

# What to change in the back office, by rule (docs/roster-sync.md's table, in a director's words).
RULE_FIXES = {
    "R1": "Check the school's record in the back office: its time zone must be a real zone such as "
    "America/Los_Angeles.",
    "R2": "A room that is no longer exported becomes inactive here; add it back in the back office if it still exists.",
    "R3": "Open the teacher in the back office and check three things: Work History has a Start Date, "
    "the status is exactly “Currently Employed”, and the Primary Work Area is one of the rooms "
    "(not Kitchen, Office or Floater).",
    "R4": "Only payers are parents here: in the family, mark the person as a payer if they are a parent or guardian.",
    "R5": "Enter the number in the person's Text Message field (the Phones fields are never used for texts).",
    "R6": "Set the child's enrollment status to exactly “Currently Enrolled” and the classroom to one of the rooms.",
    "R7": "List the person as an authorized pickup of an enrolled child (phone devices of non-payers are "
    "dropped: they use their PIN at the kiosk).",
    "R8": "A pickup entry marked “not authorized” means this person may never take that child. Remove "
    "that entry in the back office if it is wrong.",
}
PIN_FIX = "Give each person their own PIN (4 to 6 digits) in the back office: a shared PIN is disabled for everyone."


# The sync rules' words for one problem of a record (cloud_sync/rules.py) -> what to do about it.
PROBLEM_FIXES = (
    ("no Primary Work Area", "Set the teacher's Primary Work Area to the room they work in."),
    (
        "Primary Work Area “",
        "Set the Primary Work Area to one of the rooms (a classroom, not Kitchen, Office or Floater).",
    ),
    ("no Start Date", "Add the Start Date to the teacher's Work History."),
    ("not “Currently Employed”", "If they still work here, set the status to exactly “Currently Employed”."),
    (
        "not “Currently Enrolled”",
        "If the child still comes, set the enrollment status to exactly “Currently Enrolled”.",
    ),
    ("classroom “", "Set the child's classroom to one of the rooms."),
    ("no classroom", "Give the child a classroom (one of the rooms)."),
    ("no id", "The record has no id in the export: the back office must give it one (ask its support)."),
    (
        "not a payer, and not an authorized pickup",
        "If they pick a child up, list them as an authorized pickup of that child.",
    ),
)


def fix_for(rule: str, reason: str) -> str:
    """The report's reason names the problem; this says what to do about it."""
    fixes = [fix for words, fix in PROBLEM_FIXES if words in reason]
    if fixes:
        return " ".join(dict.fromkeys(fixes))
    if "PIN is the same as" in reason:
        return PIN_FIX
    if "has no PIN" in reason or "PIN is not 4 to 6 digits" in reason:
        return "Set a PIN of 4 to 6 digits for this person in the back office."
    if "appears twice" in reason:
        return "Two records in the back office have this id: remove or correct the duplicate."
    if "not in the roster" in reason:
        return "The pickup list names someone the back office does not export: add them, or remove the entry."
    return RULE_FIXES.get(rule, "Check this record in the back office.")


def _doctor(request: Request) -> roster_views.SyncDoctor:
    with services_of(request).store.read() as session:
        return roster_views.sync_doctor(session=session)


@router.get("/dashboard/roster", response_class=HTMLResponse)
def roster_home(request: Request) -> HTMLResponse:
    with services_of(request).store.read() as session:
        rooms = roster_views.rooms(session=session)
    doctor = _doctor(request)
    return render(
        request,
        "dashboard/roster_rooms.html",
        {"rooms": rooms, "doctor": doctor, "findings": doctor.for_kind("room"), "fix_for": fix_for},
    )


@router.get("/dashboard/roster/children", response_class=HTMLResponse)
def roster_children(request: Request, q: Search = None) -> HTMLResponse:
    with services_of(request).store.read() as session:
        children = roster_views.children(session=session, query=q)
    doctor = _doctor(request)
    return render(
        request,
        "dashboard/roster_children.html",
        {
            "children": children,
            "q": q or "",
            "doctor": doctor,
            "findings": doctor.for_kind("child"),
            "fix_for": fix_for,
        },
    )


@router.get("/dashboard/roster/families", response_class=HTMLResponse)
def roster_families(request: Request, q: Search = None) -> HTMLResponse:
    with services_of(request).store.read() as session:
        families = roster_views.families(session=session, query=q)
    doctor = _doctor(request)
    return render(
        request,
        "dashboard/roster_families.html",
        {
            "families": families,
            "q": q or "",
            "doctor": doctor,
            "findings": doctor.for_kind("person"),
            "fix_for": fix_for,
        },
    )


@router.get("/dashboard/roster/teachers", response_class=HTMLResponse)
def roster_teachers(request: Request) -> HTMLResponse:
    with services_of(request).store.read() as session:
        teachers = roster_views.teachers(session=session)
    doctor = _doctor(request)
    return render(
        request,
        "dashboard/roster_teachers.html",
        {"teachers": teachers, "doctor": doctor, "findings": doctor.for_kind("teacher"), "fix_for": fix_for},
    )


@router.get("/dashboard/sync-doctor", response_class=HTMLResponse)
def sync_doctor(request: Request) -> HTMLResponse:
    return render(request, "dashboard/sync_doctor.html", {"doctor": _doctor(request), "fix_for": fix_for})
