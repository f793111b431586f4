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

# -- the door (edge.checkin, edge.tickets, edge.lockout) ------------------------------------------
# A ticket proves "this person identified at this station a moment ago"; short enough that a
# screen left open is harmless, long enough for a parent juggling a toddler and a bag.
TICKET_TTL_S = 120.0
# Tickets live in memory only; beyond this many the oldest go first (a flood cannot grow memory).
TICKET_MAX_OPEN = 5_000
# The same person doing the same thing to the same child again within this window (a second tap
# on a new ticket, a scanner reading the same code twice) gets the first event back, not a refusal.
DEDUP_WINDOW_S = 10.0
# Acts sharing one commit at most (edge/group_commit.py): bounds how long the first one waits.
GROUP_COMMIT_MAX_BATCH = 64

LOCKOUT_MAX_FAILURES = 5  # wrong PINs at one station...
LOCKOUT_WINDOW_S = 60.0  # ...within this long lock the pad
LOCKOUT_BASE_S = 30.0  # for this long, doubling with each further lockout
LOCKOUT_MAX_S = 15 * 60.0  # but never longer: a family must still get in
LOCKOUT_RESET_S = 60 * 60.0  # an hour without a lockout starts the doubling over

# A staff override's reason, as typed by a person.
OVERRIDE_REASON_MAX_CHARS = 500

# -- the station API (kiosk_ui.routes.api) --------------------------------------------------------
API_MAX_BODY_BYTES = 16 * 1024
STATION_KEY_FILE = "station.key"  # signs the pairing cookie of remote kiosk screens
STATION_COOKIE = "station"
STATION_COOKIE_MAX_AGE_S = 5 * 365 * 24 * 3600  # a paired screen stays paired

# -- QR tokens (edge.tokens, edge.badges) ---------------------------------------------------------
APP_CODE_TTL_S = 90  # an app code the cloud issues: a screenshot is worthless a minute and a half later
BADGE_TTL_DAYS = 365  # a printed badge, unless revoked first
TOKEN_CLOCK_TOLERANCE_S = 30  # the phone's, the cloud's and this appliance's clocks may disagree by this much
BADGE_KEY_FILE = "badge.key"  # the appliance's Ed25519 private key (raw 32 bytes, 0600) that signs badges

# -- phones at the fence (edge.geofence, edge.pings, kiosk_ui.routes.geofence) ---------------------
ARRIVING_M = 800.0  # the arriving ring's default width around the on-site area
ARRIVING_MIN_M = 50.0
ARRIVING_MAX_M = 5_000.0
# A sane on-site area: at least a building's doorstep, at most a campus; one site, not a town.
FENCE_MIN_AREA_M2 = 25.0
FENCE_MAX_AREA_M2 = 1_000_000.0
FENCE_MAX_EXTENT_M = 3_000.0
FENCE_MAX_VERTICES = 10_000
# A fix vaguer than this says nothing about being on site: the answer is "uncertain".
MAX_ACCURACY_M = 100.0
# The share of a fix's accuracy circle that must lie inside to enter on_site (0.5 to 1).
ONSITE_MIN_SHARE = 1.0
# Leaving on_site needs the whole circle this far outside the line (hysteresis).
ONSITE_EXIT_MARGIN_M = 5.0
# Leaving the arriving ring needs the centre this far beyond it (hysteresis).
ARRIVING_EXIT_MARGIN_M = 50.0
# A change of state takes effect once the fixes have pointed to it this long (a bouncing fix).
MIN_DWELL_S = 10.0
# After this long without a fix, a phone's previous state is forgotten: the next fix decides alone.
TRACK_GAP_S = 300.0
MAX_FIX_AGE_S = 120.0  # an older fix is stale; so is an app check-in's latest fix
FUTURE_FIX_TOLERANCE_S = 30.0  # a phone's clock may run this far ahead
MAX_SPEED_KMH = 200.0  # faster than this since the last accepted fix is an impossible jump
FIX_RETENTION_H = 12.0  # accepted fixes (people's locations) are deleted after this long
FIX_FLUSH_S = 5.0  # accepted fixes are written in one transaction at most this often (SD card)
FIX_PRUNE_INTERVAL_S = 600.0
FIX_BUFFER_MAX = 20_000  # fixes waiting for a write, if the database is unavailable; oldest dropped
DEVICE_CACHE_TTL_S = 30.0  # a phone removed by a roster sync is refused within this long
DEVICE_CACHE_MAX = 10_000
FENCE_RELOAD_S = 10.0  # a running hub notices `geofence set` (another process) within this long
ARRIVALS_KEEP_S = 30 * 60.0  # an arrival notice stays on the list this long after its last change
ARRIVALS_MAX = 200
GEOFENCE_MAX_BODY_BYTES = 4 * 1024  # a ping is ~200 bytes; an app check-out naming 30 children ~1 KB
APP_STATION_ID = "phone-app"  # the station id of app check-ins and check-outs (attendance, audit)

