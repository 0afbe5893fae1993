"""DICOM ingest at scale: files/s of `clinfuse ingest` with 1 and N workers, peak memory, and its growth.

--files generated radiographs are ingested with 1 and N workers (or through a Dask scheduler): files/s, the
speed-up, peak memory, and whether memory stays flat in the number of files.

What one run measures (every figure printed is measured in that run, on this machine):

1. Data (not timed against the ingest). --files small DICOM radiographs, one per patient, written from one
   template per transfer syntax (Explicit VR Little Endian 80%, Implicit VR 10%, RLE Lossless 10%) by patching
   fixed-length fields in its bytes: PatientID, Study/Series/SOP Instance UIDs, study/series/acquisition/content
   date and time. Pixels (--size square, 16-bit, 12 bits stored, MONOCHROME2) are one of a few demo chest
   radiographs (`render_radiograph`), shifted at random and with one of 61 noise fields added (drawing noise
   per file would dominate the generation time); RLE frames are encoded per file.
   About 0.1% of the files are truncated in their pixel data (at least one): a real export has some, and the
   ingest must count them as failed and carry on. One file of each syntax is read back with pydicom as a check.
   The cohort table has every patient (label, index time after the image), so each truncated file's patient is
   a cohort patient without imaging. Files lie in folders of 100; the first quarter of the patients in
   `dicom/a`, the rest in `dicom/b`, so a second cohort config ingests exactly the first quarter.
2. Ingest runs, each `clinfuse ingest --config ... --out FRESH` in a subprocess with a fresh cache folder
   (nothing reused), timed from process start to exit: the quarter with --workers 1, all files with --workers 1,
   all files with --workers N (or --scheduler ADDR when given). Per run: wall seconds, files/s (files seen by the
   ingest over wall time), CPU seconds of the process and its finished children over wall time (about 1.0 per
   busy core), the ingest report's total and imaging durations and any other `*_s` figure it gives for the
   imaging modality (stage timings), the rest of the report's total (cohort table, input fingerprints, manifest)
   and what lies outside it (interpreter start-up and imports, the final cache check).
   Memory: every 0.1 s the process and its descendants are sampled (psutil): peak RSS and peak anonymous RSS
   (RSS minus file-backed and shared pages: the heap, which is what holding every dataset or decoded row would
   grow; memory-mapped output pages are file-backed and reclaimable) of the main process, and the peak of the
   tree's summed RSS. The kernel's own high-water mark of the largest process in the tree (wait4 ru_maxrss)
   is printed too; it counts file-backed pages as well and misses nothing between samples.
   Workers of a Dask cluster started outside this benchmark (--scheduler) are not descendants: not measured.
3. Checks on each cache: present patients = files - truncated files, the report's failed count = truncated
   files, one image row per present patient.
4. Memory verdict: growth of the main process's peak anonymous RSS from the quarter to all files (1 worker
   each), per 1,000 files. Flat means under FLAT_KIB_PER_FILE (8 KiB) per file: what a file may legitimately
   leave behind (its header record, path, content digest and report row: about 1-3 KiB) fits, while holding
   every decoded 128 x 128 float16 row (32 KiB per file) or every pydicom dataset (its pixel bytes and more)
   does not. Needs at least 3,000 files between the two runs to rise above allocator noise.
5. Where the time goes: each ingest process runs the CLI's own `main` through this script (SAMPLED_CLI), with a
   thread sampling the main thread's Python stack every 10 ms (--no-sampling runs the plain `clinfuse` script).
   Per stage found by function name (imports, input fingerprints, header pass, header reads and decoding in
   this process, handing items to workers and waiting on them, digests, writing rows, saving, manifest, cache
   check): the seconds with it on the stack (stages nest, so they overlap);
   then the innermost functions (clinfuse's own, and any). Worker processes are not sampled; their time shows
   as waiting. cProfile is not used: torch's imports leave its call stack inconsistent (wrong cumulative times).

The data, caches and CLINFUSE_HOME (a throw-away pseudonymisation key) are in a temporary folder removed at the
end; --keep DIR writes the data to DIR instead and keeps it, --reuse DIR ingests data kept that way.

Run from the repository root (20,000 files: about 20 s to generate, 10-15 minutes of ingest runs on 2 cores):

    .venv/bin/python tests/benchmarks/dicom_scale_benchmark.py [--files 20000] [--workers 2] [--size 128]
        [--scheduler tcp://HOST:PORT] [--keep DIR | --reuse DIR] [--no-sampling] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from text_tables import rule, table  # this folder is on sys.path when the script runs
from workspace import throwaway_workspace

DEFAULT_FILES = 20_000
TRUNCATED_SHARE = 0.001
SYNTAX_SHARES = {"explicit": 0.8, "implicit": 0.1, "rle": 0.1}
FILES_PER_FOLDER = 100
BASE_IMAGES = 8
MAX_SHIFT = 8  # pixels each way
NOISE = 20  # stored units, of 4095
NOISE_FIELDS = 61  # prime, so it pairs with each of the BASE_IMAGES in turn; the random shift varies the rest
FLAT_KIB_PER_FILE = 8.0
MIN_FILES_FOR_VERDICT = 3_000
SAMPLE_S = 0.1
GENERATION_FILE = "generation.json"
MODALITY = "imaging"
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's UID root
SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
EPOCH = datetime(2015, 1, 1)


# --------------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Template:
    """One transfer syntax's file: the bytes before the pixel data's value, the offsets of each fixed-length
    placeholder in them, and (encapsulated syntaxes) the bytes after the pixel data's items."""

    syntax: str
    head: bytes
    offsets: dict[str, list[int]]
    tail: bytes = b""

    @property
    def encapsulated(self) -> bool:
        return self.syntax == "rle"


