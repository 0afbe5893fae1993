"""The root-level platform/ folder must never shadow the standard library's `platform` module."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def test_import_platform_and_uuid_from_repo_root() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import platform, uuid; print(platform.system()); print(platform.__file__)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    system, location = result.stdout.split()
    assert system == "Linux"
    assert Path(location).resolve().parent == STDLIB


def test_spawned_child_imports_stdlib_platform() -> None:
    script = (
        "import multiprocessing as mp\n"
        "if __name__ == '__main__':\n"
        "    with mp.get_context('spawn').Pool(1) as pool:\n"
        "        print(pool.apply(eval, (\"__import__('platform').__file__\",)))\n"
        "        print(pool.apply(eval, (\"__import__('platform').machine()\",)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    location, machine = result.stdout.split()
    assert Path(location).resolve().parent == STDLIB
    assert machine


def test_clinfuse_platform_is_importable_as_subpackage() -> None:
    import clinfuse.platform.config as config

    assert Path(config.__file__).resolve().is_relative_to(REPO / "platform")
