"""The four Pacific-Time pulls: DST days, start-up catch-up, and the timer file agreeing."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from cloud_sync.schedule import SyncLoop, SyncSchedule
from edge import const

TIMER = Path(__file__).parents[2] / "systemd" / "checkin-edge-sync.timer"


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def iso(runs: list[dt.datetime]) -> list[str]:
    return [r.strftime("%Y-%m-%dT%H:%M:%SZ") for r in runs]


@pytest.fixture
def schedule() -> SyncSchedule:
    return SyncSchedule.from_config()


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # Winter (PST, UTC-8)
        (
            "2026-01-15T00:00:00Z",
            ["2026-01-15T07:00:00Z", "2026-01-15T11:00:00Z", "2026-01-15T17:00:00Z", "2026-01-15T23:00:00Z"],
        ),
        # Summer (PDT, UTC-7)
        (
            "2026-07-01T00:00:00Z",
            ["2026-07-01T06:00:00Z", "2026-07-01T10:00:00Z", "2026-07-01T16:00:00Z", "2026-07-01T22:00:00Z"],
        ),
        # Spring forward, 2026-03-08: 02:00 PST jumps to 03:00 PDT, so 03:00 is already PDT.
        (
            "2026-03-08T00:00:00Z",
            ["2026-03-08T07:00:00Z", "2026-03-08T10:00:00Z", "2026-03-08T16:00:00Z", "2026-03-08T22:00:00Z"],
        ),
        # Fall back, 2026-11-01: 02:00 PDT returns to 01:00 PST; 03:00 is PST.
        (
            "2026-11-01T00:00:00Z",
            ["2026-11-01T06:00:00Z", "2026-11-01T11:00:00Z", "2026-11-01T17:00:00Z", "2026-11-01T23:00:00Z"],
        ),
    ],
    ids=["winter", "summer", "spring-forward", "fall-back"],
)
def test_next_runs_across_daylight_saving(schedule: SyncSchedule, after: str, expected: list[str]) -> None:
    assert iso(schedule.next_runs(utc(after), 4)) == expected


def test_next_runs_are_strictly_after_and_increasing(schedule: SyncSchedule) -> None:
    start = utc("2026-11-30T11:00:00Z")  # exactly a slot
    runs = schedule.next_runs(start, 12)
    assert runs[0] > start
    assert all(a < b for a, b in itertools.pairwise(runs))
    assert iso(runs[:1]) == ["2026-11-30T17:00:00Z"]


def test_every_run_is_a_pacific_slot(schedule: SyncSchedule) -> None:
    runs = schedule.next_runs(utc("2026-01-01T00:00:00Z"), 4 * 366)
    zone = schedule.zone
    assert {r.astimezone(zone).strftime("%H:%M") for r in runs} == set(const.SYNC_SLOTS_PACIFIC)
    assert len(runs) == len(set(runs))


def test_center_time_zone_does_not_move_the_schedule() -> None:
    # A center in New York still pulls at Pacific slots (the back office's clock).
    schedule = SyncSchedule.from_config()
    run = schedule.next_runs(utc("2026-06-01T12:00:00Z"), 1)[0]
    assert run.astimezone(schedule.zone).hour == 9


@pytest.mark.parametrize(
    ("last_success", "now", "due"),
    [
        (None, "2026-11-30T12:00:00Z", True),
        ("2026-11-30T11:05:00Z", "2026-11-30T12:00:00Z", False),  # after the 03:00 PST slot
        ("2026-11-30T10:59:00Z", "2026-11-30T12:00:00Z", True),  # before it: missed
        ("2026-11-29T23:30:00Z", "2026-11-30T06:59:00Z", False),  # 15:00 slot done, 23:00 not yet
        ("2026-11-29T22:00:00Z", "2026-11-30T06:59:00Z", True),
    ],
)
def test_due_at_startup(schedule: SyncSchedule, last_success: str | None, now: str, due: bool) -> None:
    assert schedule.due_at_startup(utc(last_success) if last_success else None, utc(now)) is due


def test_previous_run(schedule: SyncSchedule) -> None:
    assert iso([schedule.previous_run(utc("2026-11-30T12:00:00Z"))]) == ["2026-11-30T11:00:00Z"]
    assert iso([schedule.previous_run(utc("2026-11-30T11:00:00Z"))]) == ["2026-11-30T11:00:00Z"]


def test_naive_after_is_refused(schedule: SyncSchedule) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_runs(dt.datetime(2026, 1, 1), 1)  # noqa: DTZ001


def _timer_on_calendar() -> str:
    (line,) = [ln for ln in TIMER.read_text().splitlines() if ln.startswith("OnCalendar=")]
    return line.removeprefix("OnCalendar=")


def test_timer_file_matches_the_schedule() -> None:
    match = re.fullmatch(r"\*-\*-\* ([\d,]+):(\d\d):00 (\S+)", _timer_on_calendar())
    assert match, _timer_on_calendar()
    hours, minute, zone = match.groups()
    slots = tuple(f"{int(h):02d}:{minute}" for h in hours.split(","))
    assert slots == const.SYNC_SLOTS_PACIFIC
    assert zone == const.PACIFIC_TZ
    text = TIMER.read_text()
    assert "Persistent=true" in text
    assert re.search(r"^RandomizedDelaySec=\S+", text, re.MULTILINE)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is installed by scripts/test")
@pytest.mark.parametrize("base", ["2026-03-07T20:00:00Z", "2026-10-31T20:00:00Z", "2026-11-30T00:00:00Z"])
def test_systemd_agrees_with_the_schedule(schedule: SyncSchedule, base: str) -> None:
    when = utc(base)
    out = subprocess.run(
        [
            "systemd-analyze",
            "calendar",
            "--iterations=8",
            f"--base-time={when.strftime('%Y-%m-%d %H:%M:%S')} UTC",
            _timer_on_calendar(),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    ).stdout
    systemd_runs = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", out)
    assert len(systemd_runs) == 8, out
    assert [s.replace(" ", "T") + "Z" for s in systemd_runs] == iso(schedule.next_runs(when, 8))


def test_sync_loop_pulls_at_startup_when_due_then_waits_for_the_slot(schedule: SyncSchedule) -> None:
    stop = threading.Event()
    calls: list[str] = []
    now = utc("2026-11-30T12:00:00Z")

    def run_sync(trigger: str) -> None:
        calls.append(trigger)
        stop.set()  # one pull is enough to see which kind ran

    loop = SyncLoop(schedule, run_sync, lambda: None, lambda: now, stop)
    thread = threading.Thread(target=loop.run)
    thread.start()
    thread.join(5)
    assert calls == ["startup"]


def test_sync_loop_runs_the_slot_when_the_clock_reaches_it(schedule: SyncSchedule) -> None:
    stop = threading.Event()
    calls: list[str] = []
    times = iter([utc("2026-11-30T16:59:59.9Z")] * 3 + [utc("2026-11-30T17:00:00Z")] * 100)
    last = utc("2026-11-30T11:01:00Z")

    def run_sync(trigger: str) -> None:
        calls.append(trigger)
        stop.set()

    loop = SyncLoop(schedule, run_sync, lambda: last, lambda: next(times), stop)
    thread = threading.Thread(target=loop.run)
    thread.start()
    thread.join(5)
    assert calls == ["schedule"]
