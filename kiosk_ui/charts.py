"""Small SVG charts drawn on the server: no chart library, no script, nothing inline that a
Content-Security-Policy without 'unsafe-inline' would block (classes, not style attributes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from edge.reports import RoomOccupancy

LABEL_W = 150
PLOT_W = 560
ROW_H = 30
TOP = 8
AXIS_H = 22
RIGHT_W = 130


def _hour_bounds(rooms: Sequence[RoomOccupancy], day_start: dt.datetime, zone: ZoneInfo) -> tuple[int, int]:
    """06:00-20:00, widened to take in any check-in or check-out outside it."""
    first, last = 6, 20
    for room in rooms:
        for at, _count in room.steps[1:]:
            local = at.astimezone(zone)
            first = min(first, local.hour)
            last = max(last, local.hour + 1)
    return first, min(last, 24)


def occupancy_svg(rooms: Sequence[RoomOccupancy], day: dt.date, zone: ZoneInfo, now: dt.datetime) -> Markup:
    """One row per room: children in through the day as a step line, with the peak and now."""
    day_start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    first, last = _hour_bounds(rooms, day_start, zone)
    x0 = day_start + dt.timedelta(hours=first)
    span = (last - first) * 3600.0
    peak_all = max([room.peak for room in rooms] + [1])
    height = TOP + ROW_H * len(rooms) + AXIS_H
    width = LABEL_W + PLOT_W + RIGHT_W

    def x(moment: dt.datetime) -> float:
        offset = (moment.astimezone(zone) - x0).total_seconds()
        return LABEL_W + max(0.0, min(span, offset)) / span * PLOT_W

    now_local = now.astimezone(zone)
    is_today = now_local.date() == day
    end = now if is_today else day_start + dt.timedelta(hours=last)
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="occupancy-title">',
        f'<title id="occupancy-title">Children in each room on {day.isoformat()}, by time of day</title>',
    ]
    for hour in range(first, last + 1, 2):
        hx = LABEL_W + (hour - first) * 3600.0 / span * PLOT_W
        parts.append(f'<line class="grid" x1="{hx:.1f}" y1="{TOP}" x2="{hx:.1f}" y2="{height - AXIS_H}"/>')
        parts.append(f'<text class="tick" x="{hx:.1f}" y="{height - 6}" text-anchor="middle">{hour:02d}:00</text>')
    for index, room in enumerate(rooms):
        top = TOP + index * ROW_H
        base = top + ROW_H - 4
        scale = (ROW_H - 8) / peak_all
        parts.append(
            f'<text class="label" x="{LABEL_W - 8}" y="{base - 6}" text-anchor="end">{escape(room.room_name)}</text>'
        )
        parts.append(f'<line class="base" x1="{LABEL_W}" y1="{base}" x2="{LABEL_W + PLOT_W}" y2="{base}"/>')
        points = [f"{LABEL_W:.1f},{base:.1f}"]
        previous = 0
        for at, count in room.steps:
            px = x(at)
            points.append(f"{px:.1f},{base - previous * scale:.1f}")
            points.append(f"{px:.1f},{base - count * scale:.1f}")
            previous = count
        px_end = x(end)
        points.append(f"{px_end:.1f},{base - previous * scale:.1f}")
        points.append(f"{px_end:.1f},{base:.1f}")
        parts.append(
            f'<polygon class="area" points="{" ".join(points)}"><title>{escape(room.room_name)}: '
            f"peak {room.peak}, now {room.current}</title></polygon>"
        )
        value_x = LABEL_W + PLOT_W + 8
        parts.append(f'<text class="value" x="{value_x}" y="{base - 6}">{room.current} now · peak {room.peak}</text>')
    if is_today and x0 <= now_local <= day_start + dt.timedelta(hours=last):
        nx = x(now)
        parts.append(f'<line class="now" x1="{nx:.1f}" y1="{TOP}" x2="{nx:.1f}" y2="{height - AXIS_H}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it is escaped above)
