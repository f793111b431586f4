"""scripts/install-pi against a temporary root (--root): every file it writes, twice.

What would change the running system (apt-get, useradd, chown to users that do not exist
here, systemctl start, pip into /opt, the database) is printed as "would run: …" in that mode;
those lines are checked too. Units are enabled inside the root with `systemctl --root`.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from edge.config import load_config

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "install-pi"
FLAGS = [
    "--center-id",
    "C-042 & Sons",
    "--source-url",
    "https://backoffice.example/api",
    "--source-token",
    'src-"tok"\\&1',
    "--cloud-url",
    "https://cloud.example/api",
    "--cloud-token",
    "cloud-tok-2",
    "--camera",
    "/dev/video2",
    "--station",
    "side-door",
]
UNITS = sorted(p.name for p in (ROOT / "systemd").iterdir() if p.suffix in (".service", ".timer"))
HAS_SYSTEMCTL = shutil.which("systemctl") is not None


def install(root: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKIN_EDGE_")}
    return subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root), "--no-venv", "--non-interactive", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def tree(root: Path) -> dict[str, tuple[str, str]]:
    """Every path under root: (mode, content or link target)."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        mode = stat.filemode(st.st_mode)
        if path.is_symlink():
            found[str(path.relative_to(root))] = (mode, os.readlink(path))
        elif path.is_file():
            found[str(path.relative_to(root))] = (mode, path.read_text())
        else:
            found[str(path.relative_to(root))] = (mode, "")
    return found


def would_run(out: str) -> list[str]:
    return [line.removeprefix("would run: ") for line in out.splitlines() if line.startswith("would run: ")]


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("pi")
    done = install(root, *FLAGS)
    assert done.returncode == 0, done.stderr
    return root, done


