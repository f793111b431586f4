"""The scan loop (edge.scanner.ScanLoop) from real video files and image folders through a fake
poster, then to a live hub: debounce, newest frame only, reconnecting, health reports, the
scanner's health endpoint, its HTTP client, and a phone showing a real token identifying its
payer at the door."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cloud_sync.standin import issue_app_code
from edge import qr_scenes
from edge.camera import Camera, CaptureCamera, FolderCamera, open_camera
from edge.config import load_config
from edge.events import LiveEvent
from edge.qr_scenes import Kind
from edge.scanner import PostResult, ScanLoop, ScannerHealth, ScanState
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services
from kiosk_ui.scanner_client import ScannerClient, ScannerClientError
from kiosk_ui.services import Services
from tests.kiosk_ui.conftest import KIOSK_SEED, STATION, Hub

FPS = 100.0  # replays play fast: a test frame lasts 10 ms
SIZE = (640, 480)
BACK = "back-door"
BACK_TOKEN = "tok-back-door-scanner-0123"
LAN = ("192.168.1.30", 40000)


# -- frames and videos ----------------------------------------------------------------------------


def phone_frames(text: str, count: int, *, start: int = 0) -> list[np.ndarray]:
    """A phone showing ``text``, moving a little from frame to frame (each is another scene)."""
    return [qr_scenes.scene(Kind.CLEAN, seed=9, index=start + i, size=SIZE, text=text).image for i in range(count)]


def empty_frames(count: int) -> list[np.ndarray]:
    frame = qr_scenes.scene(Kind.EMPTY, seed=9, index=0, size=SIZE).image
    return [frame] * count


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = FPS) -> Path:
    # MJPG in AVI: opencv-python-headless writes and reads it with its bundled FFmpeg, and its
    # intra-only JPEG frames keep a code sharp (mp4v smears it between key frames).
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (SIZE[0], SIZE[1]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


TEXT_A = "CE1" + "A" * 150
TEXT_B = "CE1" + "B" * 150


@dataclass
class FakePoster:
    """Records what the loop posts; answers ``results`` in turn (then "identified")."""

    results: list[PostResult | Exception] = field(default_factory=list)
    posts: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, station_id: str, text: str) -> PostResult:
        self.posts.append((station_id, text))
        if self.results:
            result = self.results.pop(0)
            if isinstance(result, Exception):
                raise result
            return result
        return PostResult(True, "identified", "P1")


@dataclass
class Reports:
    items: list[ScannerHealth] = field(default_factory=list)

    def __call__(self, health: ScannerHealth) -> None:
        self.items.append(health)

    @property
    def states(self) -> list[ScanState]:
        return [h.state for h in self.items]


def scan(camera: Camera, post: Any, report: Any = None, **kw: Any) -> tuple[ScanLoop, ScanState]:
    kw.setdefault("fps", None)  # decode every frame the replay delivers
    kw.setdefault("backoff_base_s", 0.05)
    loop = ScanLoop(STATION, camera, post, report, **kw)
    return loop, loop.run(threading.Event())


@pytest.fixture(scope="module")
def held_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Nothing, a phone held up for 30 frames, nothing."""
    folder = tmp_path_factory.mktemp("videos")
    return write_video(folder / "held.avi", empty_frames(5) + phone_frames(TEXT_A, 30) + empty_frames(5))


# -- the loop, with a fake poster -----------------------------------------------------------------


def test_mjpg_avi_is_what_the_tests_can_write_and_read_back(held_video: Path) -> None:
    capture = cv2.VideoCapture(str(held_video))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 40


def test_a_code_held_up_for_many_frames_posts_once(held_video: Path) -> None:
    poster = FakePoster()
    loop, state = scan(open_camera(str(held_video), fps=FPS), poster)
    assert state is ScanState.ENDED
    assert poster.posts == [(STATION, TEXT_A)]
    assert loop.scans == 1


def test_a_code_shown_again_after_the_debounce_posts_again(tmp_path: Path) -> None:
    frames = phone_frames(TEXT_A, 8) + empty_frames(30) + phone_frames(TEXT_A, 8, start=8) + phone_frames(TEXT_B, 8)
    video = write_video(tmp_path / "twice.avi", frames)
    quick = FakePoster()
    scan(open_camera(str(video), fps=FPS), quick, debounce_s=0.15)  # 30 empty frames last 0.3 s
    assert [text for _, text in quick.posts] == [TEXT_A, TEXT_A, TEXT_B]
    patient = FakePoster()
    scan(open_camera(str(video), fps=FPS), patient)  # the default 5 s: one scan of each
    assert [text for _, text in patient.posts] == [TEXT_A, TEXT_B]


