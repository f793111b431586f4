"""Station tokens and the pairing cookie."""

from __future__ import annotations

from pathlib import Path

from edge.stations import StationAuthenticator, is_valid_station_id

KEY = b"k" * 32


def test_a_token_names_its_station() -> None:
    auth = StationAuthenticator({"front-door": "tok-front", "back-door": "tok-back", "unset": ""}, KEY)
    assert auth.station_for_token("tok-back") == "back-door"
    assert auth.station_for_token("tok-front") == "front-door"
    assert auth.station_for_token("tok-nope") is None
    assert auth.station_for_token("") is None  # an empty token never matches an unset station
    assert auth.station_for_token("ünïcode") is None
    assert auth.token_matches("front-door", "tok-front")
    assert not auth.token_matches("front-door", "tok-back")
    assert not auth.token_matches("unset", "")


def test_the_cookie_proves_the_station_and_nothing_else() -> None:
    auth = StationAuthenticator({"back-door": "tok-back", "side.door": "tok-side"}, KEY)
    cookie = auth.cookie_for("back-door")
    assert "tok-back" not in cookie
    assert auth.station_for_cookie(cookie) == "back-door"
    assert auth.station_for_cookie(auth.cookie_for("side.door")) == "side.door"
    forged = cookie.replace("back-door", "side.door")
    assert auth.station_for_cookie(forged) is None
    assert auth.station_for_cookie(cookie[:-1] + ("0" if cookie[-1] != "0" else "1")) is None
    assert auth.station_for_cookie("back-door") is None
    assert auth.station_for_cookie("") is None
    assert auth.station_for_cookie("bäck.ü") is None
    # Another key (a new appliance, or the key replaced) unpairs every screen.
    assert StationAuthenticator({"back-door": "tok-back"}, b"x" * 32).station_for_cookie(cookie) is None
    # Removing the station's token unpairs its screen.
    assert StationAuthenticator({}, KEY).station_for_cookie(cookie) is None


def test_the_cookie_key_lives_in_the_data_dir(tmp_path: Path) -> None:
    first = StationAuthenticator.from_data_dir({"back-door": "t"}, tmp_path)
    again = StationAuthenticator.from_data_dir({"back-door": "t"}, tmp_path)
    assert again.station_for_cookie(first.cookie_for("back-door")) == "back-door"
    assert (tmp_path / "station.key").stat().st_mode & 0o777 == 0o600


def test_station_ids() -> None:
    assert is_valid_station_id("front-door")
    assert is_valid_station_id("door_2.east")
    assert not is_valid_station_id("")
    assert not is_valid_station_id("-door")
    assert not is_valid_station_id("door one")
    assert not is_valid_station_id("d" * 65)
