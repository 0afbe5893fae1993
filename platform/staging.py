"""Output folders written whole or not at all: built in a hidden sibling, swapped in by rename, leftovers swept.

`clinfuse ingest` (the feature cache) and `clinfuse train` (the run folder) both write this way, so a command
killed at any point leaves either the previous output, untouched, or the new one, complete; never a mix.

While it builds, a writer holds an exclusive flock on `<staging>/.writer.lock`. A later writer of the same
output can therefore tell a folder left by a killed process (lock free: removed) from one still being built by
a live process (lock held: left alone). A `.retired-*` folder is the previous output of a swap that was killed
between its two renames; it is removed once the output is back in place, else kept (it is the only copy).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from pathlib import Path

LOCK_FILE = ".writer.lock"
NEW_FOLDER_GRACE_S = 60  # a staging folder this young may not have its lock file yet: never swept
STAGING_MARK = ".staging-"
RETIRED_MARK = ".retired-"


class StagedFolder:
    """`with StagedFolder(out) as staging:` build in `staging`, then `commit()` swaps it in as `out`.

    Leaving the block without `commit()` (an exception, a KeyboardInterrupt) removes the staging folder; a
    SIGKILL leaves it for the next writer's sweep. `join_env`: an environment variable through which processes
    spawned by this one (Lightning's DDP ranks re-run the command) join the same staging folder.
    """

    def __init__(self, out: Path, join_env: str | None = None) -> None:
        self.out = Path(out)
        self.join_env = join_env
        self.path = self.out.parent / f".{self.out.name}{STAGING_MARK}{uuid.uuid4().hex[:8]}"
        self.joined = False
        self._lock_fd: int | None = None
        self.committed = False

    def __enter__(self) -> Path:
        joined = os.environ.get(self.join_env) if self.join_env else None
        if joined and Path(joined).parent == self.out.parent and Path(joined).name.startswith(f".{self.out.name}."):
            self.path, self.joined = Path(joined), True
            self.path.mkdir(parents=True, exist_ok=True)
            return self.path
        self.out.parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(self.out)
        self.path.mkdir()
        self._lock_fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        if self.join_env:
            os.environ[self.join_env] = str(self.path)
        return self.path

    def commit(self) -> None:
        """Swap the finished staging folder in as `out` (a joined process leaves that to its parent)."""
        if self.joined:
            return
        (self.path / LOCK_FILE).unlink(missing_ok=True)
        swap_in(self.path, self.out)
        self.committed = True

    def __exit__(self, *exc_info) -> None:
        if self.joined:
            return
        if self.join_env:
            os.environ.pop(self.join_env, None)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)


def swap_in(staging: Path, out: Path) -> None:
    """Replace `out` with `staging`: two renames; the old output is removed only after the new one is in place."""
    retired = None
    if out.exists():
        retired = out.parent / f".{out.name}{RETIRED_MARK}{uuid.uuid4().hex[:8]}"
        out.rename(retired)
    staging.rename(out)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def sweep_leftovers(out: Path) -> list[Path]:
    """Remove staging folders of dead writers of `out` (and retired copies once `out` exists); returns them."""
    removed = []
    if not out.parent.is_dir():
        return removed
    for candidate in out.parent.glob(f".{out.name}.*"):
        if not candidate.is_dir():
            continue
        suffix = candidate.name[len(out.name) + 1 :]
        stale = (suffix.startswith(STAGING_MARK) and not _writer_alive(candidate)) or (
            suffix.startswith(RETIRED_MARK) and out.exists()
        )
        if stale:
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def _writer_alive(staging: Path) -> bool:
    """True while a process holds the folder's writer lock (or the folder is too new to have taken it yet)."""
    try:
        fd = os.open(staging / LOCK_FILE, os.O_RDWR)
    except FileNotFoundError:
        try:
            return time.time() - staging.stat().st_mtime < NEW_FOLDER_GRACE_S
        except FileNotFoundError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return False
