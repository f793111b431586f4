"""decode_frame on generated frames (edge/qr_scenes.py), its fuzzing, the debounce and the
frame sources. The scan loop itself runs in tests/kiosk_ui/test_scan_loop.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import segno
import zxingcpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge import qr_scenes
from edge.camera import CameraError, CaptureCamera, FolderCamera, Grabber, open_camera, redact
from edge.qr_scenes import BAIT, Kind
from edge.scanner import Debounce, decode_frame

FRAMES_PER_KIND = 6


def zxing_alone(frame: np.ndarray) -> list[str]:
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return [r.text for r in zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode)]


def code_image(text: str, *, scale: int = 6, dark_mode: bool = False, micro: bool = False) -> np.ndarray:
    """A plain code on a white (or black) page, as BGR."""
    code = segno.make_micro(text) if micro else segno.make_qr(text, error="m")
    modules = np.array(code.matrix, dtype=bool)
    modules = np.pad(modules, 4)
    gray = np.where(modules, 0, 255).astype(np.uint8)
    if dark_mode:
        gray = 255 - gray
    gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


# -- reading --------------------------------------------------------------------------------------

# (kind, frames of FRAMES_PER_KIND it must read at 640x480): all of them where the code is in
# plain sight; the hard distortions may miss one (the bench measures the rates).
READS = [
    (Kind.CLEAN, 6),
    (Kind.ROTATED, 6),
    (Kind.UPSIDE_DOWN, 6),
    (Kind.LARGE, 6),
    (Kind.DARK_MODE, 6),
    (Kind.GLARE, 6),
    (Kind.LOW_CONTRAST, 6),
    (Kind.HEAVY_JPEG, 6),
    (Kind.TILTED, 5),
    (Kind.SMALL, 5),
    (Kind.NOISE, 5),
    (Kind.DEFOCUS, 5),
    (Kind.MOTION_BLUR, 5),
]


@pytest.mark.parametrize(("kind", "at_least"), READS, ids=[k.value for k, _ in READS])
def test_decode_frame_reads_the_phone_in_the_scene(kind: Kind, at_least: int) -> None:
    read = 0
    for index in range(FRAMES_PER_KIND):
        scene = qr_scenes.scene(kind, seed=1, index=index)
        texts = decode_frame(scene.image)
        assert set(texts) <= {scene.text}, "a text that is not in the frame"
        read += texts == [scene.text]
    assert read >= at_least


def test_the_rescue_reads_what_zxing_cpp_alone_misses_and_loses_nothing() -> None:
    ours, theirs = set(), set()
    for kind in (Kind.SMALL, Kind.DEFOCUS, Kind.NOISE, Kind.MIXED):
        for index in range(10):
            scene = qr_scenes.scene(kind, seed=1, index=index)
            if scene.text in decode_frame(scene.image):
                ours.add(scene.name)
            if scene.text in zxing_alone(scene.image):
                theirs.add(scene.name)
    assert theirs <= ours
    assert len(ours - theirs) >= 4


def test_a_light_on_dark_code_is_read() -> None:
    text = "CE1" + "Q" * 150
    assert decode_frame(code_image(text, dark_mode=True)) == [text]


def test_any_qr_text_is_returned_the_verifier_judges_it() -> None:
    """The decoder reads codes; whether a text is a token is edge.tokens' question."""
    for text in ("https://example.com/menu", "hello", "x" * 500):
        assert decode_frame(code_image(text, scale=4)) == [text]


def test_two_codes_in_one_frame_are_both_read_once_each() -> None:
    a, b = "CE1" + "A" * 150, "CE1" + "B" * 150
    frame = np.hstack([code_image(a, scale=4), code_image(b, scale=4), code_image(a, scale=4)])
    assert sorted(decode_frame(frame)) == [a, b]


@pytest.mark.parametrize("kind", [Kind.EMPTY, *BAIT])
@pytest.mark.parametrize("size", qr_scenes.SIZES)
def test_no_code_no_text(kind: Kind, size: tuple[int, int]) -> None:
    for index in range(4):
        assert decode_frame(qr_scenes.scene(kind, seed=2, index=index, size=size).image) == []


def test_a_micro_qr_code_is_never_a_token() -> None:
    assert decode_frame(code_image("HELLO", micro=True)) == []


