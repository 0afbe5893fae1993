"""Batch-scoring throughput: patients/s with 1 and 2 Dask workers, cold (from raw files) and warm (from the
scoring feature cache), the overhead of --explain, what is serial and what scales, and a projection to 8 and 64
workers. Every figure is measured in this one run; compare the ratios.

Each configuration is one real `clinfuse score` job (the frozen ingest, chunked scoring, atomic chunk files and
assembly included), on the same cohort and registered model:
  cold - the scoring feature cache is deleted first: DICOM decoding and the chunks run in this process, and on
         the workers once they are ready (PyHealth EHR and tables run here);
  warm - the cache from the previous job is current (`ingest` only verifies fingerprints), then scoring;
  --workers 2 - local workers start only when the measured rest of the work exceeds their start-up
         (DaskWorkers.map_adaptive): a small job runs in this process, as it should;
  a running 2-worker cluster - `--scheduler` to a LocalCluster of 2 worker processes the benchmark started
         beforehand (start-up measured apart) and used once untimed (its workers then hold the imports and the
         model, as a long-running cluster's do): the cluster takes the decoding and the chunks at once, as on a
         hospital's Kubernetes cluster.
Then one core's rate of the chunk scorer itself (`score_chunk`, model loaded, cache warm, in this process) and
the start-up of a 2-worker local cluster. The projection to 8 and 64 workers takes the cold 1-worker job apart
(the ingest report's per-modality durations): DICOM headers and decoding and the chunks scale with workers; the
other kinds' ingest (tables, EHR through PyHealth) and the rest of the ingest run in the client. A fit of
T(n) = serial + parallel / n to two noisy timings would not do: on 2 cores the 2-worker run shares them with
the client.

Without --model/--config it builds its own: a demo cohort, ingest, a 2-epoch CPU training run, evaluation
and registration, in a temporary CLINFUSE_HOME (a few minutes).

    .venv/bin/python tests/benchmarks/scoring_benchmark.py [--patients 600] [--model REF --config cohort.yaml]
"""

from __future__ import annotations

import argparse
import json
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


def _job(model: str, config: Path, out: Path, workers: int, explain: bool, raw: bool,
         scheduler: str | None = None) -> tuple[float, float, int]:  # fmt: skip
    """(end-to-end seconds, scoring-phase seconds, patients) of one real scoring job; the scoring phase is what
    follows the ingest (waiting for the workers, the chunks, assembly)."""
    from clinfuse.pipelines.scoring.job import score

    if raw:
        shutil.rmtree(out.with_suffix(".work"), ignore_errors=True)
    started = time.perf_counter()
    summary = score(model, config, out, explain=explain, workers=workers, scheduler=scheduler, progress=False)
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
        start_up, cluster = _running_cluster(2)
        running = cluster.scheduler_address
        _job(model, config, out, 2, False, False, running)  # untimed: a running cluster has imported and loaded
        runs = [("cold, 1 worker", 1, False, True, None), ("warm, 1 worker", 1, False, False, None),
                ("warm, --workers 2", 2, False, False, None), ("cold, --workers 2", 2, False, True, None),
                ("warm, running 2-worker cluster", 2, False, False, running),
                ("warm, running cluster, --explain", 2, True, False, running),
                ("cold, running 2-worker cluster", 2, False, True, running)]  # fmt: skip
        total, scoring, stages = {}, {}, []
        for repeat in range(args.repeats):  # configurations interleaved, the median of the repeats reported
            for label, workers, explain, raw, scheduler in runs:
                elapsed, phase, patients = _job(model, config, out, workers, explain, raw, scheduler)
                total.setdefault(label, []).append(elapsed)
                scoring.setdefault(label, []).append(phase)
                if label == "cold, 1 worker":
                    stages.append(_ingest_stages(out.with_suffix(".work") / "cache", elapsed - phase))
                print(f"round {repeat + 1}: {label:<30} {elapsed:6.1f} s (after the ingest {phase:5.1f} s)", flush=True)
        total = {k: statistics.median(v) for k, v in total.items()}
        scoring = {k: statistics.median(v) for k, v in scoring.items()}
        per_core = _chunk_rate(model, out.with_suffix(".work") / "cache")
        print(f"\ncpu cores: {os.cpu_count()}; patients: {patients}; median of {args.repeats} round(s)")
        print(f"{'configuration':<30} {'end-to-end':>18} {'after the ingest':>22}")
        for label in total:
            print(f"{label:<30} {patients / total[label]:8.1f} patients/s {patients / scoring[label]:10.1f} patients/s")
        cluster.close()
        ratio = {
            "--workers 2 vs 1 worker, warm (end-to-end)": total["warm, 1 worker"] / total["warm, --workers 2"],
            "--workers 2 vs 1 worker, cold (end-to-end)": total["cold, 1 worker"] / total["cold, --workers 2"],
            "running 2-worker cluster vs 1 worker, warm": total["warm, 1 worker"] / total[
                "warm, running 2-worker cluster"],
            "running 2-worker cluster vs 1 worker, cold": total["cold, 1 worker"] / total[
                "cold, running 2-worker cluster"],
            "cold vs warm, 1 worker (end-to-end, slower by)": total["cold, 1 worker"] / total["warm, 1 worker"],
            "--explain overhead, running cluster (after the ingest)": (
                scoring["warm, running cluster, --explain"] / scoring["warm, running 2-worker cluster"]
            ),
        }  # fmt: skip
        for name, value in ratio.items():
            print(f"{name:<55} {value:5.2f}x")
        print(
            f"\nchunk scorer, one core, model loaded, cache warm: {per_core:.0f} patients/s -> "
            f"{8 * per_core:.0f} patients/s per 8 cores if it scales linearly (goal from cache: >= 1,000)"
        )
        print(f"a local cluster of 2 workers, started and torch imported in each: {start_up:.1f} s")
        _project(stages, patients, per_core, scoring["cold, 1 worker"], start_up)


