"""DICOM ingest benchmark: 2D radiographs, CT series and multi-frame CT objects through the dicom kind's ingest
in this process and with worker processes, and reads from the feature cache vs. decoding, for volumes and 2D images.

What one run measures (every figure printed is measured in that run, on this machine):

1. Data. One demo cohort (`generate_demo_cohort`, modalities imaging, genomics, ehr and ct) is generated into a
   temporary folder, with the demo CT's share of index series written as one Enhanced CT object raised to
   --enhanced-share (`ct.ENHANCED_RATE`, 0.15 in the demo) so that both CT layouts carry enough work. The CT study
   folders are split (hard links) into one folder of single-frame series and one of multi-frame objects. The
   cohort's radiographs are replicated under new patient ids (PatientID rewritten, pixel data untouched, so every
   copy decodes exactly as its original) until about --radiographs images are selected, so that the pool-forced
   2D run has work left once its workers are running.
2. Ingest throughput: the dicom kind's `ingest_dicom(modality, cohort, out, context)` per workload, run three
   ways: (i) `context.workers` 1; (ii) --workers N with the kind's own rule (`scan.decode_all` decodes in this
   process and hands the rest to N spawned workers only when, after `scan._MEASURE_S` of decoding, the estimated
   rest would take this process more than `scan._WORTH_STARTING` x `scan.WORKER_START_UP_S`); (iii) N workers
   with the pool forced from the first item (`scan.WORKER_START_UP_S` and `scan._MEASURE_S` set to 0 for that
   run only), which measures N-worker scaling and what starting the workers costs. An untimed warm-up first
   imports MONAI and the decoders in this process, so (ii)'s estimate is not inflated by the first item paying
   those imports, as it is in a cold process. Content digests are given as
   `clinfuse ingest` gives them. Items are images (2D), slices of single-frame series, or frames of multi-frame
   objects. Whether workers ran is read from the CPU time of finished child processes; when and after how many
   items the pool was started is recorded by wrapping `scan.ProcessPoolExecutor` (this process only; the
   functions sent to the workers are untouched). Columns: the header pass (always in this process); the decode
   stage; the pool's first result after hand-off (the workers' imports of torch and MONAI plus one chunk of
   items); the pool's rate once every worker has returned its first chunk (all running); cpu/wall: CPU time of
   this process and its finished workers over wall time (about 1.0 per busy core; lower: the machine was shared).
   Derived: the speed-up of (iii) over (i); the effective start-up cost, (iii)'s decode seconds minus (i)'s
   divided by N (what the pool cost beyond perfect scaling: the quantity `WORKER_START_UP_S` stands for); the
   break-even it implies (the pool is faster once the rest would take this process more than start-up x N / (N - 1));
   and whether (ii) took the faster of (i) and (iii).
3. Cache vs. decode: the real cache build (`ingest(config, cache, workers=1)` on a config holding the two dicom
   modalities), then --epochs epochs each way in shuffled batches converted to float32 torch tensors:
   (a) rows read with the dicom kind's reader (`image_reader`, memory-mapped `volumes` / `images` arrays);
   (b) the same rows decoded from their DICOM files (`assemble_volume` for volumes over --volume-reads rows,
   `preprocess_file` for 2D images), found by matching content digests against the cache's index. Epochs
   alternate so both sides see the same machine load. The ratio cache/decode is printed against the goal of
   at least 20x, per CT layout too.

Torch is limited to one intra-op thread in this process (workers set the same), so 1-worker figures are per
core. The cohort, outputs, cache and CLINFUSE_HOME (a throw-away pseudonymisation key) are temporary folders,
removed at the end.

Run from the repository root:

    .venv/bin/python tests/benchmarks/dicom_ingest_benchmark.py [--patients 220] [--seed 3] [--radiographs 600]
        [--enhanced-share 0.5] [--volume-reads 32] [--epochs 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from text_tables import rule, table  # this folder is on sys.path when the script runs
from workspace import throwaway_workspace

if TYPE_CHECKING:
    from clinfuse.kinds.dicom.config import DicomModality
    from clinfuse.platform.ingest.cohort_table import Cohort
    from clinfuse.platform.ingest.context import IngestContext

RATIO_GOAL = 20.0
BATCH_2D = 32
BATCH_3D = 4
RADIOGRAPHS = 600
BUSY_CPU_PER_WALL = 0.9  # cpu/wall per worker below this means the run waited for the machine


@dataclass(frozen=True)
class Timing:
    """Wall seconds, and CPU seconds of this process and of its children that finished meanwhile."""

    wall_s: float
    cpu_s: float
    children_cpu_s: float = 0.0

    @property
    def cpu_per_wall(self) -> float:
        return (self.cpu_s + self.children_cpu_s) / self.wall_s if self.wall_s > 0 else float("nan")

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall_s + other.wall_s, self.cpu_s + other.cpu_s, self.children_cpu_s + other.children_cpu_s)


class Stopwatch:
    """Context manager measuring wall time, this process's CPU time and its joined children's CPU time."""

    def __enter__(self) -> Stopwatch:
        self._wall = time.perf_counter()
        times = os.times()
        self._cpu, self._children = times.user + times.system, times.children_user + times.children_system
        return self

    def __exit__(self, *exc: object) -> None:
        times = os.times()
        self.timing = Timing(
            time.perf_counter() - self._wall,
            times.user + times.system - self._cpu,
            times.children_user + times.children_system - self._children,
        )


@dataclass
class Stages:
    """Seconds spent in the ingest's header pass and decode stage, and when the decode stage started its worker
    pool, after how many items and with what chunk size (never, for a run that stayed in this process)."""

    header_s: float = float("nan")
    decode_s: float = float("nan")
    arguments: int = 0  # items handed to the decode stage (images, or series)
    yielded: int = 0
    handoff_items: int | None = None  # items decoded in this process before the pool started
    handoff_s: float = float("nan")  # decode-stage seconds when the pool started
    chunksize: int = 0
    first_pool_s: float = float("nan")  # decode-stage seconds when the pool's first result arrived
    all_running_s: float = float("nan")  # decode-stage seconds when every worker had returned its first chunk


@contextlib.contextmanager
def timed_stages(stages: Stages) -> Iterator[None]:
    """Time the dicom ingest's header pass and decode stage and record the decode stage's hand-off to its pool, by
    wrapping what the ingest calls in this process (the functions sent to worker processes are untouched)."""
    from clinfuse.kinds.dicom import ingest as ingest_module
    from clinfuse.kinds.dicom import scan
    from clinfuse.kinds.dicom import volume_ingest as volume_module

    scan_folder, decode_all, pool_class = ingest_module.scan_folder, scan.decode_all, scan.ProcessPoolExecutor
    started = float("nan")

    def timed_scan(*args: object) -> object:
        begun = time.perf_counter()
        try:
            return scan_folder(*args)
        finally:
            stages.header_s = time.perf_counter() - begun

    def timed_decode(function: Callable, arguments: list, context: IngestContext, desc: str) -> Iterator[object]:
        nonlocal started
        started = time.perf_counter()
        stages.arguments = len(arguments)
        try:  # closing: the volume ingest closes its outcomes after the last item, which stops the pool
            with contextlib.closing(decode_all(function, arguments, context, desc)) as outcomes:
                for outcome in outcomes:
                    if stages.handoff_items is not None:
                        from_pool = stages.yielded - stages.handoff_items
                        if from_pool == 0:
                            stages.first_pool_s = time.perf_counter() - started
                        if from_pool == context.workers * stages.chunksize - 1:
                            stages.all_running_s = time.perf_counter() - started
                    stages.yielded += 1
                    yield outcome
        finally:
            stages.decode_s = time.perf_counter() - started

    class RecordingPool(pool_class):
        """The decode stage's pool, noting when it starts (and how many items came before) and its chunk size."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            stages.handoff_items, stages.handoff_s = stages.yielded, time.perf_counter() - started
            super().__init__(*args, **kwargs)

        def map(self, fn: Callable, *iterables: object, timeout: float | None = None, chunksize: int = 1) -> Iterator:
            stages.chunksize = chunksize
            return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)

    patches = [(ingest_module, "scan_folder", timed_scan), (ingest_module, "decode_all", timed_decode),
               (volume_module, "decode_all", timed_decode), (scan, "ProcessPoolExecutor", RecordingPool)]  # fmt: skip
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    try:
        for module, name, replacement in patches:
            setattr(module, name, replacement)
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


