"""Batch-scoring throughput: patients/s with 1 and 2 Dask workers, from raw files vs already-ingested
features, and the overhead of --explain. Every figure is measured in this one run; compare the ratios.

Each configuration is one real `clinfuse score` job (Dask LocalCluster start-up, chunked scoring, atomic
chunk files and assembly included), on the same cohort and registered model:
  raw    - the scoring feature cache is deleted first: DICOM decoding, PyHealth EHR, tables, then scoring;
  cached - the cache from the previous job is current (`ingest` only verifies fingerprints), then scoring.

Without --model/--config it builds its own: a demo cohort, ingest, a 2-epoch CPU training run, evaluation
and registration, in a temporary CLINFUSE_HOME (a few minutes).

    .venv/bin/python tests/benchmarks/scoring_benchmark.py [--patients 600] [--model REF --config cohort.yaml]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _prepare(workdir: Path, patients: int) -> tuple[str, Path]:
    from clinfuse.pipelines.evaluation.evaluate import evaluate
    from clinfuse.pipelines.registry.store import ModelRegistry
    from clinfuse.pipelines.training.train import TrainSettings, train
    from clinfuse.platform.demo import generate_demo_cohort
    from clinfuse.platform.ingest import ingest

    cohort = workdir / "cohort"
    generate_demo_cohort(cohort, patients=patients, seed=5)
    ingest(cohort / "cohort.yaml", workdir / "cache")
    train(workdir / "cache", workdir / "run", TrainSettings(max_epochs=2, accelerator="cpu", patience=2))
    evaluate(workdir / "run", resamples=200)
    ModelRegistry().register(workdir / "run", "bench", alias="production")
    return "models:/bench@production", cohort / "cohort.yaml"


def _job(model: str, config: Path, out: Path, workers: int, explain: bool, raw: bool) -> tuple[float, float, int]:
    """(end-to-end seconds, scoring-phase seconds, patients) of one real scoring job."""
    from clinfuse.pipelines.scoring.job import score

    if raw:
        shutil.rmtree(out.with_suffix(".work"), ignore_errors=True)
    started = time.perf_counter()
    summary = score(model, config, out, explain=explain, workers=workers, progress=False)
    return time.perf_counter() - started, summary.scoring_s, summary.patients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=600)
    parser.add_argument("--model")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clinfuse-score-bench-") as scratch:
        workdir = Path(scratch)
        if args.model and args.config:
            model, config = args.model, args.config
        else:
            os.environ["CLINFUSE_HOME"] = str(workdir / "home")
            print(f"preparing a {args.patients}-patient cohort and a registered model ...", flush=True)
            model, config = _prepare(workdir, args.patients)
        out = workdir / "scores.parquet"
        runs = [("raw, 1 worker", 1, False, True), ("cached, 1 worker", 1, False, False),
                ("cached, 2 workers", 2, False, False), ("cached, 2 workers, --explain", 2, True, False),
                ("raw, 2 workers", 2, False, True)]  # fmt: skip
        total, scoring = {}, {}
        for repeat in range(args.repeats):  # configurations interleaved, the median of the repeats reported
            for label, workers, explain, raw in runs:
                elapsed, phase, patients = _job(model, config, out, workers, explain, raw)
                total.setdefault(label, []).append(elapsed)
                scoring.setdefault(label, []).append(phase)
                print(f"round {repeat + 1}: {label:<30} {elapsed:6.1f} s (scoring phase {phase:5.1f} s)", flush=True)
        total = {k: statistics.median(v) for k, v in total.items()}
        scoring = {k: statistics.median(v) for k, v in scoring.items()}
        print(f"\ncpu cores: {os.cpu_count()}; patients: {patients}; median of {args.repeats} round(s)")
        print(f"{'configuration':<30} {'end-to-end':>18} {'scoring phase':>22}")
        for label in total:
            print(f"{label:<30} {patients / total[label]:8.1f} patients/s {patients / scoring[label]:10.1f} patients/s")
        ratio = {
            "2 vs 1 worker, cached (scoring phase)": scoring["cached, 1 worker"] / scoring["cached, 2 workers"],
            "2 vs 1 worker, from raw files (end-to-end)": total["raw, 1 worker"] / total["raw, 2 workers"],
            "raw files vs cached, 1 worker (end-to-end, slower by)": total["raw, 1 worker"] / total["cached, 1 worker"],
            "--explain overhead, 2 workers (scoring phase)": (
                scoring["cached, 2 workers, --explain"] / scoring["cached, 2 workers"]
            ),
        }
        for name, value in ratio.items():
            print(f"{name:<55} {value:5.2f}x")


if __name__ == "__main__":
    main()
