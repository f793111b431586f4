"""Defaults with their units in their names. Settings override some of them (edge.config)."""

from __future__ import annotations

PACIFIC_TZ = "America/Los_Angeles"
SYNC_SLOTS_PACIFIC = ("03:00", "09:00", "15:00", "23:00")

PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 6

PIN_KEY_FILE = "pin.key"
PIN_KEY_BYTES = 32

SQLITE_BUSY_TIMEOUT_MS = 5_000

ROSTER_PAGE_LIMIT = 1_000
ROSTER_HTTP_TIMEOUT_S = 20.0
ROSTER_MAX_ATTEMPTS = 5
ROSTER_BACKOFF_BASE_S = 0.5
ROSTER_BACKOFF_MAX_S = 30.0
# A Retry-After beyond this is not waited out inside one run: the run fails and the next slot retries.
ROSTER_RETRY_AFTER_MAX_S = 120.0

# The value a fresh config file carries; start-up refuses it outside demo mode.
PLACEHOLDER_SECRET = "change-me"  # noqa: S105