@contextlib.contextmanager
def pool_forced() -> Iterator[None]:
    """The decode stage hands over to its workers after its first item: no start-up cost to outweigh, nothing to
    measure first."""
    from clinfuse.kinds.dicom import scan

    saved = scan.WORKER_START_UP_S, scan._MEASURE_S
    scan.WORKER_START_UP_S, scan._MEASURE_S = 0.0, 0.0
    try:
        yield
    finally:
        scan.WORKER_START_UP_S, scan._MEASURE_S = saved


@dataclass(frozen=True)
class Workload:
    """One folder ingested as one dicom modality, and what its items and its decode stage's items are."""

    label: str
    unit: str  # files | slices | frames
    decodes: str  # what one item of the decode stage is: images | series
    modality: DicomModality  # its path is the workload's folder
    cohort: Cohort
    digests: dict[str, str] = field(default_factory=dict)


Mode = Literal["one", "rule", "forced"]


@dataclass(frozen=True)
class IngestRun:
    workload: Workload
    mode: Mode  # one: 1 worker; rule: N workers, the kind's hand-off rule; forced: N workers from the first item
    workers: int
    selected: int  # images or volumes decoded
    items: int  # files, slices or frames decoded
    timing: Timing
    stages: Stages
    failed: int

    @property
    def label(self) -> str:
        return {"one": "1 worker", "rule": f"{self.workers} workers, kind's rule",
                "forced": f"{self.workers} workers, pool forced"}[self.mode]  # fmt: skip

    @property
    def in_workers(self) -> bool:
        return self.timing.children_cpu_s > 0.05

    @property
    def rate(self) -> float:
        return self.items / self.timing.wall_s if self.items and self.timing.wall_s > 0 else float("nan")

    @property
    def per_worker(self) -> float:
        """The rate per process that decoded: a run that stayed in this process had one."""
        return self.rate / (self.workers if self.in_workers else 1)

    @property
    def decode_rate(self) -> float:
        return self.items / self.stages.decode_s if self.items and self.stages.decode_s > 0 else float("nan")

    @property
    def handoff(self) -> str:
        s = self.stages
        if s.handoff_items is None:
            return "none"
        return f"after {s.handoff_items} {self.workload.decodes}, {s.handoff_s:.1f} s"

    @property
    def first_pool_wait(self) -> float:
        """Seconds from starting the pool to its first result: spawning, imports, then one chunk decoded."""
        return self.stages.first_pool_s - self.stages.handoff_s

    @property
    def pool_rate(self) -> float:
        """Items per second from the pool once every worker had returned its first chunk (workers start one after
        the other on a busy machine), in the workload's unit."""
        s = self.stages
        if s.handoff_items is None or not self.selected:
            return float("nan")
        after, seconds = s.arguments - s.handoff_items - self.workers * s.chunksize, s.decode_s - s.all_running_s
        return after / seconds * self.items / self.selected if after > 0 and seconds > 0 else float("nan")


