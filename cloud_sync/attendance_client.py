"""POST attendance batches to the cloud (attendance-push.md). One kept-alive httpx client."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from cloud_sync.roster_client import retry_after_seconds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushResult:
    accepted: list[str]
    duplicates: list[str]
    rejected: dict[str, str]  # event id -> reason
    cloud_date: dt.datetime | None = None


@dataclass(frozen=True)
class PushError(Exception):
    """The batch did not get through. ``auth``: 401/403 (stop sending); otherwise retry later."""

    message: str
    auth: bool = False
    retry_after_s: float | None = None
    cloud_date: dt.datetime | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return self.message


def _http_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class AttendanceClient:
    def __init__(
        self,
        base_url: str,
        center_id: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/v1/centers/{center_id}/attendance"
        self._http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def post(self, events: Sequence[dict[str, Any]]) -> PushResult:
        try:
            response = self._http.post(self._url, json={"events": list(events)})
        except httpx.TimeoutException:
            raise PushError("the cloud did not answer in time") from None
        except httpx.TransportError as exc:
            raise PushError(f"the cloud could not be reached ({type(exc).__name__})") from None
        date = _http_date(response.headers.get("date"))
        status = response.status_code
        if status in (401, 403):
            raise PushError(f"the cloud refused the appliance's token ({status})", auth=True, cloud_date=date)
        if status == 429 or status >= 500:
            wait = retry_after_seconds(response.headers.get("retry-after"), date=response.headers.get("date"))
            raise PushError(f"the cloud answered {status}", retry_after_s=wait, cloud_date=date)
        if status != 200:
            raise PushError(f"the cloud answered {status}", cloud_date=date)
        try:
            body = response.json()
            lists = [body.get(key, []) for key in ("accepted", "duplicates", "rejected")]
            if not all(isinstance(v, list) for v in lists):
                raise TypeError("not lists")
            accepted = [i for i in lists[0] if isinstance(i, str)]
            duplicates = [i for i in lists[1] if isinstance(i, str)]
            rejected = {str(r["event_id"]): str(r.get("reason") or "rejected") for r in lists[2]}
        except (ValueError, TypeError, KeyError, AttributeError):
            raise PushError("the cloud's answer was not in the expected format", cloud_date=date) from None
        return PushResult(accepted, duplicates, rejected, date)
