"""RosterClient against the stand-in cloud on a real loopback port: paging, the 304 fast path,
and every way the export can fail (contracts/desktop-roster.md, "Errors to expect and survive")."""

from __future__ import annotations

import copy
import logging
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from cloud_sync.roster_client import (
    RosterClient,
    RosterFetch,
    RosterFetchError,
    check_page_envelope,
    retry_after_seconds,
)
from cloud_sync.standin.server import StandinCloud
from tests.cloud_sync.conftest import RecordingSleep

Export = dict[str, Any]


def upper_bound(low: float, high: float) -> float:
    """A jitter that always draws the cap, so back-off is predictable."""
    return high


def client(cloud: StandinCloud, sleeps: RecordingSleep, **options: Any) -> RosterClient:
    options.setdefault("jitter", upper_bound)
    options.setdefault("timeout_s", 2.0)
    return RosterClient(cloud.url, cloud.state.center_id, cloud.state.source_token, sleep=sleeps, **options)


def fails(roster: RosterClient, cloud: StandinCloud, match: str, etag: str | None = None) -> RosterFetchError:
    with pytest.raises(RosterFetchError, match=match) as caught:
        roster.fetch(etag)
    assert cloud.state.source_token not in str(caught.value)
    assert caught.value.message == str(caught.value)
    return caught.value


def records(fetch: RosterFetch) -> tuple[list[Any], list[Any]]:
    return (
        [e for page in fetch.pages for e in page["employees"]],
        [f for page in fetch.pages for f in page["families"]],
    )


