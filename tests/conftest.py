"""Shared fixtures: a migrated SQLite file under tmp_path, the PIN hasher, an advanceable clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_sync.roster_sync import RosterSyncService
from edge.config import Config, load_config
from edge.pins import PinHasher
from edge.store import Store, upgrade


class FakeClock:
    """An advanceable UTC clock for code that takes ``clock=``."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2026, 11, 29, 18, 0, tzinfo=dt.UTC))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def config(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    return load_config(None, data_dir=data_dir, center_id="demo-center")


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    s = Store(config.db_url)
    upgrade(s)
    yield s
    s.close()


@pytest.fixture
def hasher(data_dir: Path) -> PinHasher:
    return PinHasher.from_data_dir(data_dir)


@pytest.fixture
def roster_sync(store: Store, hasher: PinHasher, clock: FakeClock) -> RosterSyncService:
    return RosterSyncService(store, hasher, clock)
