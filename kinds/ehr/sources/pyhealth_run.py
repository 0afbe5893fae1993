"""Running a PyHealth 2.1 dataset class quietly, with its working copy inside the ingest's scratch folder.

PyHealth's dataset classes start a Dask LocalCluster with spawned workers, so they run only from code under a
`__main__` guard (the `clinfuse` console script and pytest both are). Their working copy of the source tables
holds source identifiers, so it lives in the ingest's scratch folder, which the ingest deletes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl


def pyhealth_events(build: Callable[[str], object], scratch: Path, name: str, progress: bool) -> pl.LazyFrame:
    """`global_event_df` (patient_id, event_type, timestamp, `<table>/<attribute>` ...) of the dataset that
    `build(cache_dir)` constructs; the frame scans files under `scratch`, valid while the ingest runs."""
    import dask

    workdir = scratch / f"pyhealth-{name}"
    workdir.mkdir(parents=True, exist_ok=True)
    with dask.config.set({"temporary-directory": str(workdir)}), _quiet_pyhealth(progress):
        dataset = build(str(workdir))
        return dataset.global_event_df


@contextlib.contextmanager
def _quiet_pyhealth(progress: bool) -> Iterator[None]:
    """PyHealth logs every step at INFO and draws Dask's progress bar on stdout: keep both off our stdout (the bar
    goes to stderr when a progress display is wanted, else nowhere), and its dependencies' deprecation notices
    off the user's terminal."""
    logger = logging.getLogger("pyhealth")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with (
            open(os.devnull, "w") as devnull,
            contextlib.redirect_stdout(sys.stderr if progress else devnull),
            warnings.catch_warnings(),
        ):
            # narwhals warns, on every OMOP read, that its Dask support moves to another package: not ours to fix
            warnings.filterwarnings("ignore", category=FutureWarning, module="pyhealth")
            yield
    finally:
        logger.setLevel(level)
