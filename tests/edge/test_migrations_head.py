"""Serve asks whether the schema is current without loading Alembic (~10 MB resident on a Pi)."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import text

from edge.store import Store, _alembic_config, at_head, head_revision, upgrade


def test_the_head_read_from_the_files_is_alembics() -> None:
    from alembic.script import ScriptDirectory

    assert head_revision() == ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()


def test_at_head_only_when_the_database_has_the_newest_revision(store: Store) -> None:
    assert at_head(store)
    with store.transaction() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    assert not at_head(store)
    with store.transaction() as session:
        session.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()})
    assert at_head(store)
    assert upgrade(store) == []


def test_a_current_database_starts_without_alembic(store: Store) -> None:
    check = (
        "import sys; from edge.store import Store, upgrade; s = Store(sys.argv[1]); "
        "assert upgrade(s) == []; print('alembic' in sys.modules)"
    )
    url = store.engine.url.render_as_string(hide_password=False)
    out = subprocess.run([sys.executable, "-c", check, url], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
