"""Public, aggregate numbers only: whether the hub answers, the roster sync, the outbox, the clock.

No names, ids or PINs: a monitoring system on the LAN reads these without a login.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cloud_sync.outbox import outbox_status
from edge.disk import disk_status
from edge.roster import recent_sync_runs
from kiosk_ui.deps import ReadSession, ServicesDep
from kiosk_ui.services import Services

router = APIRouter()
router.tags = ["public"]

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@router.get("/healthz")
def healthz(session: ReadSession, services: ServicesDep) -> dict[str, Any]:
    runs = recent_sync_runs(session=session, limit=1)
    last = runs[0] if runs else None
    drift = services.clock_check.drift_s()
    return {
        "status": "ok",
        "roster_sync": None
        if last is None
        else {
            "outcome": last.outcome.value,
            "started_at": last.started_at.isoformat(),
            "finished_at": last.finished_at.isoformat() if last.finished_at else None,
        },
        "outbox": outbox_status(services.store, services.connectivity, _now()).as_json(),
        "clock": {"synced": services.clock_check.synced(), "cloud_drift_s": None if drift is None else round(drift, 3)},
        "disk": _disk(services),
        # A write the disk refused since the last one that worked (edge.disk.StorageAlarm).
        "storage": {"fault": None} if (problem := services.storage.current()) is None else problem.as_json(),
    }


def _disk(services: Services) -> dict[str, Any] | None:
    """Free space on the data directory's disk (statvfs: microseconds, no I/O to speak of)."""
    config = services.config
    try:
        status = disk_status(
            config.data_dir,
            min_free_bytes=int(config.low_disk_free_mb * 1024 * 1024),
            min_free_ratio=config.low_disk_free_percent / 100,
        )
    except OSError:
        return None
    return status.as_json()


class HubCollector(Collector):
    """Reads the numbers at scrape time: nothing to keep in step on the hot path."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        status = outbox_status(self.services.store, self.services.connectivity, _now())
        yield GaugeMetricFamily("checkin_edge_outbox_pending", "Attendance events not yet delivered", status.pending)
        yield GaugeMetricFamily(
            "checkin_edge_outbox_oldest_pending_seconds",
            "Age of the oldest undelivered event (0 when none)",
            status.oldest_pending_age_s or 0.0,
        )
        yield GaugeMetricFamily("checkin_edge_outbox_failed", "Events the cloud rejected (final)", status.failed)
        yield GaugeMetricFamily(
            "checkin_edge_cloud_online",
            "1 when the last attempt to reach the cloud succeeded",
            status.cloud == "online",
        )
        yield GaugeMetricFamily(
            "checkin_edge_clock_synced", "1 when the clock is known good", self.services.clock_check.synced()
        )
        sender = self.services.outbox
        if sender is not None:
            for name, value in (
                ("delivered", sender.stats.delivered),
                ("duplicates", sender.stats.duplicates),
                ("rejected", sender.stats.rejected),
                ("failed_attempts", sender.stats.failed_attempts),
            ):
                yield CounterMetricFamily(
                    f"checkin_edge_outbox_{name}", f"Outbox {name.replace('_', ' ')} since start", value
                )


def metrics_registry(services: Services) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(services))
    return registry


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics), media_type=PROMETHEUS_TEXT)
