"""Backups on real SQLite files: a restore brings back exactly what the backup held, keys too.

Backup and restore are SQLite-only (edge/backup.py): the tests of the SQLite snapshot are
``sqlite_only``, and on PostgreSQL (both runs) both commands refuse in words, touching nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import sqlite3
import tarfile
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import text

from cloud_sync.roster_sync import RosterSyncService
from edge import const
from edge.attendance import record_event
from edge.backup import (
    BACKUP_PREFIX,
    KEY_FILES,
    PRE_RESTORE_PREFIX,
    BackupError,
    backup,
    list_backups,
    read_manifest,
    restore,
)
from edge.badges import BadgeKey
from edge.models import Action, ActorKind, Method, SubjectKind
from edge.pins import PinHasher
from edge.stations import StationAuthenticator
from edge.store import Store
from tests.conftest import FakeClock
from tests.dbenv import DATABASE_URL_ENV, POSTGRES
from tests.door import PINS, apply

DB = "checkin-edge.db"


def dump(db: Path) -> list[str]:
    """Schema and every row, in SQLite's own canonical text."""
    with closing(sqlite3.connect(db)) as conn:
        return list(conn.iterdump())


def check_in(store: Store, child_id: str, clock: FakeClock) -> None:
    with store.transaction() as session:
        record_event(
            session,
            subject_kind=SubjectKind.CHILD,
            subject_id=child_id,
            action=Action.CHECK_IN,
            method=Method.PIN,
            actor_kind=ActorKind.PAYER,
            actor_id="P1",
            station_id="front-door",
            occurred_at=clock.now,
            clock_synced=True,
        )


@pytest.fixture
def keys(data_dir: Path, hasher: PinHasher) -> dict[str, bytes]:
    BadgeKey.from_data_dir(data_dir)
    StationAuthenticator.from_data_dir({}, data_dir)
    return {name: (data_dir / name).read_bytes() for name in KEY_FILES}


@pytest.fixture
def populated(store: Store, roster_sync: RosterSyncService, clock: FakeClock, keys: dict[str, bytes]) -> Store:
    apply(roster_sync)
    check_in(store, "C1", clock)
    return store


@pytest.mark.sqlite_only
def test_restore_brings_back_exactly_the_backup(
    populated: Store, data_dir: Path, tmp_path: Path, clock: FakeClock, keys: dict[str, bytes], hasher: PinHasher
) -> None:
    store = populated
    db = data_dir / DB
    at_backup = dump(db)
    result = backup(store, data_dir, tmp_path / "backups", keep=3, clock=clock)
    assert result.path.name == f"{BACKUP_PREFIX}20261129T180000Z.tar.gz"
    assert result.path.stat().st_mode & 0o777 == 0o600  # it holds the keys
    assert result.keys == sorted(KEY_FILES)
    assert result.revision  # the schema's Alembic revision travels with it

    # Life goes on: more check-ins, a roster change, and the keys are lost (a new SD card).
    clock.advance(minutes=5)
    check_in(store, "C2", clock)
    with store.transaction() as session:
        session.execute(text("DELETE FROM sync_runs"))
    assert dump(db) != at_backup
    for name in KEY_FILES:
        (data_dir / name).write_bytes(b"x" * 32)
    store.close()  # restore is stop-the-world: the hub is stopped first

    restored = restore(result.path, data_dir, safety_dir=tmp_path / "safety", clock=clock)
    assert dump(db) == at_backup
    assert {name: (data_dir / name).read_bytes() for name in KEY_FILES} == keys
    assert restored.keys == sorted(KEY_FILES)
    assert restored.backup_created_at == "2026-11-29T18:00:00Z"
    # The PINs match again: the restored key is the one that hashed them.
    assert PinHasher.from_data_dir(data_dir).digest(PINS["P1"]) == hasher.digest(PINS["P1"])
    # No stale WAL of the replaced database beside the restored one.
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # What was there before the restore is itself a restorable backup.
    assert restored.safety_copy is not None
    assert restored.safety_copy.name.startswith(PRE_RESTORE_PREFIX)
    assert read_manifest(restored.safety_copy)["files"][const.PIN_KEY_FILE]["size"] == 32
    restore(restored.safety_copy, data_dir, safety_dir=tmp_path / "safety", clock=clock)
    assert dump(db) != at_backup
    assert (data_dir / const.PIN_KEY_FILE).read_bytes() == b"x" * 32


