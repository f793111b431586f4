"""Fuzzing the roster export parser (issue #9): whatever the back office's address answers, and
whatever a saved export file holds, the sync ends in a clear, typed error (``RosterFetchError``,
``ExportFormatError``: words a director can read) or applies what it can by the rules. Never an
unexpected exception, and a failed sync leaves the roster exactly as it was.

The bytes travel over a real loopback HTTP server into the real ``RosterClient`` and
``RosterSyncService`` on a migrated SQLite file.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_sync.roster_client import RosterClient, RosterFetchError
from cloud_sync.roster_sync import RosterSyncService
from edge.models import SyncOutcome
from edge.roster import roster_snapshot
from edge.store import Store
from kiosk_ui.cli import CliError, _read_export_file
from tests.door import apply, door_export
from tests.fuzzing import COUNTS, PARSER, seeded
from tests.phones import phones_export

UNEXPECTED = "unexpectedly"  # RosterSyncService's words for an exception it did not expect
# scripts/fuzz sets the examples (per API operation; these parsers get six times as many) and a seed.


class RawExport(ThreadingHTTPServer):
    """Answers every GET with ``body`` (status 200, JSON content type), whatever it is."""

    daemon_threads = True
    body = b""


class _Handler(BaseHTTPRequestHandler):
    server: RawExport

    def do_GET(self) -> None:
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: hypothesis sends hundreds
        return


@pytest.fixture(scope="module")
def raw_export() -> Iterator[RawExport]:
    server = RawExport(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="raw-export", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _client(server: RawExport) -> RosterClient:
    host, port = server.server_address[:2]
    return RosterClient(
        f"http://{host!s}:{port}", "demo-center", "tok", max_attempts=1, timeout_s=5, sleep=lambda _s: None
    )


def _snapshot(store: Store) -> dict[str, Any]:
    with store.read() as session:
        return roster_snapshot(session=session)


# -- shapes ---------------------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        ["", "7305", "Currently Enrolled", "Currently Employed", "R1", "C1", "P1", "2024-08-19", "x" * 300]
    )
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def mutated_exports(draw: st.DrawFn) -> Any:
    """A real export (tests/door.py's, with phones) with one to three subtrees replaced by
    arbitrary JSON or deleted: the shapes a changed or broken back office would send."""
    export: Any = phones_export()
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(export)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = export
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_json_values)
    return export


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()  # NaN and Infinity, as a sloppy encoder writes


_bodies = st.one_of(
    mutated_exports().map(_dump),
    _json_values.map(_dump),
    st.binary(max_size=200),
    st.integers(1, 200_000).map(lambda n: b"[" * n),  # nested past the JSON decoder's recursion limit
    mutated_exports().map(lambda e: _dump(e)[: len(_dump(e)) // 2]),  # cut off
)


# -- over HTTP, through the whole sync --------------------------------------------------------------


def test_fuzz_any_answer_is_a_clear_error_or_a_sync(
    raw_export: RawExport, store: Store, roster_sync: RosterSyncService
) -> None:
    apply(roster_sync, door_export())
    client = _client(raw_export)
    outcomes: set[SyncOutcome] = set()

    @seeded
    @PARSER
    @given(body=_bodies)
    def fuzz(body: bytes) -> None:
        COUNTS["roster export: HTTP answers, whole sync"] += 1
        before = _snapshot(store)
        raw_export.body = body
        report = roster_sync.pull(client)
        outcomes.add(report.outcome)
        assert report.outcome in (SyncOutcome.OK, SyncOutcome.FAILED)
        if report.outcome is SyncOutcome.FAILED:
            assert report.error
            assert UNEXPECTED not in report.error, report.error
            assert _snapshot(store) == before

    fuzz()
    assert outcomes == {SyncOutcome.OK, SyncOutcome.FAILED}  # both paths were reached


def test_fuzz_the_client_raises_only_its_own_error(raw_export: RawExport) -> None:
    client = _client(raw_export)

    @seeded
    @PARSER
    @given(body=_bodies)
    def fuzz(body: bytes) -> None:
        COUNTS["roster export: HTTP answers, client"] += 1
        raw_export.body = body
        try:
            fetched = client.fetch(None)
        except RosterFetchError as exc:
            problem = exc.message
            assert problem
        else:
            assert len(fetched.bodies) == 1
            for page in fetched.iter_pages():  # what was accepted parses again when applied
                assert isinstance(page, dict)

    fuzz()


def test_deep_nesting_is_a_clear_error(raw_export: RawExport, store: Store, roster_sync: RosterSyncService) -> None:
    """Found by the fuzzer: 100,000 ``[`` are valid JSON's start, and the decoder's recursion
    limit raised RecursionError, which no ``except ValueError`` caught."""
    apply(roster_sync, door_export())
    before = _snapshot(store)
    raw_export.body = b"[" * 100_000
    with pytest.raises(RosterFetchError, match="not valid JSON"):
        _client(raw_export).fetch(None)
    report = roster_sync.pull(_client(raw_export))
    assert report.outcome is SyncOutcome.FAILED
    assert report.error == "Page 1 of the roster was not valid JSON"
    assert _snapshot(store) == before


# -- shapes in hand: apply_export (a saved file, the same rules) ------------------------------------


def test_fuzz_any_export_shape_applies_or_fails_cleanly(store: Store, roster_sync: RosterSyncService) -> None:
    apply(roster_sync, door_export())

    @seeded
    @PARSER
    @given(export=mutated_exports())
    def fuzz(export: Any) -> None:
        COUNTS["roster export: shapes applied"] += 1
        before = _snapshot(store)
        report = roster_sync.apply_export([export])
        assert report.outcome in (SyncOutcome.OK, SyncOutcome.FAILED)
        if report.outcome is SyncOutcome.FAILED:
            assert report.error
            assert UNEXPECTED not in report.error, report.error
            assert _snapshot(store) == before
        else:
            assert all(finding.reason for finding in report.skipped)

    fuzz()


# -- a saved file -----------------------------------------------------------------------------------


def test_fuzz_an_export_file_is_read_or_refused_in_words(tmp_path: Path) -> None:
    path = tmp_path / "export.json"

    @seeded
    @PARSER
    @given(body=_bodies)
    def fuzz(body: bytes) -> None:
        COUNTS["roster export: saved files"] += 1
        path.write_bytes(body)
        try:
            pages = _read_export_file(path)
        except CliError as exc:
            problem = str(exc)
            assert problem
        else:
            assert pages
            assert all(isinstance(page, dict) for page in pages)

    fuzz()


@pytest.mark.parametrize("field", ["persons", "children"])
def test_a_family_whose_people_are_not_a_list_is_skipped_in_words(roster_sync: RosterSyncService, field: str) -> None:
    """Found by the fuzzer: ``"children": 7`` raised TypeError, and the whole sync failed
    "unexpectedly". The family is skipped with its reason; the others sync."""
    export = phones_export()
    export["families"][0][field] = 7
    report = roster_sync.apply_export([export])
    assert report.outcome is SyncOutcome.OK, report.error
    assert any("are not a list" in finding.reason for finding in report.skipped)
    assert report.counts["added"] > 0
