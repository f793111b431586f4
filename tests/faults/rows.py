"""Content hashes of a SQLite file's tables, read with plain sqlite3 (no app code in between)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

# Every table a roster sync writes (cloud_sync/roster_apply.py).
ROSTER_TABLES = ("school", "rooms", "teachers", "persons", "children", "child_links", "app_devices", "trusted_keys")
# Stamped with the sync's own time: two syncs of the same export differ only here.
VOLATILE = frozenset({"changed_at"})


def table_digest(conn: sqlite3.Connection, table: str) -> str:
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})") if row[1] not in VOLATILE]
    rows = conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()  # noqa: S608 (our table names)
    digest = hashlib.sha256()
    for row in sorted(repr(r) for r in rows):
        digest.update(row.encode())
    return f"{len(rows)}:{digest.hexdigest()[:16]}"


def roster_digest(db_file: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        return {table: table_digest(conn, table) for table in ROSTER_TABLES}
    finally:
        conn.close()


def all_rows(db_file: Path, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)  # noqa: S608
    finally:
        conn.close()


def roster_digest_at(url: str) -> dict[str, str]:
    """``roster_digest`` of any database the app runs on (SQLite or PostgreSQL), through SQLAlchemy."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            digests = {}
            for table in ROSTER_TABLES:
                columns = [c["name"] for c in inspect(conn).get_columns(table) if c["name"] not in VOLATILE]
                rows = conn.execute(text(f"SELECT {', '.join(columns)} FROM {table}")).all()  # noqa: S608
                digest = hashlib.sha256()
                for row in sorted(repr(tuple(r)) for r in rows):
                    digest.update(row.encode())
                digests[table] = f"{len(rows)}:{digest.hexdigest()[:16]}"
            return digests
    finally:
        engine.dispose()
