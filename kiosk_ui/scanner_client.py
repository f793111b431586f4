"""The scanner process's side of the station API (docs/scanner.md): each scanned text goes to
``POST /api/v1/identify`` with ``method: qr``; health goes to
``POST /api/v1/stations/{station_id}/scanner``. One kept-alive httpx client.

The scan loop (edge.scanner) holds no HTTP code: the composition root hands it ``post`` and
``report`` from here. The scanned text is the secret of the request body and is never logged.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from edge import const
from edge.scanner import PostResult, ScannerHealth

log = logging.getLogger(__name__)


class ScannerClientError(Exception):
    """A health report did not get through (the scan loop logs it once and carries on)."""


class ScannerClient:
    def __init__(
        self,
        hub_url: str,
        station_token: str | None = None,
        *,
        timeout_s: float = const.SCAN_POST_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.hub_url = hub_url.rstrip("/")
        headers = {"Authorization": f"Bearer {station_token}"} if station_token else {}
        self._http = httpx.Client(headers=headers, timeout=timeout_s, transport=transport)
        self._auth_warned = False

    def close(self) -> None:
        self._http.close()

    def post(self, station_id: str, text: str) -> PostResult:
        """Identify whoever's code this is, at ``station_id``. Never raises: an unreachable hub is
        ``delivered=False`` (the loop tries the next sighting again), any answer is delivered."""
        body = {"station_id": station_id, "method": "qr", "secret": text}
        try:
            response = self._http.post(f"{self.hub_url}/api/v1/identify", json=body)
        except httpx.TimeoutException:
            return PostResult(False, "the hub did not answer in time")
        except httpx.TransportError as exc:
            return PostResult(False, f"the hub could not be reached ({type(exc).__name__})")
        status = response.status_code
        answer = _json(response)
        if status == 200:
            person = answer.get("person")
            person_id = person.get("id") if isinstance(person, dict) else None
            return PostResult(True, "identified", str(person_id) if person_id else None)
        if status in (403, 423) and isinstance(answer.get("reason"), str):
            return PostResult(True, answer["reason"])
        if status == 401:
            self._warn_auth(status)
            return PostResult(True, "unauthorized")
        if status == 429 or status >= 500:
            return PostResult(False, f"the hub answered {status}")
        return PostResult(True, f"rejected ({status})")

    def report(self, health: ScannerHealth) -> None:
        """Send a health report; raises ``ScannerClientError`` when it does not get through."""
        url = f"{self.hub_url}/api/v1/stations/{health.station_id}/scanner"
        try:
            response = self._http.post(url, json=health.as_json())
        except httpx.HTTPError as exc:
            raise ScannerClientError(f"the hub could not be reached ({type(exc).__name__})") from None
        if response.status_code == 401:
            self._warn_auth(401)
        if response.status_code != 200:
            raise ScannerClientError(f"the hub answered {response.status_code}")

    def _warn_auth(self, status: int) -> None:
        if not self._auth_warned:
            self._auth_warned = True
            log.error(
                "the hub at %s refused this scanner (%d): set this station's token in station_tokens",
                self.hub_url,
                status,
            )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