def test_config_holds_the_flags_values_and_is_private(first: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, _ = first
    path = root / "etc/checkin-edge/config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "etc/checkin-edge").stat().st_mode) == 0o750
    config = load_config(path)
    assert config.center_id == "C-042 & Sons"
    assert config.source_url == "https://backoffice.example/api"
    assert config.source_token.get_secret_value() == 'src-"tok"\\&1'
    assert config.cloud_url == "https://cloud.example/api"
    assert config.cloud_token.get_secret_value() == "cloud-tok-2"
    assert config.data_dir == Path("/var/lib/checkin-edge")
    assert config.sync_driver == "timer"  # the sync timer is enabled, so serve must not pull too
    assert config.host == "127.0.0.1"
    config.check_secrets()
    # Every example commented out in the file is a real setting with a valid value.
    examples = re.sub(r"(?m)^# (\[station_tokens\]|[a-z_-]+ = .*)$", r"\1", path.read_text())
    assert examples.count("\nbackup_dir = ") == 1
    (root / "examples.toml").write_text(examples)
    try:
        uncommented = load_config(root / "examples.toml")
    finally:
        (root / "examples.toml").unlink()
    assert uncommented.backup_dir == Path("/mnt/backup/checkin-edge")
    assert set(uncommented.station_tokens) == {"back-door"}


def test_every_file_it_writes(first: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, _ = first
    files = tree(root)
    for unit in UNITS:
        assert files[f"etc/systemd/system/{unit}"] == ("-rw-r--r--", (ROOT / "systemd" / unit).read_text())
    assert files["var/lib/checkin-edge"][0] == "drwxr-x---"
    assert files["var/lib/checkin-edge/backups"][0] == "drwx------"
    assert files["etc/checkin-edge/kiosk.env"] == (
        "-rw-r--r--",
        "# The page the touchscreen shows (checkin-edge-kiosk.service).\n"
        "KIOSK_URL=http://127.0.0.1:8080/kiosk?station=side-door\n",
    )
    assert files["etc/checkin-edge/scanner-side-door.env"][1].endswith("\nCAMERA=/dev/video2\n")
    assert files["opt/checkin-edge/docs/install.md"] == ("-rw-r--r--", (ROOT / "docs/install.md").read_text())
    expected = {
        "etc/checkin-edge/config.toml",
        "etc/checkin-edge/kiosk.env",
        "etc/checkin-edge/scanner-side-door.env",
        *(f"etc/systemd/system/{unit}" for unit in UNITS),
        *(f"opt/checkin-edge/docs/{doc.name}" for doc in (ROOT / "docs").glob("*.md")),
    }
    written = {path for path, (mode, _) in files.items() if mode.startswith("-")}
    assert written == expected
    assert not any(".config." in path for path in files)  # no temporary file left behind


@pytest.mark.skipif(not HAS_SYSTEMCTL, reason="systemctl enables units offline with --root")
def test_units_are_enabled_inside_the_root(first: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    root, _ = first
    links = {path: target for path, (mode, target) in tree(root).items() if mode.startswith("l")}
    system = "etc/systemd/system"
    assert links == {
        f"{system}/multi-user.target.wants/checkin-edge.service": "/etc/systemd/system/checkin-edge.service",
        f"{system}/multi-user.target.wants/checkin-edge-kiosk.service": (
            "/etc/systemd/system/checkin-edge-kiosk.service"
        ),
        f"{system}/multi-user.target.wants/checkin-edge-scanner@side-door.service": (
            "/etc/systemd/system/checkin-edge-scanner@.service"
        ),
        f"{system}/timers.target.wants/checkin-edge-sync.timer": "/etc/systemd/system/checkin-edge-sync.timer",
        f"{system}/timers.target.wants/checkin-edge-backup.timer": "/etc/systemd/system/checkin-edge-backup.timer",
    }


def test_system_changes_are_only_announced(first: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    _, done = first
    said = would_run(done.stdout)
    assert said[0] == "apt-get update -qq"
    assert {"libzbar0", "cage", "chromium", "python3-venv"} <= set(said[1].split())
    assert any(s.startswith("useradd --system") and s.endswith(" checkin-edge") for s in said)
    assert any(s.startswith("useradd --system") and s.endswith(" checkin-kiosk") for s in said)
    assert "chown root:checkin-edge /etc/checkin-edge/config.toml" in said
    assert "chown -R checkin-edge:checkin-edge /var/lib/checkin-edge" in said
    assert "python3 -m venv /opt/checkin-edge/venv" in said
    assert f"/opt/checkin-edge/venv/bin/python -m pip install --upgrade {ROOT}" in said
    assert "systemctl daemon-reload" in said
    migrate = (
        "runuser -u checkin-edge -- env CHECKIN_EDGE_CONFIG=/etc/checkin-edge/config.toml "
        "/opt/checkin-edge/venv/bin/checkin-edge db upgrade"
    )
    assert migrate in said
    assert not any(s.endswith("checkin-edge backup") for s in said)  # a first install: nothing to back up
    assert said[-1].startswith("systemctl start checkin-edge.service")
    assert "would run" not in done.stderr


def test_a_second_run_leaves_the_same_tree(tmp_path: Path) -> None:
    root = tmp_path / "pi"
    assert install(root, *FLAGS).returncode == 0
    once = tree(root)
    again = install(root, *FLAGS)
    assert again.returncode == 0, again.stderr
    assert tree(root) == once


def test_an_upgrade_backs_up_then_migrates_and_keeps_an_edited_config(tmp_path: Path) -> None:
    root = tmp_path / "pi"
    assert install(root, *FLAGS).returncode == 0
    config = root / "etc/checkin-edge/config.toml"
    edited = config.read_text().replace("backup_keep = 14", "backup_keep = 30")
    config.write_text(edited)
    (root / "var/lib/checkin-edge/checkin-edge.db").write_bytes(b"")  # an installed appliance

    plain = install(root)  # `git pull && sudo scripts/install-pi`: no settings given
    assert plain.returncode == 0, plain.stderr
    assert config.read_text() == edited
    assert not (root / "etc/checkin-edge/config.toml.new").exists()
    said = would_run(plain.stdout)
    stop = said.index("systemctl stop checkin-edge.service")
    backup = next(i for i, s in enumerate(said) if s.endswith("/opt/checkin-edge/venv/bin/checkin-edge backup"))
    migrate = next(i for i, s in enumerate(said) if s.endswith("/opt/checkin-edge/venv/bin/checkin-edge db upgrade"))
    assert stop < backup < migrate

    changed = install(root, *[v if v != "cloud-tok-2" else "cloud-tok-3" for v in FLAGS])
    assert changed.returncode == 0, changed.stderr
    assert config.read_text() == edited  # never overwritten...
    new = root / "etc/checkin-edge/config.toml.new"
    assert stat.S_IMODE(new.stat().st_mode) == 0o640  # ...the new values wait beside it
    assert load_config(new).cloud_token.get_secret_value() == "cloud-tok-3"
    assert "config.toml.new" in changed.stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], "--center-id is needed"),
        (["--center-id", "C1", "--cloud-url", "https://cloud.example"], "without its token"),
        (["--center-id", "C1", "--station", "front door"], "--station"),
        (["--center-id", "C1", "--bogus"], "unknown option"),
        (["--center-id"], "needs a value"),
    ],
)
def test_refuses_what_would_not_run(tmp_path: Path, flags: list[str], message: str) -> None:
    done = install(tmp_path / "pi", *flags)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "pi/etc/checkin-edge/config.toml").exists()


def test_without_kiosk_or_camera(tmp_path: Path) -> None:
    root = tmp_path / "pi"
    done = install(root, "--center-id", "C1", "--no-kiosk", "--camera", "none", "--no-apt", "--no-start")
    assert done.returncode == 0, done.stderr
    files = tree(root)
    assert "etc/checkin-edge/kiosk.env" not in files
    assert not any("scanner-" in path for path in files)
    assert not any(path.endswith(("kiosk.service", "@side-door.service")) and "wants" in path for path in files)
    said = would_run(done.stdout)
    assert not any("apt-get" in s or "checkin-kiosk" in s or s.startswith("systemctl start") for s in said)
    config = load_config(root / "etc/checkin-edge/config.toml")
    assert config.source_url is None
    assert config.cloud_url is None


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by scripts/test")
def test_shellcheck() -> None:
    done = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout
