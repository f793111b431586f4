"""Roster sync: a full first sync, a no-change re-sync (new ETag, same content) and the 304 fast
path, for 300 / 3,000 / 30,000 people, from the stand-in cloud over loopback.

Each sync runs in its own child process, so its peak RSS is the appliance's alone (the
stand-in cloud holding 30,000 people lives in this parent process).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cloud_sync.standin.generator import generate_roster
from cloud_sync.standin.server import DEFAULT_SOURCE_TOKEN, StandinCloud, StandinState

DEFAULT_SIZES = (300, 3_000, 30_000)
TARGETS = {  # from the foundation issue
    (3_000, "first sync"): "< 1.5 s",
    (30_000, "first sync"): "< 10 s, peak RSS < 250 MB",
    (30_000, "re-sync, same content"): "< 3 s, 0 rows written",
    (30_000, "304 not modified"): "< 50 ms",
}


def child(argv: list[str]) -> int:
    """One sync in a fresh process: prints seconds, rows written and peak RSS as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)

    from cloud_sync.roster_client import RosterClient
    from cloud_sync.roster_sync import RosterSyncService
    from edge.models import SyncTrigger
    from edge.pins import PinHasher
    from edge.store import Store, upgrade

    data_dir = Path(args.data_dir)
    store = Store(f"sqlite:///{data_dir / 'checkin-edge.db'}")
    upgrade(store)
    service = RosterSyncService(store, PinHasher.from_data_dir(data_dir))
    client = RosterClient(args.url, "demo-center", DEFAULT_SOURCE_TOKEN, page_limit=1000, timeout_s=60)
    started = time.perf_counter()
    report = service.pull(client, SyncTrigger.MANUAL)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "outcome": report.outcome.value,
                "rows_written": report.rows_written,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "counts": report.counts,
            }
        )
    )
    return 0


def _sync_once(url: str, data_dir: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "_roster-child", "--url", url, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(DEFAULT_SIZES)
    rows: list[dict[str, Any]] = []
    for people in sizes:
        export = generate_roster(seed=7, people=people, center_id="demo-center")
        state = StandinState("demo-center", roster=export)
        samples: dict[str, list[dict[str, Any]]] = {
            "first sync": [],
            "re-sync, same content": [],
            "304 not modified": [],
        }
        with StandinCloud(state) as cloud:
            for attempt in range(args.repeat):
                with tempfile.TemporaryDirectory(prefix="bench-roster-") as tmp:
                    data_dir = Path(tmp)
                    samples["first sync"].append(_sync_once(cloud.url, data_dir))
                    state.force_etag(f'W/"bench-{attempt}"')
                    samples["re-sync, same content"].append(_sync_once(cloud.url, data_dir))
                    samples["304 not modified"].append(_sync_once(cloud.url, data_dir))
        for case, runs in samples.items():
            rows.append(
                {
                    "people": people,
                    "case": case,
                    "median_s": statistics.median(r["seconds"] for r in runs),
                    "max_s": max(r["seconds"] for r in runs),
                    "rows_written": max(r["rows_written"] for r in runs),
                    "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
                    "outcome": runs[-1]["outcome"],
                    "target": TARGETS.get((people, case), ""),
                }
            )
    return rows