def test_the_loop_decodes_the_newest_frame_and_drops_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "numbered"
    folder.mkdir()
    for i in range(80):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((48, 64, 3), i, np.uint8))
    seen: list[int] = []

    def slow_decoder(frame: np.ndarray) -> list[str]:
        seen.append(int(frame[0, 0, 0]))
        time.sleep(0.05)  # five camera frames' worth
        return []

    reports = Reports()
    _, state = scan(FolderCamera(folder, fps=100), FakePoster(), reports, decode=slow_decoder, health_interval_s=0.3)
    assert state is ScanState.ENDED
    assert seen == sorted(seen)
    assert len(seen) < 40  # most frames were never decoded...
    assert seen[-1] >= 75  # ...and the loop kept up with the newest
    delivering = [h for h in reports.items if h.state is ScanState.SCANNING and h.fps > 0]
    assert delivering
    assert all(h.camera_fps > h.fps for h in delivering)


def test_a_missing_camera_is_retried_until_it_appears(tmp_path: Path) -> None:
    folder = tmp_path / "camera"
    reports = Reports()
    poster = FakePoster()

    def plug_in() -> None:
        time.sleep(0.3)
        staging = tmp_path / "staging"
        staging.mkdir()
        for i, frame in enumerate(phone_frames(TEXT_A, 5)):
            cv2.imwrite(str(staging / f"{i:02d}.png"), frame)
        staging.rename(folder)  # appears all at once, as a device node would

    threading.Thread(target=plug_in).start()
    _, state = scan(FolderCamera(folder, fps=FPS), poster, reports)
    assert state is ScanState.ENDED
    assert poster.posts == [(STATION, TEXT_A)]
    # Each change of state reported once, in order.
    assert reports.states[:3] == [ScanState.CAMERA_LOST, ScanState.SCANNING, ScanState.ENDED]
    assert "no such folder" in (reports.items[0].detail or "")


class FlakyCamera:
    """A real video file whose first session dies after a few frames (a camera unplugged), and
    whose first open fails (not plugged in yet)."""

    def __init__(self, path: Path) -> None:
        self.inner = CaptureCamera(str(path), fps=FPS)
        self.opens = 0
        self.frames = 0

    name = "flaky"
    live = False

    @property
    def fps(self) -> float | None:
        return self.inner.fps

    @property
    def exhausted(self) -> bool:
        return self.opens > 2 and self.inner.exhausted

    def open(self) -> None:
        self.opens += 1
        if self.opens == 1:
            from edge.camera import CameraError

            raise CameraError("flaky: not plugged in")
        self.inner.open()

    def read(self) -> np.ndarray | None:
        if self.opens == 2 and self.frames >= 3:
            return None  # unplugged mid-way: lost, not ended
        self.frames += 1
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


def test_a_camera_that_drops_out_is_reopened(held_video: Path) -> None:
    camera = FlakyCamera(held_video)
    reports = Reports()
    poster = FakePoster()
    _, state = scan(camera, poster, reports)
    assert state is ScanState.ENDED
    assert camera.opens == 3
    assert poster.posts == [(STATION, TEXT_A)]
    assert reports.states == [
        ScanState.CAMERA_LOST,  # the first open failed
        ScanState.SCANNING,
        ScanState.CAMERA_LOST,  # three frames, then nothing
        ScanState.SCANNING,
        ScanState.ENDED,
    ]


def test_a_scan_the_hub_did_not_take_is_tried_again(held_video: Path) -> None:
    poster = FakePoster(results=[PostResult(False, "unreachable"), ConnectionError("boom")])
    loop, state = scan(open_camera(str(held_video), fps=FPS), poster, backoff_max_s=0.1)
    assert state is ScanState.ENDED
    assert [text for _, text in poster.posts] == [TEXT_A] * 3
    assert loop.scans == 1


def test_health_reports_carry_the_rates_and_times(held_video: Path) -> None:
    reports = Reports()
    scan(open_camera(str(held_video), fps=FPS), FakePoster(), reports, health_interval_s=0.1)
    periodic = [h for h in reports.items if h.state is ScanState.SCANNING and h.fps > 0]
    assert periodic
    assert all(20 < h.camera_fps < 150 for h in periodic)
    last = reports.items[-1]
    assert last.state is ScanState.ENDED
    assert last.last_frame_at is not None
    assert last.last_decode_at is not None
    assert last.scans == 1
    body = last.as_json()
    assert body["state"] == "ended"
    assert str(body["last_decode_at"]).endswith("Z")
    assert TEXT_A not in str(body)


def test_stop_ends_a_looping_replay_promptly(held_video: Path) -> None:
    stop = threading.Event()
    loop = ScanLoop(STATION, open_camera(str(held_video), fps=FPS, loop=True), FakePoster(), fps=10)
    threading.Timer(0.4, stop.set).start()
    start = time.monotonic()
    assert loop.run(stop) is ScanState.STOPPED
    assert time.monotonic() - start < 2.0


