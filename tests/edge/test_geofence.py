"""The geofence: validation, the projection, classification (tables and properties), the dwell.

Positions are in meters east/north of the contract's example point (tests/phones.py draws the
site: a building and an L-shaped parking lot, together non-convex).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge import const
from edge.geofence import (
    CODES,
    STATES,
    Fence,
    FenceError,
    Fix,
    Projection,
    Rules,
    Track,
    classify,
    classify_many,
    enter_offset,
    parse_fence,
    settle,
    share_inside,
)
from edge.models import PresenceState
from tests.phones import DOOR, INSIDE, LOCAL, NOTCH, ORIGIN, at, ring, site_geojson

AWAY, ARRIVING, ON_SITE, UNCERTAIN = (
    PresenceState.AWAY,
    PresenceState.ARRIVING,
    PresenceState.ON_SITE,
    PresenceState.UNCERTAIN,
)
RANK = {AWAY: 0, UNCERTAIN: 0, ARRIVING: 1, ON_SITE: 2}  # how "on site" a state is


@pytest.fixture(scope="module")
def fence() -> Fence:
    return parse_fence(site_geojson())


def fix(x: float, y: float, accuracy_m: float = 5.0) -> Fix:
    lat, lon = at(x, y)
    return Fix(lat, lon, accuracy_m)


# -- the projection -----------------------------------------------------------------------------

_A, _F = 6_378_137.0, 1 / 298.257223563
_B = _A * (1 - _F)


def vincenty(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Geodesic distance on WGS 84 (Vincenty's inverse formula): the reference for the projection."""
    big_l = math.radians(lon2 - lon1)
    u1, u2 = math.atan((1 - _F) * math.tan(math.radians(lat1))), math.atan((1 - _F) * math.tan(math.radians(lat2)))
    su1, cu1, su2, cu2 = math.sin(u1), math.cos(u1), math.sin(u2), math.cos(u2)
    lam = big_l
    for _ in range(200):
        sl, cl = math.sin(lam), math.cos(lam)
        ss = math.hypot(cu2 * sl, cu1 * su2 - su1 * cu2 * cl)
        if ss == 0:
            return 0.0
        cs = su1 * su2 + cu1 * cu2 * cl
        sig = math.atan2(ss, cs)
        sa = cu1 * cu2 * sl / ss
        c2a = 1 - sa * sa
        c2m = cs - 2 * su1 * su2 / c2a if c2a else 0.0
        c = _F / 16 * c2a * (4 + _F * (4 - 3 * c2a))
        previous, lam = lam, big_l + (1 - c) * _F * sa * (sig + c * ss * (c2m + c * cs * (-1 + 2 * c2m * c2m)))
        if abs(lam - previous) < 1e-13:
            break
    u_sq = c2a * (_A * _A - _B * _B) / (_B * _B)
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    big_b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    ds = (
        big_b
        * ss
        * (c2m + big_b / 4 * (cs * (-1 + 2 * c2m * c2m) - big_b / 6 * c2m * (-3 + 4 * ss**2) * (-3 + 4 * c2m**2)))
    )
    return _B * big_a * (sig - ds)


@pytest.mark.parametrize(("radius_m", "tolerance_m"), [(150, 0.005), (1_000, 0.2)])
@pytest.mark.parametrize("lat0", [ORIGIN[0], 0.5, 59.9])
def test_the_local_projection_keeps_distances(radius_m: float, tolerance_m: float, lat0: float) -> None:
    """docs/geofence.md's claim: mm near the fence, centimeters at the arriving ring's edge."""
    projection = Projection.centred(lat0, ORIGIN[1])
    rng = np.random.default_rng(4)
    for _ in range(400):
        (x1, y1), (x2, y2) = rng.uniform(-radius_m, radius_m, (2, 2)) / math.sqrt(2)
        lon1, lat1 = projection.inverse(x1, y1)
        lon2, lat2 = projection.inverse(x2, y2)
        assert abs(math.hypot(x2 - x1, y2 - y1) - vincenty(lat1, lon1, lat2, lon2)) < tolerance_m


@given(st.floats(-3_000, 3_000), st.floats(-3_000, 3_000))
def test_projection_round_trips(x: float, y: float) -> None:
    lon, lat = LOCAL.inverse(x, y)
    back = LOCAL.forward(lon, lat)
    assert back == pytest.approx((x, y), abs=1e-6)


