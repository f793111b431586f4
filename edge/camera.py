"""Frame sources for the scanner: a camera device, a network stream, a video file, a folder of
images; and the grabber that keeps only the newest frame.

``open_camera(spec)`` picks the source from the text an installer types: ``"0"`` or
``/dev/video0`` is a V4L2 device, ``rtsp://…`` or ``http://…`` a network camera, a folder its
images in name order, anything else a video file. Files and folders are the replayable fake camera of the demo and
the tests: they play at a set frame rate (as a real camera would deliver) and can loop.

``Grabber`` reads the source on its own thread and keeps one slot: the newest frame. A
decoder slower than the camera skips frames instead of falling further and further behind
(a parent must not wait for the frames of five seconds ago to be read).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy.typing as npt

log = logging.getLogger(__name__)

Frame = npt.NDArray[Any]  # H x W x 3 BGR uint8 (OpenCV's stubs type images loosely; so do we)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})
DEFAULT_FILE_FPS = 10.0  # a file that does not say (or says nonsense) plays at this rate
STREAM_TIMEOUT_MS = 5_000  # a network camera that says nothing this long is gone
# The longest a driver's read may block: FFmpeg's timeout above, V4L2's own select() timeout (10 s).
READ_BLOCK_MAX_S = 12.0


class CameraError(Exception):
    """The source cannot be opened (now): no such device, file or stream. The scan loop backs off
    and tries again; the message names the source without any password in it."""


class Camera(Protocol):
    """What the scan loop needs of a frame source."""

    @property
    def name(self) -> str:
        """The source for logs and health reports: no credentials."""
        ...

    @property
    def live(self) -> bool:
        """A live source delivers at its own pace; a replay (file, folder) is paced by the grabber."""
        ...

    @property
    def fps(self) -> float | None:
        """The rate to play a replay at (a live source's own rate is its business)."""
        ...

    @property
    def exhausted(self) -> bool:
        """A replay that ended and does not loop: nothing more will come, do not reconnect."""
        ...

    def open(self) -> None:
        """Raises ``CameraError`` when the source is not there."""

    def read(self) -> Frame | None:
        """The next frame, or None when the source stopped delivering (lost, or ended)."""

    def close(self) -> None: ...


def redact(spec: str) -> str:
    """A source's text without the password a camera URL may carry (rtsp://user:pw@host/...)."""
    return re.sub(r"(//[^/:@]+):[^/@]*@", r"\1:***@", spec)


# -- OpenCV captures: devices, streams, video files ----------------------------------------------


class CaptureCamera:
    """Anything ``cv2.VideoCapture`` opens: a device index, a stream URL or a video file."""

    def __init__(self, source: int | str, *, fps: float | None = None, loop: bool = False) -> None:
        self._source = source
        self._requested_fps = fps
        self._loop = loop
        self._capture: cv2.VideoCapture | None = None
        self._exhausted = False
        self._file_fps: float | None = None
        # A device (an index, or a node such as /dev/video0, as the systemd unit names it) or a
        # network stream delivers at its own pace; a file is a replay.
        self.live = isinstance(source, int) or "://" in source or source.startswith("/dev/")

    @property
    def name(self) -> str:
        return f"device {self._source}" if isinstance(self._source, int) else redact(str(self._source))

    @property
    def fps(self) -> float | None:
        return self._requested_fps or self._file_fps

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def open(self) -> None:
        self.close()
        self._exhausted = False
        source = self._source
        if isinstance(source, str) and not self.live and not Path(source).is_file():
            raise CameraError(f"{self.name}: no such video file")
        if isinstance(source, int):
            capture = cv2.VideoCapture(source)
        elif self.live:
            # FFmpeg waits 30 s by default for a dead stream; a door cannot.
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
            ]
            capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
        else:
            capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            capture.release()
            raise CameraError(f"{self.name}: cannot be opened")
        if self.live:
            # The driver's own queue is latency too: keep one frame there (V4L2 honours it).
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if self._requested_fps:
                capture.set(cv2.CAP_PROP_FPS, self._requested_fps)
        else:
            file_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            self._file_fps = file_fps if 0.5 <= file_fps <= 120 else DEFAULT_FILE_FPS
        self._capture = capture

    def read(self) -> Frame | None:
        capture = self._capture
        if capture is None:
            return None
        ok, frame = capture.read()
        if ok and frame is not None:
            return frame
        if not self.live and self._loop:
            # The end of a replay: from the top again.
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = capture.read()
            if ok and frame is not None:
                return frame
        if not self.live and not self._loop:
            self._exhausted = True
        return None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


