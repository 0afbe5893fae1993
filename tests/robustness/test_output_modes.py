"""Caches, runs and their results hold patient data: what the CLI writes is never readable by other users."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path


def _world_readable(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in [folder, *folder.rglob("*")] if p.stat().st_mode & stat.S_IRWXO]


def test_ingest_and_evaluate_write_nothing_other_users_may_read(nki_cohort, nki_run, tmp_path, probe) -> None:
    cache = tmp_path / "cache"
    assert probe.run_main(["ingest", "--config", str(nki_cohort), "--out", str(cache)]).code == 0
    assert _world_readable(cache) == []
    run = tmp_path / "run"
    shutil.copytree(nki_run, run)
    for path in [run, *run.rglob("*")]:  # the copy as train wrote it; evaluate then adds and rewrites files
        path.chmod(path.stat().st_mode & ~stat.S_IRWXO)
    assert probe.run_main(["evaluate", str(run), "--resamples", "100"]).code == 0
    assert _world_readable(run) == []
