"""platform/staging.py: an output is swapped in whole, and only dead writers' leftovers are swept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from clinfuse.platform.staging import StagedFolder, sweep_leftovers

HOLD = """
import sys, time
from pathlib import Path
from clinfuse.platform.staging import StagedFolder
staged = StagedFolder(Path(sys.argv[1]))
print(staged.__enter__(), flush=True)
time.sleep(120)
"""


def test_commit_replaces_the_output_whole_and_an_error_leaves_it_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(RuntimeError), StagedFolder(out) as staging:
        (staging / "new").write_text("half")
        raise RuntimeError("killed half way")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "old").read_text() == "old"
    staged = StagedFolder(out)
    with staged as staging:
        (staging / "new").write_text("new")
        staged.commit()
    assert sorted(p.name for p in out.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_sweep_removes_a_killed_writers_folder_but_not_a_live_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    writer = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        staging = Path(writer.stdout.readline().strip())
        assert staging.is_dir() and sweep_leftovers(out) == []  # alive: left alone
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert sweep_leftovers(out) == [staging] and not staging.exists()


def test_a_retired_copy_is_kept_while_it_is_the_only_copy(tmp_path: Path) -> None:
    out = tmp_path / "out"
    retired = tmp_path / ".out.retired-12345678"  # a swap killed between its two renames
    retired.mkdir()
    assert sweep_leftovers(out) == [] and retired.is_dir()
    out.mkdir()
    assert sweep_leftovers(out) == [retired]


def test_a_process_spawned_by_the_writer_joins_its_staging_folder(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    monkeypatch.delenv("CLINFUSE_TEST_STAGING", raising=False)
    parent = StagedFolder(out, join_env="CLINFUSE_TEST_STAGING")
    with parent as staging:
        assert os.environ["CLINFUSE_TEST_STAGING"] == str(staging)
        with StagedFolder(out, join_env="CLINFUSE_TEST_STAGING") as joined:  # e.g. a DDP rank
            assert joined == staging
        assert staging.is_dir()  # the joined process neither commits nor removes it
        parent.commit()
    assert out.is_dir() and "CLINFUSE_TEST_STAGING" not in os.environ
