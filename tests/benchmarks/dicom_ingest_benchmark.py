"""DICOM ingest benchmark: 2D radiographs, CT series and multi-frame CT objects through the dicom kind's ingest
in this process and with Dask worker processes, and reads from the feature cache vs. decoding, for volumes and 2D
images.

What one run measures (every figure printed is measured in that run, on this machine):

1. Data. One demo cohort (`generate_demo_cohort`, modalities imaging, genomics, ehr and ct) is generated into a
   temporary folder, with the demo CT's share of index series written as one Enhanced CT object raised to
   --enhanced-share (`ct.ENHANCED_RATE`, 0.15 in the demo) so that both CT layouts carry enough work. The CT study
   folders are split (hard links) into one folder of single-frame series and one of multi-frame objects. The
   cohort's radiographs are replicated under new patient ids (PatientID rewritten, pixel data untouched, so every
   copy decodes exactly as its original) until about --radiographs images are selected, so that the 2D run whose
   cluster starts at once has work left once its workers are ready.
2. Ingest throughput: the dicom kind's `ingest_dicom(modality, cohort, out, context)` per workload, run three
   ways, each with a `DaskWorkers` of its own as `context.workers`, closed inside the timed run as `ingest` closes
   its own: (i) `DaskWorkers(1)`: everything in this process; (ii) `DaskWorkers(N)` with the kind's own rule
   (`scan.run_all`, which serves the header pass and the decode stage through `DaskWorkers.map_adaptive`, works
   in this process and, when after `MEASURE_S` of work the estimated rest exceeds `WORTH_STARTING` x
   `WORKER_START_UP_S` (platform/dask_workers.py), starts
   a LocalCluster of N single-threaded worker processes in a background thread; the cluster takes the rest of the
   running stage as soon as it is ready, this process working on meanwhile); (iii) `DaskWorkers(N)` started at
   once: its `start()` is called just before the ingest (inside the timed run; the kind's thresholds are left
   alone), so the cluster starts in the background while this process works through the header pass and the
   decode stage, and takes the rest of whichever stage is running once it is ready. (iii) measures N-worker
   scaling and what starting the cluster costs when this process keeps working during its start. An untimed
   warm-up first imports MONAI and the decoders in this process, so (ii)'s estimate is not inflated by the first
   item paying those imports, as it is in a cold process. Content digests are given as `clinfuse ingest` gives
   them. Items are images (2D), slices of single-frame series, or frames of multi-frame objects.
   When the cluster was asked to start (in which stage, after how many of its items, seconds into the ingest),
   when it was ready (its first `map_ordered` call: `run_all` hands over at the first item after the cluster is
   ready) and how many items of that stage this process had done are recorded by wrapping `DaskWorkers.start`,
   `DaskWorkers.map_ordered` and `scan.run_all` in this process (the functions sent to the workers are
   untouched); whether workers ran is read from that hand-off record. A cluster asked to start but not ready
   before the work ran out is waited for after the ingest (closing the workers waits for their start anyway), so
   its start-up is measured too. Columns: where the work ran; the start request and the hand-off; start-up, the
   seconds from the request to ready; the header pass (listing included); the decode stage; the cluster's first
   decode result after the hand-off (one task's round trip, plus what the workers import on their first task:
   they count as ready once torch is imported, the kind's modules, MONAI and the decoders come with the task);
   the cluster's steady rate, once the tasks submitted before its first result are back (results come in
   order and only a few tasks per worker are in flight, so those tasks are held up by the first one, and the
   items after them were submitted later; recorded by wrapping `Client.submit` in this process; none when the
   whole rest fit in that first window); closing the workers; cpu/wall: CPU time of this process
   and of the worker processes (reaped when the cluster closes) over wall time (about 1.0 per busy core; lower:
   the machine was shared). Derived: the speed-up of (iii) over (i); the effective start-up cost, (iii)'s header
   pass plus decode stage minus (i)'s divided by N (what the cluster cost beyond perfect scaling); the break-even
   it implies (starting the cluster at once is faster once the work would take this process more than start-up x
   N / (N - 1); with this process working during the start and perfect scaling, that is the start-up time itself,
   which `WORTH_STARTING` x `WORKER_START_UP_S` stands for); and whether (ii) took the faster of (i) and (iii),
   by whole-ingest wall time.
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
class StageRecord:
    """One `scan.run_all` call (the header pass or the decode stage), in seconds since the ingest began: its items,
    and when the cluster took the rest (never, for a stage that stayed in this process)."""

    items: int = 0
    started_s: float = float("nan")
    ended_s: float = float("nan")  # its last item, or its close (the ingest closes the decode stage's outcomes)
    done: int = 0  # items yielded so far
    handoff_items: int | None = None  # items done in this process before the cluster took the rest
    handoff_s: float = float("nan")
    first_cluster_s: float = float("nan")  # the cluster's first result
    first_window: int = 0  # items submitted to the cluster before its first result came back
    window_back_s: float = float("nan")  # the last of those items came back
    last_s: float = float("nan")  # the last item came back

    @property
    def seconds(self) -> float:
        return self.ended_s - self.started_s


@dataclass(frozen=True)
class Moment:
    """A point of one ingest: its stage, how many of that stage's items were done, seconds since the ingest began."""

    stage: str  # before the ingest | header pass | decode stage
    items: int
    at_s: float


