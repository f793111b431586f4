"""The low-disk check: thresholds as a table, one alert per change of state, /healthz's field."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from edge.config import Config
from edge.disk import ALERT_LOW_DISK, DiskWatch, Usage, disk_status
from edge.events import EventBus, LiveEvent
from edge.models import Alert
from edge.store import Store
from tests.conftest import FakeClock

MB = 1024 * 1024
GB = 1024 * MB


class FakeDisk:
    def __init__(self, total: int, free: int) -> None:
        self.total, self.free = total, free
        self.fail = False

    def __call__(self, _path: Path) -> Usage:
        if self.fail:
            raise OSError("no such device")
        return Usage(self.total, self.total - self.free, self.free)


@pytest.mark.parametrize(
    ("total", "free", "low"),
    [
        (32 * GB, 10 * GB, False),
        (32 * GB, 300 * MB, True),  # 300 MB is 0.9 %: a big card is low by the share first
        (2 * GB, 500 * MB, False),  # 24 %
        (2 * GB, 199 * MB, True),  # under 200 MB
        (100 * GB, 4 * GB, True),  # 4 %: under 5 %
        (100 * GB, 6 * GB, False),
        (0, 0, True),  # a disk that reports nothing is treated as full
    ],
)
def test_low_when_below_either_threshold(total: int, free: int, low: bool) -> None:
    status = disk_status(Path("/"), usage=FakeDisk(total, free))
    assert status.low is low


def test_a_real_disk_reads() -> None:
    status = disk_status(Path(__file__).parent)
    assert status.total_bytes > 0
    assert 0 <= status.free_ratio <= 1
    assert set(status.as_json()) == {"low", "free_mb", "total_mb", "free_percent"}


def _alerts(store: Store) -> list[Alert]:
    with store.read() as session:
        return list(session.scalars(select(Alert).where(Alert.kind == ALERT_LOW_DISK).order_by(Alert.id)))


def test_one_alert_per_change_of_state(store: Store, data_dir: Path, clock: FakeClock) -> None:
    events = EventBus()
    seen: list[LiveEvent] = []
    events.subscribe(seen.append)
    disk = FakeDisk(32 * GB, 10 * GB)
    watch = DiskWatch(store, events, data_dir, usage=disk, clock=clock)

    assert watch.check() is not None
    assert _alerts(store) == []

    disk.free = 100 * MB
    for _ in range(3):  # low, and still low: one alert, one live event
        status = watch.check()
        assert status is not None
        assert status.low
    alerts = _alerts(store)
    assert len(alerts) == 1
    assert alerts[0].resolved_at is None
    assert "Check-ins are still recorded" in alerts[0].message
    assert [e.kind for e in seen] == ["alert"]
    assert seen[0].data["kind"] == ALERT_LOW_DISK
    assert seen[0].data["alert_id"] == alerts[0].id
    assert seen[0].data["disk"]["low"] is True

    clock.advance(hours=1)
    disk.free = 5 * GB
    watch.check()
    watch.check()
    (resolved,) = _alerts(store)
    assert resolved.resolved_at == clock.now
    assert len(seen) == 1

    disk.free = 100 * MB  # low again: a new alert
    watch.check()
    assert [a.resolved_at is None for a in _alerts(store)] == [False, True]
    assert len(seen) == 2


def test_a_restart_does_not_repeat_an_open_alert(store: Store, data_dir: Path, clock: FakeClock) -> None:
    disk = FakeDisk(32 * GB, 100 * MB)
    DiskWatch(store, None, data_dir, usage=disk, clock=clock).check()
    events = EventBus()
    seen: list[LiveEvent] = []
    events.subscribe(seen.append)
    DiskWatch(store, events, data_dir, usage=disk, clock=clock).check()  # the hub restarted, still low
    assert len(_alerts(store)) == 1
    assert seen == []
    disk.free = 10 * GB
    DiskWatch(store, events, data_dir, usage=disk, clock=clock).check()  # restarted after space was freed
    assert [a.resolved_at for a in _alerts(store)] == [clock.now]


def test_an_unreadable_disk_or_a_failed_write_never_raises(store: Store, data_dir: Path, clock: FakeClock) -> None:
    disk = FakeDisk(32 * GB, 100 * MB)
    disk.fail = True
    watch = DiskWatch(store, None, data_dir, usage=disk, clock=clock)
    assert watch.check() is None
    disk.fail = False
    store.close()
    broken = Store(f"sqlite:///{data_dir}")  # a directory: every write fails, as on a full disk
    try:
        watch = DiskWatch(broken, None, data_dir, usage=disk, clock=clock)
        status = watch.check()
        assert status is not None
        assert status.low
    finally:
        broken.close()


def test_healthz_reports_the_disk(config: Config) -> None:
    from kiosk_ui.app import create_app
    from kiosk_ui.cli import build_services

    services = build_services(config)
    try:
        with TestClient(create_app(services)) as client:
            disk = client.get("/healthz").json()["disk"]
    finally:
        services.close()
    assert isinstance(disk["low"], bool)
    assert disk["total_mb"] > 0
    assert 0 <= disk["free_percent"] <= 100