# Placeholders: each the length of every real value (ids, UIDs, dates and times have fixed lengths here).
_PLACEHOLDERS = {"patient": "Q7777777", "date": "19000101", "time": "235858"}
_UID_KINDS = {"study": 1, "series": 2, "sop": 3}
_EXPECTED = {"patient": 1, "date": 4, "time": 4, "study": 1, "series": 1, "sop": 2}  # sop: file meta and dataset


def uid(seed: int, kind: str, index: int) -> str:
    """A fixed-length UID under pydicom's root: seed, kind, then the index offset to a constant digit count."""
    return f"{UID_ROOT}{seed}.{_UID_KINDS[kind]}.{10**9 + index}"


def placeholder(seed: int, name: str) -> str:
    return _PLACEHOLDERS[name] if name in _PLACEHOLDERS else f"{UID_ROOT}{seed}.{_UID_KINDS[name]}.{'9' * 10}"


def build_template(syntax: str, size: int, seed: int) -> Template:
    """Write one dataset with placeholders through pydicom and locate each placeholder in its bytes."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

    transfer = {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian, "rle": RLELossless}[syntax]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = placeholder(seed, "sop")
    ds.file_meta.TransferSyntaxUID = transfer
    ds.SOPClassUID = SOP_CLASS
    ds.SOPInstanceUID = placeholder(seed, "sop")
    ds.StudyInstanceUID = placeholder(seed, "study")
    ds.SeriesInstanceUID = placeholder(seed, "series")
    ds.PatientID = placeholder(seed, "patient")
    ds.PatientName = "SCALE^BENCHMARK"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = placeholder(seed, "date")
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = placeholder(seed, "time")
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.SeriesNumber = ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [1.4, 1.4]
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "US"
    ds.WindowCenter, ds.WindowWidth = 2000, 3600
    pixels = bytes(2 * size * size)
    ds.PixelData = encapsulate([b"\0\0"]) if transfer == RLELossless else pixels
    if transfer == RLELossless:
        ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, implicit_vr=transfer == ImplicitVRLittleEndian, little_endian=True)
    raw = buffer.getvalue()
    if transfer == RLELossless:
        items = encapsulate([b"\0\0"])
        start = raw.rindex(items)
        head, tail = raw[:start], raw[start + len(items) :]
    else:
        if not raw.endswith(pixels):
            raise RuntimeError("the template's pixel data is not its last element")
        head, tail = raw[: -len(pixels)], b""
    offsets = {}
    for name, expected in _EXPECTED.items():
        marker = placeholder(seed, name).encode()
        found = [i for i in range(len(head)) if head.startswith(marker, i)]
        if len(found) != expected:
            raise RuntimeError(f"placeholder {name} found {len(found)} times in the {syntax} template, not {expected}")
        offsets[name] = found
    return Template(syntax, head, offsets, tail)


def base_images(size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A few demo chest radiographs as 12-bit stored values (int32, so noise can be added before clipping)."""
    from clinfuse.platform.demo.radiograph import render_radiograph

    images = []
    for k in range(BASE_IMAGES):
        canonical, _ = render_radiograph(size, size, 1.5 if k % 2 else 0.0, rng)
        images.append(np.rint(200 + canonical * 3600).astype(np.int32))
    return images