# -- a folder of images -------------------------------------------------------------------------


class FolderCamera:
    """The images of a folder in name order, as frames: the replayable fake camera."""

    live = False

    def __init__(self, folder: Path, *, fps: float | None = None, loop: bool = False) -> None:
        self._folder = Path(folder)
        self._fps = fps or DEFAULT_FILE_FPS
        self._loop = loop
        self._files: list[Path] = []
        self._next = 0
        self._exhausted = False

    @property
    def name(self) -> str:
        return str(self._folder)

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def open(self) -> None:
        if not self._folder.is_dir():
            raise CameraError(f"{self.name}: no such folder")
        files = sorted(p for p in self._folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise CameraError(f"{self.name}: no images in the folder")
        self._files, self._next, self._exhausted = files, 0, False

    def read(self) -> Frame | None:
        while self._files:
            if self._next >= len(self._files):
                if not self._loop:
                    self._exhausted = True
                    return None
                self._next = 0
            path = self._files[self._next]
            self._next += 1
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is not None:
                return frame
            # A file that vanished or is not an image: as if the camera dropped one frame.
            log.debug("skipping unreadable image %s", path.name)
            if self._next >= len(self._files) and not self._loop:
                self._exhausted = True
                return None
        return None

    def close(self) -> None:
        self._files = []


def open_camera(spec: str, *, fps: float | None = None, loop: bool = False) -> Camera:
    """The source an installer names: ``"0"`` (a device), a URL, a folder or a video file."""
    text = spec.strip()
    if text.isdigit():
        return CaptureCamera(int(text), fps=fps)
    if "://" in text or text.startswith("/dev/"):
        return CaptureCamera(text, fps=fps)
    if Path(text).is_dir() or text.endswith("/"):  # a folder, or one that is not there yet
        return FolderCamera(Path(text), fps=fps, loop=loop)
    return CaptureCamera(text, fps=fps, loop=loop)


# -- the newest frame ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Grabbed:
    image: Frame
    seq: int  # counts every frame the source delivered, kept or dropped
    at: float  # monotonic time it arrived


class Grabber:
    """Reads ``camera`` on a thread of its own and keeps only the newest frame.

    ``next(after, timeout)`` hands out the newest frame newer than ``after``; frames the reader
    never asked for are dropped, never queued. ``failed`` turns true when the source stops
    delivering (lost, ended); the grabber then stops reading."""

    def __init__(
        self, camera: Camera, *, pace_fps: float | None = None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._camera = camera
        self._interval = 1.0 / pace_fps if pace_fps and pace_fps > 0 and not camera.live else 0.0
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._latest: Grabbed | None = None
        self._seq = 0
        self._failed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"grabber {camera.name}", daemon=True)

    def start(self) -> Grabber:
        self._thread.start()
        return self

    @property
    def failed(self) -> bool:
        with self._cond:
            return self._failed

    @property
    def delivered(self) -> int:
        with self._cond:
            return self._seq

    def next(self, after: int, timeout: float) -> Grabbed | None:
        """The newest frame with ``seq > after``, waiting up to ``timeout``; None on a timeout or
        once the source has failed."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._failed or (self._latest is not None and self._latest.seq > after), timeout
            )
            latest = self._latest
            if latest is not None and latest.seq > after:
                return latest
            return None

    def stop(self, join_s: float = 2.0) -> bool:
        """Stop reading; False when the thread is still stuck in a read inside the driver after
        ``join_s`` (then the camera must not be closed under it)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(join_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        due = self._monotonic()
        while not self._stop.is_set():
            try:
                frame = self._camera.read()
            except Exception:
                log.exception("reading %s failed", self._camera.name)
                frame = None
            if frame is None:
                with self._cond:
                    self._failed = True
                    self._cond.notify_all()
                return
            with self._cond:
                self._seq += 1
                self._latest = Grabbed(frame, self._seq, self._monotonic())
                self._cond.notify_all()
            if self._interval:
                # A replay plays at the camera's rate, not as fast as the disk reads: wait for
                # the next frame's time (on the stop event, so stopping is immediate).
                due += self._interval
                delay = due - self._monotonic()
                if delay < -self._interval:
                    due = self._monotonic()  # fell behind (a slow disk): do not race to catch up
                elif delay > 0:
                    self._stop.wait(delay)
