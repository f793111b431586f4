"""The database's directory read-only, for real: a bind mount remounted read-only (root ignores
file modes, not a read-only mount), as the kernel does to a card after write errors.

Start-up says so in words and exits non-zero (no traceback); a running hub answers the door
503 ``storage_read_only`` and recovers when the directory is writable again; nothing is corrupted.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edge.config import load_config
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services
from kiosk_ui.services import Services
from tests.dbenv import clean_env
from tests.door import act_over_http, apply
from tests.faults.mounts import bind, integrity, read_only
from tests.faults.rows import all_rows, roster_digest

pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    with bind(tmp_path / "data") as path:
        yield path


def _built(data_dir: Path) -> Services:
    services = build_services(load_config(None, data_dir=data_dir, center_id="demo-center"))
    apply(services.roster_sync)
    return services


def test_serve_on_a_read_only_directory_says_so_and_exits(data_dir: Path) -> None:
    _built(data_dir).close()
    db_file = data_dir / "checkin-edge.db"
    assert db_file.exists()
    roster = roster_digest(db_file)
    read_only(data_dir)
    env = clean_env()
    env.update({"CHECKIN_EDGE_DATA_DIR": str(data_dir), "CHECKIN_EDGE_PORT": "0"})
    done = subprocess.run(
        [sys.executable, "-m", "kiosk_ui.cli", "serve"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "is read-only" in done.stderr
    assert "Traceback" not in done.stderr
    read_only(data_dir, ro=False)
    assert integrity(db_file) == "ok"
    assert roster_digest(db_file) == roster


def test_a_directory_turned_read_only_under_a_running_hub(data_dir: Path) -> None:
    services = _built(data_dir)
    db_file = Path(services.store.engine.url.database or "")
    try:
        with TestClient(create_app(services)) as client:
            assert act_over_http(client, "check_in").status_code == 200
            events = all_rows(db_file, "attendance_events")
            # The kernel remounts a failing card read-only under open files; mount(8) refuses
            # while files are open for writing, so the store's connections are closed first
            # (it opens new ones when next used).
            services.store.close()
            read_only(data_dir)
            refused = act_over_http(client, "check_out")
            assert refused.status_code == 503
            assert refused.json()["reason"] == "storage_read_only"
            assert "tell staff" in refused.json()["message"]
            assert client.get("/healthz").status_code in (200, 503)
            services.store.close()
            read_only(data_dir, ro=False)
            assert integrity(db_file) == "ok"
            assert all_rows(db_file, "attendance_events") == events
            assert act_over_http(client, "check_out").status_code == 200  # no restart needed
    finally:
        services.close()
