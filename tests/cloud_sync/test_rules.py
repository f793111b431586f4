"""R1-R8 rule by rule, with records that pass and records that fail. Pure: no database."""

from __future__ import annotations

from typing import Any

import pytest

from cloud_sync.rules import ExportFormatError, Finding, Kind, RosterPlan, Rule, plan_roster
from edge.models import LinkRelation, PersonRole, PinState
from tests.exports import child, export, family, person, pickup, standard_family, teacher


def digest(pin: str) -> str:
    return f"hmac({pin})"


def plan_of(**parts: Any) -> RosterPlan:
    return plan_roster([export(**parts)], digest)


def findings(items: list[Finding], source_id: str) -> list[Finding]:
    return [f for f in items if f.source_id == source_id]


def relations(plan: RosterPlan, child_id: str) -> set[tuple[str, LinkRelation]]:
    return {(link["person_id"], link["relation"]) for link in plan.links[child_id]}


# -- R1 school, R2 rooms --------------------------------------------------------------------------


def test_r1_school_syncs_its_fields() -> None:
    plan = plan_of()
    assert plan.school is not None
    assert plan.school["name"] == "Maple Street Early Learning"
    assert plan.school["time_zone"] == "America/Los_Angeles"
    assert plan.school["director_email"] == "dana@example.org"


def test_r1_school_with_unknown_time_zone_is_skipped_not_crashing() -> None:
    school = dict(export()["school"], time_zone="Mars/Olympus")
    plan = plan_of(school=school)
    assert plan.school is None
    assert [f.rule for f in plan.skipped] == [Rule.R1]
    assert "Mars/Olympus" in plan.skipped[0].reason


def test_export_without_school_is_unusable() -> None:
    page = export()
    del page["school"]
    with pytest.raises(ExportFormatError, match="no school"):
        plan_roster([page], digest)


def test_r2_rooms_sync_with_ratio_and_bad_ratio_is_dropped_with_hint() -> None:
    plan = plan_of(rooms=[{"id": "R1", "name": "Infants", "ratio": 4}, {"id": "R2", "name": "Pre-K", "ratio": "lots"}])
    assert plan.rooms["R1"]["ratio"] == 4
    assert plan.rooms["R2"]["ratio"] is None
    assert [f.rule for f in findings(plan.hints, "R2")] == [Rule.R2]


def test_r2_room_without_id_is_skipped() -> None:
    plan = plan_of(rooms=[{"name": "Nameless"}, {"id": "R1", "name": "Infants"}])
    assert set(plan.rooms) == {"R1"}
    assert [(f.kind, f.rule) for f in plan.skipped] == [(Kind.ROOM, Rule.R2)]


# -- R3 teachers ----------------------------------------------------------------------------------


TERMINATED = {"start_date": "2020-01-06", "status": "Terminated", "termination_date": "2026-11-20"}


@pytest.mark.parametrize(
    ("record", "syncs", "reason_parts"),
    [
        (teacher(), True, []),
        (teacher(work_history=TERMINATED), False, ["“Terminated”", "terminated 2026-11-20"]),
        (teacher(primary_work_area=None), False, ["no Primary Work Area"]),
        (teacher(primary_work_area="R9"), False, ["“R9” is not a room"]),
        (teacher(work_history={"start_date": None, "status": "Currently Employed"}), False, ["no Start Date"]),
        (teacher(work_history=None), False, ["no Start Date", "no employment status"]),
        (
            teacher(work_history={"start_date": "2024-01-01", "status": "currently employed"}),
            False,
            ["not “Currently Employed”"],
        ),
        (
            teacher(work_history={"start_date": None, "status": "On Leave"}, primary_work_area=None),
            False,
            ["no Start Date", "“On Leave”", "no Primary Work Area"],
        ),
    ],
    ids=["ok", "terminated", "no-area", "unknown-area", "no-start", "no-history", "status-case", "every-reason"],
)
def test_r3_teacher(record: dict[str, Any], syncs: bool, reason_parts: list[str]) -> None:
    plan = plan_of(employees=[record])
    assert ("E1" in plan.teachers) is syncs
    skipped = findings(plan.skipped, "E1")
    if syncs:
        assert skipped == []
        assert plan.teachers["E1"]["room_id"] == "R1"
        assert plan.teachers["E1"]["pin_hmac"] == digest("4821")
    else:
        assert len(skipped) == 1
        assert skipped[0].rule is Rule.R3
        assert skipped[0].kind is Kind.TEACHER
        assert skipped[0].reason.startswith("Teacher Lee Park did not sync: ")
        for part in reason_parts:
            assert part in skipped[0].reason


