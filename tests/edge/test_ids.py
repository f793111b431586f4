from __future__ import annotations

import time

from edge.ids import uuid7


def test_uuid7_version_variant_and_time() -> None:
    now_ms = time.time_ns() // 1_000_000
    value = uuid7()
    assert value.version == 7
    assert value.variant == "specified in RFC 4122"
    assert abs((value.int >> 80) - now_ms) < 5_000


def test_uuid7_sorts_in_creation_order_even_within_a_millisecond() -> None:
    ids = [uuid7(1_800_000_000_000) for _ in range(5_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
