"""A deterministic corpus of camera frames for the QR scanner: the tests' and the bench's.

Each frame is a cluttered scene (a gradient, shapes, scraps of text) with, for a code frame, a
phone held up to the camera: a rounded dark bezel, a light or dark-mode screen, a little app
chrome, and a segno QR code of a token-like text (``CE1`` and 144-175 base32 characters, as
edge/tokens.py makes them: alphanumeric mode at error correction M, version 6-7, the size the
token contract allows). The phone is placed by a
real perspective projection, then the frame goes through one distortion of the issue's list
and a camera's everyday faults (sensor noise, a little optical blur, exposure, MJPEG).

Frames without a code are either plain scenes (some with a phone showing no code) or bait a
decoder must not read: a product barcode (a real EAN-13), a checkerboard, and three finder
patterns with no code between them (blank, or random modules: a QR look-alike).

Everything comes from ``numpy.random.default_rng([seed, index])``: the same seed gives the
same pixels, and any one frame can be regenerated alone. ``corpus()`` lists the frames lazily.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import segno

Image = npt.NDArray[Any]  # H x W x 3 BGR uint8 (OpenCV's stubs type images loosely; so do we)
Mask = npt.NDArray[Any]  # H x W uint8, 255 inside
Rng = np.random.Generator

TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # noqa: S105 - base32, not a secret
SIZES: tuple[tuple[int, int], ...] = ((640, 480), (1280, 720))
# Pixels per module of the phone as first drawn, before it is projected into the frame.
_CANVAS_MODULE_PX = 6


class Kind(StrEnum):
    """What a frame shows. The first fourteen hold a code; the rest hold none."""

    CLEAN = "clean"
    SMALL = "small"
    LARGE = "large"
    ROTATED = "rotated"
    UPSIDE_DOWN = "upside_down"
    TILTED = "tilted"
    DEFOCUS = "defocus"
    MOTION_BLUR = "motion_blur"
    NOISE = "noise"
    LOW_CONTRAST = "low_contrast"
    GLARE = "glare"
    HEAVY_JPEG = "heavy_jpeg"
    DARK_MODE = "dark_mode"
    MIXED = "mixed"
    EMPTY = "empty"
    BARCODE = "barcode"
    CHECKERBOARD = "checkerboard"
    FAKE_FINDER = "fake_finder"

    @property
    def has_code(self) -> bool:
        return self not in NO_CODE


NO_CODE = frozenset({Kind.EMPTY, Kind.BARCODE, Kind.CHECKERBOARD, Kind.FAKE_FINDER})
BAIT = (Kind.BARCODE, Kind.CHECKERBOARD, Kind.FAKE_FINDER)
# The distortions, in its order: what the bench measures per row.
DISTORTIONS = (
    Kind.SMALL,
    Kind.LARGE,
    Kind.ROTATED,
    Kind.UPSIDE_DOWN,
    Kind.TILTED,
    Kind.DEFOCUS,
    Kind.MOTION_BLUR,
    Kind.NOISE,
    Kind.LOW_CONTRAST,
    Kind.GLARE,
    Kind.HEAVY_JPEG,
    Kind.DARK_MODE,
    Kind.MIXED,
)
# What "mixed" draws two or three of, each at a milder strength than alone.
_MIXABLE = (
    Kind.SMALL,
    Kind.ROTATED,
    Kind.TILTED,
    Kind.DEFOCUS,
    Kind.MOTION_BLUR,
    Kind.NOISE,
    Kind.LOW_CONTRAST,
    Kind.GLARE,
    Kind.HEAVY_JPEG,
    Kind.DARK_MODE,
)


@dataclass(frozen=True)
class Scene:
    kind: Kind
    size: tuple[int, int]  # (width, height)
    seed: int
    index: int
    image: Image  # BGR, uint8, height x width x 3
    text: str | None  # the text encoded in the frame; None when it holds no code
    quad: npt.NDArray[np.float32] | None = None  # the code's corners in the frame (4 x 2), if any
    module_px: float = 0.0  # the code's module size in the frame, about

    @property
    def name(self) -> str:
        return f"{self.kind.value}-{self.size[0]}x{self.size[1]}-{self.index:04d}"


def token_text(rng: Rng, length: tuple[int, int] = (147, 178)) -> str:
    """A text shaped like a signed token (edge/tokens.py): ``CE1`` and upper-case base32, 147
    characters for a short person id up to 178 for the longest. Random, so never a valid one."""
    n = int(rng.integers(length[0], length[1] + 1)) - 3
    return "CE1" + "".join(TOKEN_ALPHABET[i] for i in rng.integers(0, len(TOKEN_ALPHABET), n))


def qr_matrix(text: str, mask: int | None = None) -> npt.NDArray[np.bool_]:
    """The code's modules (True is dark), without quiet zone, as segno makes a token's code:
    alphanumeric mode at error correction M, version 6-7 for 147-178 characters. Naming the
    mask skips segno's scoring of all eight (most of its time); any mask makes a valid code."""
    code = segno.make_qr(text, error="m", boost_error=False, mask=mask)
    return np.array(code.matrix, dtype=bool)


