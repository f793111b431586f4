"""``checkin-edge``: the composition root. Builds each process's objects from its config.

Nothing imports this module.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import socket
import sys
import threading
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from cloud_sync.attendance_client import AttendanceClient
from cloud_sync.outbox import OutboxSender, outbox_status
from cloud_sync.roster_client import RosterClient
from cloud_sync.roster_sync import RosterSyncService, SyncReport, utc_now
from cloud_sync.schedule import SyncLoop, SyncSchedule
from edge.backup import BackupError, backup, restore
from edge.badges import BadgeError, BadgeKey, BadgeService, write_badge
from edge.checkin import CheckinService
from edge.clock import ClockCheck
from edge.config import Config, ConfigError, load_config
from edge.connectivity import Connectivity
from edge.disk import DiskWatch, StorageUnavailable, require_writable, storage_fault
from edge.events import SHUTDOWN, EventBus
from edge.models import SyncOutcome, SyncTrigger
from edge.pings import PingService
from edge.pins import PinHasher
from edge.retention import RetentionLoop, RetentionPolicy
from edge.roster import roster_snapshot
from edge.staff import StaffAccounts, StaffError
from edge.stations import StationAuthenticator
from edge.store import Store, upgrade
from edge.tokens import TokenService
from edge.watchdog import ServeSupervisor
from kiosk_ui.services import Services
from kiosk_ui.sync_now import announced_pull

log = logging.getLogger("checkin_edge")

EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


# -- building ---------------------------------------------------------------------------------


def build_services(config: Config, *, migrate: bool = True) -> Services:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    # A full or read-only data directory, said in words before SQLite fails on it with a traceback.
    require_writable(config.data_dir, *_sqlite_dir(config.db_url))
    store = Store(config.db_url)
    if migrate:
        upgrade(store)
    hasher = PinHasher.from_data_dir(config.data_dir)
    events = EventBus()
    clock_check = ClockCheck()
    connectivity = Connectivity()
    outbox = None
    if config.cloud_url:
        poster = AttendanceClient(
            config.cloud_url,
            config.center_id,
            config.cloud_token.get_secret_value(),
            timeout_s=config.cloud_timeout_s,
        )
        outbox = OutboxSender(
            store,
            poster,
            connectivity=connectivity,
            clock_check=clock_check,
            events=events,
            batch_size=config.cloud_batch_size,
            retention=dt.timedelta(days=config.outbox_retention_days),
        )
    badge_key = BadgeKey.from_data_dir(config.data_dir)
    token_verifier = TokenService(store, badge_key.private_key.public_key(), badge_kid=badge_key.kid)
    checkin = CheckinService(
        store,
        hasher,
        events,
        clock_check,
        token_verifier=token_verifier,
        on_committed=outbox.wake if outbox is not None else None,
    )
    tokens = {station: token.get_secret_value() for station, token in config.station_tokens.items()}
    return Services(
        config=config,
        store=store,
        roster_sync=RosterSyncService(store, hasher),
        schedule=SyncSchedule.from_config(config.sync_slots, config.sync_time_zone),
        hasher=hasher,
        events=events,
        clock_check=clock_check,
        connectivity=connectivity,
        checkin=checkin,
        stations=StationAuthenticator.from_data_dir(tokens, config.data_dir),
        badges=BadgeService(store, badge_key),
        pings=PingService(store, events, checkin),
        staff=StaffAccounts(store),
        outbox=outbox,
        roster_source=roster_client(config) if config.source_url else None,
    )


def _sqlite_dir(url: str) -> list[Path]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return []
    return [Path(parsed.database).parent]


def roster_client(config: Config) -> RosterClient:
    if not config.source_url:
        raise CliError("No roster source is set: set CHECKIN_EDGE_SOURCE_URL (or source_url in the config file)")
    return RosterClient(
        config.source_url,
        config.center_id,
        config.source_token.get_secret_value(),
        page_limit=config.sync_page_limit,
        timeout_s=config.sync_timeout_s,
        max_attempts=config.sync_max_attempts,
    )


def _config(args: argparse.Namespace, **overrides: Any) -> Config:
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    return load_config(args.config, **overrides)


# -- output -----------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _print_report(report: SyncReport, as_json: bool) -> int:
    if as_json:
        _print_json(report.as_json())
    else:
        c = report.counts
        print(f"Roster sync {report.outcome.value}" + (f": {report.error}" if report.error else ""))
        if report.outcome is SyncOutcome.OK:
            print(
                f"  added {c['added']}, updated {c['updated']}, deactivated {c['deactivated']}, "
                f"unchanged {c['unchanged']}, skipped {c['skipped']}"
            )
        for title, items in (
            ("Did not sync", report.skipped),
            ("No longer active", report.demoted),
            ("Hints", report.hints),
        ):
            if items:
                print(f"{title}:")
                for finding in items:
                    print(f"  [{finding.rule.value}] {finding.reason}")
    return EXIT_FAILED if report.outcome is SyncOutcome.FAILED else 0


# -- commands ---------------------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    config = _config(args)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(config.db_url)
    applied = upgrade(store)
    store.close()
    if args.json:
        _print_json({"applied": applied})
    else:
        print("Applied: " + ", ".join(applied) if applied else "The database is up to date.")
    return 0


def _read_export_file(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # nested past the decoder's limit
        raise CliError(f"{path} is not JSON: {exc}") from None
    pages = data if isinstance(data, list) else [data]
    if not pages or not all(isinstance(p, dict) for p in pages):
        raise CliError(f"{path} holds neither an export page nor a list of pages")
    if pages[-1].get("next_cursor"):
        raise CliError(f"{path} ends with a page that has a next_cursor: the export in it is incomplete")
    return pages


def cmd_roster_apply(args: argparse.Namespace) -> int:
    pages = _read_export_file(Path(args.file))
    with closing(build_services(_config(args))) as services:
        report = services.roster_sync.apply_export(pages, SyncTrigger.FILE)
    return _print_report(report, args.json)


def cmd_roster_show(args: argparse.Namespace) -> int:
    with closing(build_services(_config(args))) as services, services.store.read() as session:
        snapshot = roster_snapshot(session=session)
    if args.json:
        _print_json(snapshot)
        return 0
    school = snapshot["school"]
    print(school["name"] if school else "(no school synced yet)")
    rooms = {r["id"]: r["name"] for r in snapshot["rooms"]}
    for title, key in (("Rooms", "rooms"), ("Teachers", "teachers"), ("People", "people"), ("Children", "children")):
        rows = snapshot[key]
        print(
            f"{title}: {sum(1 for r in rows if r['active'])} active, {sum(1 for r in rows if not r['active'])} inactive"
        )
        for row in rows:
            extra = f" · {rooms.get(row.get('room'), row.get('room'))}" if row.get("room") else ""
            role = f" · {row['role']} · PIN {row['pin']}" if "role" in row else ""
            print(f"  {'  ' if row['active'] else '✗ '}{row['id']:<10} {row['name']}{extra}{role}")
    return 0


def _parse_after(text: str | None) -> dt.datetime:
    if not text:
        return utc_now()
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--after {text!r} is not an ISO-8601 time such as 2026-03-08T00:00:00Z") from None
    if when.tzinfo is None:
        raise CliError(f"--after {text!r} needs a zone (Z or +HH:MM)")
    return when


def cmd_sync(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.next is not None:
        if args.next < 1:
            raise CliError("--next takes a count of 1 or more")
        schedule = SyncSchedule.from_config(config.sync_slots, config.sync_time_zone)
        runs = schedule.next_runs(_parse_after(args.after), args.next)
        if args.json:
            _print_json([r.strftime("%Y-%m-%dT%H:%M:%SZ") for r in runs])
            return 0
        with closing(build_services(config)) as services:
            local_zone = _center_zone(services)
        for run in runs:
            pacific = run.astimezone(schedule.zone).strftime("%a %Y-%m-%d %H:%M %Z")
            local = run.astimezone(local_zone).strftime("%H:%M %Z") if local_zone else "-"
            print(f"{pacific:<28} center time {local:<10} {run.strftime('%Y-%m-%dT%H:%M:%SZ')}")
        return 0
    config.check_secrets()
    with closing(build_services(config)) as services:
        report = services.roster_sync.pull(roster_client(config), SyncTrigger.MANUAL)
    return _print_report(report, args.json)


def _center_zone(services: Services) -> Any:
    from zoneinfo import ZoneInfo

    with services.store.read() as session:
        snapshot = roster_snapshot(session=session)
    zone = (snapshot["school"] or {}).get("time_zone")
    return ZoneInfo(zone) if zone else None


def _badge_file_name(person_id: str) -> Path:
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in person_id)
    return Path(f"badge-{safe}.svg")


def cmd_badge(args: argparse.Namespace) -> int:
    """``badge PERSON_ID [--out FILE]``, ``badge revoke PERSON_ID``, ``badge list [PERSON_ID]``."""
    words: list[str] = args.words
    verb = words[0] if words[0] in ("revoke", "list") else "issue"
    if verb == "revoke" and len(words) != 2:
        raise CliError("usage: checkin-edge badge revoke PERSON_ID")
    if verb == "list" and len(words) > 2:
        raise CliError("usage: checkin-edge badge list [PERSON_ID]")
    if verb == "issue" and len(words) != 1:
        raise CliError("usage: checkin-edge badge PERSON_ID [--out FILE.svg|.png]")
    if verb != "issue" and args.out is not None:
        raise CliError(f"--out goes with issuing a badge, not with badge {verb}")
    out = Path(args.out) if args.out is not None else _badge_file_name(words[-1])
    if verb == "issue" and out.suffix.lower() not in (".svg", ".png"):
        raise CliError(f"--out {out}: a badge is written as .svg (with names) or .png (the QR code alone)")
    with closing(build_services(_config(args))) as services:
        if verb == "revoke":
            return _badge_revoke(services, words[1], args.json)
        if verb == "list":
            return _badge_list(services, words[1] if len(words) == 2 else None, args.json)
        try:
            badge = services.badges.issue_badge(words[0])
        except BadgeError as exc:
            print(f"checkin-edge: {exc}", file=sys.stderr)
            return EXIT_FAILED
    written = write_badge(badge, out)
    if args.json:
        _print_json(
            {
                "person_id": badge.person_id,
                "token": badge.token,
                "expires_at": _utc_z(badge.expires_at),
                "file": str(written),
            }
        )
    else:
        print(f"Badge for {badge.person_name} ({badge.person_id}), valid until {badge.expires_at:%Y-%m-%d}: {written}")
    return 0


def _utc_z(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def _badge_revoke(services: Services, person_id: str, as_json: bool) -> int:
    revoked = services.badges.revoke_badges(person_id)
    if as_json:
        _print_json({"person_id": person_id, "revoked": revoked})
    elif revoked:
        print(f"Revoked {revoked} badge(s) of {person_id}: refused at the door from now on.")
    else:
        print(f"{person_id} has no badge left to revoke.")
    return 0


def _badge_list(services: Services, person_id: str | None, as_json: bool) -> int:
    now = utc_now()
    badges = services.badges.list_badges(person_id)
    if as_json:
        _print_json(
            [
                {
                    "badge_id": b.badge_id,
                    "person_id": b.person_id,
                    "kid": b.kid,
                    "issued_at": _utc_z(b.issued_at),
                    "expires_at": _utc_z(b.expires_at),
                    "revoked_at": _utc_z(b.revoked_at),
                    "status": b.status(now),
                }
                for b in badges
            ]
        )
        return 0
    if not badges:
        print("No badges issued" + (f" to {person_id}." if person_id else "."))
    for b in badges:
        dates = f"issued {b.issued_at:%Y-%m-%d}  until {b.expires_at:%Y-%m-%d}"
        print(f"{b.badge_id}  {b.person_id:<10} {dates}  {b.status(now)}")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    """From stdin (one line, for scripts) or asked twice at the terminal, never on the command line."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CliError("--password-stdin: no password on standard input")
        return password
    import getpass

    first = getpass.getpass("Password (10 characters or more): ")
    if getpass.getpass("Again: ") != first:
        raise CliError("The two passwords differ; nothing was changed")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    """``user add NAME --role R``, ``user passwd NAME``, ``user list``, ``user disable|enable NAME``."""
    with closing(build_services(_config(args))) as services:
        accounts = services.staff
        try:
            if args.action == "list":
                users = accounts.list()
                if args.json:
                    _print_json(
                        [
                            {
                                "username": u.username,
                                "role": u.role.value,
                                "teacher_id": u.teacher_id,
                                "active": u.active,
                                "created_at": _utc_z(u.created_at),
                                "password_changed_at": _utc_z(u.password_changed_at),
                            }
                            for u in users
                        ]
                    )
                elif not users:
                    print("No staff accounts yet: checkin-edge user add NAME --role director")
                for u in [] if args.json else users:
                    teacher = f"  teacher {u.teacher_id} ({u.teacher_name})" if u.teacher_id else ""
                    print(f"{u.username:<20} {u.role.value:<9} {'active' if u.active else 'disabled'}{teacher}")
                return 0
            if not args.username:
                raise CliError(f"usage: checkin-edge user {args.action} USERNAME")
            if args.action == "add":
                if args.role is None:
                    raise CliError("user add needs --role director or --role teacher")
                user = accounts.add(args.username, args.role, _read_password(args), teacher_id=args.teacher)
                message = f"Added {user.username} ({user.role.value})"
            elif args.action == "passwd":
                accounts.set_password(args.username, _read_password(args))
                message = f"Password changed for {args.username}: its open sessions are logged out"
            else:
                accounts.set_active(args.username, args.action == "enable")
                message = f"{args.username} {'enabled' if args.action == 'enable' else 'disabled'}"
        except StaffError as exc:
            raise CliError(str(exc)) from None
    if args.json:
        _print_json({"ok": True, "message": message})
    else:
        print(message)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.action == "check":
        config.check_secrets()
        print("The configuration is valid.")
        return 0
    dumped = json.loads(config.model_dump_json())
    for name in ("source_token", "cloud_token"):
        dumped[name] = "(set)" if getattr(config, name).get_secret_value() else "(empty)"
    dumped["station_tokens"] = dict.fromkeys(config.station_tokens, "(set)")
    _print_json(dumped)
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    with closing(build_services(_config(args))) as services:
        return _outbox(services, args)


def _outbox(services: Services, args: argparse.Namespace) -> int:
    if args.action == "drain":
        if services.outbox is None:
            raise CliError("No cloud is set: set CHECKIN_EDGE_CLOUD_URL (or cloud_url in the config file)")
        outcome = services.outbox.drain()
        status = outbox_status(services.store, services.connectivity, utc_now())
        result = {
            "sent": outcome.sent,
            "delivered": outcome.delivered,
            "duplicates": outcome.duplicates,
            "rejected": outcome.rejected,
            "error": str(outcome.error) if outcome.error else None,
            "pending": status.pending,
        }
        if args.json:
            _print_json(result)
        else:
            print(
                f"Sent {outcome.sent}: {outcome.delivered} delivered, {outcome.duplicates} already there, "
                f"{outcome.rejected} rejected; {status.pending} still pending"
                + (f" ({outcome.error})" if outcome.error else "")
            )
        return EXIT_FAILED if outcome.error or status.pending else 0
    status = outbox_status(services.store, services.connectivity, utc_now())
    if args.json:
        _print_json(status.as_json())
        return 0
    age = "-" if status.oldest_pending_age_s is None else f"{status.oldest_pending_age_s:.0f} s"
    print(f"Pending:        {status.pending} (oldest {age})")
    print(f"Failed:         {status.failed} (rejected by the cloud; see the dashboard)")
    print(f"Last success:   {status.last_success.isoformat() if status.last_success else '-'}")
    print(f"Last error:     {status.last_error or '-'}")
    return 0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    # Listen now, before the addresses are printed: a browser that connects while uvicorn is
    # still starting waits in the backlog instead of being refused.
    sock.listen(2048)
    return sock


