"""A throwaway PostgreSQL cluster for the suite's PostgreSQL run (``scripts/test --postgres``).

Debian's server binaries, ``initdb`` into a temporary folder, listening on 127.0.0.1 on a free
port with trust authentication (loopback only, and gone when the run ends). As root the server
runs as the ``postgres`` user, which Debian's package creates: PostgreSQL refuses to run as root.

Durability is traded for speed (``fsync=off``): nothing here must survive a power cut, and a
test that kills the hub kills the hub, not this server.

Each test gets a database with the migrated template's schema and no rows (PerTestDatabases).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

SERVICE_USER = "postgres"
TEMPLATE = "checkin_edge_template"
EMPTY_TEMPLATE = "template0"


def _bin_dir() -> Path:
    """The newest installed server's binaries (Debian keeps them out of PATH)."""
    override = os.environ.get("PG_BIN_DIR")
    if override:
        return Path(override)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError(
            "no PostgreSQL server is installed (/usr/lib/postgresql/*/bin/initdb): "
            "scripts/test --postgres installs Debian's postgresql package"
        )
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One server process, its folder and its port."""

    def __init__(self, root: Path, port: int, bin_dir: Path) -> None:
        self.root = root
        self.port = port
        self.bin_dir = bin_dir
        self.data = root / "data"
        self._counter = 0

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database``."""
        return f"postgresql+psycopg://{SERVICE_USER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SERVICE_USER} dbname={database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn("postgres"), autocommit=True)

    def _command(self, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        return ["runuser", "-u", SERVICE_USER, "--", *cmd] if os.geteuid() == 0 else cmd

    def _run(self, *args: str) -> None:
        subprocess.run(self._command(*args), check=True, capture_output=True, timeout=120, cwd=self.root)

    def watch(self) -> subprocess.Popen[bytes]:
        """A process of its own that stops the cluster and deletes its folder should this one
        die without doing it (pytest killed by a timeout): pg_ctl's server outlives it."""
        stop = shlex.join(self._command("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"))
        root = shlex.quote(str(self.root))
        script = f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 2; done; {stop}; rm -rf {root}"
        return subprocess.Popen(
            ["sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start(self) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVICE_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SERVICE_USER, "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")  # fmt: skip
        options = " ".join(
            (
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c timezone=UTC",
            )
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def create_database(self, name: str, template: str = TEMPLATE) -> str:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
            )
        return self.url(name)

    def drop_database(self, name: str) -> None:
        # FORCE: a hub subprocess or a leaked engine may still hold a connection.
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def copy_database(self, source: str, dest: str) -> None:
        """``dest`` as a copy of ``source`` (replaced if it exists); whatever holds ``source``
        open is disconnected first, as a template copy requires."""
        with self._admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (source,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dest)))
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(dest), sql.Identifier(source)))

    def next_name(self) -> str:
        self._counter += 1
        return f"t_{self._counter}"


def wait_ready(cluster: Cluster, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cluster._admin().close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# What a test may change besides rows: tables, columns, types, defaults, constraints, indexes,
# sequences, and the schema's revision. A test that left any of them different from the
# template's gets a new copy; every other test only has its rows deleted.
_FINGERPRINT = """
SELECT md5(concat_ws('|',
  (SELECT string_agg(c.relname || ':' || c.relkind::text, ',' ORDER BY c.relname)
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'),
  (SELECT string_agg(c.relname || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod)
                     || ':' || a.attnotnull::text || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''),
                     ',' ORDER BY c.relname, a.attnum)
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT string_agg(pg_get_constraintdef(k.oid), ',' ORDER BY k.conname)
     FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = 'public'),
  (SELECT string_agg(version_num::text, ',' ORDER BY version_num) FROM alembic_version)))
"""

# Delete every row but the schema's revision, and restart the id sequences, as a new database
# would have them. Replica mode skips the foreign-key triggers, so the order does not matter.
_EMPTY_TABLES = """
DO $$
DECLARE r record;
BEGIN
  SET LOCAL session_replication_role = replica;
  FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version' LOOP
    EXECUTE format('DELETE FROM public.%I', r.tablename);
  END LOOP;
  FOR r IN SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' LOOP
    PERFORM setval(format('public.%I', r.sequencename), 1, false);
  END LOOP;
END $$
"""

_DISCONNECT_OTHERS = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


class PerTestDatabases:
    """The migrated template, and one database per test made from it.

    ``CREATE DATABASE … TEMPLATE`` copies files (0.1 s idle, most of a second on a loaded
    machine), so the previous test's database is emptied instead (milliseconds) whenever its
    schema is still the template's."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._fingerprint = self._fingerprint_of(TEMPLATE)
        self._current: str | None = None

    def _fingerprint_of(self, name: str) -> str:
        with psycopg.connect(self.cluster.dsn(name), autocommit=True) as conn:
            row = conn.execute(_FINGERPRINT).fetchone()
        assert row is not None
        return str(row[0])

    def _emptied(self, name: str) -> bool:
        """Disconnect whatever the last test left connected, then empty ``name`` if its schema
        is the template's; False if it is not (or cannot be checked)."""
        try:
            with psycopg.connect(self.cluster.dsn(name), autocommit=True) as conn:
                conn.execute(_DISCONNECT_OTHERS)
                row = conn.execute(_FINGERPRINT).fetchone()
                if row is None or row[0] != self._fingerprint:
                    return False
                conn.execute(_EMPTY_TABLES)
                # Settings a test gave the database (default_transaction_read_only, say) go too.
                conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(name)))
        except psycopg.Error:
            return False
        return True

    def take(self) -> str:
        """A database with the template's schema and no rows, for one test."""
        if self._current is not None and self._emptied(self._current):
            return self._current
        if self._current is not None:
            self.cluster.drop_database(self._current)
        self._current = self.cluster.next_name()
        self.cluster.create_database(self._current)
        return self._current

    def take_empty(self) -> str:
        """A database with no schema at all, for a test about migrating one (dropped after)."""
        name = self.cluster.next_name()
        self.cluster.create_database(name, EMPTY_TEMPLATE)
        return name

    def release(self, name: str) -> None:
        if name != self._current:
            self.cluster.drop_database(name)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """Start a cluster for the duration of the block, then stop it and delete its folder."""
    root = Path(tempfile.mkdtemp(prefix="checkin-edge-pg-"))
    cluster = Cluster(root, _free_port(), _bin_dir())
    watcher = cluster.watch()
    try:
        cluster.start()
        wait_ready(cluster)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        watcher.kill()
        watcher.wait(10)
