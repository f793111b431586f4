"""The center's geofence: where "on site" is, and how a phone's fix is classified against it.

Pure: GeoJSON in, a ``Fence`` out; a fix, the fence and the previous state in, a state out. No
clock, no database (``edge.pings`` does the I/O). Four states (``PresenceState``):

- ``on_site``: the fix's accuracy circle lies inside the on-site area (or at least
  ``ONSITE_MIN_SHARE`` of it does). Only this state lets a phone check a child in or out.
- ``arriving``: not on site, but the fix's centre is within the arriving ring (``arriving_m``
  around the on-site area): staff get a notice so the child is ready at the door.
- ``away``: anywhere else.
- ``uncertain``: the fix is too vague to say (accuracy worse than ``MAX_ACCURACY_M``).

Accuracy-aware and asymmetric, because GPS lies by tens of meters and a child is released on
the answer: a phone *enters* ``on_site`` only when its whole circle is inside, and *leaves* it
only when its whole circle is clearly outside (``ONSITE_EXIT_MARGIN_M`` beyond the line);
in between it keeps the previous state. (Home Assistant counts a fix as in a zone when its
circle merely touches it, and Traccar ignores accuracy: neither is safe for releasing a child.)
The arriving ring has the same kind of hysteresis (``ARRIVING_EXIT_MARGIN_M``). ``settle`` adds
a minimum dwell on top: a change of state takes effect only after the fixes have pointed to it
for ``MIN_DWELL_S``, so a fix bouncing across the line does not flip the state.

Geometry is evaluated in a local metric projection centred on the site: an equirectangular
tangent plane with the WGS 84 ellipsoid's radii of curvature at the centre's latitude
(x = N·cos φ0·Δλ, y = M·Δφ). Checked against Vincenty's geodesic distances (tests) it is within
5 mm for points within 150 m of the centre and 10 cm within 1 km at Fresno's latitude (15 cm
at 60°), so every decision near the fence is exact to far below any GPS accuracy (a spherical
earth would already be 0.6 m off at 150 m). The projection is affine, so it keeps shapes
valid, containment exact and round trips lossless, and vectorizes as two multiply-adds.

Distances are computed rather than buffered: "inside the arriving ring" is "within arriving_m
of the on-site area", which ``shapely.distance`` answers exactly where a buffered polygon
would only approximate the round corners. The ring polygon is built only to show it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping
from shapely.geometry.base import BaseGeometry

from edge import const
from edge.models import PresenceState

FloatArray = npt.NDArray[np.float64]
CodeArray = npt.NDArray[np.uint8]

# WGS 84: semi-major axis and first eccentricity squared.
_WGS84_A = 6_378_137.0
_WGS84_E2 = 6.694_379_990_14e-3

# The vectorized path speaks in small integer codes (one byte per ping); this is their order.
STATES: tuple[PresenceState, ...] = (
    PresenceState.AWAY,
    PresenceState.ARRIVING,
    PresenceState.ON_SITE,
    PresenceState.UNCERTAIN,
)
CODES: dict[PresenceState, int] = {state: code for code, state in enumerate(STATES)}
AWAY, ARRIVING, ON_SITE, UNCERTAIN = (np.uint8(code) for code in range(4))

# The places a settled track can be in: "uncertain" says nothing about where someone is.
PLACES = frozenset({PresenceState.AWAY, PresenceState.ARRIVING, PresenceState.ON_SITE})
IN_RING = frozenset({PresenceState.ARRIVING, PresenceState.ON_SITE})


class FenceError(ValueError):
    """The GeoJSON cannot be the on-site area; the message says what is wrong, for staff."""


@dataclass(frozen=True)
class Fix:
    """A position as a phone reported it: degrees (WGS 84) and the radius of its accuracy circle."""

    lat: float
    lon: float
    accuracy_m: float


# -- the projection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Projection:
    """Degrees <-> meters east (x) and north (y) of a centre; see the module docstring for why."""

    lat0: float
    lon0: float
    m_per_deg_lon: float
    m_per_deg_lat: float

    @classmethod
    def centred(cls, lat0: float, lon0: float) -> Projection:
        phi = math.radians(lat0)
        w = 1.0 - _WGS84_E2 * math.sin(phi) ** 2
        meridional = _WGS84_A * (1.0 - _WGS84_E2) / w**1.5  # M: north-south radius of curvature
        prime_vertical = _WGS84_A / math.sqrt(w)  # N: east-west radius of curvature
        return cls(lat0, lon0, prime_vertical * math.cos(phi) * math.pi / 180.0, meridional * math.pi / 180.0)

    def forward(self, lon: float, lat: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.m_per_deg_lon, (lat - self.lat0) * self.m_per_deg_lat

    def inverse(self, x: float, y: float) -> tuple[float, float]:
        """Back to (lon, lat)."""
        return self.lon0 + x / self.m_per_deg_lon, self.lat0 + y / self.m_per_deg_lat

    def forward_arrays(self, lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
        return (lon - self.lon0) * self.m_per_deg_lon, (lat - self.lat0) * self.m_per_deg_lat

    def to_metres(self, geometry: BaseGeometry) -> BaseGeometry:
        scale = np.array([self.m_per_deg_lon, self.m_per_deg_lat])
        origin = np.array([self.lon0, self.lat0])
        return shapely.transform(geometry, lambda coords: (coords - origin) * scale)

    def to_degrees(self, geometry: BaseGeometry) -> BaseGeometry:
        scale = np.array([self.m_per_deg_lon, self.m_per_deg_lat])
        origin = np.array([self.lon0, self.lat0])
        return shapely.transform(geometry, lambda coords: coords / scale + origin)


# -- the rules ---------------------------------------------------------------------------------


def share_inside(offset: float) -> float:
    """The share of a disk of radius 1 lying on the inner side of a straight line, its centre
    ``offset`` radii inside the line (negative: outside). Exact for a straight edge."""
    if offset >= 1.0:
        return 1.0
    if offset <= -1.0:
        return 0.0
    t = abs(offset)
    segment = (math.acos(t) - t * math.sqrt(1.0 - t * t)) / math.pi  # the share cut off by the line
    return 1.0 - segment if offset >= 0 else segment


def enter_offset(min_share: float) -> float:
    """How far inside the line (in radii) a circle's centre must be for ``min_share`` of it to be
    inside: 1.0 for the whole circle, 0.0 for half. Turns the share rule into one comparison
    (signed distance >= k * accuracy), which the vectorized path can do on arrays."""
    if min_share >= 1.0:
        return 1.0
    lo, hi = -1.0, 1.0
    for _ in range(60):  # bisection: share_inside is monotone
        mid = (lo + hi) / 2
        if share_inside(mid) >= min_share:
            hi = mid
        else:
            lo = mid
    return max(0.0, hi)


@dataclass(frozen=True)
class Rules:
    """How strict the classification is. Defaults in ``edge.const``."""

    max_accuracy_m: float = const.MAX_ACCURACY_M
    # The share of the accuracy circle that must be inside to enter on_site. At least one half:
    # below that, a vaguer fix would count as more on site than a sharp one. Shares below 1 are
    # computed as if the fence were straight where the circle crosses it: at a convex corner
    # that slightly overstates the share, so 1 (the default) is the exact and safe setting.
    onsite_min_share: float = const.ONSITE_MIN_SHARE
    onsite_exit_margin_m: float = const.ONSITE_EXIT_MARGIN_M
    arriving_exit_margin_m: float = const.ARRIVING_EXIT_MARGIN_M
    enter_k: float = field(init=False)

    def __post_init__(self) -> None:
        if not 0.5 <= self.onsite_min_share <= 1.0:
            raise ValueError("onsite_min_share must be between 0.5 and 1")
        if not (self.max_accuracy_m > 0 and self.onsite_exit_margin_m >= 0 and self.arriving_exit_margin_m >= 0):
            raise ValueError("accuracy limit must be positive and margins not negative")
        object.__setattr__(self, "enter_k", enter_offset(self.onsite_min_share))


# -- the fence ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Fence:
    """The on-site area (projected to meters, prepared) and the arriving ring's width."""

    geojson: dict[str, Any]  # the on-site area as staff gave it
    arriving_m: float
    projection: Projection
    site: BaseGeometry  # Polygon or MultiPolygon, meters, prepared for containment
    boundary: BaseGeometry  # its rings (outer and holes): the distance to the line
    area_m2: float
    rules: Rules
    # Beyond this distance from the site's bounding box every rule answers "away", so the
    # exact distance is not needed (most pings of a town-wide batch stop here).
    far_m: float
    bounds: tuple[float, float, float, float]

    def signed_distance(self, x: float, y: float) -> float:
        """Meters from the fence line: positive inside the on-site area, negative outside."""
        point = shapely.Point(x, y)
        distance = float(self.boundary.distance(point))
        return distance if self.site.contains(point) else -distance

    def ring(self) -> BaseGeometry:
        """The arriving ring's outer edge as a polygon in degrees (for display only)."""
        return self.projection.to_degrees(self.site.buffer(self.arriving_m, quad_segs=16))

    def centre(self) -> tuple[float, float]:
        """(lat, lon) of the projection's centre."""
        return self.projection.lat0, self.projection.lon0

    def summary(self) -> dict[str, Any]:
        lat, lon = self.centre()
        return {
            "on_site": self.geojson,
            "arriving_m": self.arriving_m,
            "area_m2": round(self.area_m2, 1),
            "centre": {"lat": round(lat, 7), "lon": round(lon, 7)},
            "arriving_ring": mapping(self.ring()),
        }


