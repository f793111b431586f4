"""The stand-in cloud: a real HTTP server that plays the back office's roster export and the
cloud's attendance receiver, with generated families, for the demo, the tests and the benches.
"""

from __future__ import annotations

from cloud_sync.standin.generator import (
    cloud_private_key,
    demo_people,
    device_private_key,
    generate_roster,
)
from cloud_sync.standin.phone import issue_app_code
from cloud_sync.standin.server import Fault, StandinCloud, StandinState, create_standin_app

__all__ = [
    "Fault",
    "StandinCloud",
    "StandinState",
    "cloud_private_key",
    "create_standin_app",
    "demo_people",
    "device_private_key",
    "generate_roster",
    "issue_app_code",
]
