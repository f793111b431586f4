"""Which station is asking: station tokens, and the pairing cookie of a remote kiosk screen.

The hub's own screen and scanner talk over loopback and need nothing (the web layer decides
that). A remote scanner or integrator sends its station token; a remote kiosk screen (a
browser, which cannot be given a header) is paired once with its token and then carries a
cookie: the station id and an HMAC of it under a key kept in the data directory, so the
cookie holds no secret of its own and a new key unpairs every screen at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from pathlib import Path

from edge import const
from edge.pins import load_or_create_key

STATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def is_valid_station_id(station_id: str) -> bool:
    return bool(STATION_ID.match(station_id))


class StationAuthenticator:
    def __init__(self, tokens: Mapping[str, str], cookie_key: bytes) -> None:
        # Empty tokens are ignored: an empty Bearer must never match a station left unset.
        self._tokens = {station: token.encode() for station, token in tokens.items() if token}
        self._cookie_key = cookie_key

    @classmethod
    def from_data_dir(cls, tokens: Mapping[str, str], data_dir: Path) -> StationAuthenticator:
        return cls(tokens, load_or_create_key(data_dir / const.STATION_KEY_FILE))

    def station_for_token(self, token: str) -> str | None:
        """The station this bearer token belongs to. Compares against every token in constant
        time, so the answer's timing tells nothing about which station or how close a guess was."""
        given = token.encode("utf-8", "replace")
        found: str | None = None
        for station, expected in self._tokens.items():
            if hmac.compare_digest(given, expected):
                found = station
        return found

    def token_matches(self, station_id: str, token: str) -> bool:
        expected = self._tokens.get(station_id)
        return expected is not None and hmac.compare_digest(token.encode("utf-8", "replace"), expected)

    def cookie_for(self, station_id: str) -> str:
        return f"{station_id}.{self._mac(station_id)}"

    def station_for_cookie(self, value: str) -> str | None:
        """The paired station, while it still has a token: removing its token unpairs the screen."""
        station_id, dot, mac = value.rpartition(".")
        if not dot or not is_valid_station_id(station_id) or station_id not in self._tokens:
            return None
        expected = self._mac(station_id).encode()
        return station_id if hmac.compare_digest(mac.encode("utf-8", "replace"), expected) else None

    def _mac(self, station_id: str) -> str:
        return hmac.new(self._cookie_key, b"station:" + station_id.encode(), hashlib.sha256).hexdigest()
