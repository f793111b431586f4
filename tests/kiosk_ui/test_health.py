"""/healthz, /metrics and `outbox status|drain`: the same numbers, from a real database and cloud."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cloud_sync.standin.server import StandinCloud, StandinState
from edge.attendance import record_event
from edge.config import load_config
from edge.models import Action, ActorKind, Method, SubjectKind
from edge.store import Store
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services, main


@pytest.fixture
def cloud() -> Iterator[StandinCloud]:
    with StandinCloud(StandinState("c1", cloud_token="cloud-tok-1")) as running:
        yield running


def record(store: Store, n: int) -> None:
    for i in range(n):
        with store.transaction() as session:
            record_event(
                session,
                subject_kind=SubjectKind.CHILD,
                subject_id=f"C{i}",
                action=Action.CHECK_IN,
                method=Method.PIN,
                actor_kind=ActorKind.PAYER,
                actor_id="P1",
                station_id="front-door",
                occurred_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60),
                clock_synced=True,
            )


def test_healthz_and_metrics_report_the_outbox(data_dir: Path) -> None:
    services = build_services(load_config(None, data_dir=data_dir))
    record(services.store, 3)
    with TestClient(create_app(services)) as client:
        health = client.get("/healthz").json()
        metrics = client.get("/metrics")
    assert health["status"] == "ok"
    assert health["outbox"]["pending"] == 3
    assert health["outbox"]["oldest_pending_age_s"] >= 59
    assert health["outbox"]["cloud"] == "unknown"
    assert "synced" in health["clock"]
    assert metrics.status_code == 200
    assert "checkin_edge_outbox_pending 3.0" in metrics.text
    assert "checkin_edge_cloud_online 0.0" in metrics.text
    services.store.close()


def test_outbox_drain_and_status_commands(
    data_dir: Path, cloud: StandinCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    for key, value in {
        "DATA_DIR": str(data_dir),
        "CENTER_ID": "c1",
        "CLOUD_URL": cloud.url,
        "CLOUD_TOKEN": "cloud-tok-1",
    }.items():
        monkeypatch.setenv(f"CHECKIN_EDGE_{key}", value)
    services = build_services(load_config(None))
    record(services.store, 4)
    services.store.close()
    assert main(["outbox", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == 4
    assert main(["outbox", "drain", "--json"]) == 0
    drained = json.loads(capsys.readouterr().out)
    assert (drained["delivered"], drained["pending"], drained["error"]) == (4, 0, None)
    assert len(cloud.state.attendance) == 4
    assert main(["outbox", "status"]) == 0
    assert "Pending:        0" in capsys.readouterr().out


def test_outbox_drain_with_the_cloud_down_exits_non_zero_and_keeps_everything(
    data_dir: Path, cloud: StandinCloud, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHECKIN_EDGE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("CHECKIN_EDGE_CLOUD_URL", cloud.url)
    monkeypatch.setenv("CHECKIN_EDGE_CLOUD_TOKEN", "cloud-tok-1")
    monkeypatch.setenv("CHECKIN_EDGE_CENTER_ID", "c1")
    services = build_services(load_config(None))
    record(services.store, 2)
    services.store.close()
    cloud.down()
    try:
        assert main(["outbox", "drain"]) == 1
    finally:
        cloud.up()
    out = capsys.readouterr().out
    assert "2 still pending" in out
    assert "could not be reached" in out