@pytest.mark.parametrize(
    "symbology",
    [
        zxingcpp.BarcodeFormat.DataMatrix,
        zxingcpp.BarcodeFormat.Aztec,
        zxingcpp.BarcodeFormat.PDF417,
        zxingcpp.BarcodeFormat.Code128,
        zxingcpp.BarcodeFormat.EAN13,
    ],
    ids=str,
)
def test_other_barcodes_are_not_read(symbology: zxingcpp.BarcodeFormat) -> None:
    content = "400638133393" if symbology == zxingcpp.BarcodeFormat.EAN13 else "CE1" + "Z" * 40
    symbol = np.array(zxingcpp.create_barcode(content, symbology).to_image(scale=4))
    page = np.full((symbol.shape[0] + 80, symbol.shape[1] + 80), 255, np.uint8)
    page[40:-40, 40:-40] = symbol
    # zxing-cpp itself reads it (it is a real symbol), the scanner does not.
    assert zxingcpp.read_barcodes(page)
    assert decode_frame(cv2.cvtColor(page, cv2.COLOR_GRAY2BGR)) == []


# -- never crashing -------------------------------------------------------------------------------

DTYPES = st.sampled_from([np.uint8, np.int8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_])
SHAPES = st.one_of(
    hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=40),
    st.tuples(st.integers(0, 96), st.integers(0, 96)),
    st.tuples(st.integers(0, 64), st.integers(0, 64), st.sampled_from([1, 2, 3, 4, 5])),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(DTYPES, SHAPES, elements=None, fill=st.nothing()))
def test_decode_frame_never_raises_on_arrays(frame: np.ndarray) -> None:
    result = decode_frame(frame)
    assert isinstance(result, list)
    assert all(isinstance(text, str) for text in result)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=64 * 64 * 3), st.integers(1, 64), st.sampled_from([1, 3, 4]))
def test_decode_frame_never_raises_on_random_bytes(data: bytes, width: int, channels: int) -> None:
    pixels = np.frombuffer(data, np.uint8)
    rows = pixels.size // (width * channels)
    frame = pixels[: rows * width * channels].reshape(rows, width, channels)
    assert decode_frame(frame) == [] or all(isinstance(t, str) for t in decode_frame(frame))


@pytest.mark.parametrize(
    "frame",
    [
        None,
        42,
        "a frame",
        [[0, 255], [255, 0]],
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((480, 640), np.uint8),  # grey, 2-D
        np.full((480, 640, 3), np.nan, np.float32),
        np.full((64, 64, 3), np.inf),
        np.ones((64, 64, 3), np.complex64),
        np.empty((64, 64), object),
        np.zeros((64, 64, 3), np.uint8)[:, ::-1],  # not contiguous
        np.random.default_rng(1).integers(0, 256, (20, 20, 20, 3), dtype=np.uint8),  # 4-D
    ],
    ids=lambda f: type(f).__name__ if not isinstance(f, np.ndarray) else f"{f.dtype}{f.shape}",
)
def test_decode_frame_returns_nothing_for_what_is_not_an_image(frame: object) -> None:
    assert decode_frame(frame) == []


def test_image_forms_other_than_bgr_uint8_are_read() -> None:
    text = "CE1" + "F" * 150
    bgr = code_image(text, scale=3)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert decode_frame(gray) == [text]
    assert decode_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)) == [text]
    assert decode_frame(gray.astype(np.float32) / 255.0) == [text]
    assert decode_frame(gray.astype(np.uint16) * 257) == [text]
    assert decode_frame(gray > 127) == [text]


def test_a_huge_frame_is_decoded() -> None:
    # How long it takes is scripts/bench qr's business; here, that shrinking it loses nothing.
    text = "CE1" + "H" * 150
    page = np.full((6000, 6000, 3), 255, np.uint8)
    code = code_image(text, scale=30)
    page[100 : 100 + code.shape[0], 100 : 100 + code.shape[1]] = code
    assert decode_frame(page) == [text]


