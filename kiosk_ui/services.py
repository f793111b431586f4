"""What the web layer is handed: built by the composition root (kiosk_ui/cli.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud_sync.outbox import OutboxSender
from cloud_sync.roster_sync import RosterSource, RosterSyncService
from cloud_sync.schedule import SyncSchedule
from edge.badges import BadgeService
from edge.checkin import CheckinService
from edge.clock import ClockCheck
from edge.config import Config
from edge.connectivity import Connectivity
from edge.disk import StorageAlarm
from edge.events import EventBus
from edge.pings import PingService
from edge.pins import PinHasher
from edge.staff import StaffAccounts
from edge.stations import StationAuthenticator
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
    checkin: CheckinService  # the door: identify, then act (edge.checkin)
    stations: StationAuthenticator  # station tokens and paired screens
    badges: BadgeService  # printed QR badges: issue, list, revoke (edge.badges)
    pings: PingService  # phones at the fence: pings, arrivals, app check-in (edge.pings)
    staff: StaffAccounts  # dashboard logins (edge.staff)
    outbox: OutboxSender | None = None  # None when no cloud is configured: events wait in the outbox
    roster_source: RosterSource | None = None  # the dashboard's "Sync now"; None when no source is set
    storage: StorageAlarm = field(default_factory=StorageAlarm)  # a write the disk refused (edge.disk)

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        self.pings.close()  # the last accepted fixes and phone states
        self.checkin.writer.close()  # acts already queued are committed first
        self.store.close()