def _serve(services: Services, sock: socket.socket, stop: threading.Event) -> None:
    import uvicorn

    from kiosk_ui.app import create_app
    from kiosk_ui.server import SupervisedServer

    app = create_app(services)
    # Under systemd: READY=1 once listening, watchdog pings while the hub answers (edge.watchdog).
    supervisor = ServeSupervisor.from_env(services.store)
    server = SupervisedServer(
        uvicorn.Config(app, log_level="info", access_log=False, lifespan="on"),
        supervisor,
        on_stopping=lambda: services.events.publish(SHUTDOWN, {}),
    )
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()


def _start_outbox(services: Services, stop: threading.Event) -> None:
    sender = services.outbox
    if sender is None:
        log.warning("no cloud_url set: attendance is recorded and kept in the outbox until one is")
        return
    threading.Thread(target=sender.run, args=(stop,), name="outbox-sender", daemon=True).start()

    def wake_on_stop() -> None:
        # Wake it on shutdown too, so it sees the stop at once.
        stop.wait()
        sender.wake()

    threading.Thread(target=wake_on_stop, name="outbox-stopper", daemon=True).start()


def _start_sync_loop(services: Services, stop: threading.Event) -> None:
    config = services.config
    if config.sync_driver != "serve" or not config.source_url:
        return
    client = roster_client(config)

    def run_sync(trigger: str) -> object:
        # Told on the live channel too: an open dashboard shows the schedule's pulls as they run.
        try:
            return announced_pull(services.roster_sync, client, SyncTrigger(trigger), services.events, by=trigger)
        except Exception as exc:
            fault = storage_fault(exc, config.data_dir)
            if fault is None:
                raise
            # The roster is unchanged (its transaction rolled back); the disk could not take the
            # failed run's row either, so the alarm in memory says it (edge.disk.StorageAlarm).
            services.storage.failed(fault, utc_now())
            log.error("roster sync could not be saved: storage %s; the roster is unchanged", fault.value)
            return None

    loop = SyncLoop(services.schedule, run_sync, services.roster_sync.last_success_at, utc_now, stop)
    threading.Thread(target=loop.run, name="sync-loop", daemon=True).start()


