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
from edge.clock import ClockCheck
from edge.config import Config, ConfigError, load_config
from edge.connectivity import Connectivity
from edge.events import EventBus
from edge.models import SyncOutcome, SyncTrigger
from edge.pins import PinHasher
from edge.roster import roster_snapshot
from edge.store import Store, upgrade
from kiosk_ui.services import Services

log = logging.getLogger("checkin_edge")

EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


# -- building ---------------------------------------------------------------------------------


def build_services(config: Config, *, migrate: bool = True) -> Services:
    config.data_dir.mkdir(parents=True, exist_ok=True)
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
    return Services(
        config=config,
        store=store,
        roster_sync=RosterSyncService(store, hasher),
        schedule=SyncSchedule.from_config(config.sync_slots, config.sync_time_zone),
        hasher=hasher,
        events=events,
        clock_check=clock_check,
        connectivity=connectivity,
        outbox=outbox,
    )


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
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
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
    return sock


def _serve(services: Services, sock: socket.socket, stop: threading.Event) -> None:
    import uvicorn

    from kiosk_ui.app import create_app

    app = create_app(services)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=False, lifespan="on"))
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
    # Wake it on shutdown too, so it sees the stop at once.
    threading.Thread(target=lambda: (stop.wait(), sender.wake()), name="outbox-stopper", daemon=True).start()


def _start_sync_loop(services: Services, stop: threading.Event) -> None:
    config = services.config
    if config.sync_driver != "serve" or not config.source_url:
        return
    client = roster_client(config)

    def run_sync(trigger: str) -> object:
        return services.roster_sync.pull(client, SyncTrigger(trigger))

    loop = SyncLoop(services.schedule, run_sync, services.roster_sync.last_success_at, utc_now, stop)
    threading.Thread(target=loop.run, name="sync-loop", daemon=True).start()


def cmd_serve(args: argparse.Namespace) -> int:
    config = _config(args)
    config.check_secrets()
    services = build_services(config)
    host = args.host or config.host
    sock = _bind(host, config.port if args.port is None else args.port)
    stop = threading.Event()
    _start_sync_loop(services, stop)
    _start_outbox(services, stop)
    log.info("serving on http://%s:%d", host, sock.getsockname()[1])
    _serve(services, sock, stop)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cloud_sync.standin.generator import demo_people, generate_roster
    from cloud_sync.standin.server import DEFAULT_CLOUD_TOKEN, DEFAULT_SOURCE_TOKEN, StandinCloud, StandinState

    data_dir = Path(args.data_dir or "demo-data").resolve()
    export = generate_roster(seed=args.seed, people=args.people, center_id="demo-center")
    state = StandinState(center_id="demo-center", source_token=DEFAULT_SOURCE_TOKEN, cloud_token=DEFAULT_CLOUD_TOKEN)
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
        print(f"Dashboard:      {base}/roster")
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
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
