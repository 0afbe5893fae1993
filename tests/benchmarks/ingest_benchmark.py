"""Ingestion benchmark: DICOM decode throughput, feature-cache build time, and cache vs. decode epoch reads.

What one run measures (every figure printed is measured in that run, on this machine):

1. A synthetic demo cohort is generated into a temporary folder (`generate_demo_cohort`). Its DICOM files come
   in mixed transfer syntaxes: uncompressed (Explicit/Implicit VR Little Endian) and compressed (RLE Lossless,
   JPEG 2000 Lossless, JPEG-LS Lossless).
2. Decode + preprocess throughput of the real preprocessing function (`preprocess_file`: pydicom decode, modality
   LUT, windowing, MONAI resize and pad) in ONE process with torch limited to one intra-op thread, so the rate
   is files/s per core. Reported for uncompressed vs. compressed files and per transfer syntax, after an untimed
   warm-up that decodes one file of each syntax (the first call imports MONAI and the decoder plugins). The
   cpu/wall column is process CPU time over wall time: about 1.0 confirms one busy core; clearly below 1.0
   means the process waited (other load on the machine, or I/O), so its rates understate the code's speed;
   the summary adds a note when that happened to a block of at least half a second.
3. The real feature-cache build, `ingest(cohort.yaml, cache, workers=1)`, timed end to end (PyHealth/Dask's
   own console progress bar is swallowed), with the per-modality durations from the cache's ingest report.
4. A "training epoch" over the imaging modality, --epochs times each way, in shuffled mini-batches of 32
   converted to float32 torch tensors as a DataLoader would:
     (a) from the cache: rows of the memory-mapped float16 `images` array (the OS page cache is warm, as it is
         from the second epoch of any real training run);
     (b) decoding the DICOM file behind each cache row with `preprocess_file` every epoch. The files are the
         ones the cache holds, found by matching file digests against the cache's image index (falling back
         to the same number of files from the imaging folder if they cannot all be matched).
   The epochs alternate (cache, decode, cache, ...) so both strategies see the same machine load. Both rates
   are printed with the ratio cache/decode (goal: at least 20x); decoding here also pays for batching, so its
   rate can differ a little from step 2's.

The cohort, cache and CLINFUSE_HOME (which receives a throw-away pseudonymisation key) are temporary folders,
removed at the end.

Run from the repository root:

    .venv/bin/python tests/benchmarks/ingest_benchmark.py [--patients 300] [--seed 3] [--image-size 128] [--epochs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from text_tables import rule, table  # this folder is on sys.path when the script runs
from workspace import throwaway_workspace

BATCH_SIZE = 32
RATIO_GOAL = 20.0
_PROGRESS_BAR = re.compile(r"\| *\d+% Completed \|")  # Dask's console progress bar


@dataclass(frozen=True)
class Timing:
    """Wall and process-CPU seconds of one measured block."""

    wall_s: float
    cpu_s: float

    @property
    def cpu_per_wall(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan")


class Stopwatch:
    """Context manager measuring wall time and this process's CPU time."""

    def __enter__(self) -> Stopwatch:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timing = Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)


@dataclass(frozen=True)
class RateRow:
    label: str
    count: int
    timing: Timing

    @property
    def rate(self) -> float:
        return self.count / self.timing.wall_s if self.count and self.timing.wall_s > 0 else float("nan")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300, help="demo cohort size (default 300)")
    parser.add_argument("--seed", type=int, default=3, help="demo cohort seed (default 3)")
    parser.add_argument("--image-size", type=int, default=128, help="preprocessed square side (default 128)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per read strategy (default 3)")
    args = parser.parse_args(argv)
    if args.patients < 1 or args.epochs < 1 or args.image_size < 16:
        parser.error("--patients and --epochs must be >= 1, --image-size >= 16")
    return args


def rate_rows(rows: Sequence[RateRow], unit: str) -> str:
    return table(
        ["", unit.split("/")[0], "wall s", "cpu s", "cpu/wall", unit],
        [
            [r.label, str(r.count), f"{r.timing.wall_s:.2f}", f"{r.timing.cpu_s:.2f}",
             f"{r.timing.cpu_per_wall:.2f}", f"{r.rate:,.1f}"]
            for r in rows
        ],
    )  # fmt: skip


