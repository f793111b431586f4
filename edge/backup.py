"""Backups: the database and the keys in one file; restore puts both back.

A backup is ``checkin-edge-backup-YYYYMMDDTHHMMSSZ.tar.gz`` holding

- ``checkin-edge.db``: a consistent snapshot made by SQLite's ``VACUUM INTO`` (safe while the
  hub writes; the WAL's committed transactions are in it), checked with ``quick_check``;
- the key files of the data directory (``pin.key``, ``badge.key``, ``station.key``). Without
  ``pin.key`` no PIN in a restored database would match again; without ``badge.key`` every
  printed badge would be refused; without ``station.key`` every paired screen unpaired;
- ``manifest.json``: format, time, schema revision, and each file's size and SHA-256.

The archive holds the keys, so it is written 0600. The newest ``keep`` backups are kept.

Restore is stop-the-world: stop ``checkin-edge.service`` first (docs/install.md). It checks the
archive (names, sizes, digests, ``quick_check``), copies the current database and keys aside
as a ``checkin-edge-pre-restore-…`` archive, then replaces the database and each key with a
rename, never leaving a half-written file in place.

Backup and restore are SQLite-only. A hub on PostgreSQL (``database_url``) is refused in words
by both (``BackupError``, exit 1 from the CLI): that server's own ``pg_dump``/``pg_restore`` do
the database's part properly, and the key files above must be copied with the dump.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from edge import const
from edge.store import Store

log = logging.getLogger(__name__)

FORMAT = 1
DB_NAME = "checkin-edge.db"
MANIFEST_NAME = "manifest.json"
KEY_FILES = (const.PIN_KEY_FILE, const.BADGE_KEY_FILE, const.STATION_KEY_FILE)
BACKUP_PREFIX = "checkin-edge-backup-"
PRE_RESTORE_PREFIX = "checkin-edge-pre-restore-"
SUFFIX = ".tar.gz"
_STAMP = "%Y%m%dT%H%M%SZ"
# The stamp, then "-N" when two backups fall in one second: sorts by (stamp, N).
_NAME = re.compile(
    r"^(?P<prefix>checkin-edge-(?:backup|pre-restore)-)(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?\.tar\.gz$"
)
_MAX_MEMBER_BYTES = 64 * 1024 * 1024 * 1024  # a sanity bound on one member, not a quota


class BackupError(RuntimeError):
    """A backup or restore that cannot be done; the message says why in words."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    created_at: dt.datetime
    size_bytes: int
    database_bytes: int
    keys: list[str]
    revision: str | None
    pruned: list[Path] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "created_at": _iso(self.created_at),
            "size_bytes": self.size_bytes,
            "database_bytes": self.database_bytes,
            "keys": self.keys,
            "revision": self.revision,
            "pruned": [str(p) for p in self.pruned],
        }


@dataclass(frozen=True)
class RestoreResult:
    archive: Path
    backup_created_at: str
    revision: str | None
    database: Path
    keys: list[str]
    safety_copy: Path | None

    def as_json(self) -> dict[str, Any]:
        return {
            "archive": str(self.archive),
            "backup_created_at": self.backup_created_at,
            "revision": self.revision,
            "database": str(self.database),
            "keys": self.keys,
            "safety_copy": str(self.safety_copy) if self.safety_copy else None,
        }


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sqlite_path(store: Store) -> Path:
    """The SQLite file behind ``store``; BackupError for anything else."""
    url = make_url(store.url)
    if url.get_backend_name() != "sqlite":
        raise BackupError(
            f"checkin-edge backup and restore are SQLite-only, and this hub's database is {url.get_backend_name()}: "
            "back it up with that server's own tools (pg_dump -Fc, and pg_restore to put it back), and copy "
            f"the key files of the data directory ({', '.join(KEY_FILES)}) with the dump"
        )
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory database has nothing to back up")
    return Path(url.database)


