"""`checkin-edge user …`: dashboard logins from the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.kiosk_ui.test_cli import env, run, write_export

__all__ = ["env"]


def with_stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_user_add_list_passwd_disable(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.door import door_export

    assert run(capsys, "roster", "apply", str(write_export(tmp_path, door_export())))[0] == 0
    with_stdin(monkeypatch, "correct horse battery\n")
    assert run(capsys, "user", "add", "Dana", "--role", "director", "--password-stdin")[1] == "Added dana (director)\n"
    with_stdin(monkeypatch, "another long password\n")
    code, out, _ = run(capsys, "user", "add", "lee", "--role", "teacher", "--teacher", "E1", "--password-stdin")
    assert (code, out) == (0, "Added lee (teacher)\n")
    code, out, _ = run(capsys, "user", "list")
    assert out.splitlines() == [
        "dana                 director  active",
        "lee                  teacher   active  teacher E1 (Lee Park)",
    ]
    with_stdin(monkeypatch, "a third good password\n")
    assert run(capsys, "user", "passwd", "dana", "--password-stdin")[0] == 0
    assert run(capsys, "user", "disable", "lee")[1] == "lee disabled\n"
    listed = json.loads(run(capsys, "user", "list", "--json")[1])
    assert [(u["username"], u["role"], u["teacher_id"], u["active"]) for u in listed] == [
        ("dana", "director", None, True),
        ("lee", "teacher", "E1", False),
    ]
    assert "password" not in json.dumps(listed).replace("password_changed_at", "")


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["user", "add", "dana", "--password-stdin"], "correct horse battery\n", "needs --role"),
        (["user", "add", "dana", "--role", "director", "--password-stdin"], "short\n", "at least 10"),
        (["user", "add", "dana", "--role", "director", "--password-stdin"], "", "no password on standard input"),
        (["user", "add", "no way", "--role", "teacher", "--password-stdin"], "correct horse battery\n", "usable"),
        (["user", "passwd", "nobody", "--password-stdin"], "correct horse battery\n", "No account called nobody"),
        (["user", "add", "--role", "teacher"], "", "usage: checkin-edge user add USERNAME"),
    ],
)
def test_user_mistakes_are_told_plainly(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: str,
    message: str,
) -> None:
    with_stdin(monkeypatch, stdin)
    code, _out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
