"""The dashboard's pages through the app: Now, fix by hand, the audit log, the roster with its
locks and the sync doctor, Sync & health (Sync now, unlock), reports and the CSV."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
import re
from typing import Any

from cloud_sync.standin.generator import ENROLLED
from cloud_sync.standin.server import DEFAULT_SOURCE_TOKEN, StandinCloud, StandinState
from edge.attendance import record_event
from edge.audit import raise_alert
from edge.models import Action, ActorKind, Method, SubjectKind, SyncOutcome, SyncRun, SyncTrigger
from kiosk_ui.cli import roster_client
from tests.door import PINS, STATION, door_export
from tests.exports import teacher
from tests.kiosk_ui.dashboard_helpers import Dash, dash, login

__all__ = ["dash"]


def checkin(dash: Dash, child_id: str, action: Action = Action.CHECK_IN, *, ago_min: float = 5) -> None:
    with dash.services.store.transaction() as session:
        record_event(
            session,
            subject_kind=SubjectKind.CHILD,
            subject_id=child_id,
            action=action,
            method=Method.PIN,
            actor_kind=ActorKind.PAYER,
            actor_id="P1",
            station_id=STATION,
            occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=ago_min),
            clock_synced=True,
        )


def section(html: str, element_id: str) -> str:
    found = re.search(rf'<section class="room[^"]*" id="{element_id}">(.*?)</section>', html, re.S)
    assert found, element_id
    return found.group(1)


def test_now_shows_who_is_in_each_room_and_flags_the_ratio(dash: Dash) -> None:
    login(dash.client, "lee")
    checkin(dash, "C1")
    page = dash.client.get("/dashboard").text
    assert "<strong>1</strong> of 4 children in" in page
    infants = section(page, "room-R1")
    assert "Mai Nguyen" in infants
    assert "in since" in infants
    assert "Over ratio" in infants  # Mai is in and no teacher is clocked in
    assert 'href="/dashboard/children/C1/fix"' in infants
    found = dash.services.checkin.identify(STATION, "pin", PINS["E1"])
    assert not isinstance(found, type(None))
    dash.services.checkin.act(found.ticket, [], "clock_in")  # type: ignore[union-attr]
    infants = section(dash.client.get("/dashboard").text, "room-R1")
    assert "Over ratio" not in infants
    assert "Lee Park" in infants
    assert "clocked in at" in infants
    now = dash.client.get("/dashboard/api/now").json()
    room = next(r for r in now["rooms"] if r["name"] == "Infants")
    assert (room["children_in"], room["teachers_in"], room["over_ratio"], room["ratio"]) == (1, 1, False, 4)


def test_alerts_show_and_can_be_dismissed(dash: Dash) -> None:
    token = login(dash.client, "lee")
    with dash.services.store.transaction() as session:
        alert_id = raise_alert(
            db=session, at=dt.datetime.now(dt.UTC), kind="restricted_pickup", message="Cal Smith is restricted"
        )
    assert "Cal Smith is restricted" in dash.client.get("/dashboard").text
    answer = dash.client.post(f"/dashboard/alerts/{alert_id}/resolve", data={"csrf_token": token})
    assert answer.status_code == 200
    assert "Cal Smith is restricted" not in answer.text


def test_a_teacher_fixes_a_check_in_by_hand_with_a_reason(dash: Dash) -> None:
    token = login(dash.client, "lee")
    form = dash.client.get("/dashboard/children/C1/fix")
    assert 'value="check_in" checked' in form.text
    no_reason = dash.client.post("/dashboard/children/C1/fix", data={"csrf_token": token, "action": "check_in"})
    assert no_reason.status_code == 422
    assert "Please write the reason" in no_reason.text
    done = dash.client.post(
        "/dashboard/children/C1/fix",
        data={"csrf_token": token, "action": "check_in", "reason": "Grandma forgot her PIN; ID checked"},
    )
    assert done.status_code == 200
    assert "Done." in done.text
    assert "Checked in since" in done.text
    # The form sent twice (a double click) is one event, as at the door.
    twice = dash.client.post(
        "/dashboard/children/C1/fix", data={"csrf_token": token, "action": "check_in", "reason": "twice"}
    )
    assert twice.status_code == 200
    refused = dash.client.post(
        "/dashboard/children/C2/fix", data={"csrf_token": token, "action": "check_out", "reason": "oops"}
    )
    assert refused.status_code == 409
    assert "Noah Smith is already checked out: nothing was changed" in refused.text
    audit = dash.client.get("/dashboard/audit", params={"child": "mai"}).text
    assert "Grandma forgot her PIN; ID checked" in audit
    assert "Lee Park" in audit  # the login is linked to teacher E1: the override is hers
    with dash.services.store.read() as session:
        from edge.models import AttendanceEvent, OutboxEntry

        event = session.query(AttendanceEvent).one()
        outbox = session.query(OutboxEntry).one()
    assert (event.method, event.actor_id, event.station_id) == (Method.STAFF, "E1", "dashboard")
    assert outbox.payload["actor"] == {"kind": "staff", "id": "E1"}


def test_a_login_that_is_no_teacher_overrides_as_itself(dash: Dash) -> None:
    token = login(dash.client, "maria")
    checkin(dash, "C2")
    done = dash.client.post(
        "/dashboard/children/C2/fix", data={"csrf_token": token, "action": "check_out", "reason": "Dad, no PIN yet"}
    )
    assert "Checked out since" in done.text
    audit = dash.client.get("/dashboard/audit", params={"person": "maria"}).text
    assert "maria (dashboard)" in audit
    assert "Noah Smith" in audit
    assert "Dad, no PIN yet" in audit
    assert dash.client.get("/dashboard/children/C404/fix").status_code == 404


def test_the_audit_log_searches_by_day(dash: Dash) -> None:
    token = login(dash.client, "maria")
    dash.client.post(
        "/dashboard/children/C1/fix", data={"csrf_token": token, "action": "check_in", "reason": "by hand"}
    )
    today = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=-8))).date()
    assert "by hand" in dash.client.get("/dashboard/audit", params={"day": today.isoformat()}).text
    other = dash.client.get("/dashboard/audit", params={"day": "2020-01-01"}).text
    assert "by hand" not in other
    assert "Nothing matches" in other
    assert "is not a date" in dash.client.get("/dashboard/audit", params={"day": "30/11"}).text


def with_a_teacher_who_does_not_sync() -> dict[str, Any]:
    page = door_export()
    page["employees"].append(teacher("E4", first_name="Sam", last_name="Lee", pin="8112", primary_work_area=None))
    return page


def test_roster_pages_show_locks_and_the_sync_doctor_says_why(dash: Dash) -> None:
    dash.services.roster_sync.apply_export([with_a_teacher_who_does_not_sync()], SyncTrigger.FILE)
    login(dash.client, "lee")
    for path in ("/dashboard/roster", "/dashboard/roster/families", "/dashboard/roster/children"):
        page = dash.client.get(path).text
        assert page.count('class="lock"') >= 4, path
        assert "edit this there" in page
    families = dash.client.get("/dashboard/roster/families", params={"q": "binh"}).text
    assert "Binh Tran" in families
    assert "pickup (PIN only)" in families
    assert "Noah Smith" not in families  # another family
    children = dash.client.get("/dashboard/roster/children").text
    assert re.search(r'class="bad"[^>]*>Cal Smith<', children)  # restricted for Mai
    teachers = dash.client.get("/dashboard/roster/teachers").text
    assert "Teacher Sam Lee" in teachers
    assert "Set the teacher&#39;s Primary Work Area to the room they work in" in teachers  # what to change
    doctor = dash.client.get("/dashboard/sync-doctor").text
    assert "R3" in doctor
    assert "Teacher Sam Lee" in doctor
    assert "did not sync" in doctor
    assert "What to change in the back office" in doctor


def test_sync_page_and_sync_now(dash: Dash) -> None:
    state = StandinState("demo-center", roster=with_a_teacher_who_does_not_sync())
    with StandinCloud(state) as cloud:
        config = dash.services.config.model_copy(update={"source_url": cloud.url})
        config.source_token = type(config.source_token)(DEFAULT_SOURCE_TOKEN)
        dash.services.roster_source = roster_client(config)
        token = login(dash.client, "maria")
        page = dash.client.get("/dashboard/sync").text
        assert "Sync now" in page
        assert "Back office time (Pacific)" in page
        started = dash.client.post("/dashboard/sync/run", data={"csrf_token": token}, follow_redirects=False)
        assert (started.status_code, started.headers["location"]) == (303, "/dashboard/sync?sync=started#sync-runs")
        dash.app.state.manual_sync.join(10)
    with dash.services.store.read() as session:
        last = session.query(SyncRun).order_by(SyncRun.id.desc()).first()
    assert last is not None
    assert (last.trigger, last.outcome) == (SyncTrigger.MANUAL, SyncOutcome.OK)
    kinds = [(e.kind, e.data.get("state")) for e in dash.services.events.since(0) if e.kind == "sync"]
    assert kinds == [("sync", "started"), ("sync", "finished")]
    page = dash.client.get("/dashboard/sync?sync=started").text
    assert "Sync started" in page
    assert "1: why?" in page  # one record did not sync, linked to the doctor


def test_sync_now_without_a_source_says_so(dash: Dash) -> None:
    token = login(dash.client, "maria")
    answer = dash.client.post("/dashboard/sync/run", data={"csrf_token": token})
    assert "No roster source is set" in answer.text


def test_outbox_rejections_and_lockouts_on_the_sync_page(dash: Dash) -> None:
    checkin(dash, "C1")
    with dash.services.store.transaction() as session:
        from edge.models import OutboxEntry, OutboxState

        entry = session.query(OutboxEntry).one()
        entry.state, entry.reject_reason = OutboxState.REJECTED, "unknown child"
    for _ in range(5):
        dash.services.checkin.identify("back-door", "pin", "0000")
    token = login(dash.client, "maria")
    page = dash.client.get("/dashboard/sync").text
    assert "Rejected events" in page
    assert "unknown child" in page
    assert "Mai Nguyen" in page
    assert "locked until" in page
    assert dash.services.checkin.lockout.retry_after("back-door") is not None
    answer = dash.client.post("/dashboard/stations/back-door/unlock", data={"csrf_token": token})
    assert answer.status_code == 200
    assert "locked until" not in answer.text
    assert dash.services.checkin.lockout.retry_after("back-door") is None
    assert "unlock" in dash.client.get("/dashboard/audit", params={"person": "maria"}).text


def test_reports_and_the_csv(dash: Dash) -> None:
    login(dash.client, "lee")
    checkin(dash, "C1", ago_min=90)
    checkin(dash, "C1", Action.CHECK_OUT, ago_min=30)
    checkin(dash, "C2", ago_min=60)
    page = dash.client.get("/dashboard/reports").text
    assert "<svg" in page
    assert "Download CSV, per child" in page
    assert "Mai Nguyen" in page
    answer = dash.client.get("/dashboard/reports/attendance.csv")
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"].startswith('attachment; filename="attendance-')
    rows = list(csv.DictReader(io.StringIO(answer.text.lstrip("\ufeff"))))
    by_child = {row["child"]: row for row in rows}
    assert by_child["Mai Nguyen"]["hours"] == "1.00"
    assert by_child["Noah Smith"]["note"] == "still checked in (counted to now)"
    rooms = dash.client.get("/dashboard/reports/attendance.csv", params={"by": "room"}).text
    assert rooms.lstrip("\ufeff").startswith("date,room,children,child_hours")
    bad = dash.client.get("/dashboard/reports/attendance.csv", params={"from": "2026-12-01", "to": "2026-11-01"})
    assert bad.status_code == 422
    assert "ends before it starts" in dash.client.get("/dashboard/reports?from=2026-12-01&to=2026-11-01").text


def test_the_now_page_renders_300_children(dash: Dash, kiosk_export: dict[str, Any]) -> None:
    """How fast is scripts/bench dashboard's business; here, that a full center renders."""
    dash.services.roster_sync.apply_export([copy.deepcopy(kiosk_export)], SyncTrigger.FILE)
    login(dash.client, "maria")
    page = dash.client.get("/dashboard")
    assert page.status_code == 200
    enrolled = [c for f in kiosk_export["families"] for c in f["children"] if c.get("enrollment_status") == ENROLLED]
    assert sum(page.text.count(c["first_name"]) > 0 for c in enrolled[:20]) == min(20, len(enrolled))


