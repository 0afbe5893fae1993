"""A benchmark's throw-away working folder, with its own CLINFUSE_HOME (pseudonymisation key) inside."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def throwaway_workspace(prefix: str) -> Iterator[Path]:
    """A temporary folder holding CLINFUSE_HOME; removed afterwards, the caller's CLINFUSE_HOME restored."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    previous_home = os.environ.get("CLINFUSE_HOME")
    os.environ["CLINFUSE_HOME"] = str(work / "home")
    try:
        yield work
    finally:
        if previous_home is None:
            os.environ.pop("CLINFUSE_HOME", None)
        else:
            os.environ["CLINFUSE_HOME"] = previous_home
        shutil.rmtree(work, ignore_errors=True)
        print(f"\nremoved temporary folder {work}")
