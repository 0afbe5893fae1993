"""EHR source benchmark: events/s and peak memory of `clinfuse ingest` per EHR source, and memory growth with
the number of patients.

What one run measures (every figure printed is measured in that run, on this machine):

1. Synthetic exports are generated into a throw-away folder (`ehr_synthetic`: three visits and about 100 events
   per patient: ICD-10-CM diagnoses, ICD-10-PCS procedures, NDC drugs and results of 12 LOINC labs, most of them
   before the patient's index time), with a cohort table and a cohort.yaml holding one `ehr` modality:
     - an OMOP CDM 5.4 CSV export of --patients patients and of a tenth of them (`ehr_omop`);
     - the same events of --other-patients patients as OMOP, MEDS (`ehr_meds`) and FHIR R4 NDJSON (`ehr_fhir`).
2. `clinfuse ingest --config cohort-<source>.yaml --out cache-<source>` runs in a subprocess per export (the
   throw-away CLINFUSE_HOME holds its pseudonymisation key). Its wall time is measured, and its peak resident
   memory as the RSS summed over the process and all its descendants (PyHealth and Dask start worker processes),
   polled every 0.2 s (`ehr_process`). The events read and kept come from the cache's ingest_report.json.
3. Printed per ingest: patients, events in the export, events read, events/s (events read over the whole
   process's wall time, start-up and writing the cache included, and over the ehr step's own duration from the
   report), peak RSS in MiB and per 1,000 patients, the ingest process's own peak RSS (the rest of the tree is
   PyHealth's Dask workers), and the size of the ehr modality's feature arrays (the .npy files in the cache).
   For OMOP at --patients vs a tenth of them: the ratio of the peak RSS, and how much the peak grew next to how
   much the arrays grew. Ingestion memory should grow with the patients by no more than the arrays.

The exports take disk space: about 1 GB for 100,000 patients as OMOP, and about 0.5 GB for 10,000 patients as
FHIR; generating 100,000 patients takes about 3 GB of memory in this process, dropped before the ingests run. A
run at the defaults took about 10 minutes on 2 cores. Everything is removed at the end unless --keep is given.

Run from the repository root:

    .venv/bin/python tests/benchmarks/ehr_source_benchmark.py [--patients 100000] [--other-patients 10000]
        [--sources omop,meds,fhir] [--seed 0] [--keep]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import psutil
from ehr_cohort import write_cohort_config, write_cohort_table  # this folder is on sys.path when the script runs
from ehr_fhir import write_fhir
from ehr_meds import write_meds
from ehr_omop import write_omop
from ehr_process import POLL_S, Measured, run_measured
from ehr_synthetic import SyntheticEhr, generate
from text_tables import rule, table
from workspace import throwaway_workspace

SOURCES: dict[str, Callable[[SyntheticEhr, Path], None]] = {"omop": write_omop, "meds": write_meds, "fhir": write_fhir}
MODALITY = "ehr"
MIB = 2**20
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class Export:
    """One generated export: where it and its cohort.yaml are, and what the generator put in it."""

    source: str
    patients: int
    events: int
    events_before_index: int
    config: Path
    size_bytes: int
    write_s: float


@dataclass(frozen=True)
class Result:
    """One measured ingest of an export."""

    export: Export
    run: Measured
    section: dict  # the ehr modality's section of ingest_report.json (empty when the ingest failed)
    array_bytes: int

    @property
    def ok(self) -> bool:
        return self.run.returncode == 0 and bool(self.section)

    @property
    def events_read(self) -> int:
        """Events the reader took from the export, of cohort patients (kept or left out) and of others."""
        return int(self.section["events_of_cohort_patients"]) + int(self.section["events_of_patients_outside_cohort"])

    @property
    def peak_mib(self) -> float:
        return self.run.peak_rss_bytes / MIB

    @property
    def per_thousand_mib(self) -> float:
        return self.peak_mib / (self.export.patients / 1000)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000, help="OMOP scaling size; also run at a tenth")
    parser.add_argument("--other-patients", type=int, default=10_000, help="size of the per-source comparison")
    parser.add_argument("--sources", default=",".join(SOURCES), help="sources compared (default omop,meds,fhir)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--keep", action="store_true", help="keep the exports, configs, caches and logs")
    args = parser.parse_args(argv)
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = [s for s in args.sources if s not in SOURCES]
    if unknown or not args.sources:
        parser.error(f"--sources: use a comma-separated subset of {','.join(SOURCES)} (got {unknown or 'none'})")
    if args.patients < 100 or args.other_patients < 10:
        parser.error("--patients must be >= 100 (it also runs at a tenth) and --other-patients >= 10")
    return args


def header(args: argparse.Namespace, clinfuse: Path) -> None:
    print(rule("ClinFuse EHR source benchmark"))
    print(f"machine      {platform.machine()} {platform.system()} {platform.release()}, "
          f"{os.cpu_count()} logical cores, {psutil.virtual_memory().total / 2**30:.1f} GiB memory")  # fmt: skip
    print(f"python       {platform.python_version()} ({sys.executable}), polars {pl.__version__}")
    print(f"ingest       {clinfuse} ingest (subprocess; RSS of its process tree polled every {POLL_S} s)")
    print(f"parameters   patients={args.patients} (and {args.patients // 10}) other-patients={args.other_patients} "
          f"sources={','.join(args.sources)} seed={args.seed}")  # fmt: skip


def plan(args: argparse.Namespace) -> dict[int, list[str]]:
    """Sources to export and ingest per cohort size; a size shared by both parts is generated and ingested once."""
    sizes: dict[int, list[str]] = {args.patients // 10: ["omop"], args.patients: ["omop"]}
    sizes.setdefault(args.other_patients, [])
    sizes[args.other_patients] = list(dict.fromkeys([*sizes[args.other_patients], *args.sources]))
    return dict(sorted(sizes.items()))


def write_exports(patients: int, sources: list[str], seed: int, folder: Path) -> tuple[list[Export], float]:
    """Generate `patients` and write them once per source, with cohort.csv and one cohort.yaml per source."""
    folder.mkdir(parents=True)
    started = time.perf_counter()
    ehr = generate(patients, seed)
    generate_s = time.perf_counter() - started
    events, before = ehr.event_count, ehr.events_before_index()
    write_cohort_table(ehr, folder)
    exports = []
    for source in sources:
        started = time.perf_counter()
        SOURCES[source](ehr, folder / source)
        write_s = time.perf_counter() - started
        config = write_cohort_config(folder, source, folder / source)
        exports.append(Export(source, patients, events, before, config, _size(folder / source), write_s))
    del ehr
    gc.collect()  # the generated frames are not needed while the ingests are measured
    return exports, generate_s


def measure(export: Export, clinfuse: Path) -> Result:
    folder = export.config.parent
    cache = folder / f"cache-{export.source}"
    log = folder / f"ingest-{export.source}.log"
    run = run_measured([str(clinfuse), "ingest", "--config", str(export.config), "--out", str(cache)], log)
    report_file = cache / "ingest_report.json"
    section = json.loads(report_file.read_text())["modalities"][MODALITY] if run.returncode == 0 else {}
    arrays = cache / "modalities" / MODALITY
    result = Result(export, run, section, sum(f.stat().st_size for f in arrays.glob("*.npy")) if section else 0)
    if not result.ok:
        lines = log.read_text(errors="replace").splitlines()
        print(f"\ningest of {export.source} ({export.patients} patients) FAILED with exit code {run.returncode}; "
              f"last {LOG_TAIL_LINES} lines of its output:")  # fmt: skip
        print("\n".join(f"  | {line}" for line in lines[-LOG_TAIL_LINES:]))
    return result


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def export_rows(exports: list[Export], generate_s: dict[int, float]) -> list[list[str]]:
    return [[f"{e.source} ({e.patients:,} patients)", f"{e.events:,}", f"{e.events_before_index:,}",
             f"{e.size_bytes / MIB:,.0f}", f"{generate_s[e.patients]:.1f}", f"{e.write_s:.1f}"]
            for e in exports]  # fmt: skip


def result_rows(results: list[Result], label: Callable[[Result], str]) -> list[list[str]]:
    rows = []
    for r in results:
        if not r.ok:
            rows.append([label(r), f"{r.export.patients:,}", f"{r.export.events:,}", "failed", "", "", "",
                         f"{r.run.wall_s:.1f}", f"{r.peak_mib:,.0f}", "", "", "", ""])  # fmt: skip
            continue
        step_s = float(r.section.get("duration_s", float("nan")))
        rows.append([
            label(r), f"{r.export.patients:,}", f"{r.export.events:,}", f"{r.events_read:,}",
            f"{int(r.section.get('events_before_index', 0)):,}", f"{r.events_read / r.run.wall_s:,.0f}",
            f"{r.events_read / step_s:,.0f}" if step_s > 0 else "n/a", f"{r.run.wall_s:.1f}", f"{r.peak_mib:,.0f}",
            f"{r.per_thousand_mib:,.1f}", f"{r.run.peak_main_rss_bytes / MIB:,.0f}", str(r.run.peak_processes),
            f"{r.array_bytes / MIB:,.1f}",
        ])  # fmt: skip
    return rows


RESULT_HEADERS = ["", "patients", "in export", "events read", "kept", "events/s", "events/s ehr step", "wall s",
                  "peak RSS MiB", "MiB/1k patients", "main MiB", "procs", "arrays MiB"]  # fmt: skip


LEGEND = (
    "events read: events of cohort patients (kept or left out) + of other patients, from ingest_report.json",
    "kept: events before the index time; events/s: events read over the ingest process's wall time (start-up and",
    "  cache writing included), and over the ehr step's duration in the report; peak RSS: summed over the ingest",
    "  process tree; main: peak RSS of the ingest process alone (the rest is PyHealth's Dask workers); procs: most",
    "  processes in the tree at one poll; arrays: the ehr modality's .npy files in the cache.",
)


def growth(small: Result, large: Result) -> None:
    """The memory-growth figure: peak RSS at the larger size over the smaller, next to the arrays' growth."""
    if not (small.ok and large.ok):
        print("memory growth: not computed (an ingest failed)")
        return
    factor = large.export.patients / small.export.patients
    peak_growth = (large.run.peak_rss_bytes - small.run.peak_rss_bytes) / MIB
    array_growth = (large.array_bytes - small.array_bytes) / MIB
    print(f"memory growth: {factor:.0f}x the patients -> {large.peak_mib / small.peak_mib:.2f}x the peak RSS "
          f"({small.peak_mib:,.0f} -> {large.peak_mib:,.0f} MiB, +{peak_growth:,.0f} MiB); "
          f"the ehr arrays grew +{array_growth:,.1f} MiB "
          f"({small.array_bytes / MIB:,.1f} -> {large.array_bytes / MIB:,.1f} MiB)")  # fmt: skip
    print(f"peak RSS growth beyond the arrays' growth: {peak_growth - array_growth:+,.0f} MiB "
          f"({(peak_growth - array_growth) / (large.export.patients - small.export.patients) * 1000:+,.1f} MiB "
          f"per 1,000 added patients)")  # fmt: skip