def _ingest_stages(cache: Path, ingest_s: float) -> dict[str, float]:
    """Seconds of one cold ingest by where they run: dicom modalities (headers and decoding: on the workers once
    ready), the other kinds (in the client), and the rest of the ingest (fingerprints, cohort, manifest)."""
    report = json.loads((cache / "ingest_report.json").read_text())["modalities"]
    dicom = sum(m["duration_s"] for m in report.values() if m["kind"] == "dicom")
    other = sum(m["duration_s"] for m in report.values() if m["kind"] != "dicom")
    return {"dicom": dicom, "other": other, "rest": max(0.0, ingest_s - dicom - other)}


def _running_cluster(workers: int):
    """(seconds to start it, with torch imported in each worker; the cluster) of a local cluster of worker
    processes, as `dask scheduler` + `dask worker` would run beside the jobs."""
    from dask.distributed import Client, LocalCluster

    started = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", silence_logs=40)  # fmt: skip
    with Client(cluster) as client:
        client.run(__import__, "torch")
    return time.perf_counter() - started, cluster


def _project(stages: list[dict[str, float]], patients: int, per_core: float, after_ingest: float,
             start_up: float) -> None:  # fmt: skip
    """T(n) on a running cluster of n workers = what runs in the client + (DICOM ingest + chunks at one core) / n."""
    median = {key: statistics.median(stage[key] for stage in stages) for key in stages[0]}
    chunks = patients / per_core
    serial = median["other"] + median["rest"]
    print("\nwhere a cold 1-worker job's time goes (median of the rounds):")
    print(f"  ingest, dicom modalities (headers + decoding; scale with workers) {median['dicom']:7.1f} s")
    print(f"  ingest, other kinds (tables, EHR through PyHealth; in the client)  {median['other']:7.1f} s")
    print(f"  ingest, the rest (fingerprints, cohort table, manifest; client)    {median['rest']:7.1f} s")
    print(f"  after the ingest (workers' start if not ready, chunks, assembly)  {after_ingest:7.1f} s")
    print(f"  of which chunk scoring at one core ({per_core:.0f} patients/s)           {chunks:7.1f} s")
    print(
        f"projection on a running cluster (no start-up), T(n) = {serial:.1f} s in the client + "
        f"({median['dicom']:.1f} s + {chunks:.1f} s) / n:"
    )
    for n in (1, 2, 8, 64):
        t = serial + (median["dicom"] + chunks) / n
        print(
            f"  {n:2d} workers: {t:7.1f} s, {patients / t:7.1f} patients/s cold; from cache "
            f"{n * per_core:8.0f} patients/s"
        )
    print(
        f"local workers (--workers) add their start-up ({start_up:.1f} s here), started only when the measured rest "
        f"exceeds it and overlapping the work that goes on in the client; the client's "
        f"part ({serial:.1f} s) bounds the cold rate at {patients / serial if serial else float('inf'):.0f} "
        f"patients/s whatever the workers"
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