def test_a_decoder_that_raises_does_not_stop_the_door(held_video: Path) -> None:
    calls = 0

    def broken(frame: np.ndarray) -> list[str]:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug")

    _, state = scan(open_camera(str(held_video), fps=FPS), FakePoster(), decode=broken)
    assert state is ScanState.ENDED
    assert calls > 10


# -- the scanner health endpoint ------------------------------------------------------------------


@pytest.fixture
def services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    config = load_config(None, data_dir=tmp_path / "data", center_id="demo-center", station_tokens={BACK: BACK_TOKEN})
    built = build_services(config)
    try:
        yield built
    finally:
        built.close()


REPORT = {
    "state": "scanning",
    "camera": "device 0",
    "fps": 9.8,
    "camera_fps": 30.0,
    "decode_ms": 1.4,
    "last_frame_at": "2026-11-29T18:00:00.100Z",
    "last_decode_at": None,
    "scans": 0,
    "detail": None,
}


def test_the_hub_keeps_and_announces_a_scanner_report(services: Services) -> None:
    heard: list[LiveEvent] = []
    services.events.subscribe(heard.append)
    with TestClient(create_app(services)) as client:
        assert client.get(f"/api/v1/stations/{STATION}/scanner").status_code == 404
        answer = client.post(f"/api/v1/stations/{STATION}/scanner", json=REPORT)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stale"] is False
        status = client.get(f"/api/v1/stations/{STATION}/scanner").json()
    assert status["station_id"] == STATION
    assert status["report"]["fps"] == 9.8
    assert status["report"]["last_frame_at"].startswith("2026-11-29T18:00:00.1")
    (event,) = [e for e in heard if e.kind == "scanner"]
    assert event.station_id == STATION
    assert event.data["state"] == "scanning"


@pytest.mark.parametrize(
    "body",
    [
        {**REPORT, "state": "on fire"},
        {**REPORT, "fps": -1},
        {**REPORT, "surprise": 1},
        {**REPORT, "last_frame_at": "2026-11-29T18:00:00"},  # no zone
        {k: v for k, v in REPORT.items() if k != "camera"},
    ],
)
def test_a_malformed_report_is_422(services: Services, body: dict[str, Any]) -> None:
    with TestClient(create_app(services)) as client:
        assert client.post(f"/api/v1/stations/{STATION}/scanner", json=body).status_code == 422


def test_a_remote_scanner_reports_for_its_own_station_with_its_token(services: Services) -> None:
    with TestClient(create_app(services), client=LAN) as remote:
        url = f"/api/v1/stations/{BACK}/scanner"
        assert remote.post(url, json=REPORT).status_code == 401
        assert remote.post(url, json=REPORT, headers={"Authorization": "Bearer nope"}).status_code == 401
        mine = {"Authorization": f"Bearer {BACK_TOKEN}"}
        assert remote.post(url, json=REPORT, headers=mine).status_code == 200
        assert remote.get(url, headers=mine).status_code == 200
        other = f"/api/v1/stations/{STATION}/scanner"
        assert remote.post(other, json=REPORT, headers=mine).status_code == 401


# -- the HTTP client ------------------------------------------------------------------------------