# -- making a backup ----------------------------------------------------------------------------


def backup(
    store: Store,
    data_dir: Path,
    dest_dir: Path,
    keep: int = const.BACKUP_KEEP,
    *,
    clock: Callable[[], dt.datetime] = _utc_now,
) -> BackupResult:
    """Snapshot the database and the keys into ``dest_dir``; keep the newest ``keep`` backups."""
    if keep < 1:
        raise BackupError("keep must be at least 1: a backup run must not delete its own backup")
    db_path = sqlite_path(store)
    if not db_path.is_file():
        raise BackupError(f"there is no database at {db_path} yet: nothing to back up")
    _make_private_dir(dest_dir)
    now = clock()
    with tempfile.TemporaryDirectory(prefix=".backup-", dir=dest_dir) as tmp:
        work = Path(tmp)
        snapshot = work / DB_NAME
        raw = store.engine.raw_connection()
        try:
            # VACUUM INTO writes a consistent, compacted copy while the hub keeps writing; it
            # must run outside a transaction, hence the driver's own connection.
            raw.driver_connection.execute("VACUUM INTO ?", (str(snapshot),))  # type: ignore[union-attr]
        finally:
            raw.close()
        revision = _check_database(snapshot)
        path, manifest = _write_archive(snapshot, data_dir, dest_dir, BACKUP_PREFIX, now=now, revision=revision)
    pruned = prune(dest_dir, keep)
    files = manifest["files"]
    result = BackupResult(
        path=path,
        created_at=now,
        size_bytes=path.stat().st_size,
        database_bytes=int(files[DB_NAME]["size"]),
        keys=sorted(name for name in files if name in KEY_FILES),
        revision=revision,
        pruned=pruned,
    )
    log.info("backup written: %s (%d bytes); %d old one(s) deleted", path, result.size_bytes, len(pruned))
    return result


def _make_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def _check_database(path: Path) -> str | None:
    """``quick_check`` the file; returns its Alembic revision (None before the first migration)."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise BackupError(f"{path.name} fails SQLite's quick_check: {verdict}")
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.OperationalError:
                return None
            return str(row[0]) if row else None
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path.name} is not a usable SQLite database: {exc}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _archive_name(dest_dir: Path, prefix: str, now: dt.datetime) -> Path:
    stamp = now.astimezone(dt.UTC).strftime(_STAMP)
    path = dest_dir / f"{prefix}{stamp}{SUFFIX}"
    n = 1
    while path.exists():
        n += 1
        path = dest_dir / f"{prefix}{stamp}-{n}{SUFFIX}"
    return path


def _write_archive(
    snapshot: Path, data_dir: Path, dest_dir: Path, prefix: str, *, now: dt.datetime, revision: str | None
) -> tuple[Path, dict[str, Any]]:
    """Write ``snapshot`` and the keys of ``data_dir`` as one archive in ``dest_dir`` (created
    beside the snapshot, then renamed into place); returns its path and manifest."""
    members: dict[str, Path] = {DB_NAME: snapshot}
    for name in KEY_FILES:
        key = data_dir / name
        if key.is_file():
            members[name] = key
    manifest = {
        "format": FORMAT,
        "created_at": _iso(now),
        "revision": revision,
        "files": {name: {"size": p.stat().st_size, "sha256": _sha256(p)} for name, p in members.items()},
    }
    final = _archive_name(dest_dir, prefix, now)
    partial = snapshot.parent / (final.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
        blob = json.dumps(manifest, indent=2, sort_keys=True).encode()
        _add_bytes(tar, MANIFEST_NAME, blob, now)
        for name, path in members.items():
            _add_bytes_from(tar, name, path, now)
        tar.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, final)
    _fsync_dir(dest_dir)
    _own_like(final, dest_dir)
    return final, manifest


def _tar_info(name: str, size: int, now: dt.datetime) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(now.timestamp())
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, blob: bytes, now: dt.datetime) -> None:
    tar.addfile(_tar_info(name, len(blob), now), io.BytesIO(blob))


def _add_bytes_from(tar: tarfile.TarFile, name: str, path: Path, now: dt.datetime) -> None:
    with path.open("rb") as f:
        tar.addfile(_tar_info(name, os.fstat(f.fileno()).st_size, now), f)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _own_like(path: Path, like: Path) -> None:
    """Run as root (``sudo checkin-edge …``), give a new file the owner of its folder, so the
    service user can still read, restore and prune it."""
    if os.geteuid() != 0:
        return
    st = like.stat()
    os.chown(path, st.st_uid, st.st_gid)


def list_backups(dest_dir: Path, prefix: str = BACKUP_PREFIX) -> list[Path]:
    """Backups in ``dest_dir``, oldest first (by the time in their names)."""
    if not dest_dir.is_dir():
        return []
    found: list[tuple[str, int, Path]] = []
    for path in dest_dir.iterdir():
        match = _NAME.match(path.name)
        if match and match["prefix"] == prefix and path.is_file():
            found.append((match["stamp"], int(match["n"] or 1), path))
    return [path for _stamp, _n, path in sorted(found)]


def prune(dest_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` nightly backups; pre-restore copies are never pruned."""
    doomed = list_backups(dest_dir)[:-keep] if keep > 0 else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


