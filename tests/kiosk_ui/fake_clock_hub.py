"""The hub's services as ``serve`` builds them, with the door on the test's fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge.config import load_config
from kiosk_ui.cli import build_services
from kiosk_ui.services import Services
from tests.conftest import FakeClock
from tests.door import apply, make_service


@contextmanager
def hub_services(
    data_dir: Path, clock: FakeClock, roster: dict[str, Any] | None = None, **settings: Any
) -> Iterator[Services]:
    """Built over ``data_dir`` (``settings`` as config keys), ``roster`` applied when given, and
    the door's service rebuilt on ``clock`` (tickets expire and lockouts end on it) with the
    hub's own QR verifier; closed after."""
    built = build_services(load_config(None, data_dir=data_dir, center_id="demo-center", **settings))
    try:
        if roster is not None:
            apply(built.roster_sync, roster)
        verifier = built.checkin.token_verifier
        built.checkin = make_service(built.store, built.hasher, clock, built.events, token_verifier=verifier)
        yield built
    finally:
        built.close()