def test_the_client_turns_answers_into_results_and_sends_the_token() -> None:
    seen: list[httpx.Request] = []
    answers = iter(
        [
            httpx.Response(200, json={"ticket": "t", "person": {"id": "P7", "name": "A", "role": "payer"}}),
            httpx.Response(403, json={"reason": "expired", "message": "…"}),
            httpx.Response(401, json={"detail": "no"}),
            httpx.Response(503),
            httpx.Response(422, json={"detail": []}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    client = ScannerClient("http://hub:8080/", "tok", transport=httpx.MockTransport(handler))
    results = [client.post(BACK, TEXT_A) for _ in range(5)]
    assert results == [
        PostResult(True, "identified", "P7"),
        PostResult(True, "expired"),
        PostResult(True, "unauthorized"),
        PostResult(False, "the hub answered 503"),
        PostResult(True, "rejected (422)"),
    ]
    assert str(seen[0].url) == "http://hub:8080/api/v1/identify"
    assert seen[0].headers["authorization"] == "Bearer tok"
    assert b'"method":"qr"' in seen[0].content.replace(b" ", b"")


def test_the_client_never_raises_on_an_unreachable_hub() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = ScannerClient("http://hub:8080", transport=httpx.MockTransport(refuse))
    result = client.post(STATION, TEXT_A)
    assert not result.delivered
    health = ScannerHealth(STATION, ScanState.SCANNING, "device 0", 1.0, 1.0, None, None, None, 0)
    with pytest.raises(ScannerClientError):
        client.report(health)


# -- end to end: a phone at the door --------------------------------------------------------------


def run_against(hub: Hub, video: Path, **kw: Any) -> tuple[list[PostResult], Reports, ScanState]:
    client = ScannerClient(hub.url)
    results: list[PostResult] = []
    reports = Reports()

    def post(station_id: str, text: str) -> PostResult:
        results.append(client.post(station_id, text))
        return results[-1]

    def report(health: ScannerHealth) -> None:
        reports(health)
        client.report(health)

    try:
        loop = ScanLoop(STATION, open_camera(str(video), fps=FPS), post, report, fps=None, **kw)
        state = loop.run(threading.Event())
    finally:
        client.close()
    return results, reports, state


def test_a_phone_showing_a_badge_identifies_its_payer(hub: Hub, tmp_path: Path) -> None:
    payer = hub.people["payer"]
    badge = hub.services.badges.issue_badge(payer["id"])
    heard: list[LiveEvent] = []
    hub.services.events.subscribe(heard.append)
    video = write_video(tmp_path / "door.avi", empty_frames(5) + phone_frames(badge.token, 25) + empty_frames(5))
    results, reports, state = run_against(hub, video, health_interval_s=0.2)
    assert state is ScanState.ENDED
    assert results == [PostResult(True, "identified", payer["id"])]
    # The hub holds the scanner's last report and announced each one on the live channel.
    status = httpx.get(f"{hub.url}/api/v1/stations/{STATION}/scanner").json()
    assert status["report"]["state"] == "ended"
    assert status["report"]["scans"] == 1
    assert [e.data["state"] for e in heard if e.kind == "scanner"][-1] == "ended"
    assert len(reports.items) >= 3


def test_app_codes_identify_and_forgeries_are_refused(hub: Hub, tmp_path: Path) -> None:
    payer = hub.people["payer"]
    app_code = issue_app_code(KIOSK_SEED, payer["id"], dt.datetime.now(dt.UTC))
    forged = qr_scenes.token_text(np.random.default_rng(3))
    frames = phone_frames(app_code, 10) + empty_frames(3) + phone_frames(forged, 10, start=10)
    results, _, _ = run_against(hub, write_video(tmp_path / "codes.avi", frames))
    assert results[0] == PostResult(True, "identified", payer["id"])
    assert results[1].delivered
    assert results[1].outcome in ("not_a_token", "bad_signature", "unknown_key")
    assert len(results) == 2


# -- the command line -----------------------------------------------------------------------------


def test_checkin_edge_scan_plays_a_video_to_the_hub(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kiosk_ui.cli import main

    monkeypatch.setenv("CHECKIN_EDGE_DATA_DIR", str(tmp_path / "scanner-data"))
    payer = hub.people["payer"]
    token = hub.services.badges.issue_badge(payer["id"]).token
    video = write_video(tmp_path / "cli.avi", phone_frames(token, 10))
    heard: list[LiveEvent] = []
    hub.services.events.subscribe(heard.append)
    code = main(["scan", "--station", STATION, "--camera", str(video), "--hub", hub.url, "--fps", "50"])
    assert code == 0
    states = [e.data["state"] for e in heard if e.kind == "scanner"]
    assert states[0] == "scanning"
    assert states[-1] == "ended"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--station", "front door", "--camera", "0"], "--station"),
        (["--station", STATION, "--camera", "0", "--hub", "http://10.0.0.2:8080"], "station_tokens"),
        (["--station", STATION, "--camera", "0", "--fps", "0"], "--fps"),
    ],
)
def test_checkin_edge_scan_refuses_what_cannot_work(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiosk_ui.cli import EXIT_USAGE, main

    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    monkeypatch.delenv("CHECKIN_EDGE_STATION_TOKENS", raising=False)
    assert main(["scan", *argv]) == EXIT_USAGE
    assert complaint in capsys.readouterr().err


class WedgedCamera:
    """A live camera whose driver stops returning from reads after a few frames."""

    name = "wedged"
    live = True
    fps = None
    exhausted = False

    def __init__(self) -> None:
        self.release = threading.Event()
        self.reads = 0
        self.closed = False

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        self.reads += 1
        if self.reads > 3:
            self.release.wait(10)  # the test lets it go at the end
            return None
        return np.zeros((48, 64, 3), np.uint8)

    def close(self) -> None:
        self.closed = True


def test_a_camera_stuck_in_its_driver_ends_the_process_for_a_clean_restart() -> None:
    camera = WedgedCamera()
    try:
        loop = ScanLoop(STATION, camera, FakePoster(), fps=None, stall_s=0.3, read_block_max_s=0.2)
        start = time.monotonic()
        assert loop.run(threading.Event()) is ScanState.CAMERA_LOST
        assert time.monotonic() - start < 3.0
        assert not camera.closed  # never released under a read in progress
    finally:
        camera.release.set()
