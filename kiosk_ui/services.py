"""What the web layer is handed: built by the composition root (kiosk_ui/cli.py)."""

from __future__ import annotations

from dataclasses import dataclass

from cloud_sync.roster_sync import RosterSyncService
from cloud_sync.schedule import SyncSchedule
from edge.config import Config
from edge.store import Store


@dataclass
class Services:
    config: Config
    store: Store
    roster_sync: RosterSyncService
    schedule: SyncSchedule
