"""SIGKILL at random moments during a real ``checkin-edge sync`` (a subprocess pulling a
3,000-person roster from the stand-in cloud on loopback): the roster afterwards is exactly the
old one or exactly the new one, never a mix (content hashes of every roster table), the database
passes its integrity check, and the next sync succeeds. On SQLite and, in that run, on PostgreSQL
(the database put back between kills by ``database_copies``)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_sync.standin.generator import generate_roster
from cloud_sync.standin.server import StandinCloud, StandinState
from edge.store import Store
from tests.dbenv import DatabaseCopies, clean_env, integrity_check
from tests.faults.rows import roster_digest_at

CENTER = "demo-center"
TOKEN = "fault-source-token-5d1"
PEOPLE = 3_000
KILLS = 4
SEED = 20261130


@pytest.fixture(scope="module")
def cloud() -> Iterator[StandinCloud]:
    state = StandinState(CENTER, source_token=TOKEN, roster=generate_roster(seed=41, people=PEOPLE, center_id=CENTER))
    with StandinCloud(state) as running:
        yield running


def _env(data_dir: Path, cloud: StandinCloud) -> dict[str, str]:
    env = clean_env()
    env.update(
        {
            "CHECKIN_EDGE_DATA_DIR": str(data_dir),
            "CHECKIN_EDGE_CENTER_ID": CENTER,
            "CHECKIN_EDGE_SOURCE_URL": cloud.url,
            "CHECKIN_EDGE_SOURCE_TOKEN": TOKEN,
        }
    )
    return env


def _sync(data_dir: Path, cloud: StandinCloud) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kiosk_ui.cli", "sync", "--json"],
        env=_env(data_dir, cloud),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _sync_to_end(data_dir: Path, cloud: StandinCloud, outcome: str = "ok") -> float:
    started = time.monotonic()
    proc = _sync(data_dir, cloud)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f'"outcome": "{outcome}"' in out, out
    return time.monotonic() - started


def _integrity(db_url: str) -> str:
    store = Store(db_url)
    try:
        with store.engine.connect() as conn:
            return integrity_check(conn)
    finally:
        store.close()


def test_sigkill_during_a_sync_leaves_the_old_roster_or_the_new_one(
    data_dir: Path, db_url: str, database_copies: DatabaseCopies, cloud: StandinCloud
) -> None:
    _sync_to_end(data_dir, cloud)
    old = roster_digest_at(db_url)
    database_copies.save("old")  # the database; the data directory (its PIN key) stays as it is

    # The new export: other people, rooms changed, some withdrawn (a different generated center).
    cloud.state.set_roster(generate_roster(seed=42, people=PEOPLE, center_id=CENTER))
    full_s = _sync_to_end(data_dir, cloud)
    new = roster_digest_at(db_url)
    assert new != old

    rng = random.Random(SEED)
    seen = {"old": 0, "new": 0}
    for _ in range(KILLS):
        database_copies.restore("old")
        proc = _sync(data_dir, cloud)
        time.sleep(rng.uniform(0.2, full_s))  # from interpreter start-up to the commit
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert _integrity(db_url) == "ok"
        after = roster_digest_at(db_url)
        assert after in (old, new), "a roster half old, half new"
        seen["old" if after == old else "new"] += 1
    assert seen["old"] >= 1, seen  # at least one kill landed before the commit

    # The next sync after a kill succeeds and lands exactly the new roster (a 304 when the kill
    # came after the commit: the new roster and its ETag are already there).
    _sync_to_end(data_dir, cloud, "ok" if after == old else "not_modified")
    assert roster_digest_at(db_url) == new
    assert _integrity(db_url) == "ok"
