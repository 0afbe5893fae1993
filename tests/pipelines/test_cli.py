"""The clinfuse CLI: subcommands listed; user mistakes give one line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _run(exe: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300)


def test_help_lists_subcommands(clinfuse_exe: Path) -> None:
    result = _run(clinfuse_exe, "--help")
    assert result.returncode == 0
    assert "demo-data" in result.stdout


def test_demo_data_writes_a_cohort(clinfuse_exe: Path, tmp_path: Path) -> None:
    result = _run(clinfuse_exe, "demo-data", "--out", str(tmp_path / "c"), "--patients", "12", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "patients=12" in result.stdout
    assert (tmp_path / "c" / "cohort.yaml").is_file()


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0]


def test_unwritable_out_is_one_clear_line(clinfuse_exe: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _run(clinfuse_exe, "demo-data", "--out", str(blocker / "cohort"))
    _assert_one_line_error(result, "cannot write to --out", str(blocker / "cohort"))


def test_zero_patients_is_rejected(clinfuse_exe: Path, tmp_path: Path) -> None:
    result = _run(clinfuse_exe, "demo-data", "--out", str(tmp_path / "c"), "--patients", "0")
    _assert_one_line_error(result, "--patients must be at least 1")
    assert not (tmp_path / "c").exists()


def test_bad_flag_value_and_unknown_flag(clinfuse_exe: Path, tmp_path: Path) -> None:
    _assert_one_line_error(_run(clinfuse_exe, "demo-data", "--out", str(tmp_path), "--patients", "many"), "--patients")
    _assert_one_line_error(_run(clinfuse_exe, "demo-data", "--bogus"), "--bogus")
