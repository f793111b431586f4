"""The unit files in systemd/: verified by systemd itself, and checked for what the design asks.

``systemd-analyze verify`` runs with ``--root`` on a throwaway tree holding the units where the
installer puts them, the system's own units (``sysinit.target`` and friends) and a stand-in for
every program an ``ExecStart=`` names: verify insists that those exist, and
``/opt/checkin-edge/venv`` does not on a build machine. Verify exits 0 even for an unknown
key or a value it cannot parse (it only warns, then ignores the line), so any output at all
fails the test; the broken copies below prove a typo is caught.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk_ui.cli import build_parser
from tests.dbenv import clean_env

ROOT = Path(__file__).parents[1]
UNITS_DIR = ROOT / "systemd"
UNITS = sorted(p.name for p in UNITS_DIR.iterdir() if p.suffix in (".service", ".timer"))
SYSTEM_UNITS = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None)
INSTANCE = "front-door"
PYTHON_UNITS = [
    "checkin-edge.service",
    "checkin-edge-backup.service",
    "checkin-edge-sync.service",
    f"checkin-edge-scanner@{INSTANCE}.service",
]

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None or SYSTEM_UNITS is None,
    reason="systemd-analyze is installed by scripts/test",
)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value (a key may repeat), continuation lines joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    joined = re.sub(r"\\\n\s*", " ", text)
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    return parse_unit((UNITS_DIR / name).read_text())


def one(name: str, section: str, key: str) -> str:
    values = unit(name)[section].get(key, [])
    assert len(values) == 1, f"{name}: [{section}] {key} = {values}"
    return values[0]


def exec_programs() -> set[str]:
    programs = set()
    for name in UNITS:
        for key, values in unit(name).get("Service", {}).items():
            if key.startswith("Exec"):
                programs.update(v.split()[0].lstrip("-@:+!") for v in values)
    return programs


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    assert SYSTEM_UNITS is not None
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for program in exec_programs():
        assert program.startswith("/"), f"ExecStart needs an absolute path: {program}"
        stand_in = root / program.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
    return root


def verify(root: Path, *names: str) -> str:
    """Everything systemd-analyze says about the named units; "" when they are correct."""
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = (out.stdout + out.stderr).strip()
    return said or ("" if out.returncode == 0 else f"exit status {out.returncode}")


def install(root: Path, name: str, text: str | None = None) -> None:
    target = root / "etc/systemd/system" / name
    target.write_text((UNITS_DIR / name).read_text() if text is None else text)


def as_verified(name: str) -> str:
    # A template is verified as itself and as an instance, which expands %i.
    return name.replace("@.", f"@{INSTANCE}.")


@needs_systemd
@pytest.mark.parametrize("name", UNITS)
def test_unit_verifies(fake_root: Path, name: str) -> None:
    for each in UNITS:
        install(fake_root, each)
    assert verify(fake_root, name, as_verified(name)) == ""


@needs_systemd
@pytest.mark.parametrize(
    ("name", "breakage", "expected"),
    [
        ("checkin-edge.service", ("NoNewPrivileges=true", "NoNewPrivilege=true"), "Unknown key"),
        ("checkin-edge.service", ("WatchdogSec=30", "WatchdogSec=thirty"), "Failed to parse"),
        ("checkin-edge.service", ("Type=notify", "Type=notfy"), "Failed to parse"),
        ("checkin-edge-scanner@.service", ("DevicePolicy=closed", "DevicePolicy=shut"), "Failed to parse"),
        ("checkin-edge-backup.timer", ("OnCalendar=*-*-* 01:30:00", "OnCalendar=nightly-ish"), "Failed to parse"),
        (
            "checkin-edge-backup.service",
            ("/opt/checkin-edge/venv/bin/checkin-edge", "/opt/checkin-edge/venv/bin/checkin-egde"),
            "not executable",
        ),
    ],
)
def test_verify_catches_a_broken_unit(fake_root: Path, name: str, breakage: tuple[str, str], expected: str) -> None:
    for each in UNITS:
        install(fake_root, each)
    good = (UNITS_DIR / name).read_text()
    assert breakage[0] in good
    install(fake_root, name, good.replace(breakage[0], breakage[1]))
    try:
        said = verify(fake_root, as_verified(name))
    finally:
        install(fake_root, name)
    assert expected in said


@needs_systemd
@pytest.mark.parametrize("name", PYTHON_UNITS)
def test_python_services_are_hardened(fake_root: Path, name: str) -> None:
    """systemd's own exposure score (0 safest, 10 worst); 'OK' is below 4. The kiosk is left out:
    Chromium's sandbox needs namespaces and a JIT, and it runs as its own user."""
    for each in UNITS:
        install(fake_root, each)
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={fake_root}", "--threshold=25", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out.stdout)
    assert score, out.stdout
    assert float(score.group(1)) <= 2.5, out.stdout


