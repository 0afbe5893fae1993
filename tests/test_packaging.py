"""Layout rules from docs/architecture.md: namespace roots, every package listed, pytest import mode."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = {"platform": "clinfuse.platform", "models": "clinfuse.models", "kinds": "clinfuse.kinds",
                "pipelines": "clinfuse.pipelines", "dashboards": "clinfuse.dashboards"}  # fmt: skip


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_source_roots_are_mapped_and_carry_no_init() -> None:
    package_dir = _pyproject()["tool"]["setuptools"]["package-dir"]
    for folder, package in SOURCE_ROOTS.items():
        assert package_dir[package] == folder
        assert not (REPO / folder / "__init__.py").exists(), f"{folder}/__init__.py would shadow the stdlib"


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set(SOURCE_ROOTS.values())
    for folder, package in SOURCE_ROOTS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder)
            found.add(".".join([package, *relative.parts]))
    assert found == listed


def test_pytest_uses_importlib_mode_without_root_conftest() -> None:
    assert "--import-mode=importlib" in _pyproject()["tool"]["pytest"]["ini_options"]["addopts"]
    assert not (REPO / "conftest.py").exists()
    assert not (REPO / "tests" / "__init__.py").exists()
