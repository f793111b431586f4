"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for the load's phones.

httpx's async client spends a few milliseconds of CPU per request on a loaded machine; 60 pings a
second through it made the load generator one of the hub's competitors for the two cores. This
sends a POST and reads a ``Content-Length`` answer (what the hub's JSON routes send), nothing
more: no redirects, no chunked bodies, no TLS.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

# Below uvicorn's 5 s keep-alive, so a connection the hub is about to close is not reused (the
# request would race the close and fail with a reset).
KEEPALIVE_S = 3.0


class HttpError(Exception):
    """The exchange failed (connection refused or reset, a malformed answer, a timeout)."""


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.used = reader, writer, time.monotonic()

    def close(self) -> None:
        self.writer.close()


class RawPool:
    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"plain http://host:port only, not {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout_s = timeout_s
        self._idle: list[_Conn] = []

    async def _conn(self) -> _Conn:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.used < KEEPALIVE_S:
                return conn
            conn.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Conn(reader, writer)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._post(path, body, headers), self.timeout_s)
        except TimeoutError as exc:
            raise HttpError("timed out") from exc

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = await self._conn()
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        try:
            conn.writer.write(head.encode("latin-1") + b"\r\n" + body)
            raw = await conn.reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            answer = await conn.reader.readexactly(int(fields.get("content-length", "0")))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as exc:
            conn.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        except asyncio.CancelledError:  # timed out mid-exchange: the connection is in no known state
            conn.close()
            raise
        if fields.get("connection", "").lower() == "close":
            conn.close()
        else:
            conn.used = time.monotonic()
            self._idle.append(conn)
        return status, answer

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
