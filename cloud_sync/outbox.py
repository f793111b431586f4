"""The attendance outbox sender: every recorded event reaches the cloud, once, in order.

Events and their outbox rows are written by the door in one transaction; this sender reads
pending rows oldest first, posts them in batches, and marks them delivered (accepted or
duplicate) or rejected (final, kept for staff). Nothing lives only in memory: after a crash,
rows still pending are sent again and the cloud answers those it already has as duplicates
(the event id is the idempotency key).

A failed attempt writes nothing to disk (an outage of days must not wear the SD card): the
error and the back-off live in memory and in ``Connectivity``.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import delete, func, select, update

from cloud_sync.attendance_client import PushError, PushResult
from edge.clock import ClockCheck
from edge.connectivity import Connectivity
from edge.events import EventBus
from edge.models import Alert, OutboxEntry, OutboxState
from edge.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AttendancePoster(Protocol):
    def post(self, events: Sequence[dict[str, Any]]) -> PushResult: ...


@dataclass
class BatchOutcome:
    sent: int = 0
    delivered: int = 0
    duplicates: int = 0
    rejected: int = 0
    unacknowledged: int = 0
    error: PushError | None = None


@dataclass
class SenderStats:
    """Counters since start, for /metrics."""

    delivered: int = 0
    duplicates: int = 0
    rejected: int = 0
    failed_attempts: int = 0
    batches: int = 0


@dataclass(frozen=True)
class OutboxStatus:
    pending: int
    oldest_pending_age_s: float | None
    failed: int  # rejected by the cloud: final, shown to staff
    delivered: int  # rows still kept (delivered rows are pruned after the retention time)
    last_error: str | None
    last_success: dt.datetime | None
    cloud: str

    def as_json(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "oldest_pending_age_s": None if self.oldest_pending_age_s is None else round(self.oldest_pending_age_s, 3),
            "failed": self.failed,
            "delivered": self.delivered,
            "last_error": self.last_error,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "cloud": self.cloud,
        }


def outbox_status(store: Store, connectivity: Connectivity, now: dt.datetime) -> OutboxStatus:
    with store.read() as session:
        counts = dict(session.execute(select(OutboxEntry.state, func.count()).group_by(OutboxEntry.state)).all())
        oldest = session.scalar(
            select(func.min(OutboxEntry.created_at)).where(OutboxEntry.state == OutboxState.PENDING)
        )
        last_delivered = session.scalar(select(func.max(OutboxEntry.delivered_at)))
    health = connectivity.get()
    last_success = max((t for t in (health.last_success, last_delivered) if t is not None), default=None)
    return OutboxStatus(
        pending=counts.get(OutboxState.PENDING, 0),
        oldest_pending_age_s=(now - oldest).total_seconds() if oldest else None,
        failed=counts.get(OutboxState.REJECTED, 0),
        delivered=counts.get(OutboxState.DELIVERED, 0),
        last_error=health.last_error,
        last_success=last_success,
        cloud=health.state.value,
    )


@dataclass
class _Backoff:
    base_s: float
    max_s: float
    jitter: Callable[[float, float], float]
    failures: int = field(default=0)

    def next_delay(self, retry_after_s: float | None) -> float:
        self.failures += 1
        ceiling = min(self.max_s, self.base_s * 2 ** (self.failures - 1))
        delay = self.jitter(0.0, ceiling)  # full jitter: a fleet coming back does not retry in step
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_s * 10))
        return delay

    def reset(self) -> None:
        self.failures = 0


class OutboxSender:
    """Runs until stopped (``run``), or drains once (``drain``: the CLI's ``outbox drain``)."""

    def __init__(
        self,
        store: Store,
        poster: AttendancePoster,
        *,
        connectivity: Connectivity,
        clock_check: ClockCheck | None = None,
        events: EventBus | None = None,
        clock: Clock = utc_now,
        batch_size: int = 200,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 60.0,
        refused_pause_s: float = 600.0,
        idle_poll_s: float = 30.0,
        retention: dt.timedelta = dt.timedelta(days=7),
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.store = store
        self.poster = poster
        self.connectivity = connectivity
        self.clock_check = clock_check
        self.events = events
        self.clock = clock
        self.batch_size = batch_size
        self.refused_pause_s = refused_pause_s
        self.idle_poll_s = idle_poll_s
        self.retention = retention
        self.stats = SenderStats()
        self._backoff = _Backoff(backoff_base_s, backoff_max_s, jitter)
        self._wake = threading.Event()
        self._last_prune: dt.datetime | None = None

    def close(self) -> None:
        close = getattr(self.poster, "close", None)
        if callable(close):
            close()

    # -- waking ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Called after each commit of an event: no polling delay on the happy path."""
        self._wake.set()

    # -- one batch ---------------------------------------------------------------------------

    def _pending(self) -> list[tuple[str, dict[str, Any]]]:
        with self.store.read() as session:
            rows = session.execute(
                select(OutboxEntry.event_id, OutboxEntry.payload)
                .where(OutboxEntry.state == OutboxState.PENDING)
                .order_by(OutboxEntry.id)
                .limit(self.batch_size)
            ).all()
        return [(event_id, payload) for event_id, payload in rows]

    def send_batch(self) -> BatchOutcome:
        """Send the oldest pending events once; raises nothing (the outcome carries the error)."""
        batch = self._pending()
        outcome = BatchOutcome(sent=len(batch))
        if not batch:
            return outcome
        try:
            result = self.poster.post([payload for _, payload in batch])
        except PushError as err:
            outcome.error = err
            self._note_cloud_date(err.cloud_date)
            self._failed(err)
            return outcome
        self._note_cloud_date(result.cloud_date)
        self._mark(batch, result, outcome)
        return outcome

    def _note_cloud_date(self, cloud_date: dt.datetime | None) -> None:
        if cloud_date is not None and self.clock_check is not None:
            self.clock_check.note_cloud_date(cloud_date)

    def _mark(self, batch: list[tuple[str, dict[str, Any]]], result: PushResult, outcome: BatchOutcome) -> None:
        sent_ids = {event_id for event_id, _ in batch}
        delivered = (set(result.accepted) | set(result.duplicates)) & sent_ids
        rejected = {k: v for k, v in result.rejected.items() if k in sent_ids and k not in delivered}
        now = self.clock()
        with self.store.transaction() as session:
            if delivered:
                session.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.event_id.in_(delivered))
                    .values(
                        state=OutboxState.DELIVERED,
                        delivered_at=now,
                        attempts=OutboxEntry.attempts + 1,
                        last_error=None,
                    )
                )
            for event_id, reason in rejected.items():
                session.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.event_id == event_id)
                    .values(state=OutboxState.REJECTED, reject_reason=reason, attempts=OutboxEntry.attempts + 1)
                )
            if rejected:
                session.add(
                    Alert(
                        at=now,
                        kind="attendance_rejected",
                        message=f"The cloud rejected {len(rejected)} attendance event(s): "
                        + "; ".join(sorted(set(rejected.values())))[:500],
                    )
                )
        outcome.delivered = len(set(result.accepted) & sent_ids)
        outcome.duplicates = len(delivered) - outcome.delivered
        outcome.rejected = len(rejected)
        outcome.unacknowledged = len(sent_ids) - len(delivered) - len(rejected)
        self.stats.batches += 1
        self.stats.delivered += outcome.delivered
        self.stats.duplicates += outcome.duplicates
        self.stats.rejected += outcome.rejected
        self._backoff.reset()
        if self.connectivity.record_success(now):
            log.info("cloud reachable: attendance is flowing")
            self._publish({"cloud": "online"})
        if rejected:
            log.warning("the cloud rejected %d attendance event(s)", len(rejected))
            self._publish({"rejected": len(rejected)})
        if outcome.unacknowledged:
            log.warning("the cloud did not acknowledge %d event(s); they stay pending", outcome.unacknowledged)

    def _failed(self, err: PushError) -> None:
        self.stats.failed_attempts += 1
        now = self.clock()
        if self.connectivity.record_failure(now, str(err), refused=err.auth):
            # Log and announce a change of state once, not every attempt.
            log.warning("attendance not delivered: %s; check-ins are saved and will be sent", err)
            self._publish({"cloud": "refused" if err.auth else "offline", "error": str(err)})
            if err.auth:
                with self.store.transaction() as session:
                    session.add(
                        Alert(
                            at=now,
                            kind="cloud_refused",
                            message="The cloud refused this appliance's token: attendance is saved here "
                            "but not sent until the token is fixed (CHECKIN_EDGE_CLOUD_TOKEN).",
                        )
                    )

    def _publish(self, data: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish("outbox", data)

    # -- loops -----------------------------------------------------------------------------

    def drain(self, max_batches: int | None = None) -> BatchOutcome:
        """Send until nothing is pending or an attempt fails; totals of what happened."""
        total = BatchOutcome()
        batches = 0
        while max_batches is None or batches < max_batches:
            outcome = self.send_batch()
            batches += 1
            for name in ("sent", "delivered", "duplicates", "rejected", "unacknowledged"):
                setattr(total, name, getattr(total, name) + getattr(outcome, name))
            if outcome.error is not None:
                total.error = outcome.error
                break
            if outcome.sent < self.batch_size or outcome.unacknowledged == outcome.sent:
                break
        return total

    def prune(self) -> int:
        """Delivered outbox rows older than the retention time go; attendance stays."""
        cutoff = self.clock() - self.retention
        with self.store.transaction() as session:
            result = session.execute(
                delete(OutboxEntry).where(OutboxEntry.state == OutboxState.DELIVERED, OutboxEntry.delivered_at < cutoff)
            )
        pruned = int(getattr(result, "rowcount", 0) or 0)
        if pruned:
            log.info("pruned %d delivered outbox rows", pruned)
        return pruned

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set (set it, then ``wake()``)."""
        log.info("outbox sender started")
        while not stop.is_set():
            self._wake.clear()
            try:
                outcome = self.drain()
                self._maybe_prune()
            except Exception:
                log.exception("outbox sender error; retrying")
                outcome = BatchOutcome(error=PushError("internal error"))
            if outcome.error is not None:
                if outcome.error.auth:
                    delay = self.refused_pause_s
                else:
                    delay = self._backoff.next_delay(outcome.error.retry_after_s)
                # During back-off new check-ins do not make us hammer a cloud that is down.
                stop.wait(delay)
            else:
                self._wake.wait(self.idle_poll_s)
        log.info("outbox sender stopped")

    def _maybe_prune(self) -> None:
        now = self.clock()
        if self._last_prune is None or now - self._last_prune > dt.timedelta(hours=1):
            self._last_prune = now
            self.prune()
