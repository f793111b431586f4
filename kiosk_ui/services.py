"""What the web layer is handed: built by the composition root (kiosk_ui/cli.py)."""

from __future__ import annotations

from dataclasses import dataclass

from cloud_sync.outbox import OutboxSender
from cloud_sync.roster_sync import RosterSyncService
from cloud_sync.schedule import SyncSchedule
from edge.clock import ClockCheck
from edge.config import Config
from edge.connectivity import Connectivity
from edge.events import EventBus
from edge.pins import PinHasher
from edge.store import Store


@dataclass
class Services:
    config: Config
    store: Store
    roster_sync: RosterSyncService
    schedule: SyncSchedule
    hasher: PinHasher
    events: EventBus
    clock_check: ClockCheck
    connectivity: Connectivity
    outbox: OutboxSender | None = None  # None when no cloud is configured: events wait in the outbox

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        self.store.close()