def check_counts(results: Sequence[Result]) -> None:
    """Say where an ingest read or kept another number of events than the generator wrote, with its reasons."""
    for r in results:
        if not r.ok:
            continue
        kept = int(r.section["events_before_index"])
        if r.events_read != r.export.events or kept != r.export.events_before_index:
            print(f"note: {r.export.source} at {r.export.patients:,} patients read {r.events_read:,} events "
                  f"(the export holds {r.export.events:,}) and kept {kept:,} (the generator put "
                  f"{r.export.events_before_index:,} before the index times); left out: "
                  f"{r.section.get('events_left_out')}, read problems: {r.section.get('read_problems')}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    clinfuse = Path(sys.executable).with_name("clinfuse")
    if not clinfuse.exists():
        sys.exit(f"{clinfuse} not found: run with the virtualenv's python (.venv/bin/python)")
    header(args, clinfuse)
    started = time.perf_counter()
    with throwaway_workspace("clinfuse-ehr-bench-") as work:
        exports: list[Export] = []
        results: dict[tuple[str, int], Result] = {}
        generate_s: dict[int, float] = {}
        for patients, sources in plan(args).items():
            print(f"\n{rule(f'{patients:,} patients: generate {",".join(sources)}, then ingest each')}", flush=True)
            written, generate_s[patients] = write_exports(patients, sources, args.seed, work / "data" / f"n{patients}")
            exports += written
            for export in written:
                result = measure(export, clinfuse)
                results[(export.source, patients)] = result
                print(f"{export.source}: exit {result.run.returncode}, {result.run.wall_s:.1f} s, "
                      f"peak RSS {result.peak_mib:,.0f} MiB", flush=True)  # fmt: skip

        print(f"\n{rule('exports (generated in this run)')}")
        print(table(["export", "events", "before index", "MiB on disk", "generate s", "write s"],
                    export_rows(exports, generate_s)))  # fmt: skip

        small, large = results[("omop", args.patients // 10)], results[("omop", args.patients)]
        print(f"\n{rule('OMOP ingest at two sizes')}")
        print(table(RESULT_HEADERS, result_rows([small, large], lambda r: "omop")))
        growth(small, large)

        print(f"\n{rule(f'per source at {args.other_patients:,} patients (the same events)')}")
        per_source = [results[(s, args.other_patients)] for s in args.sources]
        print(table(RESULT_HEADERS, result_rows(per_source, lambda r: r.export.source)))
        print("\n" + "\n".join(LEGEND))
        check_counts(list(results.values()))
        print(f"benchmark run time {time.perf_counter() - started:.0f} s")
        if args.keep:
            kept = Path(tempfile.mkdtemp(prefix="clinfuse-ehr-bench-kept-"))
            shutil.move(work / "data", kept / "data")
            print(f"kept exports, configs, caches and ingest logs in {kept / 'data'}")
        failed = [r for r in results.values() if not r.ok]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
