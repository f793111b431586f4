"""Reads the back office's roster export (contracts/desktop-roster.md) over HTTP.

``RosterClient.fetch`` returns either "not modified" or every page of one export; it never
returns part of one. Each request is retried on timeouts, refused or broken connections,
5xx and 429, with exponential back-off and full jitter, honouring ``Retry-After``. Whatever
fails raises ``RosterFetchError`` with a sentence a center director can read, and the token
appears in no message and no log line.

Only the page envelope is checked here; the records inside are checked one by one by the
sync rules, which skip a bad record with a reason instead of failing the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

log = logging.getLogger(__name__)

RECORD_LISTS = ("employees", "families", "rooms", "keys")
RETRY_AFTER_STATUSES = frozenset({429, 503})
USER_AGENT = "checkin-edge roster client"


class RosterFetchError(Exception):
    """The roster could not be read; ``message`` says why, in plain words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class RosterFetch:
    """The export as received. Pages are kept as the bytes that came over the wire and parsed
    again one at a time when applied: parsed, 30,000 people take ~6x their JSON size, and
    holding every parsed page beside the plan cost the sync its memory budget."""

    not_modified: bool
    etag: str | None
    bodies: tuple[bytes, ...]
    bytes_received: int

    def iter_pages(self) -> Iterator[dict[str, Any]]:
        for body in self.bodies:
            page: dict[str, Any] = json.loads(body)
            yield page

    @property
    def pages(self) -> list[dict[str, Any]]:
        return list(self.iter_pages())


