"""What the fuzz tests share (tests/**/test_fuzz_*.py): how many examples, which seed, and the
counts ``scripts/fuzz`` prints at the end.

The suite's run is small and derandomized: the same cases on every machine, so CI is
repeatable. ``scripts/fuzz`` sets ``CHECKIN_EDGE_FUZZ_EXAMPLES`` (examples per API operation and
generation mode; each parser test gets ``PARSER_FACTOR`` times as many), ``CHECKIN_EDGE_FUZZ_SEED``
(a random run, reproducible with that seed) and ``CHECKIN_EDGE_FUZZ_REPORT`` (a file the counts
are appended to, one JSON line per test process).
"""

from __future__ import annotations

import atexit
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, seed, settings

EXAMPLES = int(os.environ.get("CHECKIN_EDGE_FUZZ_EXAMPLES", "8"))
SEED = os.environ.get("CHECKIN_EDGE_FUZZ_SEED")  # unset: derandomized
REPORT = os.environ.get("CHECKIN_EDGE_FUZZ_REPORT")
PARSER_FACTOR = 6  # a parser example costs a fraction of an HTTP round trip through the app

# Cases sent, by what was fuzzed: "POST /api/v1/identify", "stateful steps", "roster export", ...
COUNTS: Counter[str] = Counter()


def fuzz_settings(max_examples: int, **kw: Any) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=SEED is None,
        database=None,  # nothing kept under .hypothesis: each run stands alone
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        **kw,
    )


PARSER = fuzz_settings(PARSER_FACTOR * EXAMPLES)

F = TypeVar("F", bound=Callable[..., Any])


def seeded(test: F) -> F:
    """``scripts/fuzz --seed S`` replays the same random run."""
    return seed(int(SEED))(test) if SEED is not None else test


def _write_report() -> None:
    if REPORT and COUNTS:
        with Path(REPORT).open("a", encoding="utf-8") as out:
            out.write(json.dumps(dict(COUNTS)) + "\n")


atexit.register(_write_report)