@pytest.mark.sqlite_only
def test_backup_while_a_write_is_in_the_wal(populated: Store, data_dir: Path, tmp_path: Path, clock: FakeClock) -> None:
    """The hub keeps running during the nightly backup: committed rows still in the WAL are in it."""
    check_in(populated, "C3", clock)
    assert Path(f"{data_dir / DB}-wal").stat().st_size > 0
    expected = dump(data_dir / DB)
    result = backup(populated, data_dir, tmp_path / "b", keep=1, clock=clock)
    with tarfile.open(result.path) as tar:
        member = tar.extractfile(DB)
        assert member is not None
        (tmp_path / "copy.db").write_bytes(member.read())
    assert dump(tmp_path / "copy.db") == expected


@pytest.mark.sqlite_only
def test_keeps_the_newest_n(populated: Store, data_dir: Path, tmp_path: Path, clock: FakeClock) -> None:
    dest = tmp_path / "backups"
    made = []
    for _ in range(5):
        made.append(backup(populated, data_dir, dest, keep=3, clock=clock).path)
        clock.advance(days=1)
    assert list_backups(dest) == made[-3:]
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in made[-3:])
    # Two in the same second get distinct names, newest last.
    same = [backup(populated, data_dir, dest, keep=10, clock=clock).path for _ in range(3)]
    assert list_backups(dest)[-3:] == same
    assert same[1].name.endswith("-2.tar.gz")
    # Files that are not nightly backups are never pruned.
    (dest / "notes.txt").write_text("keep me")
    backup(populated, data_dir, dest, keep=1, clock=clock)
    assert (dest / "notes.txt").exists()
    assert len(list_backups(dest)) == 1


def test_keep_must_leave_the_new_backup(populated: Store, data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="at least 1"):
        backup(populated, data_dir, tmp_path / "b", keep=0)


def test_postgres_is_refused_in_words() -> None:
    class NotSqlite:
        url = "postgresql+psycopg://u@db/checkin"

    with pytest.raises(BackupError, match=r"SQLite-only.*pg_dump"):
        backup(NotSqlite(), Path("/nonexistent"), Path("/nonexistent"))  # type: ignore[arg-type]


