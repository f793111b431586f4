"""Fixtures the QR token tests share (tests/edge/test_tokens.py, test_fuzz_tokens.py, test_badges.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_sync.roster_sync import RosterSyncService
from edge.badges import BadgeKey
from edge.store import Store
from edge.tokens import TokenService
from tests.door import apply
from tests.edge.test_tokens import roster_with_keys


@pytest.fixture
def badge_key(data_dir: Path) -> BadgeKey:
    return BadgeKey.from_data_dir(data_dir)


@pytest.fixture
def tokens(store: Store, roster_sync: RosterSyncService, badge_key: BadgeKey) -> TokenService:
    """The verifier over the door's roster with the test cloud's key, and this hub's badge key."""
    apply(roster_sync, roster_with_keys())
    return TokenService(store, badge_key.private_key.public_key(), badge_kid=badge_key.kid)