def _start_disk_watch(services: Services, stop: threading.Event) -> None:
    config = services.config
    watch = DiskWatch(
        services.store,
        services.events,
        config.data_dir,
        min_free_bytes=int(config.low_disk_free_mb * 1024 * 1024),
        min_free_ratio=config.low_disk_free_percent / 100,
        alarm=services.storage,
    )
    threading.Thread(target=watch.run, args=(stop,), name="disk-watch", daemon=True).start()


def _start_retention(services: Services, stop: threading.Event) -> None:
    config = services.config
    policy = RetentionPolicy(audit_days=config.audit_retention_days, sync_runs_kept=config.sync_runs_kept)
    loop = RetentionLoop(services.store, config.data_dir, policy, utc_now)
    threading.Thread(target=loop.run, args=(stop,), name="retention", daemon=True).start()


def cmd_serve(args: argparse.Namespace) -> int:
    config = _config(args)
    config.check_secrets()
    services = build_services(config)
    host = args.host or config.host
    sock = _bind(host, config.port if args.port is None else args.port)
    stop = threading.Event()
    _start_sync_loop(services, stop)
    _start_outbox(services, stop)
    _start_disk_watch(services, stop)
    _start_retention(services, stop)
    log.info("serving on http://%s:%d", host, sock.getsockname()[1])
    _serve(services, sock, stop)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    config = _config(args)
    dest = Path(args.dest) if args.dest else config.backup_path
    keep = config.backup_keep if args.keep is None else args.keep
    store = None
    try:
        # The file is checked before an engine exists: connecting would create an empty one.
        if config.database_url is None and not (config.data_dir / "checkin-edge.db").is_file():
            raise BackupError(f"there is no database in {config.data_dir} yet: nothing to back up")
        store = Store(config.db_url)
        result = backup(store, config.data_dir, dest, keep)
    except BackupError as exc:
        print(f"checkin-edge: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if store is not None:
            store.close()
    if args.json:
        _print_json(result.as_json())
    else:
        print(f"Backup written: {result.path} ({result.size_bytes / 1024:.0f} KB, keys: {', '.join(result.keys)})")
        for path in result.pruned:
            print(f"  deleted old backup {path.name}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    config = _config(args)
    if config.database_url is not None and not config.database_url.startswith("sqlite"):
        raise CliError("restore puts back a SQLite database; this appliance uses another database_url")
    database = Path(config.db_url.removeprefix("sqlite:///"))
    try:
        result = restore(Path(args.file), config.data_dir, database=database, safety_dir=config.backup_path)
    except BackupError as exc:
        print(f"checkin-edge: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json(result.as_json())
    else:
        print(
            f"Restored the backup of {result.backup_created_at} into {result.database} (keys: {', '.join(result.keys)})"
        )
        if result.safety_copy:
            print(f"The database and keys as they were are in {result.safety_copy}")
        print("Start the hub again: sudo systemctl start checkin-edge.service (it migrates an older backup)")
    return 0


DEMO_DIRECTOR = ("director", "demo-director")  # demo mode only: on loopback, with generated families


def _demo_login(services: Services) -> str:
    """A director account for the demo's dashboard (made once; a real appliance uses `user add`)."""
    username, password = DEMO_DIRECTOR
    if services.staff.get(username) is None:
        services.staff.add(username, "director", password)
    return f"{username} / {password}"


def cmd_demo(args: argparse.Namespace) -> int:
    from cloud_sync.standin.generator import demo_people, generate_roster
    from cloud_sync.standin.server import DEFAULT_CLOUD_TOKEN, DEFAULT_SOURCE_TOKEN, StandinCloud, StandinState

    data_dir = Path(args.data_dir or "demo-data").resolve()
    export = generate_roster(seed=args.seed, people=args.people, center_id="demo-center")
    state = StandinState(
        center_id="demo-center", source_token=DEFAULT_SOURCE_TOKEN, cloud_token=DEFAULT_CLOUD_TOKEN, seed=args.seed
    )
    state.set_roster(export)
    with StandinCloud(state) as cloud:
        config = load_config(
            args.config,
            data_dir=data_dir,
            demo=True,
            center_id="demo-center",
            source_url=cloud.url,
            source_token=DEFAULT_SOURCE_TOKEN,
            cloud_url=cloud.url,
            cloud_token=DEFAULT_CLOUD_TOKEN,
            sync_driver="serve",
        )
        services = build_services(config)
        report = services.roster_sync.pull(roster_client(config), SyncTrigger.STARTUP)
        sock = _bind(args.host, args.port)
        base = f"http://{args.host}:{sock.getsockname()[1]}"
        people = demo_people(export)
        print(f"Stand-in cloud: {cloud.url}")
        print(f"Data directory: {data_dir}")
        print(f"Roster sync:    {report.outcome.value} {report.counts}")
        print(f"Kiosk:          {base}/kiosk?station=front-door")
        print(f"Dashboard:      {base}/dashboard  (log in as {_demo_login(services)})")
        print(f"Payer's phone:  {cloud.url}/demo/phone/{people['payer']['id']}  (app code QR, hold it to a camera)")
        print(f"Phone walk:     {_demo_phone(services, export, base, args.seed)}")
        print("Try these PINs at the kiosk:")
        for role, person in people.items():
            kids = person.get("child_name") or ", ".join(c["name"] for c in person.get("children", []))
            print(f"  {role:<12} {person['name']:<24} PIN {person['pin']}" + (f"  (for {kids})" if kids else ""))
        print("Press Ctrl-C to stop.", flush=True)
        stop = threading.Event()
        _start_sync_loop(services, stop)
        _start_outbox(services, stop)
        _serve(services, sock, stop)
    return 0


# -- phones at the fence ----------------------------------------------------------------------


def cmd_geofence(args: argparse.Namespace) -> int:
    from edge.geofence import FenceError

    with closing(build_services(_config(args))) as services:
        if args.action == "set":
            path = Path(args.file)
            try:
                geojson = json.loads(path.read_bytes())
            except FileNotFoundError:
                raise CliError(f"{path}: no such file") from None
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise CliError(f"{path} is not JSON: {exc}") from None
            try:
                services.pings.set_fence(geojson, args.arriving_m)
            except FenceError as exc:
                raise CliError(f"{path}: {exc}") from None
        try:
            record = services.pings.fence_record()
        except FenceError as exc:
            raise CliError(f"the stored geofence is not usable: {exc}") from None
    if record is None:
        raise CliError("No geofence is set: checkin-edge geofence set FILE.geojson")
    if args.json:
        _print_json(record)
        return 0
    centre = record["centre"]
    print(f"Geofence version {record['version']}, set {record['updated_at']}")
    print(f"  on-site area:  {record['area_m2']:,.0f} m² around {centre['lat']}, {centre['lon']}")
    print(f"  arriving ring: {record['arriving_m']:,.0f} m around it")
    return 0


def cmd_simulate_phone(args: argparse.Namespace) -> int:
    import httpx

    from cloud_sync.phone_simulator import DEMO_DOOR, PhoneSimulator, Step
    from cloud_sync.standin.generator import device_private_key

    door = DEMO_DOOR
    if args.to:
        try:
            lat, lon = (float(part) for part in args.to.split(","))
        except ValueError:
            raise CliError(f"--to {args.to!r} is not LAT,LON") from None
        door = (lat, lon)

    def show(step: Step) -> None:
        if args.json:
            print(json.dumps(step.as_json(), ensure_ascii=False), flush=True)
            return
        accuracy = f"±{step.accuracy_m:>5.1f} m" if step.accuracy_m is not None else " " * 9
        print(
            f"{step.elapsed_s:>6.0f} s  {step.distance_m / 1000:>6.2f} km  {accuracy}  "
            f"{step.kind:<14} seq {step.seq}: {step.outcome}",
            flush=True,
        )

    key = device_private_key(args.seed, args.device)
    try:
        with httpx.Client(base_url=args.hub, timeout=10.0) as client:
            simulator = PhoneSimulator(
                client,
                args.device,
                key,
                door=door,
                from_km=args.from_km,
                speed_kmh=args.speed_kmh,
                interval_s=args.interval_s,
                seed=args.seed,
            )
            steps = simulator.run(check_in=args.check_in, check_out=args.check_out, on_step=show)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the hub at {args.hub}: {exc}") from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    arrived = [s for s in steps if s.kind == "ping"][-1].answer.get("state") == "on_site"
    acted = all(s.status == 200 for s in steps if s.kind in ("check_in", "check_out"))
    return 0 if arrived and acted else EXIT_FAILED


def _demo_phone(services: Services, export: dict[str, Any], base: str, seed: int) -> str:
    """Sets the stand-in school's geofence (unless one is set) and names a payer's phone to walk there."""
    from cloud_sync.phone_simulator import demo_site

    if services.pings.fence() is None:
        services.pings.set_fence(demo_site())
    rooms = {room["id"] for room in export["rooms"]}
    for family in export["families"]:
        kids = [
            c["id"]
            for c in family["children"]
            if c["enrollment_status"] == "Currently Enrolled" and c.get("classroom") in rooms
        ]
        for person in family["persons"]:
            if kids and "id" in person and person.get("payer") and person.get("app_devices"):
                device = person["app_devices"][0]["device_id"]
                return f"checkin-edge simulate phone --hub {base} --seed {seed} --device {device} --check-in {kids[0]}"
    return "(no payer in this roster has a phone)"


def cmd_scan(args: argparse.Namespace) -> int:
    """One camera's scanner process: capture -> decode -> post each new code to the hub."""
    import signal
    from urllib.parse import urlsplit

    from edge import const
    from edge.camera import open_camera
    from edge.scanner import ScanLoop, ScanState
    from edge.stations import is_valid_station_id
    from kiosk_ui.deps import is_loopback
    from kiosk_ui.scanner_client import ScannerClient

    config = _config(args)
    if not is_valid_station_id(args.station):
        raise CliError(f"--station {args.station!r}: letters, digits, '.', '_' or '-', up to 64")
    if args.fps is not None and not 0 < args.fps <= 60:
        raise CliError("--fps takes a rate above 0 and at most 60")
    hub = args.hub or f"http://127.0.0.1:{config.port}"
    secret = config.station_tokens.get(args.station)
    token = secret.get_secret_value() if secret is not None else None
    if not token and not is_loopback(urlsplit(hub).hostname or ""):
        raise CliError(f"the hub at {hub} is not this machine: set the token of {args.station} in station_tokens")
    camera = open_camera(args.camera, fps=args.fps, loop=args.loop)
    client = ScannerClient(hub, token)
    loop = ScanLoop(args.station, camera, client.post, client.report, fps=args.fps or const.SCAN_FPS)
    stop = threading.Event()
    # SIGTERM (systemd stopping the unit) and Ctrl-C end the loop cleanly: the camera is released.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("scanning %s for station %s, posting to %s", camera.name, args.station, hub)
    try:
        state = loop.run(stop)
    finally:
        client.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if state in (ScanState.STOPPED, ScanState.ENDED) else EXIT_FAILED


# -- parsing ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="checkin-edge", description="Door appliance for child care centers.")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default: $CHECKIN_EDGE_CONFIG or /etc/checkin-edge/config.toml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, func: Any, help_text: str, *, json_flag: bool = True, data_dir: bool = True
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        if data_dir:
            p.add_argument("--data-dir", type=Path, default=None, help="data directory (overrides the config)")
        return p

    p = add("demo", cmd_demo, "stand-in cloud + hub on loopback, synced, addresses printed", json_flag=False)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    p.add_argument("--people", type=int, default=300, help="size of the generated roster")
    p.add_argument("--seed", type=int, default=1)

    p = add("serve", cmd_serve, "run the hub", json_flag=False)
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    p = db.add_parser("upgrade", help="apply the Alembic migrations")
    p.set_defaults(func=cmd_db_upgrade)
    p.add_argument("--json", action="store_true")
    p.add_argument("--data-dir", type=Path, default=None)

    roster = sub.add_parser("roster", help="the synced roster").add_subparsers(
        dest="roster_command", required=True, metavar="ACTION"
    )
    p = roster.add_parser("apply", help="apply an export saved to a file, by the sync rules")
    p.set_defaults(func=cmd_roster_apply)
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.add_argument("--data-dir", type=Path, default=None)
    p = roster.add_parser("show", help="the roster as the appliance holds it")
    p.set_defaults(func=cmd_roster_show)
    p.add_argument("--json", action="store_true")
    p.add_argument("--data-dir", type=Path, default=None)

    p = add("sync", cmd_sync, "pull the roster from the source once, or list the next scheduled pulls")
    p.add_argument("--next", type=int, default=None, metavar="N", help="print the next N scheduled pulls instead")
    p.add_argument("--after", default=None, metavar="ISO-8601", help="with --next: count from this instant")

    p = add("outbox", cmd_outbox, "attendance waiting for the cloud: status, or send it all now")
    p.add_argument("action", choices=["status", "drain"])

    p = add("badge", cmd_badge, "issue a printable QR badge to a payer, or revoke or list badges")
    p.add_argument(
        "words",
        nargs="+",
        metavar="PERSON_ID | revoke PERSON_ID | list [PERSON_ID]",
        help="a person id issues a badge; 'revoke' revokes every badge of that person; 'list' lists badges",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE.svg|FILE.png",
        help="where to write the badge (default badge-PERSON_ID.svg here); .png is the QR code alone",
    )

    geofence = sub.add_parser("geofence", help="the center's geofence for phones").add_subparsers(
        dest="geofence_command", required=True, metavar="ACTION"
    )
    p = geofence.add_parser("set", help="set the on-site area from a GeoJSON file (Polygon, MultiPolygon, Feature(s))")
    p.set_defaults(func=cmd_geofence, action="set")
    p.add_argument("file", metavar="FILE.geojson")
    p.add_argument("--arriving-m", type=float, default=800.0, help="width of the arriving ring around it (m)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--data-dir", type=Path, default=None)
    p = geofence.add_parser("show", help="the on-site area, the arriving ring and when they were set")
    p.set_defaults(func=cmd_geofence, action="show")
    p.add_argument("--json", action="store_true")
    p.add_argument("--data-dir", type=Path, default=None)

    simulate = sub.add_parser("simulate", help="simulated devices for the demo and tests").add_subparsers(
        dest="simulate_command", required=True, metavar="DEVICE"
    )
    p = simulate.add_parser(
        "phone", help="walk a generated payer's phone from a few km away to the door of a running hub"
    )
    p.set_defaults(func=cmd_simulate_phone)
    p.add_argument("--hub", required=True, metavar="URL", help="the hub, e.g. http://127.0.0.1:8080")
    p.add_argument("--seed", type=int, required=True, help="the seed the stand-in roster was generated with")
    p.add_argument("--device", required=True, metavar="DEVICE_ID", help="a payer's registered device, e.g. D-P12")
    p.add_argument("--from-km", type=float, default=3.0, help="start this far from the door")
    p.add_argument("--speed-kmh", type=float, default=40.0)
    p.add_argument("--interval-s", type=float, default=5.0, help="seconds between pings")
    p.add_argument("--to", default=None, metavar="LAT,LON", help="the door (default: the demo site's)")
    p.add_argument("--check-in", nargs="+", default=[], metavar="CHILD", help="at the door, check these in")
    p.add_argument("--check-out", nargs="+", default=[], metavar="CHILD", help="at the door, check these out")
    p.add_argument("--json", action="store_true", help="one JSON object per request")

    p = add("backup", cmd_backup, "snapshot the database and keys into one file; keep the newest N")
    p.add_argument("--dest", default=None, metavar="DIR", help="where to write (default: backup_dir)")
    p.add_argument("--keep", type=int, default=None, metavar="N", help="backups kept (default: backup_keep)")
    p = add("restore", cmd_restore, "put back a backup's database and keys (stop checkin-edge.service first)")
    p.add_argument("file", metavar="FILE", help="a checkin-edge-backup-*.tar.gz")

    p = add("scan", cmd_scan, "scan QR codes from a camera and send them to the hub", json_flag=False)
    p.add_argument("--station", required=True, metavar="ID", help="the station (door) this camera watches")
    p.add_argument(
        "--camera",
        required=True,
        metavar="SOURCE",
        help="a device index (0), a video file, a folder of images, or an rtsp:// or http:// URL",
    )
    p.add_argument("--hub", default=None, metavar="URL", help="the hub (default: http://127.0.0.1:PORT of the config)")
    p.add_argument("--fps", type=float, default=None, metavar="N", help="frames decoded per second (default 10)")
    p.add_argument("--loop", action="store_true", help="a video file or folder replays from the start when it ends")

    p = add("user", cmd_user, "dashboard logins: add, passwd, list, disable, enable")
    p.add_argument("action", choices=["add", "passwd", "list", "disable", "enable"])
    p.add_argument("username", nargs="?", default=None)
    p.add_argument("--role", choices=["director", "teacher"], default=None, help="with add")
    p.add_argument("--teacher", default=None, metavar="TEACHER_ID", help="with add: the roster's teacher this login is")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input instead of asking"
    )

    p = add("config", cmd_config, "check or print the merged configuration", json_flag=False)
    p.add_argument("action", choices=["check", "dump"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code: int = args.func(args)
    except (CliError, ConfigError) as exc:
        print(f"checkin-edge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StorageUnavailable as exc:
        print(f"checkin-edge: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        fault = storage_fault(exc)
        if fault is None:
            raise
        # A write refused mid-command (a sync on a full disk): rolled back whole, said in words.
        print(
            f"checkin-edge: the data directory's disk refused a write ({fault.value}): nothing was changed. "
            "Free space or remount it read-write, then try again.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