# -- reading and restoring ----------------------------------------------------------------------


_DAMAGED = (tarfile.TarError, EOFError, zlib.error)


def _open_archive(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r:gz")
    except FileNotFoundError:
        raise BackupError(f"{archive}: no such file") from None
    except (*_DAMAGED, OSError) as exc:
        raise BackupError(f"{archive} is not a checkin-edge backup (not a readable .tar.gz): {exc}") from None


def read_manifest(archive: Path) -> dict[str, Any]:
    with _open_archive(archive) as tar:
        try:
            return _manifest(tar, archive)
        except _DAMAGED as exc:
            raise BackupError(f"{archive} is damaged: {exc}") from None


def _manifest(tar: tarfile.TarFile, archive: Path) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST_NAME)
        f = tar.extractfile(member)
        manifest = json.loads(f.read()) if f is not None else None
    except (KeyError, json.JSONDecodeError, UnicodeDecodeError):
        manifest = None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("files"), dict)
        or DB_NAME not in manifest["files"]
    ):
        raise BackupError(f"{archive} is not a checkin-edge backup (no usable {MANIFEST_NAME})")
    return manifest


def _extract_checked(archive: Path, into: Path) -> dict[str, Any]:
    """Extract exactly the files the manifest names, as plain files, checking size and digest."""
    with _open_archive(archive) as tar:
        try:
            manifest = _extract_members(tar, archive, into)
        except _DAMAGED as exc:  # a truncated or corrupted archive fails while being read
            raise BackupError(f"{archive} is damaged: {exc}") from None
    _check_database(into / DB_NAME)
    return manifest


def _extract_members(tar: tarfile.TarFile, archive: Path, into: Path) -> dict[str, Any]:
    allowed = {MANIFEST_NAME, DB_NAME, *KEY_FILES}
    manifest = _manifest(tar, archive)
    files: dict[str, Any] = manifest["files"]
    unknown = set(files) - allowed
    if unknown:
        raise BackupError(f"{archive} names unexpected files: {', '.join(sorted(unknown))}")
    for name, expected in files.items():
        try:
            member = tar.getmember(name)
        except KeyError:
            raise BackupError(f"{archive} lacks {name}, which its manifest lists") from None
        # Only plain files with the names above: no links, devices or paths out of the folder.
        if not member.isreg() or member.size != expected.get("size") or member.size > _MAX_MEMBER_BYTES:
            raise BackupError(f"{archive}: {name} is not the file its manifest describes")
        source = tar.extractfile(member)
        if source is None:
            raise BackupError(f"{archive}: {name} cannot be read")
        target = into / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        if _sha256(target) != expected.get("sha256"):
            raise BackupError(f"{archive}: {name} does not match its manifest's digest (a damaged copy?)")
    return manifest


