"""The camera scanner: ``decode_frame`` (a frame in, the QR texts in it out) and ``ScanLoop``.

``decode_frame`` is built on what the bench (``scripts/bench qr``, docs/scanner.md) measured
on the generated corpus (edge/qr_scenes.py), one core:

1. zxing-cpp on the whole grey frame, asked for QR Model 2 and Micro QR. It reads most codes
   in about a millisecond, and with ``return_errors`` it also reports what it *saw* but could
   not read: a whole code with a checksum error, or a lone finder pattern it took for a Micro
   QR code (blurred, noisy, tiny codes leave exactly those). Asking for Micro QR costs nothing
   measurable and is what makes those fragments visible; a Micro QR code is never a token
   (35 characters at most), so only Model 2 texts are ever returned.
2. When it saw nothing at all, zxing-cpp once more on the frame at half size: a blurred code
   is sharper there. About a quarter of the first pass's cost, so an empty frame stays cheap.
3. Only where a symbol was seen but not read: the rescue cascade on crops around it (a tight
   crop and a wide one, since a fragment is one corner of the code), resized to about five
   pixels a module, sharpened, binarised (Otsu, adaptive), contrast-equalised and
   perspective-rectified, each read by zxing-cpp (cheap) and then pyzbar restricted to QR
   (slower, but it reads blurred and noisy crops zxing-cpp does not), pyzbar on the inverted
   crop when the code is light on dark (it reads dark-on-light only). It stops at the
   first text.

Nothing here raises on any input: a frame of any shape, dtype or size returns a list, empty
when there is nothing to read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import zxingcpp
from pyzbar import pyzbar
from pyzbar.pyzbar import ZBarSymbol

from edge import const
from edge.camera import READ_BLOCK_MAX_S, Camera, CameraError, Frame, Grabber

log = logging.getLogger(__name__)

Gray = npt.NDArray[Any]  # 2-D uint8 (OpenCV's stubs type images loosely; so do we)
Quad = npt.NDArray[np.float32]  # 4 x 2 corners: top-left, top-right, bottom-right, bottom-left

_QR = zxingcpp.BarcodeFormat.QRCodeModel2
_MICRO = zxingcpp.BarcodeFormat.MicroQRCode
_QR_FAMILY = zxingcpp.BarcodeFormat.QRCode  # what a Model 2 result reports as its format
_FIRST_PASS_FORMATS = zxingcpp.BarcodeFormats([_QR, _MICRO])
_QR_ONLY = zxingcpp.BarcodeFormats(_QR)
_ZBAR_QR = [ZBarSymbol.QRCODE]

MIN_SIDE_PX = 21  # a version-1 code at one pixel a module: nothing smaller can hold a code
MAX_SIDE_PX = 4096  # bigger frames are shrunk first: no camera sends more, and time must stay bounded
MAX_REGIONS = 2  # seen-but-unread places rescued per frame (bait must not cost a second)
TARGET_MODULE_PX = 5.0  # what the rescue resizes a crop to: pyzbar reads best near here
_MICRO_MODULES = {"M1": 11, "M2": 13, "M3": 15, "M4": 17}
_CODE_MODULES = 45 + 4  # a version-7 code and half its quiet zone: the most a token needs


# -- the frame in -------------------------------------------------------------------------------


def as_gray(frame: object) -> Gray | None:
    """A contiguous 2-D uint8 image from whatever a caller hands in, or None if it holds none.

    BGR, BGRA and grey; any integer, float or bool dtype (floats of 0..1 are scaled up, NaN is
    black); frames beyond ``MAX_SIDE_PX`` are shrunk."""
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        return None
    img = frame
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            img = img[:, :, 0]
        elif channels not in (3, 4):
            return None
    if img.shape[0] < MIN_SIDE_PX or img.shape[1] < MIN_SIDE_PX:
        return None
    img = _as_uint8(img)
    if img.ndim == 3:
        code = cv2.COLOR_BGR2GRAY if img.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        img = cv2.cvtColor(np.ascontiguousarray(img), code)
    longest = max(img.shape[:2])
    if longest > MAX_SIDE_PX:
        scale = MAX_SIDE_PX / longest
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)


def _as_uint8(img: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(img.dtype, np.floating):
        f = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if f.size and float(f.max()) <= 1.0:
            f = f * 255.0
        return np.clip(f, 0, 255).astype(np.uint8)
    if np.issubdtype(img.dtype, np.integer):
        if img.dtype.itemsize > 1 and img.size and int(img.max()) > 255:
            # 16-bit sensors and the like: keep the top byte of the range in use.
            top = int(img.max())
            scaled: npt.NDArray[Any] = (img.astype(np.float64) * (255.0 / top)).clip(0, 255).astype(np.uint8)
            return scaled
        clipped: npt.NDArray[Any] = np.clip(img, 0, 255).astype(np.uint8)
        return clipped
    return np.zeros(img.shape, np.uint8)  # complex or object arrays: nothing to read


# -- decode_frame -------------------------------------------------------------------------------


def decode_frame(frame: object) -> list[str]:
    """The texts of the QR codes in ``frame`` (a BGR or grey numpy image), first seen first.

    Never raises: anything that is not an image, or an image with no code, gives ``[]``."""
    try:
        gray = as_gray(frame)
        if gray is None:
            return []
        return _decode(gray)
    except Exception:
        # A decoder bug must never stop the door's camera: log it (rarely) and read on.
        _log_failure_once()
        return []


_failures_logged = 0


def _log_failure_once() -> None:
    global _failures_logged  # noqa: PLW0603 - a log throttle, nothing else
    if _failures_logged < 3:
        _failures_logged += 1
        log.exception("decode_frame failed on a frame (reading on)")


def _decode(gray: Gray) -> list[str]:
    read: dict[str, _Box] = {}  # text -> where it was read (insertion order: first seen first)
    seen: list[_Seen] = []
    _first_pass(gray, 1.0, read, seen)
    if not read and not seen:
        half = cv2.resize(gray, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        if min(half.shape) >= MIN_SIDE_PX:
            _first_pass(half, 2.0, read, seen, try_downscale=False)
    if seen:
        rescued = 0
        for region in _regions(seen):
            if rescued >= MAX_REGIONS:
                break
            # A fragment inside a code already read is that code's own corner.
            if any(_overlap(region.box, box) > 0.5 for box in read.values()):
                continue
            rescued += 1
            text = _rescue(gray, region)
            if text is not None and text not in read:
                read[text] = region.box
    return list(read)


# -- what zxing-cpp saw -------------------------------------------------------------------------


_Box = tuple[float, float, float, float]  # x0, y0, x1, y1


@dataclass(frozen=True)
class _Seen:
    quad: Quad
    module_px: float  # about, from the version zxing-cpp took it for
    whole: bool  # a QR code (checksum error), not a lone finder pattern taken for Micro QR


def _first_pass(
    gray: Gray, scale: float, read: dict[str, _Box], seen: list[_Seen], *, try_downscale: bool = True
) -> None:
    results = zxingcpp.read_barcodes(gray, formats=_FIRST_PASS_FORMATS, return_errors=True, try_downscale=try_downscale)
    for result in results:
        quad = _quad(result) * np.float32(scale)
        whole = result.format == _QR_FAMILY  # Model 2 codes report the family; fragments Micro QR
        if result.valid:
            if whole and result.text:
                read.setdefault(result.text, _box(quad))
            continue  # a real Micro QR code is never a token: not even a lead
        modules = _modules(result)
        side = _side(quad)
        if side >= 4:
            seen.append(_Seen(quad, side / modules, whole))


def _quad(result: zxingcpp.Barcode) -> Quad:
    p = result.position
    corners = (p.top_left, p.top_right, p.bottom_right, p.bottom_left)
    return np.array([[c.x, c.y] for c in corners], np.float32)


def _modules(result: zxingcpp.Barcode) -> int:
    extra = result.extra
    version = str(extra.get("Version", "")) if isinstance(extra, dict) else ""
    if version in _MICRO_MODULES:
        return _MICRO_MODULES[version]
    if version.isdigit() and 1 <= int(version) <= 40:
        return 17 + 4 * int(version)
    return 45  # version 7, the biggest a token may need


def _side(quad: Quad) -> float:
    return float(np.mean(np.linalg.norm(quad - np.roll(quad, 1, axis=0), axis=1)))


def _box(quad: Quad) -> _Box:
    x0, y0 = quad.min(axis=0)
    x1, y1 = quad.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _overlap(a: _Box, b: _Box) -> float:
    """How much of ``a`` lies inside ``b`` (0..1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    area = max((a[2] - a[0]) * (a[3] - a[1]), 1e-6)
    return max(w, 0.0) * max(h, 0.0) / area


@dataclass(frozen=True)
class _Region:
    box: _Box
    module_px: float
    quad: Quad | None  # a whole code's corners, when zxing-cpp found them: worth rectifying


def _regions(seen: list[_Seen]) -> list[_Region]:
    """Group what was seen into places: the fragments of one code (its three finder patterns,
    each taken for a Micro QR code) lie within about a code's width of each other."""
    groups: list[list[_Seen]] = []
    for item in sorted(seen, key=lambda s: -_side(s.quad)):
        box = _grow(_box(item.quad), 0.6)
        for group in groups:
            if any(_overlap(box, _grow(_box(other.quad), 0.6)) > 0 for other in group):
                group.append(item)
                break
        else:
            groups.append([item])
    regions = []
    for group in groups:
        boxes = np.array([_box(item.quad) for item in group])
        box = (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))
        module_px = float(np.median([item.module_px for item in group]))
        wholes = [item.quad for item in group if item.whole]
        regions.append(_Region(box, module_px, max(wholes, key=_side) if wholes else None))
    # Biggest first: a phone held up to the camera is the largest thing there.
    regions.sort(key=lambda r: -((r.box[2] - r.box[0]) * (r.box[3] - r.box[1])))
    return regions


