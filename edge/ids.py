"""Identifiers: UUID v7 (RFC 9562), time-ordered, for attendance events."""

from __future__ import annotations

import secrets
import threading
import time
import uuid


class _Uuid7:
    """48-bit Unix milliseconds, a 12-bit counter (monotonic within a millisecond in this
    process, so ids sort in the order they were made), then 62 random bits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def __call__(self, now_ms: int | None = None) -> uuid.UUID:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        with self._lock:
            if ms <= self._last_ms:
                self._counter += 1
                if self._counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                    self._last_ms += 1
                    self._counter = 0
                ms = self._last_ms
            else:
                self._last_ms, self._counter = ms, secrets.randbits(8)  # random start, room to count
            counter = self._counter
        value = (ms & 0xFFFF_FFFF_FFFF) << 80
        value |= 0x7 << 76  # version
        value |= counter << 64
        value |= 0b10 << 62  # variant
        value |= secrets.randbits(62)
        return uuid.UUID(int=value)


uuid7 = _Uuid7()
