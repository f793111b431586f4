"""Reports: attendance for a day or a range, per child and per room, with hours (CSV too);
today's occupancy per room as a chart; the end-of-day exceptions, so nobody is forgotten."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Annotated, Literal

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, Response

from edge import reports
from kiosk_ui.charts import occupancy_svg
from kiosk_ui.routes.dashboard_base import render, school, services_of, staff_router

router = staff_router()

DateText = Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD")]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _range(first: str | None, last: str | None, today: dt.date) -> tuple[dt.date, dt.date, str | None]:
    """The range asked for (default: today), or today and why the one asked for cannot be used."""
    try:
        start = dt.date.fromisoformat(first) if first else today
        end = dt.date.fromisoformat(last) if last else start
    except ValueError:
        return today, today, "Dates are written like 2026-11-30."
    if end < start:
        return today, today, "The range ends before it starts."
    if (end - start).days >= reports.MAX_RANGE_DAYS:
        return today, today, f"A report covers at most {reports.MAX_RANGE_DAYS} days."
    return start, end, None


@router.get("/dashboard/reports", response_class=HTMLResponse)
def reports_page(
    request: Request,
    first: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=10)] = None,
) -> HTMLResponse:
    services = services_of(request)
    _name, zone = school(services)
    now = _utc_now()
    today = now.astimezone(zone).date()
    start, end, error = _range(first, last, today)
    closing = reports.parse_hhmm(services.config.closing_time)
    with services.store.read() as session:
        report = reports.attendance_report(session=session, start=start, end=end, zone=zone, now=now, closing=closing)
        exceptions = reports.day_exceptions(session=session, day=end, zone=zone, now=now, closing=closing)
        occupancy = reports.occupancy(session=session, day=today, zone=zone, now=now)
    return render(
        request,
        "dashboard/reports.html",
        {
            "report": report,
            "exceptions": exceptions,
            "chart": occupancy_svg(occupancy, today, zone, now),
            "today": today,
            "yesterday": today - dt.timedelta(days=1),
            "week_start": today - dt.timedelta(days=today.weekday()),
            "error": error,
            "closing": services.config.closing_time,
        },
    )


@router.get("/dashboard/reports/attendance.csv")
def attendance_csv(
    request: Request,
    first: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=10)] = None,
    by: Annotated[Literal["child", "room"], Query()] = "child",
) -> Response:
    services = services_of(request)
    _name, zone = school(services)
    now = _utc_now()
    start, end, error = _range(first, last, now.astimezone(zone).date())
    if error:
        return Response(error, status_code=422, media_type="text/plain")
    closing = reports.parse_hhmm(services.config.closing_time)
    with services.store.read() as session:
        report = reports.attendance_report(session=session, start=start, end=end, zone=zone, now=now, closing=closing)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(reports.child_csv_rows(report) if by == "child" else reports.room_csv_rows(report))
    span = start.isoformat() if start == end else f"{start.isoformat()}_to_{end.isoformat()}"
    filename = f"attendance-{'rooms-' if by == 'room' else ''}{span}.csv"
    return Response(
        # A byte-order mark: Excel then reads the names (Hernández, Müller) as UTF-8.
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