def restore(
    archive: Path,
    data_dir: Path,
    *,
    database: Path | None = None,
    safety_dir: Path | None = None,
    clock: Callable[[], dt.datetime] = _utc_now,
) -> RestoreResult:
    """Put back the database and keys of ``archive``. Stop the hub first: a running hub holds
    the old database open and would go on writing into the file this replaces."""
    db_path = database or data_dir / DB_NAME
    safety_dir = safety_dir or data_dir / const.BACKUP_DIR_NAME
    data_dir.mkdir(parents=True, exist_ok=True)
    # Extract next to the targets: the final renames stay on one filesystem, hence atomic.
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=db_path.parent) as tmp:
        work = Path(tmp)
        manifest = _extract_checked(archive, work)
        safety = _safety_copy(db_path, data_dir, safety_dir, clock())
        _replace_database(work / DB_NAME, db_path)
        keys = sorted(name for name in manifest["files"] if name in KEY_FILES)
        for name in keys:
            staged = data_dir / f".{name}.restore"
            shutil.move(str(work / name), staged)  # into data_dir first, then an atomic rename
            os.replace(staged, data_dir / name)
            _own_like(data_dir / name, data_dir)
        _fsync_dir(data_dir)
    log.warning(
        "restored %s (made %s) over %s; the previous state is in %s", archive, manifest["created_at"], db_path, safety
    )
    return RestoreResult(
        archive=archive,
        backup_created_at=str(manifest["created_at"]),
        revision=manifest.get("revision"),
        database=db_path,
        keys=keys,
        safety_copy=safety,
    )


def _safety_copy(db_path: Path, data_dir: Path, safety_dir: Path, now: dt.datetime) -> Path | None:
    """The current database and keys as a restorable archive, before anything is replaced.

    Restoring is what one does to a damaged database, so a database VACUUM cannot read is
    copied as it lies (with its WAL) into a folder instead of stopping the restore."""
    if not db_path.exists():
        return None
    _make_private_dir(safety_dir)
    with tempfile.TemporaryDirectory(prefix=".pre-restore-", dir=safety_dir) as tmp:
        snapshot = Path(tmp) / DB_NAME
        try:
            with closing(sqlite3.connect(db_path)) as conn:
                conn.execute("VACUUM INTO ?", (str(snapshot),))
            revision = _check_database(snapshot)
        except (sqlite3.DatabaseError, BackupError) as exc:
            log.warning("the current database cannot be snapshot (%s): copying its files as they are", exc)
            return _raw_copy(db_path, data_dir, safety_dir, now)
        return _write_archive(snapshot, data_dir, safety_dir, PRE_RESTORE_PREFIX, now=now, revision=revision)[0]


def _raw_copy(db_path: Path, data_dir: Path, safety_dir: Path, now: dt.datetime) -> Path:
    folder = _archive_name(safety_dir, PRE_RESTORE_PREFIX, now).with_suffix("").with_suffix(".raw")
    folder.mkdir(mode=0o700)
    for path in (db_path, Path(f"{db_path}-wal"), *(data_dir / name for name in KEY_FILES)):
        if path.is_file():
            shutil.copy2(path, folder / path.name)
    return folder


def _replace_database(new_db: Path, db_path: Path) -> None:
    if db_path.exists():
        # Fold the old WAL into the old file and drop it: a WAL left beside the new file would
        # be replayed into it on the next open and corrupt it. Its content is in the safety copy.
        try:
            with closing(sqlite3.connect(db_path)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError as exc:
            log.warning("the current database could not be checkpointed (%s); replacing it anyway", exc)
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    os.replace(new_db, db_path)
    _own_like(db_path, db_path.parent)