def test_backup_and_restore_of_a_postgres_hub_refuse_in_words(
    store: Store,
    data_dir: Path,
    tmp_path: Path,
    keys: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The PostgreSQL run's own database (a URL never connected to in the SQLite run): the CLI
    says what to use instead, writes no archive and leaves the database and keys alone."""
    from kiosk_ui.cli import main

    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    if not POSTGRES:
        monkeypatch.setenv(DATABASE_URL_ENV, "postgresql+psycopg://nobody@127.0.0.1:9/none")
    with store.read() as session:
        revision = session.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
    sqlite_file = (data_dir / DB).exists()  # the SQLite run's store fixture made one; PostgreSQL's did not

    assert main(["backup", "--data-dir", str(data_dir), "--dest", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "SQLite-only" in err
    assert "pg_dump" in err
    assert "pin.key" in err  # the keys must travel with the dump
    assert not (tmp_path / "b").exists() or list((tmp_path / "b").iterdir()) == []

    archive = _tar(tmp_path / "any.tar.gz", {DB: b"x"})
    assert main(["restore", str(archive), "--data-dir", str(data_dir)]) == 2
    assert "restore puts back a SQLite database" in capsys.readouterr().err
    assert {name: (data_dir / name).read_bytes() for name in KEY_FILES} == keys
    assert (data_dir / DB).exists() == sqlite_file  # no SQLite file appeared beside the PostgreSQL hub
    with store.read() as session:
        assert session.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none() == revision


def test_no_database_yet(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'data' / DB}")
    try:
        with pytest.raises(BackupError, match="no database"):
            backup(store, tmp_path / "data", tmp_path / "b")
    finally:
        store.close()


def _tar(path: Path, members: dict[str, bytes], manifest: dict[str, object] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        if manifest is not None:
            members = {"manifest.json": json.dumps(manifest).encode(), **members}
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.mark.sqlite_only
def test_restore_refuses_what_is_not_a_good_backup(
    populated: Store, data_dir: Path, tmp_path: Path, clock: FakeClock
) -> None:
    good = backup(populated, data_dir, tmp_path / "b", keep=1, clock=clock).path
    populated.close()
    before = dump(data_dir / DB)
    manifest = read_manifest(good)
    with tarfile.open(good) as tar:
        member = tar.extractfile(DB)
        assert member is not None
        db_bytes = member.read()

    (tmp_path / "plain.txt").write_text("hello")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    tampered = dict(manifest, files={DB: {**manifest["files"][DB], "sha256": "0" * 64}})
    cases = {
        tmp_path / "missing.tar.gz": "no such file",
        tmp_path / "plain.txt": "not a checkin-edge backup",
        truncated: "damaged|not a checkin-edge backup",
        _tar(tmp_path / "no-manifest.tar.gz", {DB: db_bytes}): "no usable manifest",
        _tar(tmp_path / "tampered.tar.gz", {DB: db_bytes}, tampered): "digest",
        _tar(
            tmp_path / "escape.tar.gz",
            {DB: db_bytes, "../evil": b"x"},
            dict(manifest, files={**manifest["files"], "../evil": {"size": 1, "sha256": ""}}),
        ): "unexpected files",
        _tar(
            tmp_path / "not-sqlite.tar.gz",
            {DB: b"not a database" * 100},
            dict(manifest, files={DB: {"size": 1400, "sha256": hashlib.sha256(b"not a database" * 100).hexdigest()}}),
        ): "not a usable SQLite database",
    }
    for archive, message in cases.items():
        with pytest.raises(BackupError, match=message):
            restore(archive, data_dir, safety_dir=tmp_path / "safety", clock=clock)
        assert dump(data_dir / DB) == before, archive  # nothing was touched
    assert not (tmp_path / "safety").exists() or list((tmp_path / "safety").iterdir()) == []


@pytest.mark.sqlite_only
def test_cli_backup_and_restore(
    populated: Store,
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kiosk_ui.cli import main

    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    before = dump(data_dir / DB)
    assert main(["backup", "--data-dir", str(data_dir), "--keep", "2", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert Path(made["path"]).parent == data_dir / "backups"
    assert made["keys"] == sorted(KEY_FILES)
    assert main(["backup", "--data-dir", str(data_dir), "--dest", str(tmp_path / "usb")]) == 0
    assert "Backup written" in capsys.readouterr().out
    assert len(list_backups(tmp_path / "usb")) == 1

    check_in(populated, "C2", FakeClock(dt.datetime.now(dt.UTC)))
    populated.close()
    assert main(["restore", made["path"], "--data-dir", str(data_dir), "--json"]) == 0
    restored = json.loads(capsys.readouterr().out)
    assert restored["keys"] == sorted(KEY_FILES)
    assert Path(restored["safety_copy"]).parent == data_dir / "backups"
    assert dump(data_dir / DB) == before

    assert main(["restore", str(tmp_path / "nope.tar.gz"), "--data-dir", str(data_dir)]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["backup", "--data-dir", str(tmp_path / "empty")]) == 1
    assert "nothing to back up" in capsys.readouterr().err
