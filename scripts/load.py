"""Peak-hour load on loopback (issue 9): ``scripts/load [--duration 600] [--json]``.

The hub (``checkin-edge serve``, its own process) with the stand-in cloud (roster export and
attendance receiver, a thread here), for ``--duration`` seconds:

- **8 stations** doing PIN identify + check-in or check-out, a parent every 1-2 s each (~5
  pairs/s in all: far above a real center's peak, which is the point), scripts/load_clients.py;
- **300 phones** pinging every 5 s, staggered, driving in and out (their own process,
  scripts/load_phones.py);
- **3 dashboards** logged in, holding the live feed open, refetching the rooms after each
  check-in as the page does;
- in the middle, the director presses *Sync now* and the stand-in serves a **3,000-person**
  export instead of the first ~300-child one (scripts/load_roster.py).

The roster is seeded by a first pull from the stand-in before the hub starts. At the end the
load stops and the outbox must drain to zero, every event the stations were answered with
must be at the cloud, and the hub must still answer.

What is measured: per operation count, p50, p99, max; errors (any status or refusal the run
did not expect, a live feed the hub ended, a sync that did not finish ok, an event missing at
the cloud); the hub's RSS every ``--sample-s`` seconds; check-in latency while the roster
applies (from *Sync now* to the sync's ``finished`` event on the live feed); the time the
outbox took to drain.

Targets (exit 1 when one is missed):
- identify + check-out p99 < 100 ms;
- 0 errors;
- flat memory: the least-squares slope of RSS over the last third of the run (and at least 30 s
  after the big sync finished) below 1 MB/min. The big roster legitimately costs memory once
  and the hub warms up for a few minutes (page caches, allocator arenas: a curve that
  flattens), a leak costs memory all the time. The slopes before the sync (from
  ``--warmup-s``) and after it are told too, not judged. A window shorter than 2 minutes is too
  short to tell and is reported but not judged;
- no stall while the roster applies: no pair over 1 s in that window;
- the outbox drained to zero (within ``--drain-timeout``, 120 s) with every event at the cloud.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

from cloud_sync.phone_simulator import demo_site
from cloud_sync.standin.server import DEFAULT_CLOUD_TOKEN, DEFAULT_SOURCE_TOKEN, StandinCloud, StandinState
from edge.config import load_config
from edge.models import SyncOutcome, SyncTrigger
from scripts.bench_checkin import cpu_seconds
from scripts.bench_footprint import proc_status
from scripts.hub_process import Hub
from scripts.load_clients import Dashboard, Recorder, Station
from scripts.load_roster import CENTER, LoadRosters, build_rosters

P99_TARGET_MS = 100.0
RSS_SLOPE_MB_PER_MIN = 1.0
MIN_SLOPE_WINDOW_S = 120.0
SETTLE_AFTER_SYNC_S = 30.0
STALL_MS = 1_000.0
USERNAME, PASSWORD = "load-director", "load-director-password-1"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def slope_mb_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var * 60


# -- setting up ---------------------------------------------------------------------------------


def _settings(cloud_url: str) -> dict[str, str]:
    return {
        "center_id": CENTER,
        "source_url": cloud_url,
        "source_token": DEFAULT_SOURCE_TOKEN,
        "cloud_url": cloud_url,
        "cloud_token": DEFAULT_CLOUD_TOKEN,
        "sync_driver": "timer",  # no scheduled pull in the middle of the run: only ours
    }


def prepare(data_dir: Path, cloud_url: str) -> None:
    """The first sync (a real pull from the stand-in), the geofence and a director login: what
    ``checkin-edge sync``, ``geofence set`` and ``user add`` do, in this process (three CLI
    processes cost ~10 s of imports on a busy machine, the smoke test's whole budget)."""
    from kiosk_ui.cli import build_services, roster_client

    # Overrides win over CHECKIN_EDGE_* variables; a database URL set for the run (the PostgreSQL
    # test run) still comes through, as it does to the hub (scripts/hub_process.py).
    config = load_config(None, data_dir=data_dir, **_settings(cloud_url))
    with closing(build_services(config)) as services:
        report = services.roster_sync.pull(roster_client(config), SyncTrigger.MANUAL)
        if report.outcome is not SyncOutcome.OK:
            raise RuntimeError(f"the first sync did not apply: {report.outcome.value} {report.error}")
        services.pings.set_fence(demo_site())
        services.staff.add(USERNAME, "director", PASSWORD)


# -- the run ------------------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace, rosters: LoadRosters, hub: Hub, cloud: StandinCloud) -> None:
        self.args, self.rosters, self.hub, self.cloud = args, rosters, hub, cloud
        self.rec = Recorder()
        self.rss: list[tuple[float, float]] = []  # (seconds since the start, MB)
        self.big_state = StandinState(CENTER, roster=rosters.big)  # serialized now, not mid-run
        self.states = [cloud.state]
        self.sync_pressed: float | None = None
        self.phones: dict[str, Any] = {}

    def _t(self) -> float:
        return time.monotonic() - self.rec.began

    async def sample_rss(self, end: float) -> None:
        while True:
            self.rss.append((self._t(), proc_status(self.hub.pid, "VmRSS") / 1024 / 1024))
            if time.monotonic() >= end:
                return
            await asyncio.sleep(min(self.args.sample_s, max(0.0, end - time.monotonic())))

    async def big_sync(self, at: float, director: Dashboard) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        self.cloud.state = self.big_state  # the back office now exports 3,000 people
        self.states.append(self.big_state)
        self.sync_pressed = await director.sync_now()
        say("Sync now pressed; the stand-in serves the big export")

    async def phones_process(self, duration: float) -> None:
        devices = self.rosters.devices[: self.args.phones]
        argv = [sys.executable, "-m", "scripts.load_phones", self.hub.url, str(self.rosters.seed), str(duration)]
        proc = await asyncio.create_subprocess_exec(
            *argv, str(self.args.ping_interval), *devices, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            self.rec.error("phones process failed")
            return
        self.phones = json.loads(out)

    async def drain(self) -> float | None:
        """Seconds until the hub's outbox is empty, or None if it did not drain in time."""
        began = time.monotonic()
        async with httpx.AsyncClient(base_url=self.hub.url, timeout=10) as client:
            while time.monotonic() - began < self.args.drain_timeout:
                health = (await client.get("/healthz")).json()
                if health["outbox"]["pending"] == 0:
                    return time.monotonic() - began
                await asyncio.sleep(0.2)
        return None

    async def run(self) -> dict[str, Any]:
        args = self.args
        duration = args.duration
        dashboards = [
            Dashboard(self.hub.url, n, self.rec, USERNAME, PASSWORD, refresh=args.rooms_refresh)
            for n in range(args.dashboards)
        ]
        for dashboard in dashboards:
            await dashboard.start()
        pins = self.rosters.pins
        stations = [
            Station(self.hub.url, n, pins[n :: args.stations], self.rec, pace=(args.pace_min, args.pace_max), seed=n)
            for n in range(args.stations)
        ]
        say("dashboards logged in; go")
        cpu_before, gen_before = cpu_seconds(self.hub.pid), _own_cpu()
        self.rec.began = time.monotonic()
        end = self.rec.began + duration
        tasks = [
            *(asyncio.create_task(d.run(end)) for d in dashboards),
            asyncio.create_task(self.sample_rss(end)),
            asyncio.create_task(self.phones_process(duration)),
            *(asyncio.create_task(s.run(end)) for s in stations),
        ]
        if args.sync_at > 0 and dashboards:
            tasks.append(asyncio.create_task(self.big_sync(self.rec.began + duration * args.sync_at, dashboards[0])))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - self.rec.began
        say("load over; waiting for the outbox to drain")
        hub_cpu = cpu_seconds(self.hub.pid) - cpu_before
        gen_cpu = _own_cpu() - gen_before
        drained_s = await self.drain()
        healthz = httpx.get(f"{self.hub.url}/healthz", timeout=10)
        if healthz.status_code != 200:
            self.rec.error(f"healthz after the run {healthz.status_code}")
        rss_end = proc_status(self.hub.pid, "VmRSS") / 1024 / 1024
        for dashboard in dashboards:
            await dashboard.close()
        return self.report(
            stations,
            dashboards,
            elapsed=elapsed,
            hub_cpu=hub_cpu,
            gen_cpu=gen_cpu,
            drained_s=drained_s,
            rss_end=rss_end,
        )

    # -- the report ---------------------------------------------------------------------------

    def _sync_window(self, dashboards: list[Dashboard]) -> tuple[float | None, float | None, dict[str, Any] | None]:
        """(pressed, finished) in seconds since the start, and the finished event's data."""
        if self.sync_pressed is None:
            return None, None, None
        pressed = self.sync_pressed - self.rec.began
        for received, data in dashboards[0].sync_events:
            if data.get("state") == "finished":
                return pressed, received - self.rec.began, data
        return pressed, None, None

    def report(
        self,
        stations: list[Station],
        dashboards: list[Dashboard],
        *,
        elapsed: float,
        hub_cpu: float,
        gen_cpu: float,
        drained_s: float | None,
        rss_end: float,
    ) -> dict[str, Any]:
        args, rec = self.args, self.rec
        pressed, finished, sync_data = self._sync_window(dashboards)
        if pressed is not None:
            if finished is None:
                rec.error("the big sync did not finish during the run")
            elif sync_data is None or sync_data.get("outcome") != "ok":
                rec.error(f"the big sync ended {sync_data and sync_data.get('outcome')}")
        phone_ms = [float(ms) for ms in self.phones.get("latencies_ms", [])]
        for outcome, count in self.phones.get("outcomes", {}).items():
            if not outcome.startswith("200 "):
                rec.errors[f"ping {outcome}"] += count
        answered = {e for s in stations for e in s.events}
        at_cloud = {e for state in self.states for e in state.attendance_by_id}
        missing = len(answered - at_cloud)
        if missing:
            rec.errors["events missing at the cloud"] += missing

        ops: list[dict[str, Any]] = []

        def op_row(name: str, values: list[float], target: str = "", ok: bool | None = None) -> None:
            ops.append(
                {
                    "operation": name,
                    "count": len(values),
                    "per_s": len(values) / elapsed,
                    "p50_ms": _percentile(values, 0.5),
                    "p99_ms": _percentile(values, 0.99),
                    "max_ms": max(values) if values else float("nan"),
                    "target": target,
                    "met": "-" if ok is None else ("yes" if ok else "NO"),
                }
            )

        def ms(op: str, window: tuple[float, float] | None = None) -> list[float]:
            return [v for t, v in rec.samples.get(op, []) if window is None or window[0] <= t <= window[1]]

        checkout = ms("identify + check-out")
        op_row(
            "identify + check-out",
            checkout,
            f"p99 < {P99_TARGET_MS:.0f} ms",
            bool(checkout) and _percentile(checkout, 0.99) < P99_TARGET_MS,
        )
        op_row("identify + check-in", ms("identify + check-in"))
        for name in ("identify", "check_out", "check_in", "dashboard rooms refresh", "live event delay"):
            op_row(name.replace("_", "-"), ms(name))
        op_row("geofence ping", phone_ms)
        window = (pressed, finished) if pressed is not None and finished is not None else None
        during: list[float] = []
        if window is not None:
            during = ms("identify + check-out", window) + ms("identify + check-in", window)
            op_row(
                "identify + check-in/out during the roster apply",
                during,
                f"no pair > {STALL_MS:.0f} ms",
                not during or max(during) < STALL_MS,
            )

        checks: list[dict[str, Any]] = []

        def check(name: str, value: str, target: str, ok: bool | None, notes: str = "") -> None:
            verdict = "-" if ok is None else ("yes" if ok else "NO")
            checks.append({"check": name, "value": value, "target": target, "met": verdict, "notes": notes})

        errors = sum(rec.errors.values())
        check("errors", str(errors), "0", errors == 0, ", ".join(f"{k}: {v}" for k, v in sorted(rec.errors.items())))
        rss = self.rss
        first, last, top = rss[0][1], rss[-1][1], max(v for _, v in rss)
        check("hub RSS first / last / max", f"{first:.1f} / {last:.1f} / {top:.1f} MB", "", None,
              f"{len(rss)} samples every {args.sample_s:.0f} s; {rss_end:.1f} MB after the drain")  # fmt: skip
        sync_start = pressed if pressed is not None else elapsed
        # Told, not judged: both phases start with the hub warming up (page caches, allocator
        # arenas), a curve that flattens; a leak is growth that does not. Judged: the last third
        # of the run, once the hub has warmed up with its final roster.
        tail = max(elapsed * 2 / 3, (finished + SETTLE_AFTER_SYNC_S) if finished is not None else 0.0)
        slopes = [("before the big sync", (args.warmup_s, sync_start), False)]
        if finished is not None:
            slopes.append(("after the big sync", (finished + SETTLE_AFTER_SYNC_S, elapsed), False))
        slopes.append(("over the last third of the run", (tail, elapsed), True))
        for label, (lo, hi), judge in slopes:
            points = [(t, v) for t, v in rss if lo <= t <= hi]
            slope = slope_mb_per_min(points)
            judged = judge and hi - lo >= MIN_SLOPE_WINDOW_S and slope is not None
            note = f"{lo:.0f}-{hi:.0f} s, {len(points)} samples" if hi > lo else "no time left in the run"
            if judge and not judged:
                note += "; too short to judge"
            check(
                f"hub RSS slope {label}",
                "n/a" if slope is None else f"{slope:+.2f} MB/min",
                f"< {RSS_SLOPE_MB_PER_MIN:.0f} MB/min" if judge else "(warm-up: told)",
                (slope is not None and slope < RSS_SLOPE_MB_PER_MIN) if judged else None,
                note,
            )
        if window is not None:
            counts = (sync_data or {}).get("counts") or {}
            check(
                "big roster sync (Sync now → finished)",
                f"{window[1] - window[0]:.1f} s",
                "outcome ok",
                (sync_data or {}).get("outcome") == "ok",
                f"{counts.get('added', 0)} added, {counts.get('unchanged', 0)} unchanged; "
                f"{len(during)} pairs completed meanwhile",
            )
        check(
            "outbox drained to zero",
            "no" if drained_s is None else f"{drained_s:.1f} s after the load",
            f"within {args.drain_timeout:.0f} s, every event at the cloud",
            drained_s is not None and missing == 0,
            f"{len(answered)} events answered, {len(answered & at_cloud)} at the cloud",
        )
        check(
            "hub CPU", f"{hub_cpu / elapsed * 100:.0f} % of a core", "", None, f"{hub_cpu:.0f} s over {elapsed:.0f} s"
        )
        phones_cpu = float(self.phones.get("cpu_s", 0.0))
        check(
            "load generator CPU",
            f"{(gen_cpu + phones_cpu) / elapsed * 100:.0f} % of a core",
            "",
            None,
            f"stations + dashboards + stand-in {gen_cpu:.0f} s, phones {phones_cpu:.0f} s",
        )
        kinds: dict[str, int] = {}
        for dashboard in dashboards:
            for kind, count in dashboard.kinds.items():
                kinds[kind] = kinds.get(kind, 0) + count
        check(
            "live events seen by the dashboards",
            str(sum(kinds.values())),
            "",
            None,
            ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())),
        )
        notes = dict(rec.counts) | {"phones late by a whole interval": self.phones.get("late", 0)}
        met = all(row["met"] != "NO" for row in [*ops, *checks])
        return {
            "suite": "load",
            "duration_s": round(elapsed, 1),
            "stations": args.stations,
            "phones": self.phones.get("phones", 0),
            "dashboards": args.dashboards,
            "children": self.rosters.children,
            "big_roster_people": sum(len(f["persons"]) for f in self.rosters.big["families"]),
            "operations": ops,
            "checks": checks,
            "rss_mb": [[round(t, 1), round(v, 2)] for t, v in rss],
            "errors": dict(rec.errors),
            "notes": notes,
            "ping_outcomes": self.phones.get("outcomes", {}),
            "targets_met": met,
        }