def _positions(ring: Any, where: str) -> list[tuple[float, float]]:
    if not isinstance(ring, list) or len(ring) < 4:
        raise FenceError(f"{where}: a ring needs at least 4 positions (the first repeated last)")
    out = []
    for index, position in enumerate(ring):
        if not (
            isinstance(position, list)
            and 2 <= len(position) <= 3
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in position)
        ):
            raise FenceError(f"{where}, position {index}: not [longitude, latitude]")
        lon, lat = float(position[0]), float(position[1])
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise FenceError(f"{where}, position {index}: not a finite number")
        if not (-180.0 <= lon <= 180.0 and -85.0 <= lat <= 85.0):
            hint = " (GeoJSON puts longitude first)" if -90 <= lon <= 90 and abs(lat) > 85 else ""
            raise FenceError(f"{where}, position {index}: [{lon}, {lat}] is out of range{hint}")
        out.append((lon, lat))
    if out[0] != out[-1]:
        raise FenceError(f"{where}: the ring is not closed (its last position must repeat the first)")
    return out


def _polygon(coordinates: Any, where: str) -> Polygon:
    if not isinstance(coordinates, list) or not coordinates:
        raise FenceError(f"{where}: a polygon needs at least its outer ring")
    rings = [_positions(ring, f"{where}, ring {index}") for index, ring in enumerate(coordinates)]
    return Polygon(rings[0], rings[1:])


