"""Applying exports to a real database (SQLite, or PostgreSQL in that run): counts, no-change
re-sync, demotions, atomicity, PINs."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy import table as table_clause

import cloud_sync.roster_apply
from cloud_sync.roster_sync import RosterSyncService
from edge.models import Child, ChildLink, Person, PinState, Room, SyncOutcome, SyncRun, SyncTrigger, Teacher
from edge.pins import PinHasher
from edge.roster import roster_snapshot
from edge.store import Store
from tests.conftest import FakeClock
from tests.exports import child, export, family, person, standard_family, teacher

TERMINATED = {"start_date": "2020-01-06", "status": "Terminated", "termination_date": "2026-11-20"}


def base_export() -> dict[str, Any]:
    return export(employees=[teacher("E1"), teacher("E2", first_name="Ana", pin="1111")], families=[standard_family()])


def snapshot(store: Store) -> dict[str, Any]:
    with store.read() as session:
        return roster_snapshot(session=session)


def test_first_apply_adds_everything(roster_sync: RosterSyncService, store: Store) -> None:
    report = roster_sync.apply_export([base_export()])
    assert report.outcome is SyncOutcome.OK
    # school + 2 rooms + 2 teachers + 2 people + 1 child
    assert report.counts == {"added": 8, "updated": 0, "deactivated": 0, "unchanged": 0, "skipped": 0}
    shown = snapshot(store)
    assert shown["children"] == [
        {
            "id": "C1",
            "name": "Mai Nguyen",
            "room": "R1",
            "active": True,
            "payers": ["P1"],
            "pickups": ["P2"],
            "restricted": ["P9"],
        }
    ]
    p1 = next(p for p in shown["people"] if p["id"] == "P1")
    assert p1 == {
        "id": "P1",
        "name": "An Nguyen",
        "role": "payer",
        "active": True,
        "sms": "+1 559 555 0199",
        "pin": "set",
        "devices": [],
        "children": ["C1"],
    }
    assert shown["school"] == {
        "name": "Maple Street Early Learning",
        "director_name": "Dana Ortiz",
        "director_email": "dana@example.org",
        "time_zone": "America/Los_Angeles",
    }


def test_same_content_again_writes_no_roster_row(
    roster_sync: RosterSyncService, store: Store, clock: FakeClock
) -> None:
    roster_sync.apply_export([base_export()])
    with store.read() as session:
        before = {p.id: p.changed_at for p in session.scalars(select(Person))}
    clock.advance(hours=6)
    again = base_export()
    again["etag"] = 'W/"another-etag"'
    report = roster_sync.apply_export([again])
    assert report.counts == {"added": 0, "updated": 0, "deactivated": 0, "unchanged": 8, "skipped": 0}
    assert report.rows_written == 0
    with store.read() as session:
        assert {p.id: p.changed_at for p in session.scalars(select(Person))} == before


def test_rename_updates_the_same_row(roster_sync: RosterSyncService, store: Store, clock: FakeClock) -> None:
    roster_sync.apply_export([base_export()])
    changed = base_export()
    changed["families"][0]["children"][0]["first_name"] = "May"
    clock.advance(hours=6)
    report = roster_sync.apply_export([changed])
    assert report.counts["updated"] == 1
    assert report.counts["unchanged"] == 7
    with store.read() as session:
        row = session.get_one(Child, "C1")
        assert row.first_name == "May"
        assert row.changed_at == clock.now


def test_terminated_teacher_who_synced_yesterday_is_now_inactive(
    roster_sync: RosterSyncService, store: Store, clock: FakeClock
) -> None:
    roster_sync.apply_export([base_export()])
    clock.advance(days=1)
    today = base_export()
    today["employees"][0]["work_history"] = TERMINATED
    report = roster_sync.apply_export([today])
    assert report.counts["deactivated"] == 1
    assert report.counts["skipped"] == 0  # demoted, not skipped
    (demoted,) = report.demoted
    assert (demoted.kind.value, demoted.source_id, demoted.rule.value) == ("teacher", "E1", "R3")
    assert "Terminated" in demoted.reason
    with store.read() as session:
        row = session.get_one(Teacher, "E1")  # kept, never deleted
        assert row.active is False


def test_record_gone_from_the_export_is_deactivated_not_deleted(roster_sync: RosterSyncService, store: Store) -> None:
    roster_sync.apply_export([base_export()])
    smaller = base_export()
    smaller["rooms"] = [r for r in smaller["rooms"] if r["id"] != "R2"]
    smaller["employees"] = smaller["employees"][:1]
    report = roster_sync.apply_export([smaller])
    assert report.counts["deactivated"] == 2
    assert {(f.kind.value, f.source_id) for f in report.demoted} == {("room", "R2"), ("teacher", "E2")}
    assert all("no longer in the back office" in f.reason for f in report.demoted)
    with store.read() as session:
        assert session.get_one(Room, "R2").active is False


def test_withdrawn_child_is_demoted_and_comes_back(roster_sync: RosterSyncService, store: Store) -> None:
    roster_sync.apply_export([base_export()])
    withdrawn = base_export()
    withdrawn["families"][0]["children"][0]["enrollment_status"] = "Withdrawn"
    report = roster_sync.apply_export([withdrawn])
    assert ("child", "C1", "R6") in {(f.kind.value, f.source_id, f.rule.value) for f in report.demoted}
    # Its pickup person no longer picks up any enrolled child: demoted by R7.
    assert ("person", "P2", "R7") in {(f.kind.value, f.source_id, f.rule.value) for f in report.demoted}
    report = roster_sync.apply_export([base_export()])
    assert report.counts["updated"] == 2
    with store.read() as session:
        assert session.get_one(Child, "C1").active is True


def test_links_follow_the_child(roster_sync: RosterSyncService, store: Store) -> None:
    roster_sync.apply_export([base_export()])
    changed = base_export()
    changed["families"][0]["children"][0]["pickups"] = []
    roster_sync.apply_export([changed])
    with store.read() as session:
        links = {(link.person_id, link.relation.value) for link in session.scalars(select(ChildLink))}
    assert links == {("P1", "payer")}


def test_a_failure_mid_apply_leaves_the_roster_exactly_as_it_was(
    roster_sync: RosterSyncService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    roster_sync.apply_export([base_export()])
    before = snapshot(store)
    changed = base_export()
    changed["employees"][0]["first_name"] = "Changed"
    changed["families"][0]["children"][0]["pickups"] = []

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    # Rows of teachers and children are already written when the links step fails.
    monkeypatch.setattr(cloud_sync.roster_apply, "_rewrite_links", explode)
    report = roster_sync.apply_export([changed])
    assert report.outcome is SyncOutcome.FAILED
    assert report.error is not None
    assert "disk on fire" not in report.error  # internal details are not shown to directors
    assert snapshot(store) == before


def test_unusable_export_fails_the_run_and_changes_nothing(roster_sync: RosterSyncService, store: Store) -> None:
    roster_sync.apply_export([base_export()])
    before = snapshot(store)
    broken = base_export()
    broken["employees"] = {"not": "a list"}
    report = roster_sync.apply_export([broken])
    assert report.outcome is SyncOutcome.FAILED
    assert report.error == "Page 1 of the roster broke the export format: employees is not a list"
    assert snapshot(store) == before


def test_every_run_is_recorded_with_its_report(roster_sync: RosterSyncService, store: Store) -> None:
    skipped = base_export()
    skipped["employees"].append(teacher("E4", first_name="Sam", last_name="Lee", primary_work_area=None))
    roster_sync.apply_export([skipped])
    with store.read() as session:
        (run,) = session.scalars(select(SyncRun))
    assert run.outcome is SyncOutcome.OK
    assert run.trigger is SyncTrigger.FILE
    assert run.finished_at is not None
    assert run.finished_at >= run.started_at
    assert run.report is not None
    assert run.report["counts"]["skipped"] == 1
    assert run.report["skipped"] == [
        {
            "kind": "teacher",
            "source_id": "E4",
            "rule": "R3",
            "reason": "Teacher Sam Lee did not sync: no Primary Work Area",
        }
    ]


def test_a_run_left_running_by_a_dead_process_is_marked_failed(roster_sync: RosterSyncService, store: Store) -> None:
    with store.transaction() as session:
        session.add(
            SyncRun(trigger=SyncTrigger.SCHEDULE, started_at=roster_sync.clock(), outcome=SyncOutcome.RUNNING, pages=0)
        )
    roster_sync.apply_export([base_export()])
    with store.read() as session:
        outcomes = [r.outcome for r in session.scalars(select(SyncRun).order_by(SyncRun.id))]
    assert outcomes == [SyncOutcome.FAILED, SyncOutcome.OK]


def test_equal_pins_are_ambiguous_in_the_database(roster_sync: RosterSyncService, store: Store) -> None:
    dup = base_export()
    dup["families"].append(family("F2", [person("P3", "Cam", "Vo", pin="4821")], [child("C3", "Kai")], name="Vo"))
    report = roster_sync.apply_export([dup])
    with store.read() as session:
        assert session.get_one(Teacher, "E1").pin_state is PinState.AMBIGUOUS
        assert session.get_one(Person, "P3").pin_state is PinState.AMBIGUOUS
        assert session.get_one(Person, "P1").pin_state is PinState.SET
    assert sum("same as" in f.reason for f in report.hints) == 2


def test_pins_are_stored_only_as_hmac(
    roster_sync: RosterSyncService, store: Store, hasher: PinHasher, data_dir: Path
) -> None:
    roster_sync.apply_export([base_export()])
    with store.read() as session:
        p1 = session.get_one(Person, "P1")
        assert p1.pin_hmac == hasher.digest("7305")
    key_file = data_dir / "pin.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    # No column of any table holds a PIN in clear (every table the database has, on either one).
    with store.engine.connect() as conn:
        tables = inspect(conn).get_table_names()
        assert {"persons", "teachers", "audit_log"} <= set(tables)
        for table in tables:
            for row in conn.execute(select(text("*")).select_from(table_clause(table))):
                assert not {"7305", "1964", "4821", "1111"} & {str(v) for v in row}, (table, row)


def test_pin_key_is_made_once_and_reused(data_dir: Path) -> None:
    first = PinHasher.from_data_dir(data_dir).digest("1234")
    assert PinHasher.from_data_dir(data_dir).digest("1234") == first
    other = data_dir / "other"
    assert PinHasher.from_data_dir(other).digest("1234") != first


def test_apply_is_idempotent_over_many_people(roster_sync: RosterSyncService, store: Store) -> None:
    families = [
        family(f"F{i}", [person(f"P{i}", f"N{i}", pin=f"{1000 + i}")], [child(f"C{i}", f"K{i}", classroom="R2")])
        for i in range(200)
    ]
    big = export(families=families)
    first = roster_sync.apply_export([copy.deepcopy(big)])
    assert first.counts["added"] == 3 + 400
    second = roster_sync.apply_export([big])
    assert second.counts["unchanged"] == 403
    assert second.rows_written == 0


def test_a_value_longer_than_its_column_skips_the_record_on_every_database(
    roster_sync: RosterSyncService, store: Store
) -> None:
    """PostgreSQL refuses a 101-character name that SQLite would keep: the export's parser
    skips that record in words instead, so both databases sync the same roster and the rest of
    it arrives (before the check, the PostgreSQL run's whole sync failed)."""
    page = base_export()
    page["families"][0]["children"][0]["first_name"] = "A" * 101
    page["employees"].append(teacher("E9", first_name="Bo", email="x" * 190 + "@example.org"))  # 202 > 200
    page["families"].append(family("F" * 65, [person("P77", "Long", "Family")], [child("C77", "Kid")]))
    report = roster_sync.apply_export([page])
    assert report.outcome is SyncOutcome.OK, report.error
    too_long = {
        (finding.kind.value, finding.source_id) for finding in report.skipped if "is not valid" in finding.reason
    }
    assert too_long == {("child", "C1"), ("teacher", "E9")}
    assert any("longer than 64 characters" in finding.reason for finding in report.skipped)  # the family
    with store.read() as session:
        assert session.get(Child, "C1") is None
        assert session.get(Child, "C77") is None
        assert session.get(Teacher, "E1") is not None