def _grow(box: _Box, by: float) -> _Box:
    w, h = box[2] - box[0], box[3] - box[1]
    d = by * max(w, h)
    return box[0] - d, box[1] - d, box[2] + d, box[3] + d


# -- the rescue cascade -------------------------------------------------------------------------


def _rescue(gray: Gray, region: _Region) -> str | None:
    for candidate in _candidates(gray, region):
        text = _read_zxing(candidate.image)
        if text is None and candidate.zbar:
            text = _read_zbar(candidate.image, candidate.light_on_dark)
        if text is not None:
            return text
    return None


@dataclass(frozen=True)
class _Candidate:
    image: Gray
    zbar: bool  # worth pyzbar's few milliseconds too (zxing-cpp alone for the cheap variants)
    light_on_dark: bool


def _candidates(gray: Gray, region: _Region) -> Iterator[_Candidate]:
    """Variants of one crop around the region, cheapest and likeliest first (the bench's order)."""
    crop = _crop(gray, _crop_box(region))
    if crop is None:
        return
    scale = min(max(TARGET_MODULE_PX / max(region.module_px, 0.5), 0.35), 3.0)
    if abs(scale - 1.0) > 0.05:
        interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=interpolation)
    dark = _light_on_dark(crop)
    module = region.module_px * scale
    sharp = _sharpen(crop, module)
    block = int(max(module * 5, 11)) | 1
    yield _Candidate(sharp, zbar=False, light_on_dark=dark)
    yield _Candidate(_otsu(crop), zbar=False, light_on_dark=dark)
    yield _Candidate(_clahe(crop), zbar=False, light_on_dark=dark)
    if region.quad is not None:
        rect = _rectify(gray, region.quad)
        yield _Candidate(_sharpen(rect, TARGET_MODULE_PX * 1.6), zbar=True, light_on_dark=dark)
        yield _Candidate(_adaptive(rect, 41), zbar=True, light_on_dark=dark)
    yield _Candidate(_adaptive(sharp, block), zbar=True, light_on_dark=dark)
    yield _Candidate(sharp, zbar=True, light_on_dark=dark)
    yield _Candidate(_adaptive(crop, block), zbar=True, light_on_dark=dark)