def _geometries(doc: Any, where: str = "the GeoJSON") -> Iterator[Polygon]:
    if not isinstance(doc, dict):
        raise FenceError(f"{where} is not a GeoJSON object")
    kind = doc.get("type")
    if kind == "Polygon":
        yield _polygon(doc.get("coordinates"), where)
    elif kind == "MultiPolygon":
        parts = doc.get("coordinates")
        if not isinstance(parts, list) or not parts:
            raise FenceError(f"{where}: a MultiPolygon needs at least one polygon")
        for index, part in enumerate(parts):
            yield _polygon(part, f"{where}, polygon {index}")
    elif kind == "Feature":
        yield from _geometries(doc.get("geometry"), f"{where}'s geometry")
    elif kind == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list) or not features:
            raise FenceError(f"{where}: the FeatureCollection has no features")
        for index, feature in enumerate(features):
            if not isinstance(feature, dict) or feature.get("type") != "Feature":
                raise FenceError(f"{where}, feature {index}: not a Feature")
            yield from _geometries(feature, f"feature {index}")
    else:
        raise FenceError(
            f"{where} is a {kind!r}: the on-site area must be a Polygon, MultiPolygon, Feature or FeatureCollection"
        )


def parse_fence(geojson: Any, arriving_m: float = const.ARRIVING_M, rules: Rules | None = None) -> Fence:
    """Validate the on-site area and build the fence, or raise ``FenceError`` saying why not."""
    if not (math.isfinite(arriving_m) and const.ARRIVING_MIN_M <= arriving_m <= const.ARRIVING_MAX_M):
        raise FenceError(
            f"the arriving ring must be between {const.ARRIVING_MIN_M:.0f} and {const.ARRIVING_MAX_M:.0f} m wide"
        )
    polygons = list(_geometries(geojson))
    vertices = sum(shapely.get_num_coordinates(polygon) for polygon in polygons)
    if vertices > const.FENCE_MAX_VERTICES:
        raise FenceError(f"the on-site area has {vertices} positions; at most {const.FENCE_MAX_VERTICES}")
    for index, polygon in enumerate(polygons):
        # In degrees, so the place the reason names reads as [longitude latitude].
        if not shapely.is_valid(polygon):
            raise FenceError(f"polygon {index} is not valid: {shapely.is_valid_reason(polygon)}")
    merged = shapely.union_all(polygons) if len(polygons) > 1 else polygons[0]
    min_lon, min_lat, max_lon, max_lat = merged.bounds
    projection = Projection.centred((min_lat + max_lat) / 2, (min_lon + max_lon) / 2)
    site = projection.to_metres(merged)
    if not isinstance(site, Polygon | MultiPolygon) or site.is_empty:
        raise FenceError("the on-site area is empty")
    area = float(site.area)
    if not const.FENCE_MIN_AREA_M2 <= area <= const.FENCE_MAX_AREA_M2:
        raise FenceError(
            f"the on-site area is {area:,.0f} m²: it must be between {const.FENCE_MIN_AREA_M2:,.0f} m² "
            f"and {const.FENCE_MAX_AREA_M2 / 1e6:,.0f} km² (a lot and a building, not a city)"
        )
    minx, miny, maxx, maxy = site.bounds
    if math.hypot(maxx - minx, maxy - miny) > const.FENCE_MAX_EXTENT_M:
        raise FenceError(f"the on-site area spreads over more than {const.FENCE_MAX_EXTENT_M:,.0f} m")
    rules = rules or Rules()
    shapely.prepare(site)
    boundary = site.boundary
    far = max(arriving_m + rules.arriving_exit_margin_m, rules.max_accuracy_m + rules.onsite_exit_margin_m) + 1.0
    return Fence(
        geojson=geojson,
        arriving_m=float(arriving_m),
        projection=projection,
        site=site,
        boundary=boundary,
        area_m2=area,
        rules=rules,
        far_m=far,
        bounds=(minx, miny, maxx, maxy),
    )