# -- validation ---------------------------------------------------------------------------------


def square(x: float, y: float, side: float) -> list[list[float]]:
    return ring([(x, y), (x + side, y), (x + side, y + side), (x, y + side), (x, y)])  # type: ignore[list-item]


def test_every_accepted_shape_gives_the_same_site(fence: Fence) -> None:
    features = site_geojson()["features"]
    building, lot = (f["geometry"] for f in features)
    multi = {"type": "MultiPolygon", "coordinates": [building["coordinates"], lot["coordinates"]]}
    for doc in (site_geojson(), multi, {"type": "Feature", "properties": {}, "geometry": multi}):
        assert parse_fence(doc).area_m2 == pytest.approx(fence.area_m2, rel=1e-9)
    assert fence.area_m2 == pytest.approx(40 * 35 + 60 * 65 + 60 * 30, rel=1e-6)  # building + both arms of the L
    assert parse_fence(lot).area_m2 == pytest.approx(60 * 65 + 60 * 30, rel=1e-6)


def _bowtie() -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring([(0, 0), (40, 40), (40, 0), (0, 40), (0, 0)])]}


def _with_hole_outside() -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [square(0, 0, 40), square(100, 100, 5)]}


@pytest.mark.parametrize(
    ("doc", "arriving_m", "words"),
    [
        pytest.param(_bowtie(), 800, "Self-intersection", id="self-intersecting"),
        pytest.param(_with_hole_outside(), 800, "Hole lies outside shell", id="hole-outside"),
        pytest.param({"type": "Polygon", "coordinates": [square(0, 0, 40)[:-1]]}, 800, "not closed", id="open"),
        pytest.param({"type": "Polygon", "coordinates": [square(0, 0, 40)[:3]]}, 800, "at least 4", id="short"),
        pytest.param({"type": "Polygon", "coordinates": [square(0, 0, 3)]}, 800, "9 m²", id="too-small"),
        pytest.param({"type": "Polygon", "coordinates": [square(0, 0, 1_500)]}, 800, "and 1 km²", id="too-big"),
        pytest.param(
            {"type": "Polygon", "coordinates": [[[36.7, -119.7], [36.8, -119.7], [36.8, -119.6], [36.7, -119.7]]]},
            800,
            "longitude first",
            id="lat-lon-swapped",
        ),
        pytest.param(
            {"type": "Polygon", "coordinates": [[[0, 0], [float("nan"), 0], [1, 1], [0, 0]]]},
            800,
            "finite",
            id="nan",
        ),
        pytest.param(
            {"type": "Polygon", "coordinates": [[[0, 0], ["a", 0], [1, 1], [0, 0]]]}, 800, "[longitude", id="str"
        ),
        pytest.param({"type": "Point", "coordinates": [0, 0]}, 800, "'Point'", id="point"),
        pytest.param({"type": "FeatureCollection", "features": []}, 800, "no features", id="no-features"),
        pytest.param([1, 2], 800, "not a GeoJSON object", id="list"),
        pytest.param(site_geojson(), 20, "between 50 and 5000 m", id="ring-too-narrow"),
        pytest.param(site_geojson(), float("nan"), "between 50 and 5000 m", id="ring-nan"),
    ],
)
def test_a_bad_fence_is_refused_saying_why(doc: Any, arriving_m: float, words: str) -> None:
    with pytest.raises(FenceError) as refused:
        parse_fence(doc, arriving_m)
    assert words in str(refused.value)


def test_two_sites_far_apart_are_refused() -> None:
    doc = {"type": "MultiPolygon", "coordinates": [[square(0, 0, 30)], [square(4_000, 0, 30)]]}
    with pytest.raises(FenceError, match="spreads over more than"):
        parse_fence(doc)


def test_the_summary_shows_the_ring_in_degrees(fence: Fence) -> None:
    summary = fence.summary()
    assert summary["arriving_m"] == const.ARRIVING_M
    assert summary["arriving_ring"]["type"] == "Polygon"
    lon, lat = summary["arriving_ring"]["coordinates"][0][0]
    assert abs(lat - ORIGIN[0]) < 0.02
    assert abs(lon - ORIGIN[1]) < 0.02


# -- classification: the table ------------------------------------------------------------------

SOUTH_20 = (-30.0, -60.0)  # 20 m south of the lot's south edge


@pytest.mark.parametrize(
    ("where", "accuracy_m", "previous", "expected"),
    [
        pytest.param(INSIDE, 5, None, ON_SITE, id="middle of the lot"),
        pytest.param(INSIDE, 14.9, None, ON_SITE, id="circle just inside (15 m clearance)"),
        pytest.param(INSIDE, 16, None, ARRIVING, id="circle crosses the line: not proof"),
        pytest.param(INSIDE, 16, ON_SITE, ON_SITE, id="...but does not make an on-site phone leave"),
        pytest.param(DOOR, 5, None, ON_SITE, id="at the door"),
        pytest.param(SOUTH_20, 5, None, ARRIVING, id="20 m outside, 5 m: off site, in the ring"),
        pytest.param(SOUTH_20, 50, None, ARRIVING, id="20 m outside, 50 m: not on site"),
        pytest.param(SOUTH_20, 50, ARRIVING, ARRIVING, id="20 m outside, 50 m, arriving: still not on site"),
        pytest.param(SOUTH_20, 5, ON_SITE, ARRIVING, id="20 m outside, 5 m: clearly outside, leaves"),
        pytest.param(SOUTH_20, 50, ON_SITE, ON_SITE, id="20 m outside, 50 m: not clearly outside, stays"),
        pytest.param(NOTCH, 3, None, ARRIVING, id="in the L's notch: off site"),
        pytest.param(NOTCH, 3, ON_SITE, ARRIVING, id="notch, sharp fix: leaves"),
        pytest.param(NOTCH, 6, ON_SITE, ON_SITE, id="notch, 10 m from the building, 6 m: stays"),
        pytest.param((0, -700), 10, None, ARRIVING, id="660 m out: in the ring"),
        pytest.param((0, -880), 10, None, AWAY, id="840 m out: beyond the ring"),
        pytest.param((0, -880), 10, ARRIVING, ARRIVING, id="840 m out, arriving: within the ring's margin"),
        pytest.param((0, -900), 10, ARRIVING, AWAY, id="860 m out: beyond the margin too"),
        pytest.param((0, -5_000), 10, ON_SITE, AWAY, id="5 km out"),
        pytest.param(INSIDE, 101, None, UNCERTAIN, id="accuracy worse than 100 m"),
        pytest.param(INSIDE, 101, ON_SITE, UNCERTAIN, id="...whatever came before"),
        pytest.param(INSIDE, 0, None, UNCERTAIN, id="zero accuracy is no fix"),
        pytest.param(INSIDE, float("nan"), None, UNCERTAIN, id="NaN accuracy"),
    ],
)
def test_classify(
    fence: Fence, where: tuple[float, float], accuracy_m: float, previous: PresenceState | None, expected: PresenceState
) -> None:
    assert classify(fix(*where, accuracy_m), fence, previous) is expected


def test_nan_coordinates_are_uncertain(fence: Fence) -> None:
    assert classify(Fix(float("nan"), ORIGIN[1], 5), fence, ON_SITE) is UNCERTAIN


@pytest.mark.parametrize(("share", "offset"), [(1.0, 1.0), (0.5, 0.0), (0.9, 0.6870), (0.8, 0.4919)])
def test_the_share_rule_is_one_comparison(share: float, offset: float) -> None:
    assert enter_offset(share) == pytest.approx(offset, abs=1e-4)
    if share < 1:
        assert share_inside(enter_offset(share)) == pytest.approx(share, abs=1e-9)


def test_a_share_below_one_lets_a_straddling_circle_in() -> None:
    lenient = parse_fence(site_geojson(), rules=Rules(onsite_min_share=0.9))
    # 15 m inside the south edge with a 20 m circle: 0.75 r inside, about 93 % of the circle.
    assert classify(fix(-30, -25, 20), lenient, None) is ON_SITE
    assert classify(fix(-30, -25, 25), lenient, None) is ARRIVING  # 0.6 r: about 86 %
    with pytest.raises(ValueError, match=r"between 0\.5 and 1"):
        Rules(onsite_min_share=0.4)


# -- classification: properties -----------------------------------------------------------------

near = st.floats(-1_000, 1_000, allow_nan=False)
accuracies = st.floats(0.1, 150.0, allow_nan=False)
states = st.sampled_from([None, AWAY, ARRIVING, ON_SITE, UNCERTAIN])


@settings(max_examples=300)
@given(near, near, accuracies, accuracies, st.sampled_from([None, AWAY, ARRIVING, UNCERTAIN]))
def test_worse_accuracy_never_makes_a_fix_more_on_site(
    fence: Fence, x: float, y: float, a: float, b: float, previous: PresenceState | None
) -> None:
    sharp, vague = sorted((a, b))
    assert RANK[classify(fix(x, y, vague), fence, previous)] <= RANK[classify(fix(x, y, sharp), fence, previous)]


@settings(max_examples=300)
@given(near, near, accuracies, accuracies)
def test_from_on_site_a_vaguer_fix_never_leaves_sooner(fence: Fence, x: float, y: float, a: float, b: float) -> None:
    """The one deliberate exception to the rule above: leaving needs proof, and a vague fix is
    none (bounded by MAX_ACCURACY_M, beyond which the answer is uncertain: not on site)."""
    sharp, vague = sorted((a, b))
    assume(vague <= const.MAX_ACCURACY_M)
    if classify(fix(x, y, sharp), fence, ON_SITE) is ON_SITE:
        assert classify(fix(x, y, vague), fence, ON_SITE) is ON_SITE


@settings(max_examples=300)
@given(st.floats(0, 2 * math.pi), st.floats(1.0, 4_000.0), accuracies, states)
def test_never_on_site_from_outside_the_ring(
    fence: Fence, bearing: float, beyond_m: float, accuracy_m: float, previous: PresenceState | None
) -> None:
    # A point beyond_m outside the ring's edge, measured from the site's own outline.
    x, y = (
        (fence.arriving_m + 110 + beyond_m) * math.sin(bearing),
        (fence.arriving_m + 110 + beyond_m) * math.cos(bearing),
    )
    assert classify(fix(x, y, accuracy_m), fence, previous) is not ON_SITE


@settings(max_examples=300)
@given(near, near, accuracies, st.sampled_from([None, AWAY, ARRIVING, UNCERTAIN]))
def test_never_on_site_when_the_centre_is_off_site(
    fence: Fence, x: float, y: float, accuracy_m: float, previous: PresenceState | None
) -> None:
    lat, lon = at(x, y)
    fx, fy = fence.projection.forward(lon, lat)
    assume(fence.signed_distance(fx, fy) < 0)
    assert classify(Fix(lat, lon, accuracy_m), fence, previous) is not ON_SITE


def _thresholds(fence: Fence, signed: float, accuracy_m: float) -> list[float]:
    rules = fence.rules
    return [
        signed - rules.enter_k * accuracy_m,
        signed + accuracy_m + rules.onsite_exit_margin_m,
        signed + fence.arriving_m,
        signed + fence.arriving_m + rules.arriving_exit_margin_m,
    ]


SITES = [(ORIGIN[0], ORIGIN[1]), (59.91, 10.75), (-0.18, -78.47), (-33.87, 151.21)]  # Fresno, Oslo, Quito, Sydney


@settings(max_examples=200)
@given(near, near, accuracies, states, st.sampled_from(SITES[1:]))
def test_the_same_lot_anywhere_on_earth_classifies_the_same(
    fence: Fence, x: float, y: float, accuracy_m: float, previous: PresenceState | None, site: tuple[float, float]
) -> None:
    """Symmetric under projection round trips: the lot drawn in meters, placed in Fresno or in
    Oslo, and a fix the same meters from it, give the same state."""
    elsewhere = Projection.centred(*site)
    moved = parse_fence(_relocated(site_geojson(), elsewhere))
    here_x, here_y = fence.projection.forward(*reversed(at(x, y)))
    # A fix within a centimeter of a threshold may fall either way (the two projections differ
    # by millimeters): not what this property is about.
    assume(all(abs(t) > 0.01 for t in _thresholds(fence, fence.signed_distance(here_x, here_y), accuracy_m)))
    lon, lat = elsewhere.inverse(x, y)
    assert classify(Fix(lat, lon, accuracy_m), moved, previous) is classify(fix(x, y, accuracy_m), fence, previous)


