"""Run a command and measure its wall time and the peak resident memory of its whole process tree.

The tree matters: PyHealth and Dask start worker processes, whose memory a `ru_maxrss` of the parent (or of
its largest child) would miss. RSS is summed over the process and all its descendants every `interval` seconds;
a peak shorter than one interval can be missed, and pages shared between processes are counted once per process.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

POLL_S = 0.2


@dataclass(frozen=True)
class Measured:
    returncode: int
    wall_s: float
    peak_rss_bytes: int  # of the whole tree
    peak_main_rss_bytes: int  # of the command's own process (the rest is its children's)
    peak_processes: int  # most processes alive in the tree at one poll


def run_measured(command: Sequence[str], log: Path, interval: float = POLL_S) -> Measured:
    """Run `command` with its stdout and stderr going to `log`, polling the tree's RSS until it exits."""
    peak = main = processes = 0
    with log.open("wb") as output:
        started = time.perf_counter()
        child = subprocess.Popen(list(command), stdout=output, stderr=subprocess.STDOUT)
        root = psutil.Process(child.pid)
        while child.poll() is None:
            rss, own, alive = _tree_rss(root)
            peak, main, processes = max(peak, rss), max(main, own), max(processes, alive)
            time.sleep(interval)
        wall = time.perf_counter() - started
    return Measured(child.returncode, wall, peak, main, processes)


def _tree_rss(root: psutil.Process) -> tuple[int, int, int]:
    """Summed RSS of `root` and its descendants, `root`'s own, and how many processes there were; processes
    that exit meanwhile count 0."""
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0, 0
    sizes = []
    for process in tree:
        try:
            sizes.append(process.memory_info().rss)
        except psutil.NoSuchProcess:
            sizes.append(0)
    return sum(sizes), sizes[0], len(tree)
