"""Shared by the dashboard tests: a hub over the door's small roster, staff accounts, logging in."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from edge.config import load_config
from edge.models import SyncOutcome, SyncTrigger
from edge.staff import StaffAccounts
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services
from kiosk_ui.services import Services
from tests.door import door_export

PASSWORD = "correct horse battery"
# Behaviour, not cost: the real profile (64 MiB, ~0.1 s a hash) is checked in tests/edge/test_staff.py.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def cheap_accounts(services: Services) -> StaffAccounts:
    services.staff = StaffAccounts(services.store, hasher=CHEAP_HASHER)
    return services.staff


@dataclass
class Dash:
    services: Services
    app: FastAPI
    client: TestClient


def login(client: TestClient, username: str, password: str = PASSWORD, next_path: str = "/dashboard") -> str:
    """Logs in through the form (as a new browser would); returns the session's CSRF token."""
    client.cookies.clear()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    answer = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token.group(1), "next": next_path},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(client)


def csrf_of(client: TestClient) -> str:
    page = client.get("/dashboard/audit")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


@pytest.fixture
def dash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dash]:
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    services = build_services(load_config(None, data_dir=tmp_path / "data", center_id="demo-center"))
    report = services.roster_sync.apply_export([copy.deepcopy(door_export())], SyncTrigger.FILE)
    assert report.outcome is SyncOutcome.OK
    accounts = cheap_accounts(services)
    accounts.add("maria", "director", PASSWORD)
    accounts.add("lee", "teacher", PASSWORD, teacher_id="E1")
    accounts.add("tom", "teacher", PASSWORD)
    app = create_app(services)
    try:
        with TestClient(app) as client:
            yield Dash(services, app, client)
    finally:
        services.close()