def test_r3_contract_wording_for_missing_work_area() -> None:
    plan = plan_of(employees=[teacher("E4", first_name="Sam", last_name="Lee", primary_work_area=None)])
    assert plan.skipped[0].reason == "Teacher Sam Lee did not sync: no Primary Work Area"


def test_r3_employed_teacher_with_termination_date_syncs_with_a_hint() -> None:
    history = {"start_date": "2024-01-01", "status": "Currently Employed", "termination_date": "2026-12-31"}
    plan = plan_of(employees=[teacher(work_history=history)])
    assert "E1" in plan.teachers
    assert any("termination date" in f.reason for f in findings(plan.hints, "E1"))


def test_record_missing_its_id_is_skipped_with_a_reason() -> None:
    plan = plan_of(employees=[teacher(None), teacher("E2", first_name="Ana")])
    assert set(plan.teachers) == {"E2"}
    (skip,) = plan.skipped
    assert skip.source_id is None
    assert skip.rule is Rule.R3
    assert "Lee Park" in skip.reason
    assert "no id" in skip.reason


def test_record_that_is_not_an_object_is_skipped() -> None:
    plan = plan_of(employees=["garbage", 42, teacher()])
    assert set(plan.teachers) == {"E1"}
    assert len(plan.skipped) == 2


def test_duplicate_ids_keep_the_first() -> None:
    plan = plan_of(employees=[teacher("E1"), teacher("E1", first_name="Other")])
    assert plan.teachers["E1"]["first_name"] == "Lee"
    assert "appears twice" in plan.skipped[0].reason


# -- R4 / R5 / R7 / R8 people ---------------------------------------------------------------------


def test_contract_example_family() -> None:
    plan = plan_of(families=[standard_family()])
    assert plan.persons["P1"]["role"] is PersonRole.PAYER
    assert plan.persons["P2"]["role"] is PersonRole.PICKUP
    assert relations(plan, "C1") == {
        ("P1", LinkRelation.PAYER),
        ("P2", LinkRelation.PICKUP),
        ("P9", LinkRelation.RESTRICTED),
    }
    restricted = next(link for link in plan.links["C1"] if link["relation"] is LinkRelation.RESTRICTED)
    assert restricted["note"] == "court order 2026-04"


def test_r4_non_payer_is_never_a_parent() -> None:
    # Not a payer and not on any pickup list: does not sync at all (R7 explains why).
    fam = family("F1", [person("P1"), person("P3", "Cam", payer=False, pin="5555")], [child("C1")])
    plan = plan_of(families=[fam])
    assert "P3" not in plan.persons
    (skip,) = findings(plan.skipped, "P3")
    assert skip.rule is Rule.R7
    assert "not a payer" in skip.reason


def test_r4_payer_takes_every_enrolled_child_of_the_family() -> None:
    fam = family("F1", [person("P1")], [child("C1"), child("C2", "Lan"), child("C3", "Withdrawn", status="Withdrawn")])
    plan = plan_of(families=[fam])
    assert {c for c, links in plan.links.items() if ("P1", LinkRelation.PAYER) in relations(plan, c)} == {"C1", "C2"}
    assert "C3" not in plan.links


def test_r5_sms_only_from_text_message() -> None:
    fam = family("F1", [person("P1", text_message=None)], [child("C1")])
    plan = plan_of(families=[fam])
    assert plan.persons["P1"]["sms_number"] is None  # phones.cell is never used
    (hint,) = [f for f in findings(plan.hints, "P1") if f.rule is Rule.R5]
    assert "no Text Message number" in hint.reason