def header(args: argparse.Namespace) -> None:
    import pydicom
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    print(rule("ClinFuse ingestion benchmark"))
    print(f"machine      {platform.machine()} {platform.system()} {platform.release()}, "
          f"{os.cpu_count()} logical cores ({usable} usable by this process)")  # fmt: skip
    print(f"python       {platform.python_version()} ({sys.executable})")
    print(f"torch        {torch.__version__} (intra-op threads limited to {torch.get_num_threads()})")
    print(f"pydicom      {pydicom.__version__}, numpy {np.__version__}")
    print(f"parameters   patients={args.patients} seed={args.seed} image_size={args.image_size} "
          f"epochs={args.epochs} batch={BATCH_SIZE}")  # fmt: skip


def set_image_size(config_path: Path, modality_name: str, size: int) -> int:
    """Make the cohort config's DICOM modality preprocess to `size` (the demo default is 128); returns it."""
    from clinfuse.platform.config import load_cohort_config
    from clinfuse.platform.config.loader import write_cohort_config

    config = load_cohort_config(config_path)
    modality = config.modality(modality_name)
    if modality.image_size != size:
        modalities = tuple(m.model_copy(update={"image_size": size}) if m is modality else m for m in config.modalities)
        write_cohort_config(config.model_copy(update={"modalities": modalities}), config_path)
    return size


def classify(files: Sequence[Path]) -> dict[Path, tuple[str, bool]]:
    """Transfer syntax name and is-compressed flag of every file, from its header only."""
    import pydicom

    out = {}
    for path in files:
        uid = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        out[path] = (uid.name, bool(uid.is_compressed))
    return out


def warm_up(syntaxes: dict[Path, tuple[str, bool]], size: int) -> float:
    """Decode one file per transfer syntax (imports MONAI and each decoder plugin); returns seconds taken."""
    from clinfuse.kinds.dicom.pixels import preprocess_file

    firsts: dict[str, Path] = {}
    for path, (name, _) in syntaxes.items():
        firsts.setdefault(name, path)
    started = time.perf_counter()
    for path in firsts.values():
        preprocess_file(path, size, None)
    return time.perf_counter() - started


def decode_throughput(
    syntaxes: dict[Path, tuple[str, bool]], size: int
) -> tuple[list[RateRow], list[RateRow], dict[Path, np.ndarray]]:
    """Decode every file once, single process; rates per group and per syntax, and the decoded pixels."""
    from clinfuse.kinds.dicom.pixels import preprocess_file

    per_file: dict[Path, Timing] = {}
    pixels: dict[Path, np.ndarray] = {}
    for path in syntaxes:
        with Stopwatch() as sw:
            result = preprocess_file(path, size, None)
        per_file[path] = sw.timing
        pixels[path] = result.pixels
        name = syntaxes[path][0]
        if result.transfer_syntax != name:
            raise RuntimeError(f"{path}: header says {name}, preprocess_file says {result.transfer_syntax}")

    def total(label: str, paths: list[Path]) -> RateRow:
        return RateRow(
            label,
            len(paths),
            Timing(sum(per_file[p].wall_s for p in paths), sum(per_file[p].cpu_s for p in paths)),
        )

    groups = [
        total("uncompressed", [p for p, (_, c) in syntaxes.items() if not c]),
        total("compressed", [p for p, (_, c) in syntaxes.items() if c]),
        total("all files", list(syntaxes)),
    ]
    by_syntax: dict[tuple[bool, str], list[Path]] = defaultdict(list)
    for path, (name, compressed) in syntaxes.items():
        by_syntax[(compressed, name)].append(path)
    per_syntax = [
        total(f"{'compressed' if c else 'uncompressed'}: {name}", paths)
        for (c, name), paths in sorted(by_syntax.items())
    ]
    return groups, per_syntax, pixels


def run_ingest(config_path: Path, cache_dir: Path) -> tuple[Timing, dict]:
    """The real cache build, workers=1. Dask's progress bar is swallowed; other console output is passed on."""
    from clinfuse.platform.ingest import ingest

    captured = io.StringIO()
    try:
        with Stopwatch() as sw, contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            result = ingest(config_path, cache_dir, workers=1)
    finally:
        segments = re.split(r"[\r\n]+", captured.getvalue())
        kept = [s for s in segments if s.strip() and not _PROGRESS_BAR.search(s) and s.strip() != "\x1b[2K"]
        if kept:
            print("\n".join(f"  [ingest] {s}" for s in kept), file=sys.stderr)
    if result.up_to_date or not result.rebuilt:
        raise RuntimeError(f"ingest built nothing: {result}")
    report = json.loads((cache_dir / "ingest_report.json").read_text())
    return sw.timing, report


