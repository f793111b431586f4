"""The data directory's disk full, for real: a small tmpfs holding the hub's data directory, filled
to the last block by a file. Check-ins are refused in plain words (503 ``storage_full``), staff
are told (live alert, /healthz; the alert row once the disk takes it), nothing recorded is lost
or corrupted, a roster sync leaves the roster as it was, and once the file is deleted the door
works again without a restart."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from edge.config import load_config
from edge.disk import ALERT_STORAGE, DiskWatch
from edge.models import Alert
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services
from kiosk_ui.i18n import STRINGS
from kiosk_ui.services import Services
from tests.dbenv import clean_env
from tests.door import PINS, STATION, apply, door_export
from tests.faults.mounts import fill, integrity, tmpfs, truncate_wal
from tests.faults.rows import all_rows, roster_digest

pytestmark = pytest.mark.sqlite_only

FULL_EN = "The device's storage is full — check-ins can't be saved; tell staff."


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Services, TestClient]]:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    with tmpfs(tmp_path / "data", size_mb=8) as data_dir:
        config = load_config(None, data_dir=data_dir, center_id="demo-center")
        services = build_services(config)
        apply(services.roster_sync)
        try:
            with TestClient(create_app(services)) as client:
                yield services, client
        finally:
            services.close()


def _check(client: TestClient, action: str, **headers: str) -> Any:
    found = client.post("/api/v1/identify", json={"station_id": STATION, "method": "pin", "secret": PINS["P1"]})
    assert found.status_code == 200, found.text  # reading needs no space
    return client.post(
        "/api/v1/attendance", json={"ticket": found.json()["ticket"], "children": ["C1"], "action": action},
        headers=headers,
    )  # fmt: skip


def test_a_full_disk_refuses_check_ins_in_plain_words_and_recovers_without_a_restart(
    hub: tuple[Services, TestClient],
) -> None:
    services, client = hub
    db_file = Path(services.store.engine.url.database or "")
    assert _check(client, "check_in").status_code == 200
    before = {table: all_rows(db_file, table) for table in ("attendance_events", "outbox", "presence")}
    roster_before = roster_digest(db_file)

    truncate_wal(services.store)
    filler = fill(db_file.parent)

    # The door: a refusal with a stable code and words for the screen, in its language.
    refused = _check(client, "check_out")
    assert refused.status_code == 503
    assert refused.json() == {"reason": "storage_full", "message": FULL_EN}
    assert refused.headers["Retry-After"].isdigit()
    spanish = _check(client, "check_out", **{"Accept-Language": "es"})
    assert spanish.json()["reason"] == "storage_full"
    assert "lleno" in spanish.json()["message"]
    # The kiosk page still loads, and carries the sentence for the code (kiosk.js shows it).
    page = client.get(f"/kiosk?station={STATION}")
    assert page.status_code == 200
    assert STRINGS["en"]["reason.storage_full"] == FULL_EN

    # Staff: told at once on the live channel, and /healthz says it, with no disk write needed.
    alerts = [e for e in services.events.since(0) if e.kind == "alert" and e.data.get("kind") == ALERT_STORAGE]
    assert len(alerts) == 1, "announced once, not once per refused check-in"
    storage = client.get("/healthz").json()["storage"]
    assert storage["fault"] == "storage_full"
    assert storage["refused"] == 2

    # A roster sync on the full disk: the roster stays exactly as it was.
    changed = copy.deepcopy(door_export())
    changed["families"][0]["persons"][0]["first_name"] = "Anh"
    with pytest.raises(OperationalError, match="full"):  # not even the run's own row fits
        services.roster_sync.apply_export([changed])
    assert roster_digest(db_file) == roster_before

    watch = DiskWatch(services.store, services.events, db_file.parent, alarm=services.storage)
    watch.check()
    assert services.storage.current() is not None  # still full: the alarm stays in memory

    # Space returns: nothing lost or half written, and the same hub takes check-ins again.
    filler.unlink()
    assert integrity(db_file) == "ok"
    assert {table: all_rows(db_file, table) for table in before} == before
    watch.check()  # its minute's look: the alert row goes in, the alarm clears
    assert services.storage.current() is None
    assert client.get("/healthz").json()["storage"] == {"fault": None}
    with services.store.read() as session:
        recorded = session.scalars(select(Alert).where(Alert.kind == ALERT_STORAGE)).one()
    assert recorded.resolved_at is None  # families were turned away: staff resolve it
    assert "2 refused" in recorded.message
    assert _check(client, "check_out").status_code == 200
    assert len(all_rows(db_file, "attendance_events")) == len(before["attendance_events"]) + 1
    apply(services.roster_sync, changed)
    assert roster_digest(db_file) != roster_before
    assert integrity(db_file) == "ok"


def test_commands_on_a_full_disk_say_so_and_change_nothing(hub: tuple[Services, TestClient], tmp_path: Path) -> None:
    services, _client = hub
    db_file = Path(services.store.engine.url.database or "")
    roster_before = roster_digest(db_file)
    export = tmp_path / "export.json"
    changed = copy.deepcopy(door_export())
    changed["families"][0]["persons"][0]["first_name"] = "Anh"
    export.write_text(json.dumps(changed))
    truncate_wal(services.store)
    fill(db_file.parent)
    env = clean_env()
    env["CHECKIN_EDGE_DATA_DIR"] = str(db_file.parent)
    done = subprocess.run(
        [sys.executable, "-m", "kiosk_ui.cli", "roster", "apply", str(export)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "is full" in done.stderr
    assert "Traceback" not in done.stderr
    assert roster_digest(db_file) == roster_before