# -- the debounce ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sightings", "new_scans"),
    [
        ([("A", 0.0)], ["A"]),
        ([("A", 0.0), ("A", 0.1), ("A", 4.9)], ["A"]),  # held up: one scan
        ([("A", 0.0), ("A", 2.0), ("A", 6.0), ("A", 10.0)], ["A"]),  # held for 10 s, seen every 4 s
        ([("A", 0.0), ("A", 5.0)], ["A", "A"]),  # gone for 5 s: a new scan
        ([("A", 0.0), ("B", 0.1), ("A", 0.2)], ["A", "B"]),
        ([("A", 0.0), ("B", 1.0), ("A", 7.0), ("B", 7.5)], ["A", "B", "A", "B"]),
    ],
)
def test_debounce(sightings: list[tuple[str, float]], new_scans: list[str]) -> None:
    debounce = Debounce(5.0)
    assert [text for text, at in sightings if debounce.sighting(text, at)] == new_scans


def test_debounce_forgets_a_scan_that_did_not_get_through_and_stays_bounded() -> None:
    debounce = Debounce(5.0, max_texts=3)
    assert debounce.sighting("A", 0.0)
    debounce.forget("A")
    assert debounce.sighting("A", 0.1)
    for i, text in enumerate("BCDE"):
        debounce.sighting(text, 1.0 + i)
    assert debounce.sighting("A", 5.0)  # pushed out by newer texts: as if never seen


# -- frame sources --------------------------------------------------------------------------------


def write_folder(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"frame-{i:04d}.png"), np.full((32, 48, 3), i, np.uint8))


def test_a_folder_plays_its_images_in_name_order_then_ends_or_loops(tmp_path: Path) -> None:
    write_folder(tmp_path / "f", 3)
    (tmp_path / "f" / "notes.txt").write_text("not an image")
    camera = FolderCamera(tmp_path / "f")
    camera.open()
    assert [int(camera.read()[0, 0, 0]) for _ in range(3)] == [0, 1, 2]
    assert camera.read() is None
    assert camera.exhausted
    looping = FolderCamera(tmp_path / "f", loop=True)
    looping.open()
    assert [int(looping.read()[0, 0, 0]) for _ in range(5)] == [0, 1, 2, 0, 1]
    assert not looping.exhausted


def test_a_missing_source_is_a_camera_error(tmp_path: Path) -> None:
    for camera in (FolderCamera(tmp_path / "nowhere"), CaptureCamera(str(tmp_path / "nothing.avi"))):
        with pytest.raises(CameraError):
            camera.open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="no images"):
        FolderCamera(tmp_path / "empty").open()


def test_a_video_file_plays_and_loops(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    camera = open_camera(str(path), loop=True)
    assert isinstance(camera, CaptureCamera)
    assert not camera.live
    camera.open()
    assert camera.fps == pytest.approx(25)
    levels = [int(camera.read().mean()) for _ in range(6)]
    assert levels[4] == levels[0]  # from the top again
    camera.close()
    once = open_camera(str(path))
    once.open()
    assert [once.read() is not None for _ in range(5)] == [True] * 4 + [False]
    assert once.exhausted


def test_sources_by_their_spec(tmp_path: Path) -> None:
    write_folder(tmp_path / "f", 1)
    assert isinstance(open_camera(str(tmp_path / "f")), FolderCamera)
    device = open_camera("0")
    assert device.live
    assert device.name == "device 0"
    assert open_camera("/dev/video0").live  # as the systemd unit names it
    stream = open_camera("rtsp://door:s3cret@10.0.0.9/stream1")
    assert stream.live
    assert "s3cret" not in stream.name
    assert redact("http://u:p@cam/x") == "http://u:***@cam/x"
    assert redact("/var/lib/frames") == "/var/lib/frames"


def test_the_grabber_keeps_only_the_newest_frame(tmp_path: Path) -> None:
    write_folder(tmp_path / "f", 60)
    camera = FolderCamera(tmp_path / "f", fps=200)
    camera.open()
    grabber = Grabber(camera, pace_fps=200).start()
    seen: list[int] = []
    last = 0
    while True:
        got = grabber.next(last, timeout=1.0)
        if got is None:
            break
        last = got.seq
        seen.append(int(got.image[0, 0, 0]))
        time.sleep(0.03)  # a reader slower than the camera
    grabber.stop()
    assert grabber.failed
    assert seen == sorted(seen)
    assert len(seen) < 30  # most frames were dropped, not queued
    assert seen[-1] == 59  # and the reader ended on the newest
    assert threading.active_count() < 50
