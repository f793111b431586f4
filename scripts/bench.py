"""Benchmarks, printed as a table or as JSON (--json). Run through scripts/bench."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from scripts import (
    bench_checkin,
    bench_dashboard,
    bench_footprint,
    bench_geofence,
    bench_outbox,
    bench_qr,
    bench_roster,
)

SUITES: dict[str, Callable[[argparse.Namespace], list[dict[str, Any]]]] = {
    "roster": bench_roster.run,
    "outbox": bench_outbox.run,
    "checkin": bench_checkin.run,
    "qr": bench_qr.run,
    "footprint": bench_footprint.run,
    "geofence": bench_geofence.run,
    "dashboard": bench_dashboard.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench")
    parser.add_argument("suite", choices=[*SUITES, "_roster-child"])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--sizes", default=None, help="roster: comma-separated people counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (the median is reported)")
    parser.add_argument("--seconds", type=float, default=None, help="checkin, geofence: seconds per concurrency level")
    parser.add_argument("--per-kind", type=int, default=None, help="qr: frames per distortion per size")
    parser.add_argument("--seed", type=int, default=None, help="qr: corpus seed")
    args, rest = parser.parse_known_args(argv)
    if args.suite == "_roster-child":
        return bench_roster.child(rest)
    rows = SUITES[args.suite](args)
    if args.json:
        json.dump({"suite": args.suite, "results": rows}, sys.stdout, indent=2)
        print()
        return 0
    table = Table(title=f"scripts/bench {args.suite}")
    for column in rows[0]:
        table.add_column(column, justify="right" if isinstance(rows[0][column], int | float) else "left")
    for row in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