@dataclass
class Stages:
    """What one ingest spent where, and when its cluster was asked to start, was ready and was closed."""

    header_s: float = float("nan")  # scan_folder: listing the folder and the header pass
    header: StageRecord = field(default_factory=StageRecord)
    decode: StageRecord = field(default_factory=StageRecord)
    asked: Moment | None = None  # the first `DaskWorkers.start` call
    ready_s: float = float("nan")  # the first `map_ordered` call; else, if asked, waited for after the ingest
    ready_in_time: bool = False  # ready before the work ran out: the cluster took some of it
    close_s: float = 0.0

    @property
    def handoff(self) -> Moment | None:
        """Where the cluster first took over, if it did."""
        for name, record in (("header pass", self.header), ("decode stage", self.decode)):
            if record.handoff_items is not None:
                return Moment(name, record.handoff_items, record.handoff_s)
        return None

    @property
    def work_s(self) -> float:
        """The two stages whose items can go to the cluster."""
        return self.header_s + self.decode.seconds


@contextlib.contextmanager
def recorded(stages: Stages) -> Iterator[Callable[[], float]]:
    """Record one ingest's `stages` by wrapping, in this process only, what it calls: the dicom kind's `scan_folder`
    and `run_all`, the workers' `start` and `map_ordered`, and the client's `submit` (the functions sent to the
    workers are untouched). Yields the clock: seconds since the ingest began."""
    from clinfuse.kinds.dicom import ingest as ingest_module
    from clinfuse.kinds.dicom import scan
    from clinfuse.platform.dask_workers import DaskWorkers, run_batch
    from distributed import Client

    scan_folder, run_all = ingest_module.scan_folder, scan.run_all
    start, map_ordered, submit = DaskWorkers.start, DaskWorkers.map_ordered, Client.submit
    began = time.perf_counter()
    stage, record = "before the ingest", StageRecord()

    def clock() -> float:
        return time.perf_counter() - began

    def timed_scan(*args: object) -> object:
        nonlocal stage, record
        stage, record = "header pass", stages.header
        begun = time.perf_counter()
        try:
            return scan_folder(*args)
        finally:
            stages.header_s = time.perf_counter() - begun
            stage, record = "decode stage", stages.decode

    def counted_run_all(function: Callable, arguments: list, context: IngestContext, desc: str) -> Iterator[object]:
        own = record  # the stage this call serves, fixed now: the generator below runs later
        own.items, own.started_s = len(arguments), clock()

        def outcomes() -> Iterator[object]:
            try:  # closing: the ingest closes its outcomes after the last item, which stops the hand-over
                with contextlib.closing(run_all(function, arguments, context, desc)) as inner:
                    for outcome in inner:
                        if own.handoff_items is not None and own.done == own.handoff_items:
                            own.first_cluster_s = clock()
                        if own.handoff_items is not None and own.done == own.handoff_items + own.first_window - 1:
                            own.window_back_s = clock()
                        own.last_s = clock()
                        yield outcome
                        own.done += 1
            finally:
                own.ended_s = clock()

        return outcomes()

    def recorded_start(self: DaskWorkers) -> None:
        if stages.asked is None:  # `client()` calls `start()` again
            stages.asked = Moment(stage, record.done, clock())
        start(self)

    def recorded_map_ordered(self: DaskWorkers, function: Callable, items: list) -> Iterator[object]:
        if record.handoff_items is None:
            record.handoff_items, record.handoff_s = record.done, clock()
        if not stages.ready_in_time:
            stages.ready_s, stages.ready_in_time = clock(), True
        return map_ordered(self, function, items)

    def recorded_submit(self: Client, function: Callable, *args: object, **kwargs: object) -> object:
        if function is run_batch and math.isnan(record.first_cluster_s):  # run_batch(function, batch)
            record.first_window += len(args[1])
        return submit(self, function, *args, **kwargs)

    patches = [(ingest_module, "scan_folder", timed_scan), (scan, "run_all", counted_run_all),
               (DaskWorkers, "start", recorded_start), (DaskWorkers, "map_ordered", recorded_map_ordered),
               (Client, "submit", recorded_submit)]  # fmt: skip
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, replacement in patches:
            setattr(owner, name, replacement)
        yield clock
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


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
    mode: Mode  # one: 1 worker; rule: N workers, the kind's rule; forced: N workers, the cluster started at once
    workers: int
    selected: int  # images or volumes decoded
    items: int  # files, slices or frames decoded
    timing: Timing
    stages: Stages
    failed: int

    @property
    def label(self) -> str:
        return {"one": "1 worker", "rule": f"{self.workers} workers, kind's rule",
                "forced": f"{self.workers} workers, started at once"}[self.mode]  # fmt: skip

    @property
    def handed_over(self) -> bool:
        return self.stages.handoff is not None

    @property
    def rate(self) -> float:
        return self.items / self.timing.wall_s if self.items and self.timing.wall_s > 0 else float("nan")

    @property
    def per_worker(self) -> float:
        """The rate per process that decoded: a run that stayed in this process had one."""
        return self.rate / (self.workers if self.handed_over else 1)

    @property
    def decode_rate(self) -> float:
        seconds = self.stages.decode.seconds
        return self.items / seconds if self.items and seconds > 0 else float("nan")

    def moment(self, moment: Moment | None) -> str:
        if moment is None:
            return "never"
        if moment.stage == "before the ingest":
            return moment.stage
        unit = "files" if moment.stage == "header pass" else self.workload.decodes
        return f"{moment.stage}, after {moment.items} {unit}, {moment.at_s:.1f} s"

    @property
    def start_up_s(self) -> float:
        """Seconds from asking for the cluster to its being ready (nan: never asked)."""
        asked = self.stages.asked
        return self.stages.ready_s - asked.at_s if asked is not None else float("nan")

    @property
    def start_up(self) -> str:
        if self.stages.asked is None:
            return "-"
        return f"{self.start_up_s:.1f}" + ("" if self.stages.ready_in_time else " (after the work)")

    @property
    def ready(self) -> str:
        if self.stages.ready_in_time:
            return f"ready {self.start_up_s:.1f} s after the request"
        return f"ready only after the work, {self.start_up_s:.1f} s after the request"

    @property
    def first_cluster_wait(self) -> float:
        """Seconds from the decode stage's hand-off to the cluster's first result: one task's round trip and the
        imports its function brings to each worker."""
        return self.stages.decode.first_cluster_s - self.stages.decode.handoff_s

    @property
    def cluster_rate(self) -> float:
        """Items per second from the cluster in the decode stage once the tasks submitted before its first result
        are back, in the workload's unit (nan: the whole rest fit in those)."""
        d = self.stages.decode
        if d.handoff_items is None or not self.selected:
            return float("nan")
        after, seconds = d.items - d.handoff_items - d.first_window, d.last_s - d.window_back_s
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
    from clinfuse.platform import dask_workers

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
    print(f"hand-off     kinds/dicom/scan.py run_all works in this process; after MEASURE_S = "
          f"{dask_workers.MEASURE_S:g} s it starts the Dask workers in the background if the estimated rest exceeds "
          f"WORTH_STARTING = "
          f"{dask_workers.WORTH_STARTING:g} x WORKER_START_UP_S = {dask_workers.WORKER_START_UP_S:g} s, i.e. "
          f"{dask_workers.WORTH_STARTING * dask_workers.WORKER_START_UP_S:g} s, and hands them the rest once they "
          "are ready")  # fmt: skip


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