# -- the public entry points -----------------------------------------------------------------


def scene(
    kind: Kind | str,
    *,
    seed: int = 1,
    index: int = 0,
    size: tuple[int, int] = (640, 480),
    text: str | None = None,
) -> Scene:
    """One frame, fully determined by (kind, seed, index, size); ``text`` puts that text in the
    code instead of a random one (a real token, for an end-to-end test or the demo)."""
    kind = Kind(kind)
    salt = list(Kind).index(kind) * 1_000_003 + size[0] * 7 + size[1]
    rng = np.random.default_rng([seed, index, salt])
    return _Painter(rng, kind, size, seed, index, text=text).paint()


def corpus(
    seed: int = 1,
    *,
    per_kind: int = 10,
    kinds: Sequence[Kind] = DISTORTIONS,
    sizes: Sequence[tuple[int, int]] = SIZES,
    empty: int = 10,
    bait: int = 4,
) -> Iterator[Scene]:
    """``per_kind`` frames of each distortion at each size, then ``empty`` plain scenes and
    ``bait`` frames of each bait kind at each size."""
    for size in sizes:
        for kind in kinds:
            for i in range(per_kind):
                yield scene(kind, seed=seed, index=i, size=size)
        for i in range(empty):
            yield scene(Kind.EMPTY, seed=seed, index=i, size=size)
        for kind in BAIT:
            for i in range(bait):
                yield scene(kind, seed=seed, index=i, size=size)


# -- painting ---------------------------------------------------------------------------------


@dataclass
class _Look:
    """The parameters of one code frame, drawn from the rng, then adjusted by the distortion."""

    code_frac: float  # the code's side (quiet zone excluded) over the frame's height
    roll_deg: float  # rotation in the image plane
    tilt_deg: float  # how far the phone leans back from facing the camera
    tilt_axis_deg: float  # the axis it leans about
    dark_mode: bool = False
    defocus: float = 0.0  # Gaussian sigma, in modules
    motion: float = 0.0  # blur length, in modules
    noise: float = 0.0  # Gaussian sigma, in grey levels
    contrast: float = 1.0  # 1: as lit; 0.15: a washed-out frame
    glare: bool = False
    jpeg_quality: int = 0  # 0: only the camera's own MJPEG


