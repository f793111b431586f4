"""The stand-in cloud: the generated roster, and the server's roster, attendance and faults."""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from cloud_sync.standin.generator import (
    cloud_private_key,
    demo_people,
    device_private_key,
    generate_roster,
)
from cloud_sync.standin.server import Fault, StandinCloud, StandinState

SEED = 7  # the seed of the conftest's roster_300

Export = dict[str, Any]


# -- helpers --------------------------------------------------------------------------------


def persons(export: Export) -> list[dict[str, Any]]:
    return [person for family in export["families"] for person in family["persons"]]


def children(export: Export) -> list[dict[str, Any]]:
    return [child for family in export["families"] for child in family["children"]]


def pickups(export: Export) -> list[dict[str, Any]]:
    return [pickup for child in children(export) for pickup in child["pickups"]]


def valid_pin(pin: Any) -> bool:
    return isinstance(pin, str) and pin.isdigit() and 4 <= len(pin) <= 6


def pin_counts(export: Export) -> Counter[str]:
    return Counter(record["pin"] for record in [*export["employees"], *persons(export)] if valid_pin(record["pin"]))


def source_headers(cloud: StandinCloud) -> dict[str, str]:
    return {"Authorization": f"Bearer {cloud.state.source_token}"}


def cloud_headers(cloud: StandinCloud) -> dict[str, str]:
    return {"Authorization": f"Bearer {cloud.state.cloud_token}"}


def roster_path(cloud: StandinCloud) -> str:
    return f"/v1/centers/{cloud.state.center_id}/roster"


def attendance_path(cloud: StandinCloud) -> str:
    return f"/v1/centers/{cloud.state.center_id}/attendance"


def all_pages(cloud: StandinCloud, limit: int) -> list[dict[str, Any]]:
    pages = []
    cursor = None
    with httpx.Client(base_url=cloud.url, headers=source_headers(cloud)) as http:
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            response = http.get(roster_path(cloud), params=params)
            assert response.status_code == 200, response.text
            pages.append(response.json())
            cursor = pages[-1]["next_cursor"]
            if cursor is None:
                return pages


def post_events(cloud: StandinCloud, events: list[Any], **options: Any) -> httpx.Response:
    return httpx.post(
        cloud.url + attendance_path(cloud), json={"events": events}, headers=cloud_headers(cloud), **options
    )


def event(event_id: str, child_id: str = "C1", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "child_id": child_id,
        "action": "check_in",
        "occurred_at": "2026-11-29T15:41:07.512Z",
        "method": "pin",
        "actor": {"kind": "payer", "id": "P1"},
        "station_id": "front-door",
        "clock_synced": True,
        **extra,
    }


# -- the generated roster ---------------------------------------------------------------------


def test_same_seed_gives_the_same_export_and_another_seed_another() -> None:
    assert generate_roster(seed=3, people=200) == generate_roster(seed=3, people=200)
    assert generate_roster(seed=3, people=200) != generate_roster(seed=4, people=200)


