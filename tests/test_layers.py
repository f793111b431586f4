"""Imports point one way: kiosk_ui -> cloud_sync -> edge (DESIGN.md). Read from the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
WEB_AND_HTTP = {"fastapi", "starlette", "httpx", "jinja2", "uvicorn", "sse_starlette", "requests"}
FORBIDDEN = {
    "edge": WEB_AND_HTTP | {"kiosk_ui", "cloud_sync"},
    "cloud_sync": {"kiosk_ui"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & FORBIDDEN[package])
        for path in files
        if imported_top_levels(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_nothing_imports_the_cli() -> None:
    for path in ROOT.joinpath("kiosk_ui").rglob("*.py"):
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module != "kiosk_ui.cli", path


def test_the_check_itself_sees_an_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import httpx\nfrom fastapi import FastAPI\n")
    assert imported_top_levels(bad) == {"httpx", "fastapi"}