def test_hub_is_supervised_with_a_watchdog() -> None:
    name = "checkin-edge.service"
    assert one(name, "Service", "Type") == "notify"
    assert one(name, "Service", "NotifyAccess") == "main"
    assert one(name, "Service", "WatchdogSec") == "30"
    assert one(name, "Service", "Restart") == "on-failure"
    assert one(name, "Service", "ExecStart") == "/opt/checkin-edge/venv/bin/checkin-edge serve"
    assert int(one(name, "Unit", "StartLimitBurst")) > 1
    assert one(name, "Unit", "StartLimitIntervalSec")


@pytest.mark.parametrize("name", [n for n in UNITS if n.endswith(".service") and "kiosk" not in n])
def test_python_services_run_as_the_service_user_and_write_only_the_data_dir(name: str) -> None:
    service = unit(name)["Service"]
    assert service["User"] == ["checkin-edge"]
    assert service["Group"] == ["checkin-edge"]
    assert service["Environment"].count("CHECKIN_EDGE_CONFIG=/etc/checkin-edge/config.toml") == 1
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[key] == ["true"], key
    assert service["ProtectSystem"] == ["strict"]
    # The scanner writes nothing: the hub is the single writer.
    expected = [] if name.startswith("checkin-edge-scanner@") else ["/var/lib/checkin-edge"]
    assert service.get("ReadWritePaths", []) == expected
    assert service.get("StandardOutput", ["journal"]) == ["journal"]


def test_scanner_template_sees_only_cameras_and_one_core() -> None:
    service = unit("checkin-edge-scanner@.service")["Service"]
    assert service["ExecStart"] == [
        "/opt/checkin-edge/venv/bin/checkin-edge scan --station %i --camera ${CAMERA} $SCAN_ARGS"
    ]
    assert service["EnvironmentFile"] == ["-/etc/checkin-edge/scanner-%i.env"]
    assert service["DevicePolicy"] == ["closed"]
    assert service["DeviceAllow"] == ["char-video4linux rw"]
    assert service["SupplementaryGroups"] == ["video"]
    assert service["CPUQuota"] == ["100%"]
    assert service["Restart"] == ["always"]


def test_kiosk_shows_the_station_page_full_screen() -> None:
    service = unit("checkin-edge-kiosk.service")["Service"]
    command = service["ExecStart"][0].split()
    assert command[:2] == ["/usr/bin/cage", "-d"]
    assert "--" in command
    browser = command[command.index("--") + 1 :]
    assert browser[0] == "/usr/bin/chromium"
    for flag in (
        "--kiosk",
        "--noerrdialogs",
        "--disable-infobars",
        "--no-first-run",
        "--disable-background-networking",
    ):
        assert flag in browser
    assert browser[-1] == "${KIOSK_URL}"
    assert "KIOSK_URL=http://127.0.0.1:8080/kiosk?station=front-door" in service["Environment"]
    assert service["User"] == ["checkin-kiosk"]
    assert service["PAMName"] == ["login"]
    assert service["TTYPath"] == ["/dev/tty1"]
    assert service["Restart"] == ["always"]
    assert "checkin-edge.service" in unit("checkin-edge-kiosk.service")["Unit"]["After"][0].split()


@pytest.mark.parametrize(("timer", "command"), [("checkin-edge-backup", "backup"), ("checkin-edge-sync", "sync")])
def test_timers_catch_up_and_spread_out(timer: str, command: str) -> None:
    timer_unit = unit(f"{timer}.timer")["Timer"]
    assert timer_unit["Persistent"] == ["true"]
    assert timer_unit["RandomizedDelaySec"]
    assert timer_unit["OnCalendar"]
    service = unit(f"{timer}.service")["Service"]
    assert service["Type"] == ["oneshot"]
    assert service["ExecStart"] == [f"/opt/checkin-edge/venv/bin/checkin-edge {command}"]


@pytest.mark.parametrize("name", [n for n in UNITS if n.endswith(".service")])
def test_every_checkin_edge_command_exists(name: str) -> None:
    actions = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    subcommands = actions[0].choices
    for line in unit(name)["Service"].get("ExecStart", []):
        words = line.split()
        if words[0].endswith("/checkin-edge"):
            assert words[1] in subcommands, line


MDWE_EXEC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux >= 6.3)
    sys.exit(77)
os.execv(sys.executable, [sys.executable, "-c", sys.argv[1]])
"""
HUB_UNDER_MDWE = """
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    raise SystemExit("memory-deny-write-execute is not in force")
except PermissionError:
    pass
import uvicorn, uvloop
from edge.config import load_config
from kiosk_ui.app import create_app
from kiosk_ui.cli import build_services
services = build_services(load_config(None))
create_app(services)
services.close()
print("ok")
"""


def test_the_hub_runs_with_memory_deny_write_execute(tmp_path: Path) -> None:
    """The units set MemoryDenyWriteExecute=true for the Python services: nothing they import may
    need writable and executable memory (a JIT, an old libffi's closures). The kernel's own
    version of the rule (prctl PR_SET_MDWE) is applied to a process that then builds the hub."""
    env = clean_env()
    env["CHECKIN_EDGE_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-c", MDWE_EXEC, HUB_UNDER_MDWE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=ROOT,
    )
    if done.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