def _crop_box(region: _Region) -> _Box:
    """The region grown to hold a whole token's code: a lone finder pattern (seen as a Micro QR
    code) is one corner of it, and the code may lie on any side, up to a code's width away."""
    x0, y0, x1, y1 = region.box
    code_px = _CODE_MODULES * region.module_px
    slack = 0.2 * max(x1 - x0, y1 - y0)
    dx = max(slack, code_px - (x1 - x0))
    dy = max(slack, code_px - (y1 - y0))
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy


def _crop(gray: Gray, box: _Box) -> Gray | None:
    h, w = gray.shape
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(box[2]) + 1, w), min(int(box[3]) + 1, h)
    if x1 - x0 < MIN_SIDE_PX or y1 - y0 < MIN_SIDE_PX:
        return None
    return gray[y0:y1, x0:x1]


def _light_on_dark(crop: Gray) -> bool:
    """Dark mode: the quiet zone around the code (the crop's rim) is darker than the code."""
    rim = max(2, min(crop.shape) // 12)
    edges = np.concatenate([crop[:rim].ravel(), crop[-rim:].ravel(), crop[:, :rim].ravel(), crop[:, -rim:].ravel()])
    return float(np.median(edges)) < float(np.mean(crop)) - 10


def _sharpen(img: Gray, module_px: float) -> Gray:
    blurred = cv2.GaussianBlur(img, (0, 0), max(module_px * 0.6, 1.0))
    return cv2.addWeighted(img, 2.0, blurred, -1.0, 0)


def _otsu(img: Gray) -> Gray:
    return cv2.threshold(img, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[1]


def _adaptive(img: Gray, block: int) -> Gray:
    return cv2.adaptiveThreshold(img, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block | 1, 2)


def _clahe(img: Gray) -> Gray:
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(img)


_RECT_SIDE = 360  # the code, rectified: about eight pixels a module for version 7
_RECT_PAD = 40  # and a quiet zone around it


def _rectify(gray: Gray, quad: Quad) -> Gray:
    """The code as if seen face on: a tilted phone's code becomes square again."""
    a, b = _RECT_PAD, _RECT_PAD + _RECT_SIDE
    target = np.array([[a, a], [b, a], [b, b], [a, b]], np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    size = _RECT_SIDE + 2 * _RECT_PAD
    return cv2.warpPerspective(gray, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _read_zxing(img: Gray) -> str | None:
    for result in zxingcpp.read_barcodes(img, formats=_QR_ONLY, try_downscale=False):
        if result.valid and result.text:
            return result.text
    return None


def _read_zbar(img: Gray, light_on_dark: bool) -> str | None:
    if light_on_dark:
        img = cv2.bitwise_not(img)
    for symbol in pyzbar.decode(img, symbols=_ZBAR_QR):
        text = str(symbol.data.decode("utf-8", "replace"))
        if text:
            return text
    return None


# -- the scan loop ------------------------------------------------------------------------------


class ScanState(StrEnum):
    STARTING = "starting"
    SCANNING = "scanning"
    CAMERA_LOST = "camera_lost"  # not there, or stopped delivering: reconnecting with back-off
    ENDED = "ended"  # a replay (file, folder) played to its end
    STOPPED = "stopped"


@dataclass(frozen=True)
class PostResult:
    """What the hub said to a scanned text (the poster turns its HTTP answer into this)."""

    delivered: bool  # the hub answered; False: unreachable, timed out (try again later)
    outcome: str  # "identified", a refusal code ("expired", "not_a_token", ...), or why undelivered
    person_id: str | None = None


@dataclass(frozen=True)
class ScannerHealth:
    """What the scanner tells the hub every ``SCAN_HEALTH_INTERVAL_S`` and on each change of state."""

    station_id: str
    state: ScanState
    camera: str  # the source, without credentials
    fps: float  # frames decoded per second over the last interval
    camera_fps: float  # frames the camera delivered per second (the rest were dropped: newest only)
    decode_ms: float | None  # mean time of one decode_frame over the last interval
    last_frame_at: dt.datetime | None
    last_decode_at: dt.datetime | None  # when a code was last read
    scans: int  # texts posted to the hub since the start
    detail: str | None = None  # why the camera is lost, say

    def as_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "camera": self.camera,
            "fps": round(self.fps, 2),
            "camera_fps": round(self.camera_fps, 2),
            "decode_ms": None if self.decode_ms is None else round(self.decode_ms, 3),
            "last_frame_at": _iso(self.last_frame_at),
            "last_decode_at": _iso(self.last_decode_at),
            "scans": self.scans,
            "detail": self.detail,
        }


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


Poster = Callable[[str, str], PostResult]  # (station_id, text) -> what the hub said
Reporter = Callable[[ScannerHealth], None]
Decoder = Callable[[Frame], list[str]]


def text_ref(text: str) -> str:
    """How a scanned text appears in logs: a hash prefix, never the token itself."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:8]


class Debounce:
    """The same text seen again within ``window_s`` of its last sighting is the same scan: a
    phone held up for five seconds is one check-in, not fifty."""

    def __init__(self, window_s: float = const.SCAN_DEBOUNCE_S, *, max_texts: int = 256) -> None:
        self.window_s = window_s
        self._last: dict[str, float] = {}
        self._max = max_texts

    def sighting(self, text: str, now: float) -> bool:
        """Record a sighting at ``now`` (monotonic seconds); True when it starts a new scan."""
        last = self._last.pop(text, None)
        self._last[text] = now  # re-inserted: the dict stays ordered oldest sighting first
        if len(self._last) > self._max:
            for old in list(self._last)[: len(self._last) - self._max]:
                del self._last[old]
        return last is None or now - last >= self.window_s

    def forget(self, text: str) -> None:
        """The scan did not get through: the next sighting is a new scan."""
        self._last.pop(text, None)


class _StuckCamera(Exception):
    """The grabber's read never returned."""


class ScanLoop:
    """Capture -> newest frame -> decode_frame -> debounce -> post, until ``stop`` is set.

    The camera is reopened with exponential back-off when it is missing or stops delivering; a
    replay that ends without looping ends the loop. Health goes to ``report`` every
    ``health_interval_s`` and at once on each change of state; each change is logged once."""

    def __init__(
        self,
        station_id: str,
        camera: Camera,
        post: Poster,
        report: Reporter | None = None,
        *,
        decode: Decoder = decode_frame,
        fps: float | None = const.SCAN_FPS,
        debounce_s: float = const.SCAN_DEBOUNCE_S,
        health_interval_s: float = const.SCAN_HEALTH_INTERVAL_S,
        stall_s: float = const.SCAN_STALL_S,
        backoff_base_s: float = const.SCAN_BACKOFF_BASE_S,
        backoff_max_s: float = const.SCAN_BACKOFF_MAX_S,
        read_block_max_s: float = READ_BLOCK_MAX_S,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.station_id = station_id
        self.camera = camera
        self._post = post
        self._report = report
        self._decode = decode
        self._interval = 1.0 / fps if fps and fps > 0 else 0.0
        self._fps = fps
        self.debounce = Debounce(debounce_s)
        self._health_interval = health_interval_s
        self._stall = max(stall_s, 3 * self._interval)
        self._backoff_base = backoff_base_s
        self._backoff_max = backoff_max_s
        self._read_block_max = read_block_max_s
        self._monotonic = monotonic
        self._wall = wall
        self.state = ScanState.STARTING
        self._detail: str | None = None
        # Counters of the current health interval, and what outlives it.
        self._window_start = monotonic()
        self._window_decodes = 0
        self._window_decode_s = 0.0
        self._window_delivered = 0  # frames the camera delivered in this interval (decoded or dropped)
        # The grabber's count when the interval began; it carries over a reconnect (a new grabber
        # counts from zero) so the interval still counts the old session's frames.
        self._delivered_before_window = 0
        self._grabber: Grabber | None = None
        self._last_frame_at: dt.datetime | None = None
        self._last_decode_at: dt.datetime | None = None
        self.scans = 0
        self._hub_ok = True
        self._post_after = 0.0  # monotonic time before which no post is tried (hub unreachable)
        self._post_backoff = backoff_base_s
        self._report_failed = False

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> ScanState:
        """Scan until ``stop`` is set (or a replay ends); returns the final state."""
        # One core at most: OpenCV's own thread pool would take them all for a resize.
        cv2.setNumThreads(1)
        # OpenCV warns on every failed open of a missing camera; the loop logs the change once.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        backoff = self._backoff_base
        while not stop.is_set():
            try:
                self.camera.open()
            except Exception as exc:  # CameraError, or a driver's own complaint
                self._set_state(ScanState.CAMERA_LOST, str(exc) if isinstance(exc, CameraError) else repr(exc))
                stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_max)
                continue
            self._set_state(ScanState.SCANNING)
            try:
                delivered = self._scan(stop)
            except _StuckCamera:
                # A driver that never returns from a read cannot be closed under it, nor reopened:
                # leave, and let the supervisor (systemd's Restart=) start a clean process.
                log.error("%s: camera %s is stuck in its driver; exiting", self.station_id, self.camera.name)
                self._set_state(ScanState.CAMERA_LOST, "stuck in the camera driver")
                return self.state
            self._close_camera()
            if delivered:
                backoff = self._backoff_base  # it worked for a while: start the back-off over
            if stop.is_set():
                break
            if self.camera.exhausted:
                self._set_state(ScanState.ENDED)
                return self.state
            self._set_state(ScanState.CAMERA_LOST, "the camera stopped delivering frames")
            stop.wait(backoff)
            backoff = min(backoff * 2, self._backoff_max)
        self._set_state(ScanState.STOPPED)
        return self.state

    def _scan(self, stop: threading.Event) -> int:
        """Decode the newest frames until the camera fails or ``stop``; returns frames delivered."""
        grabber = Grabber(self.camera, pace_fps=self.camera.fps or self._fps, monotonic=self._monotonic).start()
        self._grabber = grabber
        last_seq = 0
        last_frame = self._monotonic()
        due = last_frame
        try:
            while not stop.is_set():
                got = grabber.next(last_seq, timeout=0.25)  # short: a stop is noticed at once
                now = self._monotonic()
                self._window_delivered = grabber.delivered - self._delivered_before_window
                self._maybe_report(now)
                if got is None:
                    if grabber.failed:
                        return grabber.delivered
                    if now - last_frame > self._stall:
                        log.warning("%s: no frame for %.0f s", self.camera.name, now - last_frame)
                        return grabber.delivered
                    continue
                last_seq, last_frame = got.seq, now
                self._last_frame_at = self._wall()
                self._handle_frame(got.image, now)
                if self._interval:
                    # Decode at most fps frames a second: the rest of the time the core is free.
                    due = max(due + self._interval, self._monotonic() - self._interval)
                    wait = due - self._monotonic()
                    if wait > 0:
                        stop.wait(wait)
            return grabber.delivered
        finally:
            stopped = grabber.stop(join_s=self._read_block_max if self.camera.live else 2.0)
            self._delivered_before_window -= grabber.delivered
            self._grabber = None
            if not stopped:
                raise _StuckCamera

    def _close_camera(self) -> None:
        try:
            self.camera.close()
        except Exception:
            log.exception("closing %s failed", self.camera.name)

    def _handle_frame(self, image: Frame, now: float) -> None:
        start = time.perf_counter()
        try:
            texts = self._decode(image)
        except Exception:
            # decode_frame never raises; an injected decoder might: one bad frame is no reason
            # to leave the door without a scanner.
            _log_failure_once()
            texts = []
        self._window_decode_s += time.perf_counter() - start
        self._window_decodes += 1
        if not texts:
            return
        self._last_decode_at = self._wall()
        for text in texts:
            if not self.debounce.sighting(text, now):
                continue
            if now < self._post_after:
                self.debounce.forget(text)  # the hub is away: this sighting is not a scan yet
                continue
            self._send(text, now)

    def _send(self, text: str, now: float) -> None:
        try:
            result = self._post(self.station_id, text)
        except Exception as exc:
            log.debug("posting failed", exc_info=True)
            result = PostResult(False, f"poster failed: {type(exc).__name__}")
        if not result.delivered:
            # Not a scan the hub knows of: the next sighting tries again, after a back-off that
            # grows while the hub stays away (a held phone must not hammer a hub that is down).
            self.debounce.forget(text)
            self._post_after = self._monotonic() + self._post_backoff
            self._post_backoff = min(self._post_backoff * 2, self._backoff_max)
            if self._hub_ok:
                self._hub_ok = False
                log.warning("%s: the hub did not take a scan (%s); retrying", self.station_id, result.outcome)
            return
        if not self._hub_ok:
            self._hub_ok = True
            log.info("%s: the hub takes scans again", self.station_id)
        self._post_after, self._post_backoff = 0.0, self._backoff_base
        self.scans += 1
        log.info("%s: scan %s -> %s", self.station_id, text_ref(text), result.outcome)

    # -- health -----------------------------------------------------------------------------------

    def health(self, now: float | None = None) -> ScannerHealth:
        now = self._monotonic() if now is None else now
        elapsed = max(now - self._window_start, 1e-6)
        decodes = self._window_decodes
        return ScannerHealth(
            station_id=self.station_id,
            state=self.state,
            camera=self.camera.name,
            fps=decodes / elapsed,
            camera_fps=self._window_delivered / elapsed,
            decode_ms=1000 * self._window_decode_s / decodes if decodes else None,
            last_frame_at=self._last_frame_at,
            last_decode_at=self._last_decode_at,
            scans=self.scans,
            detail=self._detail,
        )

    def _maybe_report(self, now: float, *, force: bool = False) -> None:
        if not force and now - self._window_start < self._health_interval:
            return
        self._send_health(self.health(now))
        grabber = self._grabber
        self._window_start = now
        self._window_decodes = 0
        self._window_decode_s = 0.0
        self._window_delivered = 0
        self._delivered_before_window = grabber.delivered if grabber is not None else 0

    def _send_health(self, health: ScannerHealth) -> None:
        if self._report is None:
            return
        try:
            self._report(health)
        except Exception as exc:
            if not self._report_failed:
                self._report_failed = True
                log.warning("%s: health report failed (%s)", self.station_id, exc)
            return
        if self._report_failed:
            self._report_failed = False
            log.info("%s: health reports get through again", self.station_id)

    def _set_state(self, state: ScanState, detail: str | None = None) -> None:
        if state is self.state and detail == self._detail:
            return
        self.state, self._detail = state, detail
        if state is ScanState.CAMERA_LOST:
            log.warning("%s: camera %s unavailable: %s", self.station_id, self.camera.name, detail)
        else:
            log.info("%s: %s (%s)", self.station_id, state.value, self.camera.name)
        self._maybe_report(self._monotonic(), force=True)
