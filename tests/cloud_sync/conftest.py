"""Fixtures for cloud_sync: the stand-in cloud on a real loopback port, a recording sleep."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cloud_sync.standin.generator import generate_roster
from cloud_sync.standin.server import StandinCloud, StandinState

STANDIN_CENTER = "maple-street"
STANDIN_SEED = 7


class RecordingSleep:
    """A ``sleep`` that returns at once and remembers what it was asked; ``on_call(n)`` runs
    on the n-th call (1-based), e.g. to bring a server back up between two attempts."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.on_call: Callable[[int], object] | None = None

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.on_call is not None:
            self.on_call(len(self.calls))


@pytest.fixture(scope="session")
def roster_300() -> dict[str, Any]:
    """A 300-person export; shared, so copy it before changing it."""
    return generate_roster(seed=STANDIN_SEED, people=300, center_id=STANDIN_CENTER)


@pytest.fixture(scope="session")
def standin_server() -> Iterator[StandinCloud]:
    """One stand-in cloud for the session: starting and stopping uvicorn costs ~0.15 s."""
    with StandinCloud(StandinState(STANDIN_CENTER)) as cloud:
        yield cloud


@pytest.fixture
def standin(standin_server: StandinCloud, roster_300: dict[str, Any]) -> Iterator[StandinCloud]:
    """The stand-in cloud serving ``roster_300``, with a fresh state for every test."""
    standin_server.state = StandinState(
        STANDIN_CENTER,
        source_token="source-secret-7f3a91",
        cloud_token="cloud-secret-c28e44",
        roster=roster_300,
    )
    if not standin_server.running:
        standin_server.up()
    yield standin_server
    if not standin_server.running:  # a test that took it down and failed before up()
        standin_server.up()


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()