def run_ingest(workload: Workload, mode: Mode, count: int, work: Path) -> IngestRun:
    """One `ingest_dicom` of the workload's folder with `DaskWorkers(count)` of its own, closed inside the timed run
    (started just before the ingest in mode forced); the output folder is removed afterwards."""
    from clinfuse.kinds.dicom.ingest import ingest_dicom
    from clinfuse.kinds.dicom.store import VOLUME_INDEX_FILE
    from clinfuse.platform.dask_workers import DaskWorkers
    from clinfuse.platform.ingest.context import IngestContext
    from clinfuse.platform.security import Pseudonymiser

    run_dir = work / "runs" / f"{workload.unit}-{mode}"
    scratch, out = run_dir / "scratch", run_dir / "out"
    scratch.mkdir(parents=True)
    workers = DaskWorkers(count)
    context = IngestContext(
        pseudonymise=Pseudonymiser(None, enabled=False),
        scratch=scratch,
        previous=None,
        workers=workers,
        progress=False,
        input_digests=workload.digests,
    )
    stages = Stages()
    with recorded(stages) as clock, Stopwatch() as sw:  # recorded first: its imports (Dask) are not timed
        try:
            if mode == "forced":
                workers.start()
            output = ingest_dicom(workload.modality, workload.cohort, out, context)
            if stages.asked is not None and not stages.ready_in_time:  # closing would wait for it anyway
                workers.client()
                stages.ready_s = clock()
        finally:
            closing = time.perf_counter()
            workers.close()
            stages.close_s = time.perf_counter() - closing
    report = output.report
    if workload.modality.volume:
        rows = json.loads((out / VOLUME_INDEX_FILE).read_text())["rows"]
        selected, items = len(output.present_ids), sum(row["slices"] for row in rows)
    else:
        selected = items = len(output.present_ids)
    shutil.rmtree(run_dir)
    return IngestRun(workload, mode, count, selected, items, sw.timing, stages, report["failed"]["count"])