def test_r5_sms_and_carrier_come_from_text_message() -> None:
    plan = plan_of(families=[standard_family()])
    assert plan.persons["P1"]["sms_number"] == "+1 559 555 0199"
    assert plan.persons["P1"]["sms_carrier"] == "Verizon"
    assert plan.persons["P2"]["sms_number"] is None  # pickups get no SMS


def test_r7_pickup_of_a_withdrawn_child_only_does_not_sync() -> None:
    fam = family(
        "F1",
        [person("P1"), person("P2", "Binh", payer=False, pin="1964")],
        [child("C1", status="Withdrawn", pickups=[pickup("P2")])],
    )
    plan = plan_of(families=[fam])
    assert "P2" not in plan.persons
    assert findings(plan.skipped, "P2")[0].rule is Rule.R7


def test_r7_non_payer_app_device_is_dropped() -> None:
    device = {"device_id": "D-x", "public_key": "A" * 43 + "="}
    fam = family(
        "F1",
        [person("P1"), person("P2", "Binh", payer=False, pin="1964", app_devices=[device])],
        [child("C1", pickups=[pickup("P2")])],
    )
    plan = plan_of(families=[fam])
    assert "P2" in plan.persons
    assert plan.devices.get("P2", []) == []
    assert any(f.rule is Rule.R7 and "PIN at the kiosk only" in f.reason for f in findings(plan.hints, "P2"))


def test_r4_payer_devices_sync_and_bad_keys_are_dropped() -> None:
    good = {"device_id": "D-good", "public_key": "A" * 43 + "="}
    bad = {"device_id": "D-bad", "public_key": "not base64!"}
    plan = plan_of(families=[family("F1", [person("P1", app_devices=[good, bad])], [child("C1")])])
    assert [d["device_id"] for d in plan.devices["P1"]] == ["D-good"]
    assert any("D-bad" in f.reason for f in plan.hints)


def test_r8_restricted_payer_never_takes_that_child() -> None:
    # P1 pays for the family, but a court order restricts them for C1 (not for C2).
    fam = family(
        "F1",
        [person("P1"), person("P5", "Hoa")],
        [child("C1", pickups=[pickup("P1", authorized=False, note="court order")]), child("C2", "Lan")],
    )
    plan = plan_of(families=[fam])
    assert plan.persons["P1"]["role"] is PersonRole.PAYER
    assert relations(plan, "C1") == {("P1", LinkRelation.RESTRICTED), ("P5", LinkRelation.PAYER)}
    assert ("P1", LinkRelation.PAYER) in relations(plan, "C2")
    assert any(f.rule is Rule.R8 for f in findings(plan.hints, "P1"))


def test_r8_restriction_beats_authorization_on_the_same_child() -> None:
    fam = family(
        "F1",
        [person("P1"), person("P2", "Binh", payer=False, pin="1964")],
        [child("C1", pickups=[pickup("P2"), pickup("P2", authorized=False)])],
    )
    plan = plan_of(families=[fam])
    assert relations(plan, "C1") == {("P1", LinkRelation.PAYER), ("P2", LinkRelation.RESTRICTED)}


def test_r8_restriction_of_someone_not_in_the_roster_is_kept() -> None:
    plan = plan_of(families=[standard_family()])
    assert ("P9", LinkRelation.RESTRICTED) in relations(plan, "C1")
    assert "P9" not in plan.persons


def test_payer_of_one_family_is_only_a_pickup_for_another_familys_child() -> None:
    fam1 = family("F1", [person("P1")], [child("C1")])
    fam2 = family("F2", [person("P7", "Vy", pin="2222")], [child("C7", "Kim", pickups=[pickup("P1")])], name="Le")
    plan = plan_of(families=[fam1, fam2])
    assert ("P1", LinkRelation.PICKUP) in relations(plan, "C7")
    assert ("P1", LinkRelation.PAYER) in relations(plan, "C1")