# -- the appliance (edge.disk, edge.backup, edge.watchdog) ----------------------------------------
# Low disk: warn staff while there is still room for weeks of check-ins (a day's attendance at a
# big center is well under 1 MB), so someone acts long before SQLite fails to write.
LOW_DISK_MIN_FREE_BYTES = 200 * 1024 * 1024  # below this many bytes free on the data directory's disk...
LOW_DISK_MIN_FREE_RATIO = 0.05  # ...or below this share of it, the disk is low
DISK_CHECK_INTERVAL_S = 60.0  # statvfs is microseconds; a minute is early enough
BACKUP_KEEP = 14  # nightly backups kept (two weeks)
BACKUP_DIR_NAME = "backups"  # under data_dir unless backup_dir is set

# -- staff logins and the dashboard (edge.staff, kiosk_ui.auth) -----------------------------------
STAFF_LOGIN_MAX_FAILURES = 5  # wrong passwords for one username from one client...
STAFF_LOGIN_LOCKOUT_S = 5 * 60.0  # ...lock that pair out this long (and the window they are counted in)
STAFF_PASSWORD_MIN_CHARS = 10
STAFF_PASSWORD_MAX_CHARS = 1_024  # argon2 hashes anything; a cap keeps a megabyte "password" off the CPU
STAFF_SESSION_IDLE_S = 12 * 3600.0  # a tablet left on the wall all day stays logged in...
STAFF_SESSION_MAX_S = 24 * 3600.0  # ...but not past a day
STAFF_SESSIONS_MAX = 1_000  # sessions live in memory; past this many the oldest go first
CLOSING_TIME = "18:30"  # the center's closing time (its own zone): the end-of-day exceptions start here
DASHBOARD_STATION_ID = "dashboard"  # the station id of staff overrides (attendance, audit)

# -- the camera scanner (edge.scanner, edge.camera) -----------------------------------------------
SCAN_DEBOUNCE_S = 5.0  # the same code seen again within this long of its last sighting is the same scan
SCAN_FPS = 10.0  # frames decoded per second at most: a parent waits 100 ms at worst, a Pi idles
SCAN_HEALTH_INTERVAL_S = 10.0  # how often the scanner tells the hub it is alive (and how well)
SCAN_STALL_S = 5.0  # a camera that delivers nothing this long is treated as gone
SCAN_BACKOFF_BASE_S = 0.5  # reopening a camera that is gone: first wait...
SCAN_BACKOFF_MAX_S = 30.0  # ...doubling up to this
SCAN_POST_TIMEOUT_S = 5.0  # one POST of a scanned code to the hub
SCAN_HEALTH_STALE_S = 3 * SCAN_HEALTH_INTERVAL_S  # a scanner silent this long is reported as gone

# The dashboard's rooms fragment is rendered again after this long even when nothing was announced.
ROOMS_FRAGMENT_MAX_AGE_S = 10.0