def test_badges_print_and_revoke(dash: Dash) -> None:
    token = login(dash.client, "maria")
    page = dash.client.get("/dashboard/badges", params={"q": "nguyen"}).text
    assert "An Nguyen" in page
    assert "Binh Tran" not in page  # a pickup person: no badge
    printed = dash.client.post("/dashboard/badges/P1/issue", data={"csrf_token": token})
    assert printed.status_code == 200
    assert "<svg" in printed.text
    assert "data-print" in printed.text
    assert "<?xml" not in printed.text
    listed = dash.client.get("/dashboard/badges", params={"q": "P1"}).text
    assert "valid until" in listed
    refused = dash.client.post("/dashboard/badges/P2/issue", data={"csrf_token": token})
    assert refused.status_code == 409
    assert "not a payer" in refused.text
    revoked = dash.client.post("/dashboard/badges/P1/revoke", data={"csrf_token": token})
    assert "revoked" in revoked.text
    assert [b.status(dt.datetime.now(dt.UTC)) for b in dash.services.badges.list_badges("P1")] == ["revoked"]


def test_the_geofence_is_drawn_and_edited_as_geojson(dash: Dash) -> None:
    from tests.phones import site_geojson

    token = login(dash.client, "maria")
    assert "No geofence is set" in dash.client.get("/dashboard/geofence").text
    not_json = dash.client.post("/dashboard/geofence", data={"csrf_token": token, "geojson": "{nope"})
    assert not_json.status_code == 422
    assert "That is not JSON" in not_json.text
    tiny = {"type": "Polygon", "coordinates": [[[0, 0], [0.00001, 0], [0.00001, 0.00001], [0, 0]]]}
    too_small = dash.client.post("/dashboard/geofence", data={"csrf_token": token, "geojson": json.dumps(tiny)})
    assert too_small.status_code == 422
    assert "Not saved: the on-site area is" in too_small.text
    saved = dash.client.post(
        "/dashboard/geofence",
        data={"csrf_token": token, "geojson": json.dumps(site_geojson()), "arriving_m": "300"},
    )
    assert saved.status_code == 200
    assert "Saved." in saved.text
    assert 'class="site"' in saved.text
    assert "arriving ring (300 m)" in saved.text
    login(dash.client, "lee")
    assert "A director edits the area" in dash.client.get("/dashboard/geofence").text
