"""The outbox sender against the stand-in cloud as a real server: outages, storms, slow answers,
rejections, a refused token, ordering, and the wake-up that makes delivery immediate."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from cloud_sync.attendance_client import AttendanceClient
from cloud_sync.outbox import OutboxSender, outbox_status
from cloud_sync.standin.server import StandinCloud
from edge.attendance import record_event
from edge.clock import ClockCheck
from edge.connectivity import CloudState, Connectivity
from edge.events import EventBus
from edge.models import (
    Action,
    ActorKind,
    Alert,
    AttendanceEvent,
    Method,
    OutboxEntry,
    OutboxState,
    SubjectKind,
)
from edge.store import Store
from tests.cloud_sync.conftest import STANDIN_CENTER

CHECKS = (Action.CHECK_IN, Action.CHECK_OUT)


def record(store: Store, child_id: str, n: int = 1, *, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        with store.transaction() as session:
            event = record_event(
                session,
                subject_kind=SubjectKind.CHILD,
                subject_id=child_id,
                action=CHECKS[i % 2],
                method=Method.PIN,
                actor_kind=ActorKind.PAYER,
                actor_id="P1",
                station_id="front-door",
                occurred_at=dt.datetime.now(dt.UTC),
                clock_synced=True,
            )
            ids.append(event.id)
    return ids


def states(store: Store) -> dict[str, OutboxState]:
    with store.read() as session:
        return dict(session.execute(select(OutboxEntry.event_id, OutboxEntry.state)).all())


@pytest.fixture
def connectivity() -> Connectivity:
    return Connectivity()


@pytest.fixture
def poster(standin: StandinCloud) -> Iterator[AttendanceClient]:
    client = AttendanceClient(standin.url, STANDIN_CENTER, standin.state.cloud_token, timeout_s=0.4)
    yield client
    client.close()


@pytest.fixture
def sender(store: Store, poster: AttendanceClient, connectivity: Connectivity) -> OutboxSender:
    return OutboxSender(
        store, poster, connectivity=connectivity, clock_check=ClockCheck(), events=EventBus(), batch_size=50
    )


def cloud_ids(standin: StandinCloud) -> list[str]:
    return [e["event_id"] for e in standin.state.attendance]


def test_events_are_delivered_once_and_marked(store: Store, sender: OutboxSender, standin: StandinCloud) -> None:
    ids = record(store, "C1", 5)
    outcome = sender.drain()
    assert (outcome.sent, outcome.delivered, outcome.error) == (5, 5, None)
    assert cloud_ids(standin) == ids
    assert set(states(store).values()) == {OutboxState.DELIVERED}
    payload = standin.state.attendance_by_id[ids[0]]
    assert payload["child_id"] == "C1"
    assert payload["action"] == "check_in"
    assert payload["actor"] == {"kind": "payer", "id": "P1"}
    assert payload["occurred_at"].endswith("Z")
    assert sender.drain().sent == 0  # nothing left: no request at all


def test_cloud_down_at_start_then_up(
    store: Store, sender: OutboxSender, standin: StandinCloud, connectivity: Connectivity
) -> None:
    ids = record(store, "C1", 3)
    standin.down()
    try:
        outcome = sender.drain()
        assert outcome.error is not None
        assert "could not be reached" in str(outcome.error)
        assert connectivity.get().state is CloudState.OFFLINE
        assert set(states(store).values()) == {OutboxState.PENDING}
        ids += record(store, "C1", 2, start=3)  # the door keeps recording meanwhile
    finally:
        standin.up()
    assert sender.drain().delivered == 5
    assert cloud_ids(standin) == ids
    assert connectivity.get().state is CloudState.ONLINE


def test_5xx_storm_then_recovery_delivers_each_once(store: Store, sender: OutboxSender, standin: StandinCloud) -> None:
    ids = record(store, "C1", 4)
    standin.state.set_fault("attendance", status=503, times=3)
    errors = 0
    for _ in range(10):
        outcome = sender.drain()
        if outcome.error is None:
            break
        errors += 1
    assert errors == 3
    assert cloud_ids(standin) == ids
    assert sender.stats.failed_attempts == 3


def test_answer_lost_to_a_timeout_is_retried_as_a_duplicate(
    store: Store, sender: OutboxSender, standin: StandinCloud
) -> None:
    ids = record(store, "C1", 3)
    # The cloud records the batch, then answers too late: we never hear it.
    standin.state.set_fault("attendance", delay_s=1.5, times=1)
    first = sender.drain()
    assert first.error is not None
    assert set(states(store).values()) == {OutboxState.PENDING}
    assert cloud_ids(standin) == ids  # the cloud has them already
    second = sender.drain()
    assert (second.delivered, second.duplicates) == (0, 3)
    assert cloud_ids(standin) == ids  # each exactly once
    assert set(states(store).values()) == {OutboxState.DELIVERED}


def test_429_retry_after_is_honoured(store: Store, sender: OutboxSender, standin: StandinCloud) -> None:
    record(store, "C1", 1)
    standin.state.set_fault("attendance", status=429, retry_after=7, times=1)
    outcome = sender.drain()
    assert outcome.error is not None
    assert outcome.error.retry_after_s == 7
    assert sender._backoff.next_delay(outcome.error.retry_after_s) >= 7
    assert sender.drain().delivered == 1


def test_backoff_grows_exponentially_with_full_jitter() -> None:
    from cloud_sync.outbox import _Backoff

    ceilings: list[float] = []

    def jitter(low: float, high: float) -> float:
        ceilings.append(high)
        return high

    backoff = _Backoff(0.5, 8.0, jitter)
    delays = [backoff.next_delay(None) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    backoff.reset()
    assert backoff.next_delay(None) == 0.5


def test_rejected_event_among_accepted_is_final_and_kept(
    store: Store, sender: OutboxSender, standin: StandinCloud
) -> None:
    good = record(store, "C1", 2)
    bad = record(store, "C404", 1)
    standin.state.reject_children = {"C404": "unknown child"}
    outcome = sender.drain()
    assert (outcome.delivered, outcome.rejected) == (2, 1)
    assert cloud_ids(standin) == good
    with store.read() as session:
        row = session.scalars(select(OutboxEntry).where(OutboxEntry.event_id == bad[0])).one()
        assert (row.state, row.reject_reason) == (OutboxState.REJECTED, "unknown child")
        assert session.get(AttendanceEvent, bad[0]) is not None
        alerts = list(session.scalars(select(Alert)))
    assert [a.kind for a in alerts] == ["attendance_rejected"]
    assert "unknown child" in alerts[0].message
    requests = standin.state.requests["attendance"]
    assert sender.drain().sent == 0
    assert standin.state.requests["attendance"] == requests  # never retried in a loop


def test_refused_token_stops_and_alerts_but_keeps_recording(
    store: Store, standin: StandinCloud, connectivity: Connectivity
) -> None:
    wrong = AttendanceClient(standin.url, STANDIN_CENTER, "not-the-token", timeout_s=0.4)
    try:
        sender = OutboxSender(store, wrong, connectivity=connectivity, events=EventBus())
        record(store, "C1", 2)
        outcome = sender.drain()
    finally:
        wrong.close()
    assert outcome.error is not None
    assert outcome.error.auth
    assert connectivity.get().state is CloudState.REFUSED
    with store.read() as session:
        assert [a.kind for a in session.scalars(select(Alert))] == ["cloud_refused"]
    assert set(states(store).values()) == {OutboxState.PENDING}
    assert standin.state.attendance == []
    record(store, "C1", 1, start=2)
    assert len(states(store)) == 3


def test_each_childs_events_arrive_in_order_across_batches(
    store: Store, poster: AttendanceClient, connectivity: Connectivity, standin: StandinCloud
) -> None:
    sender = OutboxSender(store, poster, connectivity=connectivity, batch_size=3)
    expected: dict[str, list[str]] = {"C1": [], "C2": []}
    for i in range(5):
        for child in ("C1", "C2"):
            expected[child] += record(store, child, 1, start=i)
    standin.state.set_fault("attendance", status=500, times=1, skip=1)  # a failure mid-way
    while sender.drain().error is not None:
        pass
    for child, ids in expected.items():
        got = [e["event_id"] for e in standin.state.attendance if e["child_id"] == child]
        assert got == ids
        actions = [standin.state.attendance_by_id[i]["action"] for i in got]
        assert actions == ["check_in", "check_out"] * 2 + ["check_in"]


def test_run_loop_delivers_the_moment_an_event_is_committed(
    store: Store, sender: OutboxSender, standin: StandinCloud
) -> None:
    sender.idle_poll_s = 60  # only the wake-up can make it send within the test
    stop = threading.Event()
    thread = threading.Thread(target=sender.run, args=(stop,))
    thread.start()
    try:
        time.sleep(0.1)
        (event_id,) = record(store, "C1", 1)
        sender.wake()
        deadline = time.monotonic() + 5
        while event_id not in standin.state.attendance_by_id and time.monotonic() < deadline:
            time.sleep(0.005)
        assert event_id in standin.state.attendance_by_id
    finally:
        stop.set()
        sender.wake()
        thread.join(5)
    assert not thread.is_alive()


def test_recording_is_not_slowed_while_the_sender_waits_on_the_cloud(
    store: Store, sender: OutboxSender, standin: StandinCloud
) -> None:
    record(store, "C1", 1)
    standin.state.set_fault("attendance", delay_s=3.0, times=1)
    thread = threading.Thread(target=sender.drain)
    thread.start()
    try:
        time.sleep(0.1)  # the POST is in flight
        record(store, "C2", 1)
        # Recorded while the sender still waits for the cloud: it holds no lock the door needs.
        assert thread.is_alive()
    finally:
        thread.join(10)


def test_status_and_retention(
    store: Store, sender: OutboxSender, standin: StandinCloud, connectivity: Connectivity
) -> None:
    record(store, "C1", 3)
    standin.state.reject_children = {"C9": "unknown child"}
    record(store, "C9", 1)
    now = dt.datetime.now(dt.UTC)
    before = outbox_status(store, connectivity, now + dt.timedelta(seconds=30))
    assert before.pending == 4
    assert before.oldest_pending_age_s is not None
    assert before.oldest_pending_age_s >= 30
    sender.drain()
    after = outbox_status(store, connectivity, now)
    assert (after.pending, after.failed, after.delivered, after.cloud) == (0, 1, 3, "online")
    assert after.last_success is not None
    sender.clock = lambda: now + dt.timedelta(days=8)
    assert sender.prune() == 3
    with store.read() as session:
        assert len(list(session.scalars(select(AttendanceEvent)))) == 4  # attendance is kept
        assert len(list(session.scalars(select(OutboxEntry)))) == 1  # the rejected row stays


def test_the_clouds_date_is_a_second_opinion_on_the_clock(store: Store, poster: AttendanceClient) -> None:
    check = ClockCheck(timesync_flag=None)
    sender = OutboxSender(store, poster, connectivity=Connectivity(), clock_check=check)
    record(store, "C1", 1)
    sender.drain()
    assert check.drift_s() is not None
    assert abs(check.drift_s() or 0) < 5
    assert check.synced()
    check.note_cloud_date(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    assert not check.synced()