# -- classification ----------------------------------------------------------------------------


def _box_distance(fence: Fence, x: float, y: float) -> float:
    """A lower bound of the distance to the site: the distance to its bounding box."""
    minx, miny, maxx, maxy = fence.bounds
    return math.hypot(max(minx - x, 0.0, x - maxx), max(miny - y, 0.0, y - maxy))


def decide(signed_m: float, accuracy_m: float, fence: Fence, previous: PresenceState | None) -> PresenceState:
    """The rule itself, on the fix's signed distance to the fence line (meters, + inside)."""
    rules = fence.rules
    if signed_m >= rules.enter_k * accuracy_m:
        return PresenceState.ON_SITE  # the circle (or the required share of it) is inside
    if previous is PresenceState.ON_SITE and signed_m > -(accuracy_m + rules.onsite_exit_margin_m):
        return PresenceState.ON_SITE  # not clearly outside: keep on_site
    if signed_m >= -fence.arriving_m:
        return PresenceState.ARRIVING
    if previous in IN_RING and signed_m >= -(fence.arriving_m + rules.arriving_exit_margin_m):
        return PresenceState.ARRIVING
    return PresenceState.AWAY


def classify(fix: Fix, fence: Fence, previous: PresenceState | None) -> PresenceState:
    """Where this fix puts the person, given the state before it (``None``: nothing known)."""
    accuracy = fix.accuracy_m
    # NaN fails every comparison, so it lands here too.
    if not (0.0 < accuracy <= fence.rules.max_accuracy_m) or not (math.isfinite(fix.lat) and math.isfinite(fix.lon)):
        return PresenceState.UNCERTAIN
    x, y = fence.projection.forward(fix.lon, fix.lat)
    if _box_distance(fence, x, y) > fence.far_m:
        return PresenceState.AWAY
    return decide(fence.signed_distance(x, y), accuracy, fence, previous)