@dataclass
class Generated:
    """What was written: counts by syntax, and the patients (by index) whose file was truncated."""

    files: int
    quarter: int  # the first `quarter` patients lie in dicom/a
    size: int
    seed: int
    syntaxes: dict[str, int] = field(default_factory=dict)
    truncated: list[int] = field(default_factory=list)

    def truncated_below(self, n: int) -> int:
        return sum(i < n for i in self.truncated)


def patient_id(index: int) -> str:
    return f"P{index:07d}"


def file_path(root: Path, index: int, quarter: int) -> Path:
    part = "a" if index < quarter else "b"
    return root / "dicom" / part / f"{index // FILES_PER_FOLDER:05d}" / f"{patient_id(index)}.dcm"


def generate(root: Path, files: int, size: int, seed: int) -> Generated:
    """The DICOM files, cohort tables and the two cohort configs under `root`."""
    from pydicom.encaps import encapsulate
    from pydicom.pixels.encoders import RLELosslessEncoder

    rng = np.random.default_rng(seed)
    templates = {syntax: build_template(syntax, size, seed) for syntax in SYNTAX_SHARES}
    bases = base_images(size, rng)
    noise = rng.integers(-NOISE, NOISE + 1, size=(NOISE_FIELDS, size, size), dtype=np.int32)  # drawing per file costs
    quarter = max(1, files // 4)
    shares = np.array(list(SYNTAX_SHARES.values()))
    syntax_of = np.array(list(SYNTAX_SHARES))[rng.choice(len(shares), size=files, p=shares / shares.sum())]
    step = round(1 / TRUNCATED_SHARE)
    truncated = list(range(min(step // 2, files - 1), files, step))
    syntax_of[truncated] = "explicit"  # a truncated native file: the header pass must catch the short pixel data
    acquired = [EPOCH + timedelta(days=int(d), seconds=int(s))
                for d, s in zip(rng.integers(0, 3000, files), rng.integers(0, 86400, files), strict=True)]  # fmt: skip
    rle = {"rows": size, "columns": size, "samples_per_pixel": 1, "bits_allocated": 16, "bits_stored": 12,
           "pixel_representation": 0, "photometric_interpretation": "MONOCHROME2", "number_of_frames": 1}  # fmt: skip
    cut = set(truncated)
    for index in range(files):
        template = templates[syntax_of[index]]
        shift = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=2)
        image = np.roll(bases[index % BASE_IMAGES], tuple(shift), axis=(0, 1))
        image = (image + noise[index % NOISE_FIELDS]).astype("<u2")  # bases lie in 200-3800: no clipping needed
        head = bytearray(template.head)
        values = {"patient": patient_id(index), "date": acquired[index].strftime("%Y%m%d"),
                  "time": acquired[index].strftime("%H%M%S"),
                  **{kind: uid(seed, kind, index) for kind in _UID_KINDS}}  # fmt: skip
        for name, offsets in template.offsets.items():
            value = values[name].encode()
            for offset in offsets:
                head[offset : offset + len(value)] = value
        if template.encapsulated:
            body = encapsulate([RLELosslessEncoder.encode(image, encoding_plugin="pylibjpeg", **rle)]) + template.tail
        else:
            body = image.tobytes()
        if index in cut:
            body = body[: len(body) // 2]
        path = file_path(root, index, quarter)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(head) + body)
    check_files(root, templates, syntax_of, quarter, cut)
    generated = Generated(files, quarter, size, seed, dict(Counter(syntax_of.tolist())), truncated)
    write_cohort(root, generated, acquired, rng)
    (root / GENERATION_FILE).write_text(json.dumps(generated.__dict__, indent=1))
    return generated


def check_files(root: Path, templates: dict[str, Template], syntax_of: np.ndarray, quarter: int, cut: set) -> None:
    """Read one intact file of each syntax back: its id, UIDs and pixels must be what was written."""
    import pydicom

    for syntax in templates:
        index = next((i for i, s in enumerate(syntax_of) if s == syntax and i not in cut), None)
        if index is None:
            continue
        ds = pydicom.dcmread(file_path(root, index, quarter))
        if ds.PatientID != patient_id(index) or ds.SOPInstanceUID != ds.file_meta.MediaStorageSOPInstanceUID:
            raise RuntimeError(f"generated {syntax} file reads back with the wrong header")
        if ds.pixel_array.shape != (ds.Rows, ds.Columns) or int(ds.pixel_array.max()) == 0:
            raise RuntimeError(f"generated {syntax} file reads back without its pixels")


def write_cohort(root: Path, generated: Generated, acquired: list[datetime], rng: np.random.Generator) -> None:
    """cohort.csv (every patient) and cohort-quarter.csv (the first quarter), with their cohort configs."""
    import pandas as pd

    n = generated.files
    table = pd.DataFrame({
        "patient_id": [patient_id(i) for i in range(n)],
        "label": (rng.random(n) < 0.3).astype(int),
        "index_time": [(a + timedelta(days=int(d))).strftime("%Y-%m-%d %H:%M:%S")
                       for a, d in zip(acquired, rng.integers(1, 60, n), strict=True)],
    })  # fmt: skip
    table.to_csv(root / "cohort.csv", index=False)
    table.iloc[: generated.quarter].to_csv(root / "cohort-quarter.csv", index=False)
    configs = (("cohort", "cohort.csv", "dicom"), ("cohort-quarter", "cohort-quarter.csv", "dicom/a"))
    for name, cohort, folder in configs:
        (root / f"{name}.yaml").write_text(
            f"name: dicom-scale\ncohort:\n  path: {cohort}\npseudonymise_ids: true\nmodalities:\n"
            f"  - name: {MODALITY}\n    kind: dicom\n    path: {folder}\n    image_size: {generated.size}\n"
        )


def load_generated(root: Path) -> Generated:
    try:
        return Generated(**json.loads((root / GENERATION_FILE).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise SystemExit(f"--reuse {root}: not data kept by this benchmark ({exc}); generate it with --keep") from None


# ------------------------------------------------------------------------------------------------- ingest


@dataclass
class Memory:
    """Peaks over the samples (bytes), and the kernel's high-water mark of the largest process in the tree."""

    main_rss: int = 0
    main_anon: int = 0
    tree_rss: int = 0
    processes: int = 0
    kernel_max_rss: int = 0


class TreeSampler(threading.Thread):
    """Samples a process and its descendants every SAMPLE_S seconds until stopped (psutil: installed with
    dask[distributed], a dependency)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process, self.memory, self._done = psutil.Process(pid), Memory(), threading.Event()

    def run(self) -> None:
        import psutil

        while not self._done.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for member in tree:
                try:
                    info = member.memory_info()
                except psutil.Error:
                    continue
                total += info.rss
                if member is self.process:
                    self.memory.main_rss = max(self.memory.main_rss, info.rss)
                    self.memory.main_anon = max(self.memory.main_anon, info.rss - info.shared)
            self.memory.tree_rss = max(self.memory.tree_rss, total)
            self.memory.processes = max(self.memory.processes, len(tree))
            self._done.wait(SAMPLE_S)

    def stop(self) -> Memory:
        self._done.set()
        self.join()
        return self.memory


@dataclass(frozen=True)
class Run:
    label: str
    files: int  # files generated for this run's folder
    truncated: int
    wall_s: float
    cpu_s: float
    memory: Memory
    report: dict
    present: int
    image_rows: int
    image_spread: float  # standard deviation over a few rows: 0 would mean blank images
    samples: dict | None  # the stack sampler's summary (None: run without it)

    @property
    def imaging(self) -> dict:
        return self.report["modalities"][MODALITY]

    @property
    def rate(self) -> float:
        return self.imaging["files_seen"] / self.wall_s

    @property
    def cpu_per_wall(self) -> float:
        return self.cpu_s / self.wall_s

    @property
    def stage_figures(self) -> dict[str, float]:
        """Every `*_s` number in the imaging report (nested ones by dotted path) except its total duration."""
        found: dict[str, float] = {}

        def walk(node: object, prefix: str) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    name = f"{prefix}{key}"
                    if isinstance(value, int | float) and not isinstance(value, bool) and key.endswith("_s"):
                        found[name] = float(value)
                    walk(value, f"{name}.")

        walk(self.imaging, "")
        found.pop("duration_s", None)
        return found

    def problems(self) -> list[str]:
        expected = self.files - self.truncated
        failed = self.imaging["failed"]["count"]
        found = []
        if self.imaging["files_seen"] != self.files:
            found.append(f"files seen {self.imaging['files_seen']} != {self.files} generated")
        if self.present != expected:
            found.append(f"present patients {self.present} != {expected} (files - truncated)")
        if failed != self.truncated:
            found.append(f"failed files {failed} != {self.truncated} truncated")
        if self.image_rows != self.present:
            found.append(f"image rows {self.image_rows} != {self.present} present patients")
        if not self.image_spread > 0:
            found.append("the cached images are blank")
        return found


def clinfuse_command(samples: Path | None) -> list[str]:
    """The `clinfuse` script beside this interpreter, or this script running the same CLI with its stack sampled."""
    if samples is not None:
        return [sys.executable, THIS_FILE, SAMPLED_CLI, str(samples)]
    script = Path(sys.executable).with_name("clinfuse")
    if not script.exists():
        raise SystemExit(f"no clinfuse script beside {sys.executable}: run with the project's .venv/bin/python")
    return [str(script)]


def run_ingest(
    label: str, config: Path, files: int, truncated: int, options: list[str], work: Path, sample: bool
) -> Run:
    """One `clinfuse ingest` into a fresh cache folder, timed and sampled; the folder is removed afterwards."""
    from clinfuse.platform.cache import FeatureCache

    run_dir = work / "runs" / re.sub(r"[^a-z0-9]+", "-", label.lower())
    run_dir.mkdir(parents=True)
    out, log, samples = run_dir / "cache", run_dir / "ingest.log", run_dir / "samples.json"
    cli = clinfuse_command(samples if sample else None)
    command = [*cli, "ingest", "--config", str(config), "--out", str(out), *options]
    with log.open("w") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        sampler = TreeSampler(process.pid)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)  # reaps it: its rusage includes its reaped children
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    memory = sampler.stop()
    memory.kernel_max_rss = usage.ru_maxrss * 1024
    if process.returncode != 0:
        raise SystemExit(f"{label}: `{' '.join(command)}` exited {process.returncode}:\n{log.read_text()[-3000:]}")
    cache = FeatureCache(out)
    images = cache.array(MODALITY, "images")
    rows = np.asarray(images[: min(len(images), 16)], dtype=np.float32)
    result = Run(label, files, truncated, wall, usage.ru_utime + usage.ru_stime, memory, cache.report,
                 int(cache.cohort[f"present_{MODALITY}"].sum()), len(images),
                 float(rows.std()) if rows.size else 0.0,
                 json.loads(samples.read_text()) if sample else None)  # fmt: skip
    shutil.rmtree(run_dir)
    return result


# Stages found by function name on the sampled stacks: (label, path suffix or folder of the function's module, name);
# a label may have several entries. Folders rather than files keep a stage found when its function moves.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("importing modules", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("cohort table (load_cohort)", "platform/ingest/", "load_cohort"),
    ("input fingerprints (_fingerprints)", "platform/ingest/", "_fingerprints"),
    ("dicom kind, whole (ingest_dicom)", "kinds/dicom/", "ingest_dicom"),
    ("header pass (scan_folder)", "kinds/dicom/", "scan_folder"),
    ("  reading headers here (read_header)", "kinds/dicom/", "read_header"),
    ("decoding here (preprocess_file)", "kinds/dicom/", "preprocess_file"),
    ("  pydicom dcmread (headers and decode)", "pydicom/", "dcmread"),
    ("  MONAI resize and pad", "monai/transforms/compose.py", "__call__"),
    ("handing items to workers (map_ordered)", "platform/", "map_ordered"),
    ("  waiting (a lock or event)", "threading.py", "wait"),
    ("starting or joining workers", "platform/dask_workers.py", "start"),
    ("starting or joining workers", "platform/dask_workers.py", "_connect"),
    ("closing workers", "platform/dask_workers.py", "close"),
    ("content digests (file_digest)", "platform/ingest/fingerprint.py", "file_digest"),
    ("writing rows (append)", "kinds/dicom/store.py", "append"),
    ("saving arrays (save)", "kinds/dicom/store.py", "save"),
    ("saving arrays (save)", "numpy/lib/_npyio_impl.py", "save"),
    ("cache manifest (_write_manifest)", "platform/ingest/", "_write_manifest"),
    ("cache check (FeatureCache)", "platform/cache/feature_cache.py", "__init__"),
)
STACK_SAMPLE_S = 0.01
SAMPLED_CLI = "--run-sampled-cli"  # internal: this script as the sampled `clinfuse` process
THIS_FILE = str(Path(__file__).resolve())


class StackSampler(threading.Thread):
    """Samples one thread's Python stack every STACK_SAMPLE_S seconds: seconds (the time since the previous sample)
    per stage on the stack, per innermost function, and per innermost function of the clinfuse code."""

    def __init__(self, thread_id: int, code_roots: tuple[str, ...]) -> None:
        super().__init__(daemon=True)
        self.thread_id, self.code_roots, self._done = thread_id, code_roots, threading.Event()
        self.total = 0.0
        self.stages: Counter[str] = Counter()
        self.leaf: Counter[str] = Counter()
        self.own: Counter[str] = Counter()
        self._by_name: dict[str, list[tuple[str, str]]] = {}
        for label, suffix, name in STAGES:
            self._by_name.setdefault(name, []).append((suffix, label))

    def run(self) -> None:
        last = time.perf_counter()
        while not self._done.wait(STACK_SAMPLE_S):
            now = time.perf_counter()
            seconds, last = now - last, now
            frame = sys._current_frames().get(self.thread_id)
            if frame is None:
                continue
            self.total += seconds
            self.leaf[self._describe(frame.f_code)] += seconds
            labels, own = set(), None
            while frame is not None:
                code = frame.f_code
                path = code.co_filename.replace(os.sep, "/")
                for suffix, label in self._by_name.get(code.co_name, ()):
                    if suffix in path if suffix.endswith("/") or not suffix else path.endswith(suffix):
                        labels.add(label)
                if own is None and path.startswith(self.code_roots):
                    own = self._describe(code)
                frame = frame.f_back
            for label in labels:
                self.stages[label] += seconds
            if own is not None:
                self.own[own] += seconds

    @staticmethod
    def _describe(code: object) -> str:
        path = Path(code.co_filename)  # type: ignore[attr-defined]
        return f"{path.parent.name}/{path.name}:{code.co_name}"  # type: ignore[attr-defined]

    def summary(self) -> dict:
        self._done.set()
        self.join()
        return {"sampled_s": self.total, "stages": dict(self.stages),
                "leaf": self.leaf.most_common(12), "own": self.own.most_common(12)}  # fmt: skip


def sampled_cli(argv: list[str]) -> int:
    """Internal: `clinfuse ARGS` in this process while its main thread's stack is sampled; argv is [JSON, *ARGS]
    and the samples' summary goes to JSON when the command ends (it ends with SystemExit)."""
    from importlib.util import find_spec

    code_roots = tuple(
        location.replace(os.sep, "/") + "/"
        for package in ("platform", "models", "kinds", "pipelines", "dashboards")
        if (spec := find_spec(f"clinfuse.{package}")) is not None
        for location in spec.submodule_search_locations or ()
    )
    out, sys.argv = Path(argv[0]), ["clinfuse", *argv[1:]]
    sampler = StackSampler(threading.get_ident(), code_roots)
    sampler.start()
    try:
        from clinfuse.pipelines.cli import main as cli_main

        cli_main()
    finally:
        out.write_text(json.dumps(sampler.summary()))
    return 0


# --------------------------------------------------------------------------------------------------- report


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def run_table(runs: Sequence[Run]) -> str:
    rows = []
    for r in runs:
        report_s, imaging_s = r.report["duration_s"], r.imaging["duration_s"]
        rows.append([r.label, f"{r.imaging['files_seen']:,}", f"{r.wall_s:.1f}", f"{r.rate:,.1f}",
                     f"{r.cpu_per_wall:.2f}", f"{report_s:.1f}", f"{imaging_s:.1f}", f"{report_s - imaging_s:.1f}",
                     f"{r.wall_s - report_s:.1f}", mib(r.memory.main_rss), mib(r.memory.main_anon),
                     mib(r.memory.tree_rss), str(r.memory.processes), mib(r.memory.kernel_max_rss),
                     f"{r.present:,}", str(r.imaging["failed"]["count"])])  # fmt: skip
    return table(["run", "files", "wall s", "files/s", "cpu/wall", "report s", "imaging s", "rest of report s",
                  "outside report s", "main RSS MiB", "main anon MiB", "tree RSS MiB", "procs", "kernel max MiB",
                  "present", "failed"], rows)  # fmt: skip


def memory_verdict(quarter: Run, full: Run, size: int) -> list[str]:
    span = full.files - quarter.files
    lines = []
    for label, small, large in (("main anonymous RSS", quarter.memory.main_anon, full.memory.main_anon),
                                ("main RSS", quarter.memory.main_rss, full.memory.main_rss),
                                ("tree RSS", quarter.memory.tree_rss, full.memory.tree_rss)):  # fmt: skip
        per_1000 = (large - small) / 2**20 / (span / 1000) if span else float("nan")
        lines.append(f"{label}: {mib(small)} MiB at {quarter.files:,} files, {mib(large)} MiB at {full.files:,}: "
                     f"{per_1000:+.2f} MiB per 1,000 files ({per_1000 * 1024 / 1000:+.2f} KiB per file)")  # fmt: skip
    growth_kib = (full.memory.main_anon - quarter.memory.main_anon) / 1024 / span if span else float("nan")
    if span < MIN_FILES_FOR_VERDICT:
        verdict = f"no verdict: {span:,} files between the runs, under {MIN_FILES_FOR_VERDICT:,} (allocator noise)"
    elif growth_kib < FLAT_KIB_PER_FILE:
        verdict = f"FLAT: {growth_kib:.2f} KiB per file < {FLAT_KIB_PER_FILE:g} KiB"
    else:
        verdict = (f"GROWS: {growth_kib:.2f} KiB per file >= {FLAT_KIB_PER_FILE:g} KiB (one decoded {size}x{size} "
                   f"float16 row is {2 * size * size / 1024:g} KiB)")  # fmt: skip
    lines.append(f"memory verdict (main anonymous RSS, 1 worker): {verdict}")
    return lines


def stage_table(runs: Sequence[Run]) -> str:
    """Seconds of each run's main thread with each stage on its stack (stages nest, so rows overlap)."""
    sampled = [r for r in runs if r.samples is not None]
    rows = [["sampled (start-up before the sampler excluded)", *[f"{r.samples['sampled_s']:.1f}" for r in sampled]]]
    for label in dict.fromkeys(label for label, _, _ in STAGES):
        seconds = [r.samples["stages"].get(label, 0.0) for r in sampled]
        if any(seconds):
            rows.append([label, *[f"{v:.1f} ({v / r.samples['sampled_s']:.0%})"
                                  for v, r in zip(seconds, sampled, strict=True)]])  # fmt: skip
    return table(["main thread: seconds with the stage on its stack", *[r.label for r in sampled]], rows)


def top_functions(run: Run) -> str:
    rows = [[f"{name} (innermost clinfuse)", f"{seconds:.1f}"] for name, seconds in run.samples["own"]]
    rows += [[f"{name} (innermost)", f"{seconds:.1f}"] for name, seconds in run.samples["leaf"]]
    return table([f"{run.label}: where the main thread was", "s"], rows)


def header(args: argparse.Namespace) -> None:
    import pydicom

    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(rule("ClinFuse DICOM ingest at scale (clinfuse ingest, subprocess)", width=110))
    print(f"machine      {platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} logical "
          f"cores, load average {load} at start")  # fmt: skip
    print(f"python       {platform.python_version()}; pydicom {pydicom.__version__}; numpy {np.__version__}")
    parallel = f"--scheduler {args.scheduler}" if args.scheduler else f"--workers {args.workers}"
    files = f"from {args.reuse}" if args.reuse else str(args.files)
    print(f"parameters   files={files} size={args.size} seed={args.seed} parallel run: {parallel}; "
          f"stack sampling={'no' if args.no_sampling else 'yes'}")  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=DEFAULT_FILES, help=f"DICOM files (default {DEFAULT_FILES})")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels, and the cache's image_size")
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel run (default 2)")
    parser.add_argument("--scheduler", help="Dask scheduler address: the parallel run uses --scheduler ADDR")
    parser.add_argument("--seed", type=int, default=0)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--keep", type=Path, help="generate into this new folder and keep it")
    where.add_argument("--reuse", type=Path, help="ingest data kept by an earlier --keep (its --files, --size)")
    parser.add_argument("--no-sampling", action="store_true",
                        help="run the plain clinfuse script, without sampling the ingest's stack")  # fmt: skip
    args = parser.parse_args(argv)
    if args.files < 8 or args.workers < 2 or not 16 <= args.size <= 1024:
        parser.error("--files must be >= 8, --workers >= 2 and --size within 16-1024")
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: the folder exists and is not empty")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    header(args)
    with throwaway_workspace("clinfuse-dicom-scale-") as work:
        return run(args, work)


def run(args: argparse.Namespace, work: Path) -> int:
    started = time.perf_counter()
    print(f"\n{rule('1. data', width=110)}")
    if args.reuse is not None:
        data = args.reuse.resolve()
        generated = load_generated(data)
        print(f"reusing {data}: {generated.files:,} files of {generated.size} px (seed {generated.seed})")
    else:
        data = (args.keep or work / "data").resolve()
        data.mkdir(parents=True, exist_ok=True)
        begun = time.perf_counter()
        generated = generate(data, args.files, args.size, args.seed)
        seconds = time.perf_counter() - begun
        size = sum(p.stat().st_size for p in (data / "dicom").rglob("*.dcm"))
        print(f"generated {generated.files:,} files ({size / 2**20:,.0f} MiB) in {seconds:.1f} s "
              f"({generated.files / seconds:,.0f} files/s) into {data}{' (kept)' if args.keep else ''}")  # fmt: skip
    print(f"syntaxes {generated.syntaxes}; truncated files {len(generated.truncated)} "
          f"({generated.truncated_below(generated.quarter)} in the first quarter)")  # fmt: skip

    print(f"\n{rule('2. clinfuse ingest runs (fresh --out each)', width=110)}")
    n, q = generated.files, generated.quarter
    parallel = ["--scheduler", args.scheduler] if args.scheduler else ["--workers", str(args.workers)]
    label = f"all, scheduler {args.scheduler}" if args.scheduler else f"all, {args.workers} workers"
    plan = [("quarter, 1 worker", data / "cohort-quarter.yaml", q, generated.truncated_below(q), ["--workers", "1"]),
            ("all, 1 worker", data / "cohort.yaml", n, len(generated.truncated), ["--workers", "1"]),
            (label, data / "cohort.yaml", n, len(generated.truncated), parallel)]  # fmt: skip
    runs = []
    for name, config, files, truncated, options in plan:
        result = run_ingest(name, config, files, truncated, options, work, sample=not args.no_sampling)
        runs.append(result)
        stages = ", ".join(f"{k} {v:.1f}" for k, v in result.stage_figures.items()) or "none in the report"
        print(f"  {name}: {files:,} files in {result.wall_s:.1f} s ({result.rate:,.1f} files/s); imaging report "
              f"stage figures: {stages}", flush=True)  # fmt: skip
    print()
    print(run_table(runs))
    print(
        "report s: the ingest report's duration_s; imaging s: its imaging modality's; rest of report s: cohort "
        "table, input fingerprints, manifest; outside report s: start-up, imports and the final cache check"
    )
    if args.scheduler:
        print("note: the scheduler's workers are not this benchmark's descendants: their memory is not in the table")

    print(f"\n{rule('3. checks and memory', width=110)}")
    failures = [f"{r.label}: {p}" for r in runs for p in r.problems()]
    for r in runs:
        reasons = r.imaging["failed"]["by_reason"]
        print(f"{r.label}: {r.present:,} present of {r.files:,} patients, {r.imaging['failed']['count']} failed "
              f"{reasons}, {r.image_rows:,} image rows: {'ok' if not r.problems() else 'PROBLEM'}")  # fmt: skip
    quarter, one, many = runs
    for line in memory_verdict(quarter, one, generated.size):
        print(line)

    if not args.no_sampling:
        print(f"\n{rule('4. where the time goes: sampled stacks of the ingest process', width=110)}")
        print(stage_table(runs))
        for r in (one, many):
            print()
            print(top_functions(r))

    print(f"\n{rule('summary', width=110)}")
    rows = [
        ["files (truncated)", f"{n:,} ({len(generated.truncated)})"],
        ["1 worker: wall s, files/s", f"{one.wall_s:.1f}, {one.rate:,.1f}"],
        [f"{many.label}: wall s, files/s", f"{many.wall_s:.1f}, {many.rate:,.1f}"],
        ["speed-up parallel vs 1 worker", f"{one.wall_s / many.wall_s:.2f}x (cpu/wall {one.cpu_per_wall:.2f} vs "
                                          f"{many.cpu_per_wall:.2f})"],
        ["peak main anon RSS, quarter vs all (MiB)", f"{mib(quarter.memory.main_anon)} vs {mib(one.memory.main_anon)}"],
        ["peak tree RSS, 1 vs parallel (MiB)", f"{mib(one.memory.tree_rss)} vs {mib(many.memory.tree_rss)}"],
        ["memory", memory_verdict(quarter, one, generated.size)[-1].split(": ", 1)[1]],
        ["cache checks", "ok" if not failures else f"{len(failures)} PROBLEM(S)"],
        ["benchmark run time (s)", f"{time.perf_counter() - started:.1f}"],
    ]  # fmt: skip
    print(table(["figure", "value"], rows))
    for failure in failures:
        print(f"PROBLEM {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(sampled_cli(sys.argv[2:]) if sys.argv[1:2] == [SAMPLED_CLI] else main())