def test_family_with_no_payer_still_syncs_children_with_a_hint() -> None:
    fam = family(
        "F1",
        [person("P2", "Binh", payer=False, pin="1964")],
        [child("C1", pickups=[pickup("P2")])],
    )
    plan = plan_of(families=[fam])
    assert "C1" in plan.children
    assert "P2" in plan.persons
    assert any(f.rule is Rule.R4 and "no payer" in f.reason for f in findings(plan.hints, "C1"))


def test_pickup_list_naming_someone_unknown_is_a_hint() -> None:
    plan = plan_of(families=[family("F1", [person("P1")], [child("C1", pickups=[pickup("P77")])])])
    assert any("P77" in f.reason for f in findings(plan.hints, "C1"))


# -- R6 children ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "reason_part"),
    [
        (child(status="Withdrawn"), "“Withdrawn”"),
        (child(classroom=None), "no classroom"),
        (child(classroom="R42"), "“R42” is not a room"),
        (child(status="Waitlisted", classroom=None), "no classroom"),
        (child(enrollment_status=None), "no enrollment status"),
    ],
    ids=["withdrawn", "no-classroom", "unknown-classroom", "two-reasons", "no-status"],
)
def test_r6_child_that_does_not_sync(record: dict[str, Any], reason_part: str) -> None:
    plan = plan_of(families=[family("F1", [person("P1")], [record])])
    assert "C1" not in plan.children
    (skip,) = findings(plan.skipped, "C1")
    assert skip.rule is Rule.R6
    assert skip.reason.startswith("Child Mai Nguyen did not sync: ")
    assert reason_part in skip.reason


def test_r6_enrolled_child_syncs_with_room_and_birth_date() -> None:
    plan = plan_of(families=[standard_family()])
    row = plan.children["C1"]
    assert row["room_id"] == "R1"
    assert str(row["birth_date"]) == "2023-02-11"
    assert row["family_id"] == "F1"


# -- PINs ------------------------------------------------------------------------------------------


def test_equal_pins_are_disabled_for_both_and_reported() -> None:
    fam = family("F1", [person("P1", pin="4821")], [child("C1")])
    plan = plan_of(employees=[teacher(pin="4821")], families=[fam])
    assert plan.teachers["E1"]["pin_state"] is PinState.AMBIGUOUS
    assert plan.persons["P1"]["pin_state"] is PinState.AMBIGUOUS
    assert "E1" in plan.teachers
    assert "P1" in plan.persons
    reasons = [f.reason for f in plan.hints if "same as" in f.reason]
    assert len(reasons) == 2
    assert all("4821" not in r for r in reasons)


@pytest.mark.parametrize("bad_pin", ["12", "1234567", "12a4", 4821, "٤٨٢١"])
def test_pin_that_is_not_4_to_6_digits_is_not_set(bad_pin: Any) -> None:
    plan = plan_of(families=[family("F1", [person("P1", pin=bad_pin)], [child("C1")])])
    assert plan.persons["P1"]["pin_state"] is PinState.NONE
    assert plan.persons["P1"]["pin_hmac"] is None
    assert any("not 4 to 6 digits" in f.reason for f in findings(plan.hints, "P1"))


def test_plan_holds_no_plaintext_pin() -> None:
    plan = plan_of(employees=[teacher()], families=[standard_family()])
    text = repr(plan)
    for pin in ("4821", "7305", "1964"):
        assert f"'{pin}'" not in text


# -- whole export ----------------------------------------------------------------------------------


def test_pages_are_merged() -> None:
    page1 = export(employees=[teacher("E1")], families=[standard_family()])
    page1["next_cursor"] = "abc"
    page2 = {"employees": [teacher("E2", first_name="Ana", pin="1111")], "families": [], "next_cursor": None}
    plan = plan_roster([page1, page2], digest)
    assert set(plan.teachers) == {"E1", "E2"}


def test_page_with_families_not_a_list_breaks_the_format() -> None:
    page = export()
    page["families"] = "oops"
    with pytest.raises(ExportFormatError, match="families is not a list"):
        plan_roster([page], digest)


def test_unknown_fields_are_ignored() -> None:
    rec = teacher(favourite_color="teal", work_history={**teacher()["work_history"], "extra": 1})
    plan = plan_of(employees=[rec])
    assert "E1" in plan.teachers