def cache_files(cache_dir: Path, modality: str, candidates: Sequence[Path]) -> tuple[list[Path], bool]:
    """The DICOM file behind each cache row, by content digest; else the first N files (exact=False)."""
    from clinfuse.platform.ingest.fingerprint import file_digest

    index = json.loads((cache_dir / "modalities" / modality / "images.json").read_text())
    by_digest = {file_digest(p): p for p in candidates}
    matched = [by_digest.get(row["digest"]) for row in index["rows"]]
    if all(p is not None for p in matched):
        return [p for p in matched if p is not None], True
    return list(candidates[: len(index["rows"])]), False


def shuffled_batches(n: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for start in range(0, n, BATCH_SIZE):
        yield order[start : start + BATCH_SIZE]


def epoch_from_cache(images: np.ndarray, rng: np.random.Generator) -> tuple[Timing, int]:
    """One epoch of shuffled mini-batches from the memory-mapped cache array; returns timing and images read."""
    import torch

    seen = 0
    with Stopwatch() as sw:
        for idx in shuffled_batches(len(images), rng):
            batch = torch.from_numpy(np.asarray(images[idx], dtype=np.float32))
            seen += int(batch.shape[0])
    return sw.timing, seen


def epoch_from_dicom(files: Sequence[Path], size: int, rng: np.random.Generator) -> tuple[Timing, int]:
    """The same epoch, but decoding and preprocessing each file when it is drawn."""
    import torch
    from clinfuse.kinds.dicom.pixels import preprocess_file

    seen = 0
    with Stopwatch() as sw:
        for idx in shuffled_batches(len(files), rng):
            stack = np.stack([preprocess_file(files[i], size, None).pixels for i in idx])
            batch = torch.from_numpy(np.asarray(stack, dtype=np.float32))
            seen += int(batch.shape[0])
    return sw.timing, seen


def compare_epochs(
    images: np.ndarray, files: Sequence[Path], size: int, epochs: int, seed: int
) -> tuple[RateRow, RateRow, list[str]]:
    """Both read strategies, epochs interleaved (cache, decode, cache, ...) so both see the same machine load."""
    epoch_from_cache(images[:BATCH_SIZE], np.random.default_rng(seed))  # untimed: first touch of the mapping
    epoch_from_dicom(files[:4], size, np.random.default_rng(seed))  # untimed: same for the decode path
    cache_rng, decode_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    cache_total, decode_total = Timing(0.0, 0.0), Timing(0.0, 0.0)
    cache_seen = decode_seen = 0
    per_epoch = []
    for epoch in range(1, epochs + 1):
        cache_t, n_cache = epoch_from_cache(images, cache_rng)
        decode_t, n_decode = epoch_from_dicom(files, size, decode_rng)
        cache_total = Timing(cache_total.wall_s + cache_t.wall_s, cache_total.cpu_s + cache_t.cpu_s)
        decode_total = Timing(decode_total.wall_s + decode_t.wall_s, decode_total.cpu_s + decode_t.cpu_s)
        cache_seen, decode_seen = cache_seen + n_cache, decode_seen + n_decode
        per_epoch.append(
            f"epoch {epoch}: cache {n_cache / cache_t.wall_s:,.0f} images/s, decode {n_decode / decode_t.wall_s:,.1f}"
            f" images/s, ratio {(n_cache / cache_t.wall_s) / (n_decode / decode_t.wall_s):,.0f}x"
        )
    return (
        RateRow("(a) memory-mapped feature cache", cache_seen, cache_total),
        RateRow("(b) decode DICOM every epoch", decode_seen, decode_total),
        per_epoch,
    )


def step(title: str) -> Callable[[], None]:
    print(f"\n{rule(title)}", flush=True)
    started = time.perf_counter()
    return lambda: print(f"(step took {time.perf_counter() - started:.1f} s)", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)  # per-core figures: MONAI's resize would otherwise use every core
    header(args)
    run_started = time.perf_counter()
    with throwaway_workspace("clinfuse-ingest-bench-") as work:
        return run(args, work, run_started)


def run(args: argparse.Namespace, work: Path, run_started: float) -> int:
    from clinfuse.platform.cache import FeatureCache
    from clinfuse.platform.demo import generate_demo_cohort

    modality = "imaging"
    size = args.image_size

    done = step("1. demo cohort")
    cohort_dir, cache_dir = work / "cohort", work / "cache"
    with Stopwatch() as sw:
        counts = generate_demo_cohort(cohort_dir, patients=args.patients, seed=args.seed)
    set_image_size(cohort_dir / "cohort.yaml", modality, size)
    files = sorted((cohort_dir / modality).glob("**/*.dcm"))
    if not files:
        print("the demo cohort has no DICOM files: nothing to measure (try more --patients)")
        return 0
    syntaxes = classify(files)
    print(f"{counts['patients']} patients, {counts['imaging']} imaged, {len(files)} DICOM files "
          f"({sum(c for _, c in syntaxes.values())} compressed), generated in {sw.timing.wall_s:.1f} s")  # fmt: skip
    done()

    done = step("2. DICOM decode + preprocess, one process, one thread")
    print(f"warm-up (MONAI import, one file per syntax, untimed): {warm_up(syntaxes, size):.1f} s")
    groups, per_syntax, decoded = decode_throughput(syntaxes, size)
    print(rate_rows(groups, "files/s per core"))
    print()
    print(rate_rows(per_syntax, "files/s per core"))
    uncompressed, compressed = groups[0], groups[1]
    if uncompressed.count and compressed.count:
        print(f"compressed files decode {uncompressed.rate / compressed.rate:.2f}x slower than uncompressed ones")
    done()

    done = step("3. feature-cache build: ingest(cohort.yaml, cache, workers=1)")
    ingest_timing, report = run_ingest(cohort_dir / "cohort.yaml", cache_dir)
    imaging = report["modalities"][modality]
    print(table(
        ["", "wall s", "detail"],
        [["ingest (all modalities)", f"{ingest_timing.wall_s:.1f}",
          f"{report['cohort']['patients']} patients, reported {report.get('duration_s', '?')} s"]]
        + [[f"  {name} ({m['kind']})", f"{m.get('duration_s', float('nan')):.1f}",
            f"{m.get('patients_present', '?')} patients present"]
           for name, m in report["modalities"].items()],
    ))  # fmt: skip
    print(f"imaging: {imaging['files_seen']} files seen, {imaging['images_decoded']} decoded into the cache "
          f"= {imaging['images_decoded'] / ingest_timing.wall_s:.1f} cached images/s of whole ingest")  # fmt: skip
    done()

    done = step(f"4. training-epoch read of '{modality}', {args.epochs} epochs, shuffled batches of {BATCH_SIZE}")
    images = FeatureCache(cache_dir).array(modality, "images")
    if len(images) == 0:
        print("the cache holds no images: nothing to compare")
        return 0
    selected, exact = cache_files(cache_dir, modality, files)
    identical = sum(
        int(np.array_equal(decoded[p], images[i])) for i, p in enumerate(selected) if exact and p in decoded
    )
    print(f"cache array {images.shape} {images.dtype}, {images.nbytes / 2**20:.1f} MiB, memory-mapped")
    if exact:
        print(f"decode side reads the {len(selected)} files the cache rows came from (matched by digest); "
              f"{identical}/{len(selected)} cache rows equal a fresh decode")  # fmt: skip
    else:
        print(f"cache rows could not all be matched to files: decode side reads the first {len(selected)} files")
    cache_row, decode_row, per_epoch = compare_epochs(images, selected, size, args.epochs, args.seed)
    print("\n".join(per_epoch))
    print()
    print(rate_rows([cache_row, decode_row], "images/s"))
    ratio = cache_row.rate / decode_row.rate
    verdict = "meets" if ratio >= RATIO_GOAL else "MISSES"
    print(f"ratio cache/decode: {ratio:,.0f}x ({verdict} the goal of >= {RATIO_GOAL:.0f}x)")
    done()

    print(f"\n{rule('summary')}")
    print(table(
        ["figure", "value"],
        [["decode, uncompressed (files/s per core)", f"{uncompressed.rate:,.1f}"],
         ["decode, compressed (files/s per core)", f"{compressed.rate:,.1f}"],
         ["ingest workers=1, whole cohort (s)", f"{ingest_timing.wall_s:.1f}"],
         ["epoch read from cache (images/s)", f"{cache_row.rate:,.0f}"],
         ["epoch read by decoding (images/s)", f"{decode_row.rate:,.1f}"],
         ["ratio cache/decode (goal >= 20x)", f"{ratio:,.0f}x"],
         ["benchmark run time (s)", f"{time.perf_counter() - run_started:.1f}"]],
    ))  # fmt: skip
    busy = [*groups, cache_row, decode_row]
    if any(r.count and r.timing.wall_s >= 0.5 and r.timing.cpu_per_wall < 0.9 for r in busy):
        print("note: some cpu/wall figures are below 0.9: the machine was busy with other work during this run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
