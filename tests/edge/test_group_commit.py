"""The door's writer: acts that arrive together share one commit, and still fail alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from edge.group_commit import GroupCommitLoop
from edge.store import Store
from tests.dbenv import holding_the_writer


@pytest.fixture
def table(store: Store) -> Store:
    with store.transaction() as session:
        session.execute(text("CREATE TABLE t (v TEXT NOT NULL UNIQUE)"))
    return store


@pytest.fixture
def commits(table: Store) -> list[int]:
    seen: list[int] = []
    # The door writer's commits only (reads end with a commit too, and so does the held writer).
    event.listen(
        table.engine,
        "commit",
        lambda _conn: seen.extend([1] if threading.current_thread().name == "door-writer" else []),
    )
    return seen


@pytest.fixture
def writer(table: Store) -> Iterator[GroupCommitLoop]:
    loop = GroupCommitLoop(table)
    yield loop
    loop.close()


def insert(value: str) -> Callable[[Connection], str]:
    def write(conn: Connection) -> str:
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": value})
        return value

    return write


def rows(store: Store) -> list[str]:
    with store.read() as session:
        return [row[0] for row in session.execute(text("SELECT v FROM t ORDER BY v"))]


def queued_behind_a_writer(store: Store, writer: GroupCommitLoop, values: list[str]) -> list[Any]:
    """Submits ``values`` while another writer holds the store, so they gather into one batch
    (the first goes alone: the writer had already taken it when it found the store busy)."""
    with holding_the_writer(store):
        first = writer.submit(insert("first"), str.upper)
        time.sleep(0.05)  # the writer has (most likely) taken "first" and waits for the store
        futures = [writer.submit(insert(value), str.upper) for value in values]
    return [first, *futures]


def test_acts_arriving_together_share_one_commit(table: Store, writer: GroupCommitLoop, commits: list[int]) -> None:
    futures = queued_behind_a_writer(table, writer, ["a", "b", "c"])
    assert [f.result(5) for f in futures] == ["FIRST", "A", "B", "C"]
    assert rows(table) == ["a", "b", "c", "first"]
    # "first" alone (or with the others, had the writer not woken yet), then a, b and c
    # together; the other writer wrote nothing. One commit per act would be four.
    assert len(commits) <= 2


def test_an_act_failing_in_a_batch_rolls_back_only_itself(
    table: Store, writer: GroupCommitLoop, commits: list[int]
) -> None:
    futures = queued_behind_a_writer(table, writer, ["a", "first", "c"])  # "first" again: UNIQUE fails
    assert futures[1].result(5) == "A"
    with pytest.raises(Exception, match=r"(?i)unique"):
        futures[2].result(5)
    assert futures[3].result(5) == "C"
    assert rows(table) == ["a", "c", "first"]


def test_a_lone_act_failing_writes_nothing(table: Store, writer: GroupCommitLoop) -> None:
    def half_then_fail(conn: Connection) -> str:
        insert("half")(conn)
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        writer.submit(half_then_fail, str.upper).result(5)
    assert rows(table) == []
    assert writer.submit(insert("after"), str.upper).result(5) == "AFTER"


def test_a_failed_commit_fails_every_act_of_the_batch(table: Store, writer: GroupCommitLoop) -> None:
    def refuse_commit(_conn: Any) -> None:
        if threading.current_thread().name == "door-writer":  # the batch's commit, not the other writer's
            raise RuntimeError("database or disk is full")

    event.listen(table.engine, "commit", refuse_commit)
    try:
        futures = queued_behind_a_writer(table, writer, ["a", "b"])
        for future in futures[1:]:
            with pytest.raises(RuntimeError, match="disk is full"):
                future.result(5)
    finally:
        event.remove(table.engine, "commit", refuse_commit)
    assert "a" not in rows(table)
    assert writer.submit(insert("a"), str.upper).result(5) == "A"


def test_the_answer_comes_only_after_the_commit(table: Store, writer: GroupCommitLoop) -> None:
    seen: list[list[str]] = []
    # What a second connection sees when the answer is made: the act must already be durable.
    future = writer.submit(insert("a"), lambda _v: seen.append(rows(table)))
    future.result(5)
    assert seen == [["a"]]


def test_close_finishes_what_is_queued_then_refuses(table: Store) -> None:
    loop = GroupCommitLoop(table)
    futures = [loop.submit(insert(v), str.upper) for v in ("a", "b")]
    loop.close()
    assert [f.result(0) for f in futures] == ["A", "B"]
    with pytest.raises(RuntimeError, match="closed"):
        loop.submit(insert("c"), str.upper)