@dataclass(frozen=True)
class ReadRow:
    label: str
    count: int
    timing: Timing

    @property
    def rate(self) -> float:
        return self.count / self.timing.wall_s if self.count and self.timing.wall_s > 0 else float("nan")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=220, help="demo cohort size (default 220)")
    parser.add_argument("--seed", type=int, default=3, help="demo cohort seed (default 3)")
    parser.add_argument("--radiographs", type=int, default=RADIOGRAPHS,
                        help=f"2D images to ingest, by replicating the cohort's radiographs (default {RADIOGRAPHS}; "
                             "0: the cohort's own only)")  # fmt: skip
    parser.add_argument("--enhanced-share", type=float, default=0.5,
                        help="share of CT index series written as one Enhanced CT object (default 0.5)")  # fmt: skip
    parser.add_argument("--volume-reads", type=int, default=32, help="volumes decoded per epoch in step 3 (32)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per read strategy in step 3 (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="worker count of the parallel runs (default 2)")
    args = parser.parse_args(argv)
    if args.patients < 10 or args.epochs < 1 or args.volume_reads < 1 or args.workers < 2:
        parser.error("--patients must be >= 10; --epochs and --volume-reads >= 1; --workers >= 2")
    if not 0.0 <= args.enhanced_share <= 1.0 or args.radiographs < 0:
        parser.error("--enhanced-share must lie in [0, 1] and --radiographs be >= 0")
    return args


def step(title: str) -> Callable[[], None]:
    print(f"\n{rule(title, width=100)}", flush=True)
    started = time.perf_counter()
    return lambda: print(f"(step took {time.perf_counter() - started:.1f} s)", flush=True)


def header(args: argparse.Namespace) -> None:
    import pydicom
    import torch
    from clinfuse.kinds.dicom import scan

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(rule("ClinFuse DICOM ingest benchmark (2D, series, multi-frame)", width=100))
    print(f"machine      {platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} logical "
          f"cores ({usable} usable by this process), load average {load} at start")  # fmt: skip
    print(f"python       {platform.python_version()}; torch {torch.__version__} (intra-op threads limited to "
          f"{torch.get_num_threads()}); pydicom {pydicom.__version__}; numpy {np.__version__}")  # fmt: skip
    print(f"parameters   patients={args.patients} seed={args.seed} radiographs={args.radiographs} "
          f"enhanced_share={args.enhanced_share} volume_reads={args.volume_reads} epochs={args.epochs} "
          f"workers={args.workers}")  # fmt: skip
    print(f"hand-off     kinds/dicom/scan.py decode_all decodes in this process; after _MEASURE_S = "
          f"{scan._MEASURE_S:g} s it hands the rest to the workers if the estimated rest in this process exceeds "
          f"_WORTH_STARTING = {scan._WORTH_STARTING:g} x WORKER_START_UP_S = {scan.WORKER_START_UP_S:g} s, i.e. "
          f"{scan._WORTH_STARTING * scan.WORKER_START_UP_S:g} s")  # fmt: skip


# --------------------------------------------------------------------------------------------------- data


def generate(out: Path, args: argparse.Namespace) -> dict[str, int]:
    """The demo cohort with imaging and CT, its Enhanced CT share set to --enhanced-share for this call."""
    from clinfuse.platform.demo import ct, generate_demo_cohort

    if not hasattr(ct, "ENHANCED_RATE"):
        raise RuntimeError("clinfuse.platform.demo.ct has no ENHANCED_RATE: update this benchmark")
    demo_share = ct.ENHANCED_RATE
    ct.ENHANCED_RATE = args.enhanced_share
    try:
        return generate_demo_cohort(
            out, patients=args.patients, seed=args.seed, modalities=("imaging", "genomics", "ehr", "ct")
        )
    finally:
        ct.ENHANCED_RATE = demo_share


def split_ct(source: Path, single: Path, multi: Path) -> dict[str, int]:
    """Hard-link each CT series folder into `single` or `multi` by its layout (one multi-frame file, or slices)."""
    import pydicom

    counts = {"single_frame_series": 0, "single_frame_files": 0, "multi_frame_objects": 0}
    single.mkdir(parents=True)
    multi.mkdir(parents=True)
    for folder in sorted({p.parent for p in source.rglob("*.dcm")}):
        files = sorted(folder.glob("*.dcm"))
        frames = int(pydicom.dcmread(files[0], stop_before_pixels=True).get("NumberOfFrames", 1) or 1)
        is_multi = len(files) == 1 and frames > 1
        target = (multi if is_multi else single) / folder.relative_to(source)
        target.mkdir(parents=True)
        for path in files:
            os.link(path, target / path.name)
        if is_multi:
            counts["multi_frame_objects"] += 1
        else:
            counts["single_frame_series"] += 1
            counts["single_frame_files"] += len(files)
    return counts


def replicate_radiographs(source: Path, dest: Path, cohort: Cohort, copies: int) -> tuple[Cohort, int]:
    """`copies` copies of the radiograph folder, copy k > 0 under patient ids '<id>-k' (the cohort table gets the
    same rows); returns the replicated cohort and the number of files written."""
    import pandas as pd
    import pydicom
    from clinfuse.platform.ingest.cohort_table import Cohort

    files = sorted(p for p in source.rglob("*") if p.is_file())
    for copy in range(copies):
        for path in files:
            target = dest / f"copy_{copy:02d}" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            ds = pydicom.dcmread(path, force=True) if copy else None
            if ds is None or "PatientID" not in ds:
                os.link(path, target)
                continue
            ds.PatientID = f"{ds.PatientID}-{copy}"
            ds.save_as(target)
    table = cohort.table
    suffixed = [table.assign(patient_id=table["patient_id"] + f"-{copy}") for copy in range(1, copies)]
    return Cohort(pd.concat([table, *suffixed], ignore_index=True)), len(files) * copies


def digests_of(folder: Path) -> tuple[dict[str, str], float]:
    """Content digests keyed by path, as `clinfuse ingest` hands them to the ingester; and seconds taken."""
    from clinfuse.platform.ingest.fingerprint import tree_digests

    started = time.perf_counter()
    digests = {str(folder / relative): digest for relative, digest in tree_digests(folder).items()}
    return digests, time.perf_counter() - started


# ------------------------------------------------------------------------------------------------- ingest


def warm_up(radiograph: Path, series: Sequence[list[Path]], size: int, volume_modality: DicomModality) -> float:
    """Decode one radiograph and assemble each given series untimed (imports MONAI and the decoders); seconds."""
    from clinfuse.kinds.dicom.pixels import preprocess_file
    from clinfuse.kinds.dicom.volume import assemble_volume

    started = time.perf_counter()
    preprocess_file(radiograph, size, None)
    for files in series:
        assemble_volume(series_headers(files), volume_modality)
    return time.perf_counter() - started


def run_ingest(workload: Workload, mode: Mode, workers: int, work: Path) -> IngestRun:
    """One `ingest_dicom` of the workload's folder; the output folder is removed afterwards."""
    from clinfuse.kinds.dicom.ingest import ingest_dicom
    from clinfuse.kinds.dicom.store import VOLUME_INDEX_FILE
    from clinfuse.platform.ingest.context import IngestContext
    from clinfuse.platform.security import Pseudonymiser

    run_dir = work / "runs" / f"{workload.unit}-{mode}"
    scratch, out = run_dir / "scratch", run_dir / "out"
    scratch.mkdir(parents=True)
    context = IngestContext(
        pseudonymise=Pseudonymiser(None, enabled=False),
        scratch=scratch,
        previous=None,
        workers=workers,
        progress=False,
        input_digests=workload.digests,
    )
    stages = Stages()
    forcing = pool_forced() if mode == "forced" else contextlib.nullcontext()
    with forcing, timed_stages(stages), Stopwatch() as sw:
        output = ingest_dicom(workload.modality, workload.cohort, out, context)
    report = output.report
    if workload.modality.volume:
        rows = json.loads((out / VOLUME_INDEX_FILE).read_text())["rows"]
        selected, items = len(output.present_ids), sum(row["slices"] for row in rows)
    else:
        selected = items = len(output.present_ids)
    shutil.rmtree(run_dir)
    return IngestRun(workload, mode, workers, selected, items, sw.timing, stages, report["failed"]["count"])


def ingest_table(runs: Sequence[IngestRun]) -> str:
    return table(
        ["workload", "run", "path (child cpu)", "pool started", "decoded", "items", "wall s", "header s",
         "decode s", "pool 1st s", "cpu/wall", "items/s", "per worker", "decode items/s", "pool items/s"],
        [[r.workload.label, r.label, "workers" if r.in_workers else "in-process", r.handoff, str(r.selected),
          f"{r.items} {r.workload.unit}", f"{r.timing.wall_s:.1f}", f"{r.stages.header_s:.1f}",
          f"{r.stages.decode_s:.1f}", f"{r.first_pool_wait:.1f}", f"{r.timing.cpu_per_wall:.2f}", f"{r.rate:,.1f}",
          f"{r.per_worker:,.1f}", f"{r.decode_rate:,.1f}", f"{r.pool_rate:,.1f}"]
         for r in runs],
    )  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    """What one workload's three runs say together."""

    one: IngestRun
    rule: IngestRun
    forced: IngestRun

    @property
    def speed_up(self) -> float:
        return self.forced.rate / self.one.rate

    @property
    def decode_speed_up(self) -> float:
        return self.forced.decode_rate / self.one.decode_rate

    @property
    def pool_speed_up(self) -> float:
        return self.forced.pool_rate / self.one.decode_rate

    @property
    def start_up_s(self) -> float:
        """What the pool cost beyond perfect scaling of the 1-worker decode stage: what WORKER_START_UP_S means."""
        return self.forced.stages.decode_s - self.one.stages.decode_s / self.forced.workers

    @property
    def break_even_s(self) -> float:
        """The pool finishes first once the rest would take this process longer than this."""
        n = self.forced.workers
        return self.start_up_s * n / (n - 1)

    @property
    def verdict(self) -> str:
        one, forced, rule = self.one.stages.decode_s, self.forced.stages.decode_s, self.rule.stages.decode_s
        chose_pool = self.rule.stages.handoff_items is not None
        times = f"decode stage: 1 worker {one:.1f} s, pool forced {forced:.1f} s, kind's rule {rule:.1f} s"
        if abs(forced - one) < 0.05 * min(forced, one):
            return f"either (the two paths tie within 5%; {times})"
        right = chose_pool == (forced < one)
        chose = "handed over to the workers" if chose_pool else "stayed in this process"
        faster = "the pool" if forced < one else "this process alone"
        return f"{'yes' if right else 'NO'}: it {chose}, and {faster} was faster ({times})"


def compare(runs: Sequence[IngestRun]) -> Comparison:
    by_mode = {r.mode: r for r in runs}
    return Comparison(by_mode["one"], by_mode["rule"], by_mode["forced"])


def ingest_summary(c: Comparison, handoff_above_s: float) -> str:
    """A few lines per workload: each run's rate, the speed-up, the start-up cost and the rule's choice."""
    unit, n = f"{c.one.workload.unit}/s", c.forced.workers
    if c.rule.stages.handoff_items is None:
        rule = f"stayed in this process: {c.rule.rate:,.1f} {unit}"
    else:
        rule = (f"workers took over {c.rule.handoff} into the decode stage: {c.rule.rate:,.1f} {unit}, "
                f"{c.rule.per_worker:,.1f} per worker")  # fmt: skip
    if not c.rule.in_workers and c.rule.stages.handoff_items is not None:
        rule += " [but its children used no CPU time]"
    lines = [
        f"{c.one.workload.label}:",
        f"  1 worker: {c.one.rate:,.1f} {unit} (decode stage {c.one.stages.decode_s:.1f} s)",
        f"  {c.rule.label}: {rule}",
        f"  {c.forced.label}: {c.forced.rate:,.1f} {unit} whole ingest = {c.forced.per_worker:,.1f} per worker; "
        f"pool with all workers running {c.forced.pool_rate:,.1f} {unit} = {c.forced.pool_rate / n:,.1f} per worker; "
        f"first result {c.forced.first_pool_wait:.1f} s after the pool started (chunks of {c.forced.stages.chunksize}"
        f" {c.one.workload.decodes})",
        f"  speed-up, pool forced vs 1 worker: whole ingest {c.speed_up:.2f}, decode stage {c.decode_speed_up:.2f}, "
        f"pool with all workers running {c.pool_speed_up:.2f} (ideal {n:.1f})",
        f"  effective worker start-up {c.start_up_s:.1f} s (pool-forced decode stage minus 1-worker decode stage / {n})"
        f": the pool pays off once the rest would take this process > {c.break_even_s:.1f} s; the rule hands off "
        f"above {handoff_above_s:g} s",
        f"  kind's rule took the faster path: {c.verdict}",
    ]  # fmt: skip
    if not c.forced.in_workers:
        lines.append("  [the pool-forced run's children used no CPU time: no pool ran]")
    failed = max(r.failed for r in (c.one, c.rule, c.forced))
    if failed:
        lines.append(f"  {failed} files failed (demo traps)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- cache vs decode


def build_cache(cohort_dir: Path, cache_dir: Path, workers: int) -> tuple[Timing, dict]:
    """The real cache build (`clinfuse ingest`) of a config holding the cohort's dicom modalities only."""
    from clinfuse.platform.config import load_cohort_config
    from clinfuse.platform.config.loader import write_cohort_config
    from clinfuse.platform.ingest import ingest

    config = load_cohort_config(cohort_dir / "cohort.yaml")
    dicom_only = cohort_dir / "cohort-dicom.yaml"
    modalities = tuple(m for m in config.modalities if m.kind == "dicom")
    write_cohort_config(config.model_copy(update={"modalities": modalities}), dicom_only)
    with Stopwatch() as sw:
        result = ingest(dicom_only, cache_dir, workers=workers)
    if not result.rebuilt:
        raise RuntimeError(f"ingest built nothing: {result}")
    return sw.timing, json.loads((cache_dir / "ingest_report.json").read_text())


def series_headers(files: list[Path]) -> list:
    """The header pass's record of each file (its frames' planes), as `assemble_volume` takes them."""
    from clinfuse.kinds.dicom.headers import read_header

    return [read_header(path, path.parent, None) for path in files]


def volume_sources(index_rows: list[dict], root: Path) -> dict[int, list]:
    """Cache row -> the headers of the series it was assembled from, by the digest the volume ingest records
    (the digests of the series' files in path order); each demo series lies in a folder of its own."""
    from clinfuse.platform.ingest.fingerprint import combine, file_digest

    by_digest = {}
    for folder in sorted({p.parent for p in root.rglob("*.dcm")}):
        files = sorted(folder.glob("*.dcm"), key=str)
        by_digest[combine([file_digest(p) for p in files])] = files
    return {row: series_headers(by_digest[entry["digest"]]) for row, entry in enumerate(index_rows)
            if entry["digest"] in by_digest}  # fmt: skip


def image_sources(index_rows: list[dict], root: Path) -> dict[int, Path]:
    """Cache row -> the radiograph it was decoded from, by content digest."""
    from clinfuse.platform.ingest.fingerprint import file_digest

    by_digest = {file_digest(p): p for p in root.rglob("*.dcm")}
    return {row: by_digest[entry["digest"]] for row, entry in enumerate(index_rows) if entry["digest"] in by_digest}


def batches(rows: np.ndarray, size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(rows)
    for start in range(0, len(order), size):
        yield order[start : start + size]


def read_epoch(read: Callable[[int], dict], rows: np.ndarray, size: int, rng: np.random.Generator) -> Timing:
    """One epoch of shuffled batches read with the kind's reader, as float32 torch tensors."""
    import torch

    with Stopwatch() as sw:
        for batch in batches(rows, size, rng):
            torch.from_numpy(np.stack([read(int(r))["image"] for r in batch]))
    return sw.timing


def decode_epoch(
    decode: Callable[[int], np.ndarray], rows: np.ndarray, size: int, rng: np.random.Generator, per_row: dict
) -> Timing:
    """The same epoch decoding each row's DICOM source; adds each row's decode seconds to `per_row`."""
    import torch

    with Stopwatch() as sw:
        for batch in batches(rows, size, rng):
            images = []
            for r in batch:
                started = time.perf_counter()
                images.append(decode(int(r)))
                per_row[int(r)] = per_row.get(int(r), 0.0) + time.perf_counter() - started
            torch.from_numpy(np.stack(images))
    return sw.timing


def compare_reads(
    read: Callable[[int], dict], decode: Callable[[int], np.ndarray], rows: np.ndarray, size: int, epochs: int,
    seed: int,
) -> tuple[ReadRow, ReadRow, dict[int, float]]:  # fmt: skip
    """Both strategies over the same rows, epochs interleaved (cache, decode, cache, ...)."""
    read_epoch(read, rows[:size], size, np.random.default_rng(seed))  # untimed: first touch of the mapping
    cache_rng, decode_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    cache_total = decode_total = Timing(0.0, 0.0)
    per_row: dict[int, float] = {}
    for _ in range(epochs):
        cache_total += read_epoch(read, rows, size, cache_rng)
        decode_total += decode_epoch(decode, rows, size, decode_rng, per_row)
    count = len(rows) * epochs
    return (
        ReadRow("(a) feature cache, memory-mapped", count, cache_total),
        ReadRow("(b) decode DICOM every epoch", count, decode_total),
        per_row,
    )


def read_table(rows: Sequence[ReadRow], unit: str) -> str:
    return table(
        ["", "read", "wall s", "cpu/wall", unit],
        [[r.label, str(r.count), f"{r.timing.wall_s:.2f}", f"{r.timing.cpu_per_wall:.2f}", f"{r.rate:,.1f}"]
         for r in rows],
    )  # fmt: skip


def verdict(ratio: float) -> str:
    return f"{ratio:,.0f}x ({'meets' if ratio >= RATIO_GOAL else 'MISSES'} the goal of >= {RATIO_GOAL:.0f}x)"


# --------------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)  # per-core figures in this process; decoding workers set the same
    header(args)
    run_started = time.perf_counter()
    with throwaway_workspace("clinfuse-dicom-bench-") as work:
        return run(args, work, run_started)


def run(args: argparse.Namespace, work: Path, run_started: float) -> int:
    from clinfuse.kinds.dicom import scan
    from clinfuse.platform.config import load_cohort_config
    from clinfuse.platform.ingest.cohort_table import load_cohort

    done = step("1. data: demo cohort, CT split by layout, radiographs replicated")
    cohort_dir = work / "cohort"
    with Stopwatch() as sw:
        counts = generate(cohort_dir, args)
    config = load_cohort_config(cohort_dir / "cohort.yaml")
    cohort = load_cohort(config)
    imaging, ct = config.modality("imaging"), config.modality("ct")
    print(f"{counts['patients']} patients: {counts['imaging']} with radiographs ({counts['dicom_files']} files), "
          f"{counts['ct']} with CT ({counts['ct_files']} files); generated in {sw.timing.wall_s:.1f} s")  # fmt: skip
    with Stopwatch() as sw:
        layout_counts = split_ct(ct.path, work / "ct_series", work / "ct_multiframe")
    print(f"CT: {layout_counts['single_frame_series']} single-frame series ({layout_counts['single_frame_files']} "
          f"files) and {layout_counts['multi_frame_objects']} multi-frame objects, split in "
          f"{sw.timing.wall_s:.1f} s")  # fmt: skip
    copies = max(1, math.ceil(args.radiographs / max(counts["imaging"], 1))) if args.radiographs else 1
    with Stopwatch() as sw:
        replicated, written = replicate_radiographs(imaging.path, work / "radiographs", cohort, copies)
    print(f"2D: {copies} copies of the radiographs ({written} files, {len(replicated.table)} cohort rows), "
          f"written in {sw.timing.wall_s:.1f} s")  # fmt: skip
    folders = {"files": work / "radiographs", "slices": work / "ct_series", "frames": work / "ct_multiframe"}
    digests, digest_s = {}, {}
    for unit, folder in folders.items():
        digests[unit], digest_s[unit] = digests_of(folder)
    print(
        "content digests (what `clinfuse ingest` computes before the ingester; not in the rates below): "
        + ", ".join(f"{unit} folder {seconds:.1f} s" for unit, seconds in digest_s.items())
    )
    done()

    n = args.workers
    done = step(f"2. ingest_dicom throughput: 1 worker, {n} workers with the kind's rule, {n} workers pool forced")
    first_series = [sorted(min(series).glob("*.dcm")) for unit in ("slices", "frames")
                    if (series := list(folders[unit].rglob("series_*")))]  # fmt: skip
    warm = warm_up(min(folders["files"].rglob("*.dcm")), first_series, imaging.image_size, ct)
    print(f"warm-up (imports MONAI and decoders; a radiograph, a series, a multi-frame object; untimed): {warm:.1f} s")
    workloads = [
        Workload("2D radiographs", "files", "images", imaging.model_copy(update={"path": folders["files"]}),
                 replicated, digests["files"]),
        Workload("CT single-frame series", "slices", "series", ct.model_copy(update={"path": folders["slices"]}),
                 cohort, digests["slices"]),
        Workload("CT multi-frame objects", "frames", "series", ct.model_copy(update={"path": folders["frames"]}),
                 cohort, digests["frames"]),
    ]  # fmt: skip
    ingest_runs: list[IngestRun] = []
    for workload in workloads:
        for mode, workers in (("one", 1), ("rule", n), ("forced", n)):
            result = run_ingest(workload, mode, workers, work)
            ingest_runs.append(result)
            print(f"  {workload.label}, {result.label}: {result.items} {workload.unit} in {result.timing.wall_s:.1f} s"
                  f", pool started: {result.handoff}", flush=True)  # fmt: skip
    print()
    print(ingest_table(ingest_runs))
    print()
    handoff_above_s = scan._WORTH_STARTING * scan.WORKER_START_UP_S
    comparisons = [compare([r for r in ingest_runs if r.workload is w]) for w in workloads]
    for c in comparisons:
        print(ingest_summary(c, handoff_above_s))
    done()

    done = step(f"3. feature cache vs decode: clinfuse ingest of imaging + ct, then {args.epochs} epochs each way")
    cache_dir = work / "cache"
    cache_timing, report = build_cache(cohort_dir, cache_dir, workers=1)
    print(f"cache built by `ingest(config, cache, workers=1)` in {cache_timing.wall_s:.1f} s: "
          + ", ".join(f"{name} {m.get('duration_s', float('nan')):.1f} s" for name, m in report["modalities"].items())
          + f"; ct: {report['modalities']['ct']['volumes_decoded']} volumes "
          f"{report['modalities']['ct'].get('layouts', {})}")  # fmt: skip
    volume_figures = compare_volumes(cache_dir, ct, args)
    image_figures = compare_images(cache_dir, imaging, args)
    done()

    print(f"\n{rule('summary', width=100)}")
    rows = []
    for c in comparisons:
        name, unit = c.one.workload.label, f"{c.one.workload.unit}/s"
        rule_path = ("stayed in this process" if c.rule.stages.handoff_items is None
                     else f"workers took over {c.rule.handoff}")  # fmt: skip
        rows += [
            [f"{name}, 1 worker ({unit})", f"{c.one.rate:,.1f}"],
            [f"{name}, {c.rule.label} ({unit})", f"{c.rule.rate:,.1f} ({rule_path})"],
            [f"{name}, {c.forced.label} ({unit} per worker)",
             f"{c.forced.per_worker:,.1f} (pool with all workers running {c.forced.pool_rate / n:,.1f})"],
            [f"{name}, speed-up pool forced vs 1 worker", f"{c.speed_up:.2f}x (decode stage {c.decode_speed_up:.2f}x, "
                                                          f"pool with all workers running {c.pool_speed_up:.2f}x)"],
            [f"{name}, effective worker start-up (s)", f"{c.start_up_s:.1f} (break-even rest {c.break_even_s:.1f} s; "
                                                       f"rule hands off above {handoff_above_s:g} s)"],
            [f"{name}, kind's rule took the faster path", c.verdict.split(" (", 1)[0]],
        ]  # fmt: skip
    rows += [[label, value] for label, value in (*volume_figures, *image_figures)]
    rows.append(["benchmark run time (s)", f"{time.perf_counter() - run_started:.1f}"])
    print(table(["figure", "value"], rows))
    if any(r.timing.wall_s >= 0.5 and r.timing.cpu_per_wall / (r.workers if r.in_workers else 1) < BUSY_CPU_PER_WALL
           for r in ingest_runs):  # fmt: skip
        print(f"note: cpu/wall per worker fell below {BUSY_CPU_PER_WALL} in some runs: the machine was shared, so "
              "those rates (and speed-ups) understate the code")  # fmt: skip
    return 0


def compare_volumes(cache_dir: Path, modality: DicomModality, args: argparse.Namespace) -> list[tuple[str, str]]:
    """Volumes: the dicom kind's reader over the cache vs `assemble_volume` of the same series."""
    from clinfuse.kinds.dicom.tensors import image_reader
    from clinfuse.kinds.dicom.volume import assemble_volume
    from clinfuse.platform.cache import FeatureCache

    cache = FeatureCache(cache_dir)
    volumes = cache.array(modality.name, "volumes")
    index = cache.json(modality.name, "volumes")["rows"]
    sources = volume_sources(index, modality.path)
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.permutation(np.array(sorted(sources), dtype=int))[: args.volume_reads])
    if len(rows) == 0:
        print("volumes: no cache row could be matched to its series: nothing to compare")
        return []
    read, _ = image_reader(cache, modality.name)
    by_layout: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        by_layout[index[r]["layout"]].append(int(r))
    checked = rows[:4]
    identical = sum(int(np.array_equal(assemble_volume(sources[int(r)], modality).voxels, volumes[r])) for r in checked)
    print(f"\nvolumes: cache array {volumes.shape} {volumes.dtype}, {volumes.nbytes / 2**20:.1f} MiB, "
          f"memory-mapped; {len(sources)}/{len(index)} rows matched to their series; {len(rows)} rows read per epoch ("
          + ", ".join(f"{len(members)} {layout}" for layout, members in sorted(by_layout.items()))
          + f"); {identical}/{len(checked)} checked rows equal a fresh assemble_volume")  # fmt: skip

    def decode(row: int) -> np.ndarray:
        return assemble_volume(sources[row], modality).voxels.astype(np.float32)[np.newaxis]

    cached, decoded, per_row = compare_reads(read, decode, rows, BATCH_3D, args.epochs, args.seed)
    print(read_table([cached, decoded], "volumes/s"))
    ratio = cached.rate / decoded.rate
    layout_ratios = []
    for layout, members in sorted(by_layout.items()):
        seconds = sum(per_row[r] for r in members)
        rate = len(members) * args.epochs / seconds
        slices = sum(index[r]["slices"] for r in members) * args.epochs / seconds
        layout_ratios.append((layout, rate, slices, cached.rate / rate))
    print(f"ratio cache/decode, volumes: {verdict(ratio)}; by layout: "
          + "; ".join(f"{layout} decode {rate:.1f} volumes/s ({slices:,.0f} slices/s), ratio {verdict(r)}"
                      for layout, rate, slices, r in layout_ratios))  # fmt: skip
    return [("volumes read from cache (volumes/s)", f"{cached.rate:,.0f}"),
            ("volumes decoded by assemble_volume (volumes/s)", f"{decoded.rate:,.1f}"),
            ("ratio cache/decode, volumes (goal >= 20x)", verdict(ratio)),
            *[(f"  ratio cache/decode, {layout}", verdict(r)) for layout, _, _, r in layout_ratios]]  # fmt: skip


def compare_images(cache_dir: Path, modality: DicomModality, args: argparse.Namespace) -> list[tuple[str, str]]:
    """2D, for comparison: the reader over `images` vs `preprocess_file` of the same radiographs."""
    from clinfuse.kinds.dicom.pixels import preprocess_file
    from clinfuse.kinds.dicom.tensors import image_reader
    from clinfuse.platform.cache import FeatureCache

    cache = FeatureCache(cache_dir)
    images = cache.array(modality.name, "images")
    sources = image_sources(cache.json(modality.name, "images")["rows"], modality.path)
    rows = np.array(sorted(sources), dtype=int)
    if len(rows) == 0:
        print("2D: no cache row could be matched to its file: nothing to compare")
        return []
    read, _ = image_reader(cache, modality.name)

    def decode(row: int) -> np.ndarray:
        result = preprocess_file(sources[row], modality.image_size, modality.window, modality.window_index,
                                 modality.frame)  # fmt: skip
        return result.pixels.astype(np.float32)[np.newaxis]

    checked = rows[:8]
    identical = sum(int(np.array_equal(decode(int(r))[0], images[r])) for r in checked)
    print(f"\n2D: cache array {images.shape} {images.dtype}, {images.nbytes / 2**20:.1f} MiB; "
          f"{len(rows)}/{len(images)} rows matched to their files; {identical}/{len(checked)} checked rows equal a "
          "fresh preprocess_file")  # fmt: skip
    cached, decoded, _ = compare_reads(read, decode, rows, BATCH_2D, args.epochs, args.seed)
    print(read_table([cached, decoded], "images/s"))
    ratio = cached.rate / decoded.rate
    print(f"ratio cache/decode, 2D images: {verdict(ratio)}")
    return [("2D images read from cache (images/s)", f"{cached.rate:,.0f}"),
            ("2D images decoded by preprocess_file (images/s)", f"{decoded.rate:,.1f}"),
            ("ratio cache/decode, 2D (goal >= 20x)", verdict(ratio))]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
