"""A PostgreSQL database that stops taking writes under a running hub (a standby after a
fail-over, ``default_transaction_read_only``): the door answers 503 ``storage_read_only`` in
plain words, as for SQLite's directory remounted read-only (test_read_only.py), nothing recorded
changes, and the door works again without a restart once the database takes writes again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from edge.config import load_config
from edge.models import AttendanceEvent
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services
from kiosk_ui.services import Services
from tests.door import act_over_http, apply

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def services(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    built = build_services(load_config(None, data_dir=data_dir, center_id="demo-center"))
    apply(built.roster_sync)
    yield built
    built.close()


def read_only(db_url: str, on: bool = True) -> None:
    """Set or reset the database's default, and disconnect its sessions so the next ones have it."""
    url = make_url(db_url)
    # From the server's own database: a session in this one could not undo it (it is read-only).
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
            conn.execute(text(f'ALTER DATABASE "{url.database}" {setting}'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                {"name": url.database},
            )
    finally:
        admin.dispose()


def _events(services: Services) -> list[str]:
    with services.store.read() as session:
        return list(session.scalars(select(AttendanceEvent.id).order_by(AttendanceEvent.id)))


def test_a_database_turned_read_only_under_a_running_hub(services: Services, db_url: str) -> None:
    assert services.store.engine.dialect.name == "postgresql"
    with TestClient(create_app(services)) as client:
        assert act_over_http(client, "check_in").status_code == 200
        events = _events(services)
        read_only(db_url)
        refused = act_over_http(client, "check_out")
        assert refused.status_code == 503, refused.text
        assert refused.json()["reason"] == "storage_read_only"
        assert "tell staff" in refused.json()["message"]
        assert _events(services) == events  # reads still work, and nothing was written
        read_only(db_url, on=False)
        assert act_over_http(client, "check_out").status_code == 200  # no restart needed
        assert len(_events(services)) == len(events) + 1