def classify_many(
    lat: FloatArray, lon: FloatArray, accuracy_m: FloatArray, fence: Fence, previous: CodeArray | None = None
) -> CodeArray:
    """``classify`` over arrays: one state code (``STATES[code]``) per fix. ``previous``: codes,
    or None for "nothing known" (an uncertain previous counts as nothing known, as in ``decide``)."""
    rules = fence.rules
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    accuracy = np.asarray(accuracy_m, dtype=np.float64)
    x, y = fence.projection.forward_arrays(lon, lat)
    valid = np.isfinite(x) & np.isfinite(y) & (accuracy > 0.0) & (accuracy <= rules.max_accuracy_m)
    minx, miny, maxx, maxy = fence.bounds
    box = np.hypot(np.maximum(np.maximum(minx - x, x - maxx), 0.0), np.maximum(np.maximum(miny - y, y - maxy), 0.0))
    near = np.flatnonzero(valid & (box <= fence.far_m))
    signed = np.full(lat.shape, -np.inf)
    if near.size:
        xs, ys = x[near], y[near]
        distance = shapely.distance(fence.boundary, shapely.points(xs, ys))
        signed[near] = np.where(shapely.contains_xy(fence.site, xs, ys), distance, -distance)
    was_on = np.zeros(lat.shape, dtype=bool) if previous is None else previous == ON_SITE
    was_in = np.zeros(lat.shape, dtype=bool) if previous is None else was_on | (previous == ARRIVING)
    states = np.full(lat.shape, AWAY, dtype=np.uint8)
    ring_exit = -(fence.arriving_m + rules.arriving_exit_margin_m)
    states[(signed >= -fence.arriving_m) | (was_in & (signed >= ring_exit))] = ARRIVING
    with np.errstate(invalid="ignore"):  # NaN accuracies are masked by ``valid`` below
        on = (signed >= rules.enter_k * accuracy) | (was_on & (signed > -(accuracy + rules.onsite_exit_margin_m)))
    states[on] = ON_SITE
    states[~valid] = UNCERTAIN
    return states


# -- dwell: the state over time ----------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    """One phone's state over its fixes: what it has settled on, and a change still dwelling."""

    state: PresenceState | None = None  # the answer after the last fix (None: no fix yet)
    place: PresenceState | None = None  # the settled place (away/arriving/on_site): hysteresis's "previous"
    place_since: dt.datetime | None = None
    pending: PresenceState | None = None  # a different place the recent fixes point to
    pending_since: dt.datetime | None = None
    fix_at: dt.datetime | None = None  # the time of the last fix


def settle(
    track: Track,
    raw: PresenceState,
    at: dt.datetime,
    *,
    min_dwell_s: float = const.MIN_DWELL_S,
    gap_s: float = const.TRACK_GAP_S,
) -> Track:
    """The track after a fix classified ``raw`` at ``at`` (the fix's own time, not a clock).

    A poor fix answers "uncertain" at once but moves nothing: it is no evidence of where someone
    is. A change of place takes effect once the fixes have pointed to it for ``min_dwell_s``;
    until then the answer stays the settled place. After ``gap_s`` without fixes the old place
    is forgotten (yesterday's "on site" proves nothing this morning) and the next fix decides."""
    if track.fix_at is not None and (at - track.fix_at).total_seconds() > gap_s:
        track = Track()
    if raw is PresenceState.UNCERTAIN:
        return replace(track, state=raw, fix_at=at)
    if track.place is None or raw is track.place:
        since = at if track.place is None else track.place_since
        return Track(raw, raw, since, None, None, at)
    pending_since = track.pending_since if track.pending is raw and track.pending_since is not None else at
    if (at - pending_since).total_seconds() >= min_dwell_s and (track.pending is raw or min_dwell_s <= 0):
        return Track(raw, raw, pending_since, None, None, at)
    return Track(track.place, track.place, track.place_since, raw, pending_since, at)