_T0 = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr (stdout is the report)."""
    print(f"[load {time.monotonic() - _T0:6.1f} s] {message}", file=sys.stderr, flush=True)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_load(args: argparse.Namespace) -> dict[str, Any]:
    say(f"generating the rosters ({args.children} children, then {args.big_people:,} people)")
    rosters = build_rosters(seed=args.seed, children=args.children, big_people=args.big_people)
    if len(rosters.devices) < args.phones:
        raise RuntimeError(f"the roster has {len(rosters.devices)} phones, fewer than --phones {args.phones}")
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        data_dir = Path(args.data_dir) if args.data_dir else Path(tmp) / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        state = StandinState(CENTER, roster=rosters.small, seed=rosters.seed)
        with StandinCloud(state) as cloud:
            say("first sync, geofence, director login")
            prepare(data_dir, cloud.url)
            hub = Hub(data_dir, None, **_settings(cloud.url))
            say(f"hub up at {hub.url} in {hub.started_s:.1f} s; load for {args.duration:.0f} s")
            try:
                return asyncio.run(Run(args, rosters, hub, cloud).run())
            finally:
                say("stopping the hub")
                hub.stop()
                say("stopped")


def _table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    title = (
        f"scripts/load: {report['duration_s']:.0f} s, {report['stations']} stations, {report['phones']} phones, "
        f"{report['dashboards']} dashboards, {report['children']} children, "
        f"then a {report['big_roster_people']:,}-person sync"
    )
    for rows, name in ((report["operations"], title), (report["checks"], "checks")):
        table = Table(title=name)
        for column in rows[0]:
            table.add_column(column, justify="right" if isinstance(rows[0][column], int | float) else "left")
        for row in rows:
            table.add_row(*(f"{v:.1f}" if isinstance(v, float) else str(v) for v in row.values()))
        console.print(table)
    if report["notes"]:
        console.print("notes: " + ", ".join(f"{k}: {v}" for k, v in report["notes"].items()))
    console.print("all targets met" if report["targets_met"] else "[bold red]a target was missed[/]")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/load", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    p.add_argument("--stations", type=int, default=8)
    p.add_argument("--phones", type=int, default=300)
    p.add_argument("--dashboards", type=int, default=3)
    p.add_argument("--children", type=int, default=300, help="children in the first roster")
    p.add_argument("--big-people", type=int, default=3_000, help="people in the export synced in the middle")
    p.add_argument(
        "--sync-at", type=float, default=0.5, help="when to press Sync now, as a fraction of the run (0: never)"
    )
    p.add_argument(
        "--no-rooms-refresh",
        dest="rooms_refresh",
        action="store_false",
        help="dashboards hold the live feed but do not refetch the rooms after a check-in (to tell its cost apart)",
    )
    p.add_argument("--pace-min", type=float, default=1.0, help="seconds between parents at a station, at least")
    p.add_argument("--pace-max", type=float, default=2.0, help="... at most")
    p.add_argument("--ping-interval", type=float, default=5.0)
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples")
    p.add_argument("--warmup-s", type=float, default=60.0, help="seconds before the RSS slope is measured")
    p.add_argument("--drain-timeout", type=float, default=120.0, help="seconds the outbox has to drain after the load")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--data-dir", default=None, help="keep the hub's data here (default: a temporary directory)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    report = run_load(args)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _table(report)
    return 0 if report["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