class _Painter:
    def __init__(
        self, rng: Rng, kind: Kind, size: tuple[int, int], seed: int, index: int, *, text: str | None = None
    ) -> None:
        self.rng = rng
        self.text = text
        self.kind = kind
        self.width, self.height = size
        self.seed = seed
        self.index = index

    def u(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def paint(self) -> Scene:
        frame = self.background()
        size = (self.width, self.height)
        if not self.kind.has_code:
            frame = self.paint_no_code(frame)
            frame = self.camera(frame, defocus_px=0.0, motion_px=0.0, noise=0.0, contrast=1.0, jpeg=0)
            return Scene(self.kind, size, self.seed, self.index, frame, None)
        look = self.look()
        text = token_text(self.rng)  # drawn either way: the rest of the frame stays the same
        if self.text is not None:
            text = self.text
        matrix = qr_matrix(text, mask=int(self.rng.integers(0, 8)))
        canvas, mask, code_quad = self.phone(matrix, look.dark_mode)
        quad, box = self.place(
            frame, canvas=canvas, mask=mask, anchor=code_quad, side_px=look.code_frac * self.height, look=look
        )
        module_px = float(np.mean(np.linalg.norm(quad - np.roll(quad, 1, axis=0), axis=1))) / len(matrix)
        if look.glare:
            self.glare(frame, quad)
        frame = self.camera(
            frame,
            defocus_px=look.defocus * module_px,
            motion_px=look.motion * module_px,
            noise=look.noise,
            contrast=look.contrast,
            jpeg=look.jpeg_quality,
            box=box,
        )
        return Scene(self.kind, size, self.seed, self.index, frame, text, quad, module_px)

    # -- what each kind changes ---------------------------------------------------------------

    def look(self) -> _Look:
        look = _Look(
            code_frac=self.u(0.28, 0.5),
            roll_deg=self.u(-15, 15),
            tilt_deg=self.u(0, 15),
            tilt_axis_deg=self.u(0, 360),
        )
        kind = self.kind
        if kind is Kind.MIXED:
            count = int(self.rng.integers(2, 4))
            picks = self.rng.choice(len(_MIXABLE), size=count, replace=False)
            for pick in picks:
                self.apply(look, _MIXABLE[int(pick)], mild=True)
        else:
            self.apply(look, kind, mild=False)
        return look

    def apply(self, look: _Look, kind: Kind, *, mild: bool) -> None:
        # Mild (in "mixed") takes the gentler part of each range: two faults at once are harder
        # than either alone, and a corpus of unreadable frames measures nothing.
        def pick(gentle: float, harsh: float) -> float:
            return gentle + (harsh - gentle) * self.u(0.0, 0.5 if mild else 1.0)

        sign = 1.0 if self.rng.random() < 0.5 else -1.0
        if kind is Kind.SMALL:
            look.code_frac = pick(0.2, 0.13)
        elif kind is Kind.LARGE:
            look.code_frac = self.u(0.7, 0.92)
        elif kind is Kind.ROTATED:
            look.roll_deg = sign * pick(20, 75)
        elif kind is Kind.UPSIDE_DOWN:
            look.roll_deg = 180 + self.u(-20, 20)
        elif kind is Kind.TILTED:
            look.tilt_deg = pick(35, 60)
        elif kind is Kind.DEFOCUS:
            look.defocus = pick(0.3, 0.6)
        elif kind is Kind.MOTION_BLUR:
            look.motion = pick(0.8, 2.0)
        elif kind is Kind.NOISE:
            look.noise = pick(20, 45)
        elif kind is Kind.LOW_CONTRAST:
            look.contrast = pick(0.3, 0.12)
        elif kind is Kind.GLARE:
            look.glare = True
        elif kind is Kind.HEAVY_JPEG:
            look.jpeg_quality = round(pick(12, 3))
        elif kind is Kind.DARK_MODE:
            look.dark_mode = True

    # -- the scene --------------------------------------------------------------------------

    def background(self) -> Image:
        """A lit room's worth of clutter: a two-colour gradient, shapes, lines and text."""
        w, h = self.width, self.height
        c0 = self.rng.integers(40, 220, 3).astype(np.float32)
        c1 = self.rng.integers(40, 220, 3).astype(np.float32)
        angle = self.u(0, math.tau)
        # The gradient at an eighth of the size, then stretched: smooth anyway, and 60x cheaper.
        gw, gh = w // 8 + 1, h // 8 + 1
        ramp = (np.cos(angle) * np.arange(gw, dtype=np.float32)[None, :] / gw) + (
            np.sin(angle) * np.arange(gh, dtype=np.float32)[:, None] / gh
        )
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        small = (c0 + (c1 - c0) * ramp[:, :, None]).astype(np.uint8)
        frame: Image = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        scale = w / 640
        for _ in range(int(self.rng.integers(15, 35))):
            color = tuple(int(v) for v in self.rng.integers(0, 256, 3))
            shape = int(self.rng.integers(0, 5))
            x, y = int(self.rng.integers(0, w)), int(self.rng.integers(0, h))
            if shape == 0:
                x2, y2 = x + int(self.rng.integers(10, w // 3)), y + int(self.rng.integers(10, h // 3))
                cv2.rectangle(frame, (x, y), (x2, y2), color, -1 if self.rng.random() < 0.7 else 2)
            elif shape == 1:
                cv2.circle(frame, (x, y), int(self.rng.integers(5, h // 6)), color, -1, cv2.LINE_AA)
            elif shape == 2:
                end = (int(self.rng.integers(0, w)), int(self.rng.integers(0, h)))
                cv2.line(frame, (x, y), end, color, int(self.rng.integers(1, 6)), cv2.LINE_AA)
            elif shape == 3:
                word = "".join(self.rng.choice(list("ABCDEFGHKMNPRSTWXYZ0123456789 "), int(self.rng.integers(3, 12))))
                cv2.putText(
                    frame, word, (x, y), cv2.FONT_HERSHEY_SIMPLEX, self.u(0.4, 1.6) * scale, color, 2, cv2.LINE_AA
                )
            else:
                points = self.rng.integers(0, [w, h], size=(int(self.rng.integers(3, 6)), 2)).astype(np.int32)
                cv2.fillPoly(frame, [points], color, cv2.LINE_AA)
        return frame

    def paint_no_code(self, frame: Image) -> Image:
        kind = self.kind
        if kind is Kind.EMPTY:
            if self.rng.random() < 0.4:
                # A phone showing something else (a lock screen): a frame that looks busy.
                canvas, mask, _quad = self.phone(None, dark_mode=self.rng.random() < 0.5)
                look = _Look(self.u(0.28, 0.5), self.u(-20, 20), self.u(0, 20), self.u(0, 360))
                side = look.code_frac * self.height
                self.place(frame, canvas=canvas, mask=mask, anchor=_quad, side_px=side, look=look)
            return frame
        if kind is Kind.BARCODE:
            art = self.ean13_label()
        elif kind is Kind.CHECKERBOARD:
            art = self.checkerboard()
        else:
            art = self.fake_finders()
        mask = np.full(art.shape[:2], 255, np.uint8)
        h, w = art.shape[:2]
        quad = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        look = _Look(self.u(0.3, 0.6), self.u(-25, 25), self.u(0, 25), self.u(0, 360))
        self.place(frame, canvas=art, mask=mask, anchor=quad, side_px=look.code_frac * self.height, look=look)
        return frame

    # -- the phone --------------------------------------------------------------------------

    def phone(
        self, matrix: npt.NDArray[np.bool_] | None, dark_mode: bool
    ) -> tuple[Image, Mask, npt.NDArray[np.float32]]:
        """The phone, face on: its image, its outline as a mask, and the code's corners in it."""
        m = _CANVAS_MODULE_PX
        modules = matrix.shape[0] if matrix is not None else 45
        code_px = modules * m
        screen_w = int(code_px / self.u(0.62, 0.78))
        screen_h = int(screen_w * self.u(1.9, 2.15))
        bezel = max(6, int(screen_w * self.u(0.03, 0.06)))
        w, h = screen_w + 2 * bezel, screen_h + 2 * bezel
        radius = int(w * self.u(0.1, 0.16))
        body = int(self.rng.integers(8, 45))
        canvas = np.zeros((h, w, 3), np.uint8)
        mask = np.zeros((h, w), np.uint8)
        _rounded(mask, (0, 0), (w, h), radius, 255)
        _rounded(canvas, (0, 0), (w, h), radius, (body, body, body + 4))
        screen_bg = (
            tuple(int(v) for v in self.rng.integers(12, 36, 3))
            if dark_mode
            else tuple(int(v) for v in self.rng.integers(232, 256, 3))
        )
        ink = (225, 225, 225) if dark_mode else (30, 30, 30)
        _rounded(canvas, (bezel, bezel), (w - bezel, h - bezel), max(4, radius - bezel), screen_bg)
        # App chrome: a status bar, a title, a name and a line of small print under the code.
        font = cv2.FONT_HERSHEY_SIMPLEX
        s = screen_w / 400
        cv2.putText(canvas, "9:41", (bezel + int(20 * s), bezel + int(30 * s)), font, 0.6 * s, ink, 2, cv2.LINE_AA)
        cx = w // 2
        code_top = bezel + int((screen_h - code_px) * self.u(0.35, 0.5))
        title = "Check in" if self.rng.random() < 0.5 else "Your pass"
        cv2.putText(canvas, title, (bezel + int(30 * s), code_top - int(70 * s)), font, 1.1 * s, ink, 3, cv2.LINE_AA)
        cv2.putText(canvas, "Sunrise Kids", (bezel + int(30 * s), code_top - int(30 * s)), font, 0.7 * s, ink, 2)
        bar_y = code_top + code_px + int(50 * s)
        accent = tuple(int(v) for v in self.rng.integers(60, 200, 3))
        cv2.rectangle(canvas, (bezel + int(30 * s), bar_y), (w - bezel - int(30 * s), bar_y + int(44 * s)), accent, -1)
        cv2.putText(
            canvas, "Expires in 0:58", (bezel + int(30 * s), bar_y + int(90 * s)), font, 0.6 * s, ink, 1, cv2.LINE_AA
        )
        left = cx - code_px // 2
        right, bottom = left + code_px, code_top + code_px
        code_quad = np.array([[left, code_top], [right, code_top], [right, bottom], [left, bottom]], np.float32)
        if matrix is None:
            # The lock screen: a big clock where the code would be.
            cv2.putText(canvas, "12:07", (left, code_top + code_px // 2), font, 3.0 * s, ink, 6, cv2.LINE_AA)
            return canvas, mask, code_quad
        dark, light = (ink, screen_bg) if not dark_mode else ((230, 230, 230), screen_bg)
        tile = np.where(matrix[:, :, None], np.array(dark, np.uint8), np.array(light, np.uint8))
        tile = cv2.resize(tile.astype(np.uint8), (code_px, code_px), interpolation=cv2.INTER_NEAREST)
        # The quiet zone is the screen itself (2-4 modules of it by the margins above).
        canvas[code_top : code_top + code_px, left : left + code_px] = tile
        return canvas, mask, code_quad

    # -- bait ---------------------------------------------------------------------------------

    def ean13_label(self) -> Image:
        """A product label with a real EAN-13 (a decoder for every symbology would read it)."""
        digits = [int(d) for d in self.rng.integers(0, 10, 12)]
        digits.append((10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10)
        bits = _ean13_bits(digits)
        unit = 4
        quiet = 11 * unit
        w = len(bits) * unit + 2 * quiet
        h = int(w * 0.6)
        label = np.full((h, w, 3), 250, np.uint8)
        bars_h = int(h * 0.72)
        for i, bit in enumerate(bits):
            if bit:
                x = quiet + i * unit
                cv2.rectangle(label, (x, int(h * 0.08)), (x + unit - 1, int(h * 0.08) + bars_h), (20, 20, 20), -1)
        text = "".join(str(d) for d in digits)
        cv2.putText(label, text, (quiet, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (20, 20, 20), 2, cv2.LINE_AA)
        return label

    def checkerboard(self) -> Image:
        rows, cols = int(self.rng.integers(5, 10)), int(self.rng.integers(6, 12))
        cell = 24
        board = np.full(((rows + 2) * cell, (cols + 2) * cell, 3), 245, np.uint8)
        for r in range(rows):
            for c in range(cols):
                if (r + c) % 2 == 0:
                    y, x = (r + 1) * cell, (c + 1) * cell
                    board[y : y + cell, x : x + cell] = 15
        return board

    def fake_finders(self) -> Image:
        """Three finder patterns where a QR code's corners would be, and no code: blank between
        them, or random modules (a look-alike with no format information or valid data)."""
        modules = int(self.rng.integers(25, 50))
        m = _CANVAS_MODULE_PX
        art = np.full(((modules + 8) * m, (modules + 8) * m, 3), 245, np.uint8)
        grid = np.zeros((modules, modules), bool)
        if self.rng.random() < 0.5:
            grid = self.rng.random((modules, modules)) < 0.5
        for r0, c0 in ((0, 0), (0, modules - 7), (modules - 7, 0)):
            grid[max(r0 - 1, 0) : r0 + 8, max(c0 - 1, 0) : c0 + 8] = False
            grid[r0 : r0 + 7, c0 : c0 + 7] = True
            grid[r0 + 1 : r0 + 6, c0 + 1 : c0 + 6] = False
            grid[r0 + 2 : r0 + 5, c0 + 2 : c0 + 5] = True
        tile = np.repeat(np.where(grid[:, :, None], np.uint8(20), np.uint8(245)).astype(np.uint8), 3, axis=2)
        side = modules * m
        art[4 * m : 4 * m + side, 4 * m : 4 * m + side] = cv2.resize(
            tile, (side, side), interpolation=cv2.INTER_NEAREST
        )
        return art

    # -- projection -------------------------------------------------------------------------

    def place(
        self,
        frame: Image,
        *,
        canvas: Image,
        mask: Mask,
        anchor: npt.NDArray[np.float32],
        side_px: float,
        look: _Look,
    ) -> tuple[npt.NDArray[np.float32], tuple[int, int, int, int]]:
        """Project ``canvas`` into ``frame`` so that ``anchor`` (the code's corners) measures
        about ``side_px`` and lies inside the frame; returns where the anchor landed and the
        canvas's bounding box in the frame (x0, y0, x1, y1)."""
        h_c, w_c = canvas.shape[:2]
        anchor_side = float(anchor[1, 0] - anchor[0, 0])
        scale = side_px / anchor_side
        # The canvas in 3-D, centred on the anchor, in frame pixels at the plane's depth.
        center = anchor.mean(axis=0)
        corners = np.array([[0, 0], [w_c, 0], [w_c, h_c], [0, h_c]], np.float32)
        points = np.vstack([corners, anchor]) - center
        tilt, axis, roll = (math.radians(v) for v in (look.tilt_deg, look.tilt_axis_deg, look.roll_deg))
        # Lean back about an in-plane axis, then roll about the camera's axis.
        k = np.array([math.cos(axis), math.sin(axis), 0.0])
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        lean = np.eye(3) + math.sin(tilt) * kx + (1 - math.cos(tilt)) * kx @ kx
        spin = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
        focal = self.width * 0.9  # about a 70-degree webcam; at this depth a plane pixel is a frame pixel
        margin = max(4.0, side_px * 0.06)  # about two modules
        room = np.array([self.width, self.height]) - 2 * margin
        for _ in range(4):
            pts3 = np.column_stack([points * scale, np.zeros(len(points))]) @ (spin @ lean).T
            # A corner leaning towards the camera never reaches it (nor passes behind it).
            projected = focal * pts3[:, :2] / np.maximum(focal + pts3[:, 2:3], 0.25 * focal)
            target = projected[4:]
            extent = target.max(axis=0) - target.min(axis=0)
            if np.all(extent <= room):
                break
            # A large code rolled or leaning must still fit in the frame: shrink it until it does.
            scale *= 0.98 * float(np.min(room / extent))
        # Place the anchor inside the frame with that margin, at random.
        lo = -target.min(axis=0) + margin
        hi = np.array([self.width, self.height]) - target.max(axis=0) - margin
        offset = np.array(
            [self.u(lo[i], hi[i]) if hi[i] > lo[i] else (lo[i] + hi[i]) / 2 for i in range(2)], np.float64
        )
        dst = (projected + offset).astype(np.float32)
        src = np.vstack([corners, anchor])[:4].astype(np.float32)
        matrix = cv2.getPerspectiveTransform(src, dst[:4])
        # Shrinking a sharp canvas by a warp aliases; blur it first by about the shrink factor.
        shrink = 1.0 / max(scale, 1e-3)
        if shrink > 1.5:
            sigma = 0.45 * shrink
            canvas = cv2.GaussianBlur(canvas, (0, 0), sigma)
            mask = cv2.GaussianBlur(mask, (0, 0), sigma)
        # Warp into the phone's bounding box only: most of the frame is untouched.
        x0, y0 = np.floor(np.maximum(dst[:4].min(axis=0), 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(dst[:4].max(axis=0) + 1, [self.width, self.height])).astype(int)
        box = (int(x0), int(y0), int(x1), int(y1))
        if x1 <= x0 or y1 <= y0:
            return dst[4:].astype(np.float32), box
        shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
        matrix = shift @ matrix
        size = (int(x1 - x0), int(y1 - y0))
        warped = cv2.warpPerspective(canvas, matrix, size, flags=cv2.INTER_LINEAR)
        alpha = cv2.warpPerspective(mask, matrix, size, flags=cv2.INTER_LINEAR)
        a = alpha.astype(np.float32) * (1.0 / 255.0)
        roi = frame[y0:y1, x0:x1]
        roi[:] = cv2.blendLinear(warped, roi, a, 1.0 - a)
        return dst[4:].astype(np.float32), box

    # -- light and the camera -----------------------------------------------------------------

    def glare(self, frame: Image, quad: npt.NDArray[np.float32]) -> None:
        """A lamp's reflection on the glass: a bright soft ellipse over part of the code."""
        side = float(np.linalg.norm(quad[1] - quad[0]))
        weights = self.rng.dirichlet(np.ones(4))
        cx, cy = (weights @ quad).tolist()
        ax, ay = side * self.u(0.12, 0.3), side * self.u(0.06, 0.18)
        angle = self.u(0, 180)
        soft = max(1.0, min(ax, ay) * 0.35)
        strength = self.u(170, 255)
        # Drawn in its own bounding box only (the blur's reach included).
        reach = int(max(ax, ay) + 3 * soft) + 2
        x0, y0 = max(int(cx) - reach, 0), max(int(cy) - reach, 0)
        x1, y1 = min(int(cx) + reach, self.width), min(int(cy) + reach, self.height)
        if x1 <= x0 or y1 <= y0:
            return
        spot = np.zeros((y1 - y0, x1 - x0), np.float32)
        center = (int(cx) - x0, int(cy) - y0)
        cv2.ellipse(spot, center, (int(ax), int(ay)), angle, 0, 360, strength, -1, cv2.LINE_AA)
        glow = cv2.GaussianBlur(spot, (0, 0), soft)
        roi = frame[y0:y1, x0:x1]
        roi[:] = cv2.add(roi, cv2.merge([glow, glow, glow]), dtype=cv2.CV_8U)

    def camera(
        self,
        frame: Image,
        *,
        defocus_px: float,
        motion_px: float,
        noise: float,
        contrast: float,
        jpeg: int,
        box: tuple[int, int, int, int] | None = None,
    ) -> Image:
        """The distortion asked for, then what every webcam adds: a little blur, exposure,
        sensor noise and its own MJPEG compression. Defocus and motion blur the phone only (in
        ``box``): it is the phone that is too close or moving; the room stays sharp."""
        out = cv2.GaussianBlur(frame, (0, 0), self.u(0.3, 0.7))
        if box is not None and (defocus_px > 0 or motion_px >= 1.0):
            reach = int(3 * defocus_px + motion_px) + 2
            x0, y0 = max(box[0] - reach, 0), max(box[1] - reach, 0)
            x1, y1 = min(box[2] + reach, self.width), min(box[3] + reach, self.height)
            roi = out[y0:y1, x0:x1]
            if defocus_px > 0:
                roi[:] = cv2.GaussianBlur(roi, (0, 0), defocus_px)
            if motion_px >= 1.0:
                roi[:] = cv2.filter2D(roi, -1, _motion_kernel(motion_px, self.u(0, 180)))
        # Exposure and contrast as one affine map on uint8 (saturating), as the sensor would.
        gain, bias = self.u(0.85, 1.15), self.u(-15, 15)
        if contrast < 1.0:
            mean = float(out.mean()) * gain + bias
            gain, bias = gain * contrast, self.u(70, 180) - mean * contrast + bias * contrast
        out = cv2.convertScaleAbs(out, alpha=gain, beta=bias)
        # Sensor noise, the same on all three channels (luma noise). OpenCV's generator, seeded
        # from ours, is several times faster than numpy's here; its state is per thread.
        sigma = max(noise, self.u(2, 5))
        cv2.setRNGSeed(int(self.rng.integers(0, 2**31 - 1)))
        grain = np.empty(out.shape[:2], np.int16)
        cv2.randn(grain, np.zeros(1), np.full(1, sigma))
        out = cv2.add(out, cv2.merge([grain, grain, grain]), dtype=cv2.CV_8U)
        quality = jpeg if jpeg else int(self.rng.integers(75, 93))
        ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded: Image | None = cv2.imdecode(encoded, cv2.IMREAD_COLOR) if ok else None
        return out if decoded is None else decoded


# -- drawing helpers ----------------------------------------------------------------------------


def _rounded(img: Image, p0: tuple[int, int], p1: tuple[int, int], r: int, color: float | tuple[int, ...]) -> None:
    """A filled rounded rectangle (OpenCV has none)."""
    (x0, y0), (x1, y1) = p0, p1
    r = max(1, min(r, (x1 - x0) // 2, (y1 - y0) // 2))
    cv2.rectangle(img, (x0 + r, y0), (x1 - r - 1, y1 - 1), color, -1)
    cv2.rectangle(img, (x0, y0 + r), (x1 - 1, y1 - r - 1), color, -1)
    for cx, cy in ((x0 + r, y0 + r), (x1 - r - 1, y0 + r), (x0 + r, y1 - r - 1), (x1 - r - 1, y1 - r - 1)):
        cv2.circle(img, (cx, cy), r, color, -1, cv2.LINE_AA)


def _motion_kernel(length: float, angle_deg: float) -> npt.NDArray[np.float32]:
    size = math.ceil(length) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    half = length / 2
    cv2.line(
        kernel,
        (round(c - dx * half), round(c - dy * half)),
        (round(c + dx * half), round(c + dy * half)),
        1.0,
        1,
        cv2.LINE_AA,
    )
    total = float(kernel.sum())
    if total <= 0:
        kernel[c, c] = 1.0
        total = 1.0
    return kernel / total


_EAN_L = ("0001101", "0011001", "0010011", "0111101", "0100011", "0110001", "0101111", "0111011", "0110111", "0001011")
_EAN_PARITY = ("LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG", "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL", "LGGLGL")


def _ean13_bits(digits: Sequence[int]) -> list[bool]:
    def r_code(d: int) -> str:
        return "".join("1" if b == "0" else "0" for b in _EAN_L[d])

    bits = "101"
    for parity, d in zip(_EAN_PARITY[digits[0]], digits[1:7], strict=True):
        bits += _EAN_L[d] if parity == "L" else r_code(d)[::-1]
    bits += "01010"
    for d in digits[7:13]:
        bits += r_code(d)
    bits += "101"
    return [b == "1" for b in bits]