# -- the happy paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("page_limit", [1000, 40, 9])
def test_fetch_follows_the_cursor_to_the_end(
    standin: StandinCloud, sleeps: RecordingSleep, roster_300: Export, page_limit: int
) -> None:
    fetch = client(standin, sleeps, page_limit=page_limit).fetch(None)
    assert not fetch.not_modified
    assert fetch.etag == standin.state.etag
    assert records(fetch) == (roster_300["employees"], roster_300["families"])
    assert fetch.pages[0]["school"] == roster_300["school"]
    assert fetch.pages[-1]["next_cursor"] is None
    expected_pages = -(-(len(roster_300["employees"]) + len(roster_300["families"])) // page_limit)
    assert len(fetch.pages) == expected_pages == standin.state.requests["roster"]
    assert fetch.bytes_received > 50_000
    assert sleeps.calls == []


def test_the_current_etag_is_one_304_round_trip(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    etag = standin.state.etag
    fetch = client(standin, sleeps, page_limit=10).fetch(etag)
    assert fetch == RosterFetch(not_modified=True, etag=etag, bodies=(), bytes_received=0)
    assert standin.state.requests["roster"] == 1


def test_a_stale_or_forced_etag_fetches_everything(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    roster = client(standin, sleeps)
    old = standin.state.etag
    assert not roster.fetch('W/"stale"').not_modified
    standin.state.force_etag('W/"new-etag-same-content"')
    fetch = roster.fetch(old)
    assert not fetch.not_modified
    assert fetch.etag == 'W/"new-etag-same-content"'


# -- connection failures ------------------------------------------------------------------------


def test_a_server_that_stays_down_fails_after_max_attempts(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    standin.down()
    fails(
        client(standin, sleeps, max_attempts=3),
        standin,
        r"^The roster source could not be reached \(connection refused\) after 3 attempts$",
    )
    assert sleeps.calls == [0.5, 1.0]


def test_a_server_back_up_within_the_attempts_is_read_in_full(
    standin: StandinCloud, sleeps: RecordingSleep, roster_300: Export
) -> None:
    standin.down()
    sleeps.on_call = lambda n: standin.up() if n == 2 else None
    fetch = client(standin, sleeps, max_attempts=3).fetch(None)
    assert records(fetch) == (roster_300["employees"], roster_300["families"])
    assert len(sleeps.calls) == 2


def test_a_timeout_is_retried(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    standin.state.set_fault("roster", delay_s=1.0, times=1)
    fetch = client(standin, sleeps, timeout_s=0.3).fetch(None)
    assert fetch.pages
    assert len(sleeps.calls) == 1


def test_a_server_that_never_answers_in_time_fails(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    standin.state.set_fault("roster", delay_s=1.0)
    fails(
        client(standin, sleeps, timeout_s=0.3, max_attempts=2),
        standin,
        r"^The roster source could not be reached \(no answer within 0\.3 s\) after 2 attempts$",
    )


# -- 5xx and 429 --------------------------------------------------------------------------------


def test_a_5xx_storm_that_passes_is_ridden_out(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    standin.state.set_fault("roster", status=502, times=3)
    fetch = client(standin, sleeps, page_limit=50).fetch(None)
    assert fetch.pages
    assert sleeps.calls == [0.5, 1.0, 2.0]


def test_5xx_on_a_later_page_retries_that_page_only(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    standin.state.set_fault("roster", status=500, skip=2, times=2)
    fetch = client(standin, sleeps, page_limit=50).fetch(None)
    assert standin.state.requests["roster"] == len(fetch.pages) + 2
    assert sleeps.calls == [0.5, 1.0]


def test_5xx_forever_fails_after_max_attempts_with_growing_back_off(
    standin: StandinCloud, sleeps: RecordingSleep
) -> None:
    standin.state.set_fault("roster", status=500)
    fails(
        client(standin, sleeps),
        standin,
        r"^The roster source kept failing \(answered 500 Internal Server Error\) after 5 attempts$",
    )
    assert sleeps.calls == [0.5, 1.0, 2.0, 4.0]
    assert standin.state.requests["roster"] == 5


def test_back_off_is_capped_and_jittered(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    standin.state.set_fault("roster", status=503)
    fails(client(standin, sleeps, backoff_base_s=1.0, backoff_max_s=3.0), standin, "kept failing")
    assert sleeps.calls == [1.0, 2.0, 3.0, 3.0]
    jittered = RecordingSleep()
    fails(client(standin, jittered, jitter=random.uniform, max_attempts=6), standin, "kept failing")
    caps = [0.5, 1.0, 2.0, 4.0, 8.0]
    assert all(0.0 <= slept <= cap for slept, cap in zip(jittered.calls, caps, strict=True))


def test_429_retry_after_is_honoured(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    standin.state.set_fault("roster", status=429, retry_after=7, times=1)
    assert client(standin, sleeps).fetch(None).pages
    assert sleeps.calls == [7.0]


def test_503_retry_after_as_an_http_date_is_honoured(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    retry_at = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    standin.state.set_fault("roster", status=503, retry_after=retry_at, times=1)
    assert client(standin, sleeps).fetch(None).pages
    (slept,) = sleeps.calls
    assert 28.0 <= slept <= 31.0


def test_a_retry_after_beyond_the_limit_fails_at_once(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    standin.state.set_fault("roster", status=429, retry_after=600)
    fails(
        client(standin, sleeps),
        standin,
        r"^The roster source is busy and asked to wait 600 s \(answered 429 Too Many Requests\), "
        r"longer than the 120 s a sync waits; the next sync tries again$",
    )
    assert sleeps.calls == []
    assert standin.state.requests["roster"] == 1


# -- answers that are not retried ---------------------------------------------------------------


def test_a_refused_token_is_not_retried(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    roster = RosterClient(standin.url, standin.state.center_id, "not-the-token-0c9d", sleep=sleeps)
    error = fails(roster, standin, r"^The roster source answered 401: the appliance's source token was refused$")
    assert "not-the-token-0c9d" not in error.message
    assert sleeps.calls == []
    assert standin.state.requests["roster"] == 1


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (403, r"^The roster source answered 403: this appliance may not read center maple-street's roster$"),
        (400, r"^The roster source refused page 1 of the roster \(400 Bad Request\)$"),
        (422, r"^The roster source refused page 1 of the roster \(422 Unprocessable (Entity|Content)\)$"),
    ],
)
def test_other_4xx_are_not_retried(standin: StandinCloud, sleeps: RecordingSleep, status: int, message: str) -> None:
    standin.state.set_fault("roster", status=status)
    fails(client(standin, sleeps), standin, message)
    assert standin.state.requests["roster"] == 1


def test_an_unknown_center_is_404(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    roster = RosterClient(standin.url, "elm-street", standin.state.source_token, sleep=sleeps)
    fails(roster, standin, r"^The roster source answered 404: it does not know center elm-street$")


def test_an_expired_cursor_stops_the_run(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    standin.state.set_fault("roster", expire_cursor=True)
    fails(
        client(standin, sleeps, page_limit=50),
        standin,
        r"^The roster source expired the paging cursor \(410\) mid-way; the next sync starts over$",
    )
    assert standin.state.requests["roster"] == 2


def test_a_roster_changed_mid_way_stops_the_run(
    standin: StandinCloud, sleeps: RecordingSleep, roster_300: Export
) -> None:
    changed = copy.deepcopy(roster_300)
    changed["families"][-1]["name"] = "Changed"
    standin.state.set_fault("roster", status=503, skip=1, times=1)  # page 2 fails once...
    sleeps.on_call = lambda n: standin.state.set_roster(changed)  # ...and the export changes meanwhile
    fails(client(standin, sleeps, page_limit=50), standin, r"expired the paging cursor \(410\) mid-way")


# -- pages that break the format ----------------------------------------------------------------


def test_a_page_that_is_not_json(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    standin.state.set_fault("roster", bad_json=True, skip=1, times=1)
    fails(client(standin, sleeps, page_limit=50), standin, r"^Page 2 of the roster was not valid JSON$")
    assert sleeps.calls == []


def test_a_page_that_breaks_the_schema(standin: StandinCloud, sleeps: RecordingSleep) -> None:
    standin.state.set_fault("roster", break_schema=True, skip=2, times=1)
    fails(
        client(standin, sleeps, page_limit=50),
        standin,
        r"^Page 3 of the roster broke the export format: families is not a list$",
    )


@pytest.mark.parametrize(
    ("page", "page_no", "problem"),
    [
        ([], 1, "the page is not a JSON object"),
        ({"school": {}}, 1, "next_cursor is missing"),
        ({"school": {}, "next_cursor": 3}, 1, "next_cursor is neither null nor a cursor"),
        ({"school": {}, "next_cursor": ""}, 1, "next_cursor is neither null nor a cursor"),
        ({"school": {}, "next_cursor": None, "families": "F1"}, 1, "families is not a list"),
        ({"school": {}, "next_cursor": None, "employees": [{}, 7]}, 1, "entry 2 of employees is not an object"),
        ({"school": {}, "next_cursor": None, "rooms": None}, 1, "rooms is not a list"),
        ({"next_cursor": None, "keys": {}}, 2, "keys is not a list"),
        ({"next_cursor": None}, 1, "the first page has no school"),
        ({"school": "Maple", "next_cursor": None}, 1, "the first page has no school"),
    ],
)
def test_the_page_envelope_is_checked(page: Any, page_no: int, problem: str) -> None:
    with pytest.raises(RosterFetchError) as caught:
        check_page_envelope(page, page_no)
    assert caught.value.message == f"Page {page_no} of the roster broke the export format: {problem}"


@pytest.mark.parametrize(
    "page",
    [
        {"school": {}, "next_cursor": None},
        {"school": {}, "next_cursor": "abc", "families": [{"no": "id"}], "employees": [], "extra": 1},
    ],
)
def test_records_themselves_are_not_checked(page: dict[str, Any]) -> None:
    assert check_page_envelope(page, 1) is page
    assert check_page_envelope({"next_cursor": None, "families": [{}]}, 2)


# -- Retry-After --------------------------------------------------------------------------------

NOW = datetime(2026, 11, 29, 23, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "date", "seconds"),
    [
        (None, None, None),
        ("7", None, 7.0),
        (" 2.5 ", None, 2.5),
        ("-3", None, 0.0),
        ("nan", None, None),
        ("soon", None, None),
        ("Sun, 29 Nov 2026 23:00:30 GMT", None, 30.0),
        ("Sun, 29 Nov 2026 22:59:00 GMT", None, 0.0),
        # measured against the server's Date, not a wrong local clock
        ("Sun, 29 Nov 2026 23:00:30 GMT", "Sun, 29 Nov 2026 23:00:20 GMT", 10.0),
    ],
)
def test_retry_after_parsing(value: str | None, date: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, date=date, now=NOW) == seconds


# -- what is logged -----------------------------------------------------------------------------


def test_the_token_is_never_logged(
    standin: StandinCloud, sleeps: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    standin.state.set_fault("roster", status=503, times=2)
    client(standin, sleeps, page_limit=100).fetch(None)
    standin.down()
    with pytest.raises(RosterFetchError):
        client(standin, sleeps, max_attempts=2).fetch(None)
    assert "retrying" in caplog.text
    assert standin.state.source_token not in caplog.text
