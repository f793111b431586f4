"""Benchmarks, printed as a table or as JSON (--json). Run through scripts/bench."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

# Each suite is a module scripts/bench_<name>.py with run(args) -> rows, imported only when asked
# for: a child process measuring the roster sync's memory must not carry OpenCV or shapely.
SUITES = ("roster", "outbox", "checkin", "qr", "footprint", "geofence", "dashboard")


def _suite(name: str) -> Any:
    return importlib.import_module(f"scripts.bench_{name}")


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
        code: int = _suite("roster").child(rest)
        return code
    rows: list[dict[str, Any]] = _suite(args.suite).run(args)
    if args.json:
        json.dump({"suite": args.suite, "results": rows}, sys.stdout, indent=2)
        print()
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"scripts/bench {args.suite}")
    for column in rows[0]:
        table.add_column(column, justify="right" if isinstance(rows[0][column], int | float) else "left")
    for row in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