def ingest_table(runs: Sequence[IngestRun]) -> str:
    return table(
        ["workload", "run", "path", "cluster asked", "cluster took over", "start-up s", "decoded", "items", "wall s",
         "header s", "decode s", "cluster 1st s", "close s", "cpu/wall", "items/s", "per worker", "decode items/s",
         "cluster steady items/s"],
        [[r.workload.label, r.label, "cluster" if r.handed_over else "in-process", r.moment(r.stages.asked),
          r.moment(r.stages.handoff), r.start_up, str(r.selected), f"{r.items} {r.workload.unit}",
          f"{r.timing.wall_s:.1f}", f"{r.stages.header_s:.1f}", f"{r.stages.decode.seconds:.1f}",
          f"{r.first_cluster_wait:.1f}", f"{r.stages.close_s:.1f}", f"{r.timing.cpu_per_wall:.2f}", f"{r.rate:,.1f}",
          f"{r.per_worker:,.1f}", f"{r.decode_rate:,.1f}", f"{r.cluster_rate:,.1f}"]
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
    def cluster_speed_up(self) -> float:
        return self.forced.cluster_rate / self.one.decode_rate

    @property
    def start_up_s(self) -> float:
        """What the cluster cost beyond perfect scaling of the 1-worker header pass and decode stage."""
        return self.forced.stages.work_s - self.one.stages.work_s / self.forced.workers

    @property
    def break_even_s(self) -> float:
        """Starting the cluster at once finishes first once the work would take this process longer than this."""
        n = self.forced.workers
        return self.start_up_s * n / (n - 1)

    @property
    def verdict(self) -> str:
        one, forced, rule = self.one.timing.wall_s, self.forced.timing.wall_s, self.rule.timing.wall_s
        started = self.rule.stages.asked is not None
        times = f"whole ingest: 1 worker {one:.1f} s, started at once {forced:.1f} s, kind's rule {rule:.1f} s"
        if abs(forced - one) < 0.05 * min(forced, one):
            return f"either (the two paths tie within 5%; {times})"
        right = started == (forced < one)
        if not started:
            chose = "never started the cluster"
        elif self.rule.handed_over:
            chose = f"started the cluster, which took over in the {self.rule.stages.handoff.stage}"
        else:
            chose = "started the cluster, which was ready only after the work"
        faster = "starting the cluster at once" if forced < one else "this process alone"
        return f"{'yes' if right else 'NO'}: it {chose}, and {faster} was faster ({times})"


def compare(runs: Sequence[IngestRun]) -> Comparison:
    by_mode = {r.mode: r for r in runs}
    return Comparison(by_mode["one"], by_mode["rule"], by_mode["forced"])


def start_up_figures(c: Comparison, handoff_above_s: float) -> str:
    """The effective start-up cost and its break-even, or why they were not measured."""
    f = c.forced
    if not f.handed_over:
        return (f"not measured: the cluster was ready {f.start_up_s:.1f} s after its start, after the work "
                f"({f.stages.work_s:.1f} s) was done in this process")  # fmt: skip
    return (f"{c.start_up_s:.1f} s (break-even work {c.break_even_s:.1f} s; start to ready {f.start_up_s:.1f} s; "
            f"the rule starts the cluster above {handoff_above_s:g} s)")  # fmt: skip


def ingest_summary(c: Comparison, handoff_above_s: float) -> str:
    """A few lines per workload: each run's rate, the speed-up, the start-up cost and the rule's choice."""
    unit, n, f = f"{c.one.workload.unit}/s", c.forced.workers, c.forced
    if c.rule.stages.asked is None:
        rule = f"stayed in this process: {c.rule.rate:,.1f} {unit}"
    else:
        rule = (f"asked for the cluster: {c.rule.moment(c.rule.stages.asked)}; {c.rule.ready}; took over: "
                f"{c.rule.moment(c.rule.stages.handoff)}; {c.rule.rate:,.1f} {unit}, "
                f"{c.rule.per_worker:,.1f} per worker")  # fmt: skip
    lines = [
        f"{c.one.workload.label}:",
        f"  1 worker: {c.one.rate:,.1f} {unit} (header pass {c.one.stages.header_s:.1f} s, decode stage "
        f"{c.one.stages.decode.seconds:.1f} s)",
        f"  {c.rule.label}: {rule}",
    ]  # fmt: skip
    if f.handed_over:
        lines += [
            f"  {f.label}: {f.ready}, took over: {f.moment(f.stages.handoff)}; "
            f"{f.rate:,.1f} {unit} whole ingest = {f.per_worker:,.1f} per worker; cluster after its first "
            f"result's window {f.cluster_rate:,.1f} {unit} = {f.cluster_rate / n:,.1f} per worker; first result "
            f"{f.first_cluster_wait:.1f} s after the decode stage's hand-off; closing took {f.stages.close_s:.1f} s",
            f"  speed-up, started at once vs 1 worker: whole ingest {c.speed_up:.2f}, decode stage "
            f"{c.decode_speed_up:.2f}, cluster after its first result's window {c.cluster_speed_up:.2f} "
            f"(ideal {n:.1f})",
        ]  # fmt: skip
    else:
        lines.append(f"  {f.label}: the cluster never took over ({f.ready}); "
                     f"{f.rate:,.1f} {unit} whole ingest, closing took {f.stages.close_s:.1f} s")  # fmt: skip
    lines += [
        f"  effective start-up (header pass + decode stage started at once, minus 1 worker's / {n}): "
        + start_up_figures(c, handoff_above_s),
        f"  kind's rule took the faster path: {c.verdict}",
    ]
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
    from clinfuse.platform import dask_workers
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
    done = step(f"2. ingest_dicom throughput: 1 worker, {n} workers with the kind's rule, {n} workers started at once")
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
                  f"; cluster asked: {result.moment(result.stages.asked)}, took over: "
                  f"{result.moment(result.stages.handoff)}", flush=True)  # fmt: skip
    print()
    print(ingest_table(ingest_runs))
    print()
    handoff_above_s = dask_workers.WORTH_STARTING * dask_workers.WORKER_START_UP_S
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
        if c.rule.stages.asked is None:
            rule_path = "stayed in this process"
        else:
            rule_path = f"cluster asked: {c.rule.moment(c.rule.stages.asked)}, took over: " + c.rule.moment(
                c.rule.stages.handoff
            )
        forced = c.forced
        rows += [
            [f"{name}, 1 worker ({unit})", f"{c.one.rate:,.1f}"],
            [f"{name}, {c.rule.label} ({unit})", f"{c.rule.rate:,.1f} ({rule_path})"],
        ]
        if forced.handed_over:
            rows += [
                [f"{name}, {forced.label} ({unit} per worker)",
                 f"{forced.per_worker:,.1f} (cluster after its first result's window {forced.cluster_rate / n:,.1f})"],
                [f"{name}, speed-up started at once vs 1 worker",
                 f"{c.speed_up:.2f}x (decode stage {c.decode_speed_up:.2f}x, cluster after its first result's window "
                 f"{c.cluster_speed_up:.2f}x)"],
            ]  # fmt: skip
        else:
            rows.append([f"{name}, {forced.label} ({unit})",
                         f"{forced.rate:,.1f} (the cluster never took over)"])  # fmt: skip
        rows += [
            [f"{name}, effective worker start-up", start_up_figures(c, handoff_above_s)],
            [f"{name}, kind's rule took the faster path", c.verdict.split(" (", 1)[0]],
        ]
    rows += [[label, value] for label, value in (*volume_figures, *image_figures)]
    rows.append(["benchmark run time (s)", f"{time.perf_counter() - run_started:.1f}"])
    print(table(["figure", "value"], rows))
    if any(r.timing.wall_s >= 0.5 and r.timing.cpu_per_wall / (r.workers if r.handed_over else 1) < BUSY_CPU_PER_WALL
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
