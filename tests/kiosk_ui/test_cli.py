"""The command line as installers and support scripts use it (station-api.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kiosk_ui.cli import main
from tests.exports import export, standard_family, teacher


@pytest.fixture
def env(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHECKIN_EDGE_DATA_DIR", str(data_dir))
    monkeypatch.delenv("CHECKIN_EDGE_CONFIG", raising=False)
    return data_dir


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_export(tmp_path: Path, page: dict[str, Any] | list[dict[str, Any]]) -> Path:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(page))
    return path


def test_roster_apply_json_is_the_contract_report(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = export(
        employees=[teacher(), teacher("E4", first_name="Sam", last_name="Lee", primary_work_area=None)],
        families=[standard_family()],
    )
    code, out, _ = run(capsys, "roster", "apply", str(write_export(tmp_path, page)), "--json")
    assert code == 0
    report = json.loads(out)
    assert list(report) == ["outcome", "counts", "skipped", "demoted", "hints"]
    assert report["outcome"] == "ok"
    assert report["counts"] == {"added": 7, "updated": 0, "deactivated": 0, "unchanged": 0, "skipped": 1}
    assert report["skipped"] == [
        {
            "kind": "teacher",
            "source_id": "E4",
            "rule": "R3",
            "reason": "Teacher Sam Lee did not sync: no Primary Work Area",
        }
    ]


def test_roster_show_json_after_apply(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(
        capsys,
        "roster",
        "apply",
        str(write_export(tmp_path, export(employees=[teacher()], families=[standard_family()]))),
    )
    code, out, _ = run(capsys, "roster", "show", "--json")
    assert code == 0
    shown = json.loads(out)
    assert list(shown) == ["school", "rooms", "teachers", "people", "children"]
    assert shown["teachers"] == [{"id": "E1", "name": "Lee Park", "room": "R1", "active": True}]
    assert shown["rooms"][0] == {"id": "R1", "name": "Infants", "active": True}
    assert {p["id"]: p["role"] for p in shown["people"]} == {"P1": "payer", "P2": "pickup"}
    assert "7305" not in out
    assert "1964" not in out


def test_roster_show_human(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "roster", "apply", str(write_export(tmp_path, export(families=[standard_family()]))))
    code, out, _ = run(capsys, "roster", "show")
    assert code == 0
    assert "Maple Street Early Learning" in out
    assert "Mai Nguyen" in out


def test_roster_apply_accepts_a_list_of_pages(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = export(employees=[teacher()])
    first["next_cursor"] = "c2"
    second = {"families": [standard_family()], "employees": [], "next_cursor": None}
    code, out, _ = run(capsys, "roster", "apply", str(write_export(tmp_path, [first, second])), "--json")
    assert code == 0
    assert json.loads(out)["counts"]["added"] == 7


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "neither an export page"),
        (json.dumps({**export(), "next_cursor": "more"}), "incomplete"),
    ],
    ids=["missing", "not-json", "not-pages", "incomplete"],
)
def test_roster_apply_bad_file(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "export.json"
    if content is not None:
        path.write_text(content)
    code, _, err = run(capsys, "roster", "apply", str(path))
    assert code == 2
    assert message in err


def test_roster_apply_of_a_broken_export_exits_non_zero(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = export()
    page["families"] = "nope"
    code, out, _ = run(capsys, "roster", "apply", str(write_export(tmp_path, page)), "--json")
    assert code == 1
    assert json.loads(out)["outcome"] == "failed"


def test_sync_next_json_gives_utc_instants(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sync", "--next", "4", "--after", "2026-03-08T00:00:00Z", "--json")
    assert code == 0
    assert json.loads(out) == [
        "2026-03-08T07:00:00Z",
        "2026-03-08T10:00:00Z",
        "2026-03-08T16:00:00Z",
        "2026-03-08T22:00:00Z",
    ]


def test_sync_next_human_shows_pacific_and_center_time(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    school = {**export()["school"], "time_zone": "America/New_York"}
    run(capsys, "roster", "apply", str(write_export(tmp_path, export(school=school))))
    code, out, _ = run(capsys, "sync", "--next", "2", "--after", "2026-01-15T00:00:00Z")
    assert code == 0
    first = out.splitlines()[0]
    assert "23:00 PST" in first  # 2026-01-14 23:00 Pacific ...
    assert "02:00 EST" in first  # ... is 02:00 in New York


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sync", "--next", "0"], "--next"),
        (["sync", "--next", "2", "--after", "yesterday"], "ISO-8601"),
        (["sync", "--next", "2", "--after", "2026-01-01T00:00:00"], "needs a zone"),
        (["sync"], "No roster source is set"),
    ],
)
def test_sync_usage_errors(env: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_config_check_names_the_bad_key(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text('center_id = "S1"\nsync_slot = ["03:00"]\n')
    code, _, err = run(capsys, "--config", str(bad), "config", "check")
    assert code == 2
    assert "sync_slot" in err


def test_config_check_refuses_a_placeholder_secret_outside_demo(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('source_url = "http://127.0.0.1:9"\nsource_token = "change-me"\n')
    code, _, err = run(capsys, "--config", str(cfg), "config", "check")
    assert code == 2
    assert "source_token" in err
    cfg.write_text('source_url = "http://127.0.0.1:9"\nsource_token = "s3cret-value"\n')
    assert run(capsys, "--config", str(cfg), "config", "check")[0] == 0


def test_config_dump_hides_secrets(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHECKIN_EDGE_SOURCE_TOKEN", "very-secret-token")
    code, out, _ = run(capsys, "config", "dump")
    assert code == 0
    assert "very-secret-token" not in out
    assert json.loads(out)["source_token"] == "(set)"


@pytest.mark.empty_database  # PostgreSQL run: from no schema, as a new SQLite file
def test_db_upgrade_is_idempotent(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "db", "upgrade", "--json")
    assert code == 0
    assert json.loads(out)["applied"]
    code, out, _ = run(capsys, "db", "upgrade", "--json")
    assert json.loads(out) == {"applied": []}
