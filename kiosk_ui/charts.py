"""Small SVG charts drawn on the server: no chart library, no script, nothing inline that a
Content-Security-Policy without 'unsafe-inline' would block (classes, not style attributes)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from edge.geofence import Fence
from edge.reports import FixDot, RoomOccupancy

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


# -- the geofence ------------------------------------------------------------------------------------

FENCE_W = 640
FENCE_H = 420
FENCE_PAD = 16


def _rings(geometry: BaseGeometry) -> list[Sequence[tuple[float, ...]]]:
    polygons = list(getattr(geometry, "geoms", [geometry]))
    rings: list[Sequence[tuple[float, ...]]] = []
    for polygon in polygons:
        if isinstance(polygon, Polygon):
            rings.append(list(polygon.exterior.coords))
            rings.extend(list(interior.coords) for interior in polygon.interiors)
    return rings


def fence_svg(fence: Fence, fixes: Sequence[FixDot]) -> Markup:
    """The on-site area, the arriving ring around it, and recent phone fixes as dots (north up),
    drawn in the fence's own metres so distances look right."""
    ring = fence.site.buffer(fence.arriving_m, quad_segs=16)
    minx, miny, maxx, maxy = ring.bounds
    scale = min((FENCE_W - 2 * FENCE_PAD) / max(maxx - minx, 1.0), (FENCE_H - 2 * FENCE_PAD) / max(maxy - miny, 1.0))

    def point(x: float, y: float) -> str:
        return f"{FENCE_PAD + (x - minx) * scale:.1f} {FENCE_H - FENCE_PAD - (y - miny) * scale:.1f}"

    def path(geometry: BaseGeometry) -> str:
        return " ".join("M" + " L".join(point(x, y) for x, y, *_ in coords) + " Z" for coords in _rings(geometry))

    parts = [
        f'<svg class="fence" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {FENCE_W} {FENCE_H}" '
        f'width="{FENCE_W}" height="{FENCE_H}" role="img" aria-labelledby="fence-title">',
        '<title id="fence-title">The on-site area (dark), the arriving ring around it, and phones seen lately</title>',
        f'<path class="ring" fill-rule="evenodd" d="{path(ring)}"/>',
        f'<path class="site" fill-rule="evenodd" d="{path(fence.site)}"/>',
    ]
    for fix in fixes:
        x, y = fence.projection.forward(fix.lon, fix.lat)
        if not (minx <= x <= maxx and miny <= y <= maxy):
            continue  # far away: off the drawing
        cx, cy = point(x, y).split()
        radius = max(2.5, min(fix.accuracy_m * scale, 40.0))
        parts.append(
            f'<circle class="fix fix-{escape(fix.state)}" cx="{cx}" cy="{cy}" r="{radius:.1f}">'
            f"<title>{escape(fix.state.replace('_', ' '))}, ±{fix.accuracy_m:.0f} m</title></circle>"
        )
    bar_m = _nice_length((maxx - minx) / 4)
    bar_px = bar_m * scale
    parts.append(
        f'<line class="scale" x1="{FENCE_PAD}" y1="{FENCE_H - 6}" x2="{FENCE_PAD + bar_px:.1f}" y2="{FENCE_H - 6}"/>'
        f'<text class="tick" x="{FENCE_PAD + bar_px + 6:.1f}" y="{FENCE_H - 3}">{bar_m:,.0f} m</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (numbers and escaped words only)


def _nice_length(metres: float) -> float:
    """1, 2 or 5 times a power of ten, at most ``metres``."""
    power = 10.0 ** math.floor(math.log10(max(metres, 1.0)))
    return float(max(step * power for step in (1, 2, 5) if step * power <= max(metres, 1.0)))