class _Retry(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, problem: str, *, answered: bool = False, retry_after_s: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.answered = answered  # the source answered (5xx, 429), rather than not at all
        self.retry_after_s = retry_after_s


def _page_name(page_no: int) -> str:
    return f"Page {page_no} of the roster"


def retry_after_seconds(value: str | None, *, date: str | None = None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), else None.

    An HTTP-date is measured against the response's own ``date`` header when there is one,
    so that a wrong appliance clock (a Pi after a power cut) does not turn it into hours;
    else against ``now`` (default: the clock)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        retry_at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    reference = now or datetime.now(UTC)
    if date:
        with contextlib.suppress(TypeError, ValueError):
            reference = parsedate_to_datetime(date)
    if retry_at.tzinfo is None or reference.tzinfo is None:
        return None
    return max(0.0, (retry_at - reference).total_seconds())


def _connection_problem(exc: httpx.RequestError) -> str:
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "name or service" in text or "nodename" in text or "resolution" in text:
            return "its name could not be looked up"
        return "could not connect"
    return "the connection broke"


def check_page_envelope(page: Any, page_no: int) -> dict[str, Any]:
    """A JSON object with a ``next_cursor`` (null or a string), record lists that are lists
    of objects, and a ``school`` object on the first page. Nothing deeper."""

    def broke(why: str) -> RosterFetchError:
        return RosterFetchError(f"{_page_name(page_no)} broke the export format: {why}")

    if not isinstance(page, dict):
        raise broke("the page is not a JSON object")
    # Required, not defaulted: a page that lost its next_cursor would end the roster early,
    # and a partial roster would deactivate everyone on the missing pages.
    if "next_cursor" not in page:
        raise broke("next_cursor is missing")
    cursor = page["next_cursor"]
    if cursor is not None and (not isinstance(cursor, str) or not cursor):
        raise broke("next_cursor is neither null nor a cursor")
    for name in RECORD_LISTS:
        if name not in page:
            continue
        records = page[name]
        if not isinstance(records, list):
            raise broke(f"{name} is not a list")
        for index, record in enumerate(records, start=1):
            if not isinstance(record, dict):
                raise broke(f"entry {index} of {name} is not an object")
    if page_no == 1 and not isinstance(page.get("school"), dict):
        raise broke("the first page has no school")
    return page


class RosterClient:
    """Talks to the roster export of one center."""

    def __init__(
        self,
        base_url: str,
        center_id: str,
        token: str,
        *,
        page_limit: int = 1000,
        timeout_s: float = 20.0,
        max_attempts: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        """``jitter(low, high)`` draws each back-off (full jitter); tests pass a fixed one."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if page_limit < 1:
            raise ValueError("page_limit must be at least 1")
        self.base_url = base_url
        self.center_id = center_id
        self._token = token
        self.page_limit = page_limit
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self._sleep = sleep
        self._transport = transport
        # Built once: making an SSL context costs ~20 ms, more than a whole 304 round trip.
        self._ssl_context: ssl.SSLContext | None = None
        self._jitter = jitter
        self._path = f"/v1/centers/{quote(center_id, safe='')}/roster"

    def __repr__(self) -> str:
        return f"RosterClient({self.base_url!r}, {self.center_id!r})"

    def fetch(self, etag: str | None) -> RosterFetch:
        """Every page of the current export, or ``not_modified`` when it still has ``etag``."""
        started = time.monotonic()
        pages: list[bytes] = []
        bytes_received = 0
        result_etag: str | None = None
        cursor: str | None = None
        seen_cursors: set[str] = set()
        https = self.base_url.startswith("https:")
        if https and self._ssl_context is None and self._transport is None:
            self._ssl_context = httpx.create_ssl_context()
        with httpx.Client(
            base_url=self.base_url,
            timeout=self.timeout_s,
            transport=self._transport,
            # Plain HTTP (the stand-in, a LAN source) has no TLS to verify: skip loading CAs.
            verify=self._ssl_context if https and self._ssl_context else https,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
        ) as http:
            while True:
                page_no = len(pages) + 1
                params: dict[str, str | int] = {"limit": self.page_limit}
                headers: dict[str, str] = {}
                if cursor is None:
                    if etag:
                        headers["If-None-Match"] = etag
                else:
                    params["cursor"] = cursor
                response = self._get(http, page_no, params, headers)
                if response.status_code == 304:
                    log.info("roster not modified (etag %s)", etag)
                    return RosterFetch(not_modified=True, etag=etag, bodies=(), bytes_received=0)
                bytes_received += len(response.content)
                try:
                    parsed = json.loads(response.content)
                except (ValueError, RecursionError):  # also UnicodeDecodeError; nesting past the decoder's limit
                    raise RosterFetchError(f"{_page_name(page_no)} was not valid JSON") from None
                page = check_page_envelope(parsed, page_no)
                page_etag = page.get("etag") if isinstance(page.get("etag"), str) else None
                if page_no == 1:
                    result_etag = page_etag or response.headers.get("etag")
                elif page_etag and result_etag and page_etag != result_etag:
                    raise RosterFetchError(
                        f"The roster changed while it was being read ({_page_name(page_no).lower()} "
                        "belongs to a newer export); the next sync starts over"
                    )
                pages.append(response.content)
                cursor = page["next_cursor"]
                del page, parsed  # only the bytes are kept (see RosterFetch)
                if cursor is None:
                    break
                if cursor in seen_cursors:
                    raise RosterFetchError(
                        f"The roster source sent the same paging cursor twice (after page {page_no}); "
                        "the export would never end"
                    )
                seen_cursors.add(cursor)
        log.info(
            "roster fetched: %s pages, %s bytes, etag %s, in %.2f s",
            len(pages),
            bytes_received,
            result_etag,
            time.monotonic() - started,
        )
        return RosterFetch(not_modified=False, etag=result_etag, bodies=tuple(pages), bytes_received=bytes_received)

    def _get(
        self, http: httpx.Client, page_no: int, params: dict[str, str | int], headers: dict[str, str]
    ) -> httpx.Response:
        """One page, retried: a 200 response, or a 304 when it asked with If-None-Match."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._attempt(http, page_no, params, headers)
            except _Retry as failure:
                if failure.retry_after_s is not None and failure.retry_after_s > self.retry_after_max_s:
                    raise RosterFetchError(
                        f"The roster source is busy and asked to wait {failure.retry_after_s:.0f} s "
                        f"({failure.problem}), longer than the {self.retry_after_max_s:.0f} s a sync waits; "
                        "the next sync tries again"
                    ) from None
                if attempt == self.max_attempts:
                    outcome = "kept failing" if failure.answered else "could not be reached"
                    attempts = f"{self.max_attempts} attempt{'s' if self.max_attempts > 1 else ''}"
                    raise RosterFetchError(
                        f"The roster source {outcome} ({failure.problem}) after {attempts}"
                    ) from None
                if failure.retry_after_s is not None:
                    delay = failure.retry_after_s
                else:
                    delay = self._jitter(0.0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))
                log.warning(
                    "roster page %s, attempt %s of %s: %s; retrying in %.1f s",
                    page_no,
                    attempt,
                    self.max_attempts,
                    failure.problem,
                    delay,
                )
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self, http: httpx.Client, page_no: int, params: dict[str, str | int], headers: dict[str, str]
    ) -> httpx.Response:
        try:
            response = http.get(self._path, params=params, headers=headers)
        except httpx.UnsupportedProtocol:
            raise RosterFetchError("The roster source's address is not an http:// or https:// address") from None
        except httpx.TimeoutException:
            raise _Retry(f"no answer within {self.timeout_s:g} s") from None
        except httpx.RequestError as exc:
            raise _Retry(_connection_problem(exc)) from None
        status = response.status_code
        if status == 200 or (status == 304 and "If-None-Match" in headers):
            return response
        if status == 429 or status >= 500:
            retry_after = (
                retry_after_seconds(response.headers.get("retry-after"), date=response.headers.get("date"))
                if status in RETRY_AFTER_STATUSES
                else None
            )
            raise _Retry(
                f"answered {status} {response.reason_phrase}".rstrip(), answered=True, retry_after_s=retry_after
            )
        raise RosterFetchError(self._refusal(status, response.reason_phrase, page_no))

    def _refusal(self, status: int, reason: str, page_no: int) -> str:
        """Statuses not worth retrying, in words."""
        if status == 401:
            return "The roster source answered 401: the appliance's source token was refused"
        if status == 403:
            return f"The roster source answered 403: this appliance may not read center {self.center_id}'s roster"
        if status == 404:
            return f"The roster source answered 404: it does not know center {self.center_id}"
        if status == 410 and page_no > 1:
            return "The roster source expired the paging cursor (410) mid-way; the next sync starts over"
        return f"The roster source refused {_page_name(page_no).lower()} ({status} {reason})".replace(" )", ")")
