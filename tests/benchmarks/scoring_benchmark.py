"""Batch-scoring throughput: patients/s with 1 and 2 Dask workers, cold (from raw files) and warm (from the
scoring feature cache), the overhead of --explain, what is serial and what scales, and a projection to 8 and 64
workers. Every figure is measured in this one run; compare the ratios.

Each configuration is one real `clinfuse score` job (Dask LocalCluster start-up, the frozen ingest, chunked
scoring, atomic chunk files and assembly included), on the same cohort and registered model:
  cold - the scoring feature cache is deleted first: the workers start while this process ingests; they take
         over the DICOM decoding once ready (PyHealth EHR and tables run here), then score the chunks;
  warm - the cache from the previous job is current (`ingest` only verifies fingerprints), then scoring.
Then one core's rate of the chunk scorer itself (`score_chunk`, model loaded, cache warm), in this process: the
part that scales with workers. The projection fits T(n) = serial + parallel / n to the 1- and 2-worker times.

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
    """(end-to-end seconds, scoring-phase seconds, patients) of one real scoring job; the scoring phase is what
    follows the ingest (waiting for the workers, the chunks, assembly)."""
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
        runs = [("cold, 1 worker", 1, False, True), ("warm, 1 worker", 1, False, False),
                ("warm, 2 workers", 2, False, False), ("warm, 2 workers, --explain", 2, True, False),
                ("cold, 2 workers", 2, False, True)]  # fmt: skip
        total, scoring = {}, {}
        for repeat in range(args.repeats):  # configurations interleaved, the median of the repeats reported
            for label, workers, explain, raw in runs:
                elapsed, phase, patients = _job(model, config, out, workers, explain, raw)
                total.setdefault(label, []).append(elapsed)
                scoring.setdefault(label, []).append(phase)
                print(f"round {repeat + 1}: {label:<30} {elapsed:6.1f} s (scoring phase {phase:5.1f} s)", flush=True)
        total = {k: statistics.median(v) for k, v in total.items()}
        scoring = {k: statistics.median(v) for k, v in scoring.items()}
        per_core = _chunk_rate(model, out.with_suffix(".work") / "cache")
        print(f"\ncpu cores: {os.cpu_count()}; patients: {patients}; median of {args.repeats} round(s)")
        print(f"{'configuration':<30} {'end-to-end':>18} {'after the ingest':>22}")
        for label in total:
            print(f"{label:<30} {patients / total[label]:8.1f} patients/s {patients / scoring[label]:10.1f} patients/s")
        ratio = {
            "2 vs 1 worker, warm (end-to-end)": total["warm, 1 worker"] / total["warm, 2 workers"],
            "2 vs 1 worker, cold (end-to-end)": total["cold, 1 worker"] / total["cold, 2 workers"],
            "cold vs warm, 1 worker (end-to-end, slower by)": total["cold, 1 worker"] / total["warm, 1 worker"],
            "--explain overhead, 2 workers (after the ingest)": (
                scoring["warm, 2 workers, --explain"] / scoring["warm, 2 workers"]
            ),
        }
        for name, value in ratio.items():
            print(f"{name:<55} {value:5.2f}x")
        print(
            f"\nchunk scorer, one core, model loaded, cache warm: {per_core:.0f} patients/s -> "
            f"{8 * per_core:.0f} patients/s per 8 cores if it scales linearly (goal from cache: >= 1,000)"
        )
        print("\nprojection, T(n) = serial + parallel / n fitted to the 1- and 2-worker end-to-end times:")
        for kind in ("cold", "warm"):
            one, two = total[f"{kind}, 1 worker"], total[f"{kind}, 2 workers"]
            parallel = max(0.0, 2 * (one - two))
            serial = one - parallel
            times = {n: serial + parallel / n for n in (8, 64)}
            projected = ", ".join(f"{n} workers {t:6.1f} s ({patients / t:6.1f} patients/s)" for n, t in times.items())
            print(f"  {kind}: serial {serial:6.1f} s, parallel {parallel:6.1f} s at 1 worker; {projected}")
        print(
            "  (on 2 cores the 2-worker run also shares its cores with this process: the serial part is an upper bound)"
        )


def _chunk_rate(model: str, cache: Path, chunk: int = 100, rounds: int = 3) -> float:
    """Patients/s of `score_chunk` in this process on one torch thread, after one untimed chunk loads the model."""
    import torch
    from clinfuse.pipelines.registry.store import ModelRegistry
    from clinfuse.pipelines.scoring.chunk import ChunkTask, score_chunk
    from clinfuse.platform.cache import FeatureCache

    torch.set_num_threads(1)
    resolved = ModelRegistry().resolve(model)
    patients = len(FeatureCache(cache).cohort)
    rows = [tuple(range(start, min(start + chunk, patients))) for start in range(0, patients, chunk)]

    def task(rows_of_chunk: tuple[int, ...]) -> ChunkTask:
        return ChunkTask(str(resolved.path), resolved.manifest_sha256, str(cache.resolve()), rows_of_chunk, False,
                         resolved.name, resolved.version, "benchmark")  # fmt: skip

    score_chunk(task(rows[0]))
    started, scored = time.perf_counter(), 0
    for _ in range(rounds):
        for rows_of_chunk in rows:
            scored += len(score_chunk(task(rows_of_chunk)))
    return scored / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