def _relocated(doc: dict[str, Any], elsewhere: Projection) -> dict[str, Any]:
    def move(positions: list[list[float]]) -> list[list[float]]:
        return [list(elsewhere.inverse(*LOCAL.forward(lon, lat))) for lon, lat in positions]

    features = [
        {**f, "geometry": {"type": "Polygon", "coordinates": [move(r) for r in f["geometry"]["coordinates"]]}}
        for f in doc["features"]
    ]
    return {"type": "FeatureCollection", "features": features}


@settings(max_examples=50)
@given(st.integers(0, 2**32 - 1))
def test_the_vectorized_path_agrees_with_the_scalar_one(fence: Fence, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    xy = np.concatenate([rng.uniform(-150, 150, (n // 2, 2)), rng.uniform(-1_500, 1_500, (n - n // 2, 2))])
    lon = LOCAL.lon0 + xy[:, 0] / LOCAL.m_per_deg_lon
    lat = LOCAL.lat0 + xy[:, 1] / LOCAL.m_per_deg_lat
    accuracy = rng.uniform(0.5, 130, n)
    accuracy[rng.random(n) < 0.05] = np.nan
    lat[rng.random(n) < 0.02] = np.nan
    previous = rng.integers(0, 4, n).astype(np.uint8)
    codes = classify_many(lat, lon, accuracy, fence, previous)
    expected = [
        CODES[classify(Fix(la, lo, ac), fence, STATES[p])]
        for la, lo, ac, p in zip(lat, lon, accuracy, previous, strict=True)
    ]
    assert codes.tolist() == expected


# -- the dwell ----------------------------------------------------------------------------------

T0 = dt.datetime(2026, 11, 29, 18, 0, tzinfo=dt.UTC)


def run(raws: list[tuple[float, PresenceState]], track: Track | None = None) -> list[PresenceState | None]:
    answers = []
    track = track or Track()
    for seconds, raw in raws:
        track = settle(track, raw, T0 + dt.timedelta(seconds=seconds))
        answers.append(track.state)
    return answers


@pytest.mark.parametrize(
    ("raws", "answers"),
    [
        pytest.param([(0, ON_SITE)], [ON_SITE], id="a first fix decides at once"),
        pytest.param(
            [(0, ARRIVING), (5, ON_SITE), (10, ON_SITE), (15, ON_SITE)],
            [ARRIVING, ARRIVING, ARRIVING, ON_SITE],
            id="entering takes the dwell",
        ),
        pytest.param(
            [(0, ON_SITE), (5, ARRIVING), (10, ARRIVING), (15, ARRIVING)],
            [ON_SITE, ON_SITE, ON_SITE, ARRIVING],
            id="so does leaving",
        ),
        pytest.param(
            [(0, ARRIVING), (5, ON_SITE), (10, ARRIVING), (15, ON_SITE), (20, ARRIVING), (25, ON_SITE)],
            [ARRIVING] * 6,
            id="a bouncing fix never flips",
        ),
        pytest.param(
            [(0, ARRIVING), (5, ON_SITE), (10, UNCERTAIN), (15, ON_SITE)],
            [ARRIVING, ARRIVING, UNCERTAIN, ON_SITE],
            id="a vague fix answers uncertain and moves nothing",
        ),
        pytest.param(
            [(0, ON_SITE), (0 + const.TRACK_GAP_S + 1, AWAY)],
            [ON_SITE, AWAY],
            id="after a long gap the next fix decides alone",
        ),
    ],
)
def test_settle(raws: list[tuple[float, PresenceState]], answers: list[PresenceState]) -> None:
    assert run(raws) == answers


def test_a_fix_bouncing_on_the_line_does_not_flip(fence: Fence) -> None:
    """Real geometry: 6 m inside / 12 m outside the lot's south edge, every 5 s, 5 m accuracy.
    Each fix alone would flip the state; hysteresis and dwell keep it where it was."""
    for first in (ARRIVING, ON_SITE):
        track = settle(Track(), first, T0)
        answers = []
        for i in range(1, 13):
            where = (-30.0, -34.0) if i % 2 else (-30.0, -52.0)
            raw = classify(fix(*where, 5.0), fence, track.place)
            track = settle(track, raw, T0 + dt.timedelta(seconds=5 * i))
            answers.append(track.state)
        assert answers == [first] * 12
