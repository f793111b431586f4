"""Real filesystem faults for the tests: a small tmpfs to fill, a bind mount to turn read-only.

Both need root (this machine's tests run as root); without it the tests that use them skip and
say why. Every mount is undone in teardown, the busy case included (lazy unmount).
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edge.store import Store


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PermissionError(done.stderr.strip() or f"mount {' '.join(args)} failed")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path))
    except (PermissionError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}): the disk-full tests need root")
    try:
        yield path
    finally:
        _umount(path)


@contextmanager
def bind(path: Path) -> Iterator[Path]:
    """``path`` bind-mounted over itself, so ``read_only(path)`` can flip just this directory."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("--bind", str(path), str(path))
    except (PermissionError, FileNotFoundError) as exc:
        pytest.skip(f"cannot bind-mount here ({exc}): the read-only tests need root")
    try:
        yield path
    finally:
        _umount(path)


def read_only(path: Path, ro: bool = True) -> None:
    """Remount the bind mount at ``path`` read-only (or back). The kernel refuses while a file on
    it is open for writing, so callers close their database connections first."""
    _mount("-o", f"remount,{'ro' if ro else 'rw'},bind", str(path))


def fill(path: Path) -> Path:
    """Write a file on ``path``'s filesystem until it is full, to the last 4 KB block."""
    filler = path / "filler.bin"
    with filler.open("wb", buffering=0) as out:
        for chunk in (1024 * 1024, 4096, 512):
            block = b"\xa5" * chunk
            try:
                while True:
                    out.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def truncate_wal(store: Store) -> None:
    """Checkpoint and empty the WAL, so the next commit must grow a file (else SQLite could reuse
    WAL space it already holds, and a "full" disk would take a few more check-ins)."""
    raw = store.engine.raw_connection()
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
    finally:
        raw.close()


def integrity(db_file: Path) -> str:
    import sqlite3

    conn = sqlite3.connect(db_file)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
