"""A whole pull from the stand-in cloud over loopback: success, 304, and every failure mode
leaving the roster exactly as it was, with the run recorded and its reason in words."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import select

from cloud_sync.roster_client import RosterClient
from cloud_sync.roster_sync import RosterSyncService
from cloud_sync.standin.server import StandinCloud
from edge.models import SyncOutcome, SyncRun, SyncTrigger
from edge.roster import roster_snapshot
from edge.store import Store
from tests.cloud_sync.conftest import STANDIN_CENTER, RecordingSleep


def client(cloud: StandinCloud, sleeps: RecordingSleep, **kw: Any) -> RosterClient:
    options: dict[str, Any] = {"page_limit": 40, "timeout_s": 0.5, "max_attempts": 3, "sleep": sleeps}
    options.update(kw)
    return RosterClient(cloud.url, STANDIN_CENTER, cloud.state.source_token, **options)


def snapshot(store: Store) -> dict[str, Any]:
    with store.read() as session:
        return roster_snapshot(session=session)


def runs(store: Store) -> list[SyncRun]:
    with store.read() as session:
        return list(session.scalars(select(SyncRun).order_by(SyncRun.id)))


def test_pull_applies_the_generated_roster_with_its_awkward_cases(
    standin: StandinCloud, roster_sync: RosterSyncService, store: Store, sleeps: RecordingSleep
) -> None:
    report = roster_sync.pull(client(standin, sleeps), SyncTrigger.SCHEDULE)
    assert report.outcome is SyncOutcome.OK
    assert report.counts["added"] > 300
    assert report.counts["skipped"] > 0
    rules = {f.rule.value for f in report.skipped} | {f.rule.value for f in report.hints}
    assert {"R3", "R5", "R6", "R7"} <= rules
    shown = snapshot(store)
    assert any(p["pin"] == "ambiguous" for p in shown["people"])
    assert any(c["restricted"] for c in shown["children"])
    (run,) = runs(store)
    assert run.trigger is SyncTrigger.SCHEDULE
    assert run.etag == standin.state.etag
    assert run.pages > 1


def test_second_pull_is_a_304_and_writes_nothing(
    standin: StandinCloud, roster_sync: RosterSyncService, store: Store, sleeps: RecordingSleep
) -> None:
    roster_sync.pull(client(standin, sleeps))
    before = snapshot(store)
    report = roster_sync.pull(client(standin, sleeps))
    assert report.outcome is SyncOutcome.NOT_MODIFIED
    assert snapshot(store) == before
    assert [r.outcome for r in runs(store)] == [SyncOutcome.OK, SyncOutcome.NOT_MODIFIED]


def test_new_etag_same_content_writes_no_roster_row(
    standin: StandinCloud, roster_sync: RosterSyncService, sleeps: RecordingSleep
) -> None:
    roster_sync.pull(client(standin, sleeps))
    standin.state.force_etag('W/"same-content-new-tag"')
    report = roster_sync.pull(client(standin, sleeps))
    assert report.outcome is SyncOutcome.OK
    assert report.rows_written == 0
    assert report.counts["added"] == report.counts["updated"] == report.counts["deactivated"] == 0


def test_changes_at_the_source_arrive(
    standin: StandinCloud,
    roster_sync: RosterSyncService,
    store: Store,
    sleeps: RecordingSleep,
    roster_300: dict[str, Any],
) -> None:
    roster_sync.pull(client(standin, sleeps))
    changed = copy.deepcopy(roster_300)
    teacher = next(
        e
        for e in changed["employees"]
        if "id" in e and (e.get("work_history") or {}).get("status") == "Currently Employed"
    )
    teacher["work_history"] = {"start_date": "2020-01-01", "status": "Terminated", "termination_date": "2026-11-28"}
    standin.state.set_roster(changed)
    report = roster_sync.pull(client(standin, sleeps))
    assert report.counts["deactivated"] == 1
    assert [f.source_id for f in report.demoted] == [teacher["id"]]
    assert next(t for t in snapshot(store)["teachers"] if t["id"] == teacher["id"])["active"] is False


FAILURES = [
    ({"status": 500}, "500"),
    ({"status": 503}, "503"),
    ({"status": 401}, "401"),
    ({"status": 429, "retry_after": 3600}, "asked to wait 3600 s"),
    ({"bad_json": True, "skip": 1}, "not valid JSON"),
    ({"break_schema": True}, "families is not a list"),
    ({"expire_cursor": True}, "410"),
    ({"delay_s": 2.0, "skip": 1}, "no answer within"),
]


@pytest.mark.parametrize(("fault", "said"), FAILURES, ids=[f"{next(iter(f))}-{s}" for f, s in FAILURES])
def test_a_failed_pull_leaves_the_roster_exactly_as_it_was(
    standin: StandinCloud,
    roster_sync: RosterSyncService,
    store: Store,
    sleeps: RecordingSleep,
    roster_300: dict[str, Any],
    fault: dict[str, Any],
    said: str,
) -> None:
    roster_sync.pull(client(standin, sleeps))
    before = snapshot(store)
    changed = copy.deepcopy(roster_300)
    changed["school"]["name"] = "Renamed School"
    changed["families"] = changed["families"][: len(changed["families"]) // 2]  # would deactivate many
    standin.state.set_roster(changed)
    standin.state.set_fault("roster", **fault)
    report = roster_sync.pull(client(standin, sleeps, timeout_s=0.3))
    assert report.outcome is SyncOutcome.FAILED
    assert report.error is not None
    assert said.lower() in report.error.lower()
    assert standin.state.source_token not in report.error
    assert snapshot(store) == before
    last = runs(store)[-1]
    assert (last.outcome, last.error) == (SyncOutcome.FAILED, report.error)
    assert last.finished_at is not None


def test_source_down_then_failed_run_then_recovery(
    standin: StandinCloud, roster_sync: RosterSyncService, store: Store, sleeps: RecordingSleep
) -> None:
    standin.down()
    try:
        report = roster_sync.pull(client(standin, sleeps))
    finally:
        standin.up()
    assert report.outcome is SyncOutcome.FAILED
    assert report.error is not None
    assert "could not be reached" in report.error
    assert snapshot(store)["people"] == []
    assert roster_sync.pull(client(standin, sleeps)).outcome is SyncOutcome.OK


def test_a_failed_run_does_not_move_the_etag(
    standin: StandinCloud, roster_sync: RosterSyncService, sleeps: RecordingSleep
) -> None:
    roster_sync.pull(client(standin, sleeps))
    good = roster_sync.last_etag()
    standin.state.force_etag('W/"next"')
    standin.state.set_fault("roster", status=500)
    roster_sync.pull(client(standin, sleeps))
    assert roster_sync.last_etag() == good
