"""Group commit: the door's writes share one durable commit when they arrive together.

Each check-in must be on disk before its answer goes back, and on an SD card one fsync can cost
milliseconds: one commit per act would cap the door at a few hundred acts a second however fast
the rest is, and a writer on the event loop would stall every page while it waited. So acts are
queued to one thread, which runs whatever has gathered since its last commit in one transaction,
each act in a savepoint of its own (one act failing rolls back only itself), commits once, and
only then answers each. A lone act is committed at once: nothing waits to fill a batch.

Callers get a ``concurrent.futures.Future``: threads wait on ``result()``, the event loop on
``asyncio.wrap_future``. The thread starts with the first act and ends with ``close()``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from edge import const
from edge.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Job(Generic[T, R]):
    write: Callable[[Connection], T]
    then: Callable[[T], R]  # after the commit: what the caller is answered with
    future: Future[R] = field(default_factory=Future)
    written: T | None = None
    failed: BaseException | None = None


_STOP = object()


class GroupCommitLoop:
    """The door's writer: acts in, one transaction and one fsync per batch, answers out."""

    def __init__(self, store: Store, max_batch: int = const.GROUP_COMMIT_MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        # True while this loop holds the store's writer: a short hold, unlike a roster sync's.
        self.committing = False

    def submit(self, write: Callable[[Connection], T], then: Callable[[T], R]) -> Future[R]:
        """``write(connection)`` inside the next batch's transaction; the future holds ``then(result)``,
        set once the batch is durable (or the exception either raised, or the commit's)."""
        if self._closed:
            raise RuntimeError("the door's writer is closed")
        job: _Job[T, R] = _Job(write, then)
        self._ensure_thread()
        self._queue.put(job)
        return job.future

    def close(self, timeout_s: float = 10.0) -> None:
        """Finishes the acts already queued, then stops the thread."""
        self._closed = True
        with self._start_lock:
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout_s)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="door-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Job[Any, Any]] = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Job[Any, Any]]) -> None:
        try:
            with self.store.writing() as conn:
                self.committing = True
                for job in batch:
                    if len(batch) == 1:  # alone: its failure rolls the transaction back anyway
                        job.written = job.write(conn)
                        continue
                    try:
                        with conn.begin_nested():
                            job.written = job.write(conn)
                    except Exception as exc:  # this act only; the others still commit
                        job.failed = exc
        except BaseException as exc:  # the commit itself (a full disk, say): nothing of the batch holds
            self.committing = False
            for job in batch:
                job.future.set_exception(job.failed or exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.committing = False
        for job in batch:
            if job.failed is not None:
                job.future.set_exception(job.failed)
                continue
            try:
                job.future.set_result(job.then(job.written))
            except Exception as exc:
                log.exception("after a committed act")
                job.future.set_exception(exc)