@pytest.mark.parametrize("people", [40, 300, 1000])
def test_sizes_follow_the_number_of_people(people: int) -> None:
    export = generate_roster(seed=1, people=people)
    assert people <= len(persons(export)) <= people + 3
    assert len(export["employees"]) == max(3, people // 25)
    assert len(export["rooms"]) == max(3, round(people / 25))
    assert all(1 <= len(family["children"]) <= 2 for family in export["families"])


def test_export_has_the_contract_page_shape(roster_300: Export) -> None:
    assert set(roster_300) == {
        "exported_at", "etag", "school", "rooms", "employees", "families", "keys", "next_cursor"
    }  # fmt: skip
    assert roster_300["school"]["time_zone"] == "America/Los_Angeles"
    assert roster_300["school"]["id"] == "maple-street"
    person = persons(roster_300)[0]
    assert set(person) == {
        "id", "first_name", "last_name", "email", "phones", "text_message", "payer", "pin", "app_devices"
    }  # fmt: skip
    assert set(person["phones"]) == {"home", "work", "cell"}
    child = children(roster_300)[0]
    assert set(child) == {"id", "first_name", "last_name", "birth_date", "enrollment_status", "classroom", "pickups"}
    json.dumps(roster_300)  # plain JSON all the way down


def _room_ids(export: Export) -> set[str]:
    return {room["id"] for room in export["rooms"]}


def _payer_ids(family: dict[str, Any]) -> set[str]:
    return {person["id"] for person in family["persons"] if person["payer"] and "id" in person}


def _restricted_payers_of_other_families(export: Export) -> int:
    family_of_payer = {pid: family["id"] for family in export["families"] for pid in _payer_ids(family)}
    return sum(
        1
        for family in export["families"]
        for child in family["children"]
        for pickup in child["pickups"]
        if not pickup["authorized"]
        and pickup.get("note")
        and family_of_payer.get(pickup["person_id"], family["id"]) != family["id"]
    )


def _restricted_strangers(export: Export) -> int:
    known = {person["id"] for person in persons(export) if "id" in person}
    return sum(1 for pickup in pickups(export) if not pickup["authorized"] and pickup["person_id"] not in known)


AWKWARD_CASES: list[tuple[str, Callable[[Export], int]]] = [
    (
        "teacher terminated, with a termination date",
        lambda e: sum(
            1
            for emp in e["employees"]
            if emp["work_history"]["status"] == "Terminated" and emp["work_history"]["termination_date"]
        ),
    ),
    ("teacher without a primary work area", lambda e: sum(1 for x in e["employees"] if x["primary_work_area"] is None)),
    (
        "teacher without a start date",
        lambda e: sum(1 for x in e["employees"] if x["work_history"]["start_date"] is None),
    ),
    (
        "teacher whose work area names no room",
        lambda e: sum(1 for emp in e["employees"] if emp["primary_work_area"] not in (None, *_room_ids(e))),
    ),
    (
        "payer whose only mobile is phones.cell",
        lambda e: sum(1 for p in persons(e) if p["payer"] and p["text_message"] is None and p["phones"]["cell"]),
    ),
    ("child withdrawn", lambda e: sum(1 for c in children(e) if c["enrollment_status"] == "Withdrawn")),
    ("child without a classroom", lambda e: sum(1 for c in children(e) if c["classroom"] is None)),
    ("non-payer with an app device", lambda e: sum(1 for p in persons(e) if not p["payer"] and p["app_devices"])),
    ("restricted person who pays in another family", _restricted_payers_of_other_families),
    ("restricted person not in the roster", _restricted_strangers),
    ("two people with one PIN", lambda e: sum(1 for n in pin_counts(e).values() if n > 1)),
    ("person record without an id", lambda e: sum(1 for p in persons(e) if "id" not in p)),
    ("family without a payer", lambda e: sum(1 for f in e["families"] if not any(p["payer"] for p in f["persons"]))),
    ("PIN that is not 4-6 digits", lambda e: sum(1 for p in persons(e) if not valid_pin(p["pin"]))),
]


@pytest.mark.parametrize(("case", "count"), AWKWARD_CASES, ids=[case for case, _ in AWKWARD_CASES])
def test_awkward_cases_are_in_a_300_person_roster(
    roster_300: Export, case: str, count: Callable[[Export], int]
) -> None:
    assert 1 <= count(roster_300) <= 6, case


def test_awkward_cases_scale_with_the_roster() -> None:
    export = generate_roster(seed=2, people=3000)
    assert all(count(export) >= 5 for _, count in AWKWARD_CASES)


def test_pins_are_unique_except_the_deliberate_pairs(roster_300: Export) -> None:
    counts = pin_counts(roster_300)
    assert max(counts.values()) == 2
    assert sum(1 for n in counts.values() if n == 2) == 2  # the two sprinkled pairs


def test_app_device_keys_are_real_ed25519_keys_derived_from_the_seed(roster_300: Export) -> None:
    devices = [device for person in persons(roster_300) for device in person["app_devices"]]
    assert len(devices) > 50
    for device in devices:
        raw = base64.b64decode(device["public_key"], validate=True)
        assert len(raw) == 32
        assert raw == device_private_key(SEED, device["device_id"]).public_key().public_bytes_raw()
    signature = device_private_key(SEED, devices[0]["device_id"]).sign(b"ping")
    device_private_key(SEED, devices[0]["device_id"]).public_key().verify(signature, b"ping")
    (key,) = roster_300["keys"]
    assert key["alg"] == "Ed25519"
    assert base64.b64decode(key["public_key"]) == cloud_private_key(SEED).public_key().public_bytes_raw()


def test_demo_people_have_clean_pins_and_enrolled_children(roster_300: Export) -> None:
    people = demo_people(roster_300)
    counts = pin_counts(roster_300)
    rooms = _room_ids(roster_300)
    by_child = {child["id"]: child for child in children(roster_300)}
    for person in people.values():
        assert valid_pin(person["pin"])
        assert counts[person["pin"]] == 1
    payer = people["payer"]
    assert payer["children"]
    for child in [*payer["children"], {"id": people["pickup"]["child_id"]}, {"id": people["restricted"]["child_id"]}]:
        assert by_child[child["id"]]["enrollment_status"] == "Currently Enrolled"
        assert by_child[child["id"]]["classroom"] in rooms
    pickup_links = by_child[people["pickup"]["child_id"]]["pickups"]
    assert {"person_id": people["pickup"]["id"], "authorized": True} in pickup_links
    restricted_links = by_child[people["restricted"]["child_id"]]["pickups"]
    assert any(p["person_id"] == people["restricted"]["id"] and p["authorized"] is False for p in restricted_links)


def test_thirty_thousand_people_generate() -> None:
    # How fast is the roster benchmark's business (scripts/bench roster), not a timed test's.
    export = generate_roster(seed=1, people=30_000)
    assert len(persons(export)) >= 30_000


# -- the roster endpoint ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 7, 100, 10_000])
def test_pages_of_any_size_hold_the_same_records(standin: StandinCloud, roster_300: Export, limit: int) -> None:
    pages = all_pages(standin, limit)
    assert [e for page in pages for e in page["employees"]] == roster_300["employees"]
    assert [f for page in pages for f in page["families"]] == roster_300["families"]
    assert all(len(page["employees"]) + len(page["families"]) <= limit for page in pages)
    first, rest = pages[0], pages[1:]
    assert first["school"] == roster_300["school"]
    assert first["rooms"] == roster_300["rooms"]
    assert first["keys"] == roster_300["keys"]
    assert all("school" not in page and "rooms" not in page and "keys" not in page for page in rest)
    assert {page["etag"] for page in pages} == {standin.state.etag}
    assert all(page["exported_at"] == roster_300["exported_at"] for page in pages)
    assert all(page["next_cursor"] for page in pages[:-1])


def test_first_page_carries_etag_and_date_headers(standin: StandinCloud) -> None:
    response = httpx.get(standin.url + roster_path(standin), headers=source_headers(standin))
    assert response.status_code == 200
    assert response.headers["etag"] == standin.state.etag
    assert response.headers["content-type"] == "application/json"
    assert "date" in response.headers


def test_if_none_match_with_the_current_etag_is_304_without_a_body(standin: StandinCloud) -> None:
    url = standin.url + roster_path(standin)
    current = standin.state.etag
    assert current is not None
    not_modified = httpx.get(url, headers={**source_headers(standin), "If-None-Match": current})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    stale = httpx.get(url, headers={**source_headers(standin), "If-None-Match": 'W/"0000000000000000"'})
    assert stale.status_code == 200


def test_etag_follows_the_content_and_force_etag_changes_only_the_etag(roster_300: Export) -> None:
    state = StandinState(roster=roster_300)
    same = state.etag
    assert same is not None
    assert same.startswith('W/"')
    assert state.set_roster(copy.deepcopy(roster_300)) == same
    assert StandinState(roster=copy.deepcopy(roster_300)).etag == same
    changed = copy.deepcopy(roster_300)
    changed["families"][0]["name"] = "Renamed"
    assert state.set_roster(changed) != same
    state.set_roster(roster_300)
    before = json.loads(state.roster_page(None, 1000)[1])
    state.force_etag('W/"forced-1"')
    etag, page = state.roster_page(None, 1000)
    after = json.loads(page)
    assert etag == after["etag"] == 'W/"forced-1"'
    assert {**after, "etag": same} == before


def test_a_cursor_from_before_a_change_answers_410(standin: StandinCloud, roster_300: Export) -> None:
    with httpx.Client(base_url=standin.url, headers=source_headers(standin)) as http:
        first = http.get(roster_path(standin), params={"limit": 20}).json()
        changed = copy.deepcopy(roster_300)
        changed["employees"][0]["first_name"] = "Changed"
        standin.state.set_roster(changed)
        expired = http.get(roster_path(standin), params={"limit": 20, "cursor": first["next_cursor"]})
        assert expired.status_code == 410
        first = http.get(roster_path(standin), params={"limit": 20}).json()
        standin.state.force_etag('W/"same-content-new-etag"')
        assert http.get(roster_path(standin), params={"limit": 20, "cursor": first["next_cursor"]}).status_code == 410
        assert http.get(roster_path(standin), params={"cursor": "not-a-cursor"}).status_code == 400


@pytest.mark.parametrize(
    ("headers", "center", "status"),
    [
        ({}, "maple-street", 401),
        ({"Authorization": "Bearer wrong"}, "maple-street", 401),
        ({"Authorization": "Bearer cloud-secret-c28e44"}, "maple-street", 401),  # the cloud's token
        ({"Authorization": "Bearer source-secret-7f3a91"}, "elm-street", 404),
    ],
)
def test_roster_needs_the_source_token_and_a_known_center(
    standin: StandinCloud, headers: dict[str, str], center: str, status: int
) -> None:
    response = httpx.get(f"{standin.url}/v1/centers/{center}/roster", headers=headers)
    assert response.status_code == status


def test_no_roster_yet_is_503() -> None:
    with StandinCloud(StandinState()) as cloud:
        assert httpx.get(cloud.url + roster_path(cloud), headers=source_headers(cloud)).status_code == 503


# -- faults -------------------------------------------------------------------------------------


def test_a_status_fault_fails_the_next_requests_then_recovers(standin: StandinCloud) -> None:
    standin.state.set_fault("roster", status=503, times=2, retry_after=7)
    url = standin.url + roster_path(standin)
    answers = [httpx.get(url, headers=source_headers(standin)) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].headers["retry-after"] == "7"
    assert standin.state.requests["roster"] == 3
    assert "roster" not in standin.state.faults


def test_skip_lets_requests_through_before_the_fault_fires(standin: StandinCloud) -> None:
    standin.state.faults["roster"] = Fault(status=500, skip=1, times=1)
    url = standin.url + roster_path(standin)
    assert [httpx.get(url, headers=source_headers(standin)).status_code for _ in range(3)] == [200, 500, 200]


def test_bad_json_and_broken_schema_answer_200(standin: StandinCloud) -> None:
    url = standin.url + roster_path(standin)
    standin.state.set_fault("roster", bad_json=True, times=1)
    garbled = httpx.get(url, headers=source_headers(standin))
    assert garbled.status_code == 200
    with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
        json.loads(garbled.content)
    standin.state.set_fault("roster", break_schema=True, times=1)
    broken = httpx.get(url, headers=source_headers(standin))
    assert broken.status_code == 200
    assert isinstance(broken.json()["families"], str)


def test_expire_cursor_leaves_the_first_page_alone(standin: StandinCloud) -> None:
    standin.state.set_fault("roster", expire_cursor=True)
    with httpx.Client(base_url=standin.url, headers=source_headers(standin)) as http:
        first = http.get(roster_path(standin), params={"limit": 10})
        assert first.status_code == 200
        assert http.get(roster_path(standin), params={"cursor": first.json()["next_cursor"]}).status_code == 410


def test_a_delay_outlasts_the_client_timeout(standin: StandinCloud) -> None:
    standin.state.set_fault("roster", delay_s=2.0, times=1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(standin.url + roster_path(standin), headers=source_headers(standin), timeout=0.2)
    assert httpx.get(standin.url + roster_path(standin), headers=source_headers(standin)).status_code == 200


def test_faults_can_be_set_and_cleared_over_http(standin: StandinCloud) -> None:
    control = standin.url + "/_control/faults"
    assert httpx.post(control, json={"roster": {"status": 500}}).status_code == 401
    assert httpx.post(control, json={"roster": {"colour": "red"}}, headers=source_headers(standin)).status_code == 400
    assert httpx.post(control, json={"printer": {"status": 500}}, headers=source_headers(standin)).status_code == 400
    answer = httpx.post(
        control, json={"roster": {"status": 429, "retry_after": 3, "times": 1}}, headers=source_headers(standin)
    )
    assert answer.status_code == 200
    assert answer.json()["faults"]["roster"]["status"] == 429
    assert standin.state.faults["roster"] == Fault(status=429, retry_after=3, times=1)
    assert httpx.post(control, json={"roster": None}, headers=source_headers(standin)).json()["faults"] == {}


def test_down_refuses_connections_and_up_listens_on_the_same_port(standin: StandinCloud) -> None:
    url = standin.url + roster_path(standin)
    standin.down()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, headers=source_headers(standin))
    standin.up()
    assert standin.url + roster_path(standin) == url
    assert httpx.get(url, headers=source_headers(standin)).status_code == 200


def test_start_and_stop_leave_no_thread(roster_300: Export) -> None:
    before = threading.active_count()
    with StandinCloud(StandinState(roster=roster_300)) as cloud:
        assert cloud.running
    assert not cloud.running
    assert threading.active_count() == before


# -- the attendance endpoint --------------------------------------------------------------------


def test_attendance_is_idempotent_by_event_id(standin: StandinCloud) -> None:
    first = post_events(standin, [event("e-1"), event("e-2", "C2")])
    assert first.status_code == 200
    assert "date" in first.headers
    assert first.json() == {"accepted": ["e-1", "e-2"], "duplicates": [], "rejected": []}
    again = post_events(standin, [event("e-2", "C2"), event("e-3"), event("e-3")])
    assert again.json() == {"accepted": ["e-3"], "duplicates": ["e-2", "e-3"], "rejected": []}
    assert [e["event_id"] for e in standin.state.attendance] == ["e-1", "e-2", "e-3"]
    assert standin.state.attendance_by_id["e-2"]["child_id"] == "C2"
    assert set(standin.state.received_at) == {"e-1", "e-2", "e-3"}
    assert abs(standin.state.received_at["e-1"] - time.time()) < 5


def test_attendance_rejects_what_it_is_told_to(standin: StandinCloud) -> None:
    standin.state.reject_children = {"C2": "child left the center"}
    standin.state.reject_unknown_children = True
    staff = {"event_id": "e-4", "staff_id": "E1", "action": "clock_in", "actor": {"kind": "staff", "id": "E1"}}
    batch = [event("e-1"), event("e-2", "C2"), event("e-3", "C404"), staff]
    answer = post_events(standin, batch).json()
    assert answer["accepted"] == ["e-1", "e-4"]
    assert answer["rejected"] == [
        {"event_id": "e-2", "reason": "child left the center"},
        {"event_id": "e-3", "reason": "unknown child"},
    ]
    assert [e["event_id"] for e in standin.state.attendance] == ["e-1", "e-4"]
    assert len(standin.state.rejected) == 2


@pytest.mark.parametrize(
    ("token", "body", "status"),
    [
        (None, {"events": []}, 401),
        ("source-secret-7f3a91", {"events": []}, 401),  # the roster's token is not the cloud's
        ("cloud-secret-c28e44", {"event": []}, 400),
        ("cloud-secret-c28e44", [], 400),
    ],
)
def test_attendance_needs_the_cloud_token_and_an_events_list(
    standin: StandinCloud, token: str | None, body: Any, status: int
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    assert httpx.post(standin.url + attendance_path(standin), json=body, headers=headers).status_code == status
    assert standin.state.attendance == []


def test_a_status_fault_records_nothing(standin: StandinCloud) -> None:
    standin.state.set_fault("attendance", status=503, times=1)
    assert post_events(standin, [event("e-1")]).status_code == 503
    assert standin.state.attendance == []
    assert post_events(standin, [event("e-1")]).json()["accepted"] == ["e-1"]


def test_a_delay_fault_records_the_events_before_the_client_gives_up(standin: StandinCloud) -> None:
    standin.state.set_fault("attendance", delay_s=5.0, times=1)
    with pytest.raises(httpx.ReadTimeout):
        post_events(standin, [event("e-1")], timeout=0.3)
    assert [e["event_id"] for e in standin.state.attendance] == ["e-1"]  # the cloud got it; we did not hear
    retry = post_events(standin, [event("e-1")])
    assert retry.json() == {"accepted": [], "duplicates": ["e-1"], "rejected": []}


def test_attendance_answers_can_be_garbled(standin: StandinCloud) -> None:
    standin.state.set_fault("attendance", bad_json=True, times=1)
    garbled = post_events(standin, [event("e-1")])
    assert garbled.status_code == 200
    with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
        garbled.json()
    standin.state.set_fault("attendance", break_schema=True, times=1)
    assert post_events(standin, [event("e-2")]).json()["accepted"] == "all of them"
    assert [e["event_id"] for e in standin.state.attendance] == ["e-1", "e-2"]
