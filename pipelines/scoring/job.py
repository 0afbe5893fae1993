"""`clinfuse score`: a registered model over a whole cohort, in chunks, resumable, in this process and on Dask
workers once the job is large enough to be worth starting them (or at once on a `--scheduler` cluster).

Layout beside `--out scores.parquet`: `scores.work/cache` (the scoring feature cache, kept: the dashboard
reads images and timelines from it), `scores.work/chunks/chunk-NNNNN.parquet` (one atomically written file
per finished chunk) and `scores.work/job.json` (what the chunks were computed with). A rerun with the same
model, inputs and options keeps the finished chunks and scores only the rest, so a killed run resumes; the
final file is assembled from the chunks in cohort order, then the chunks are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from clinfuse.pipelines.registry.store import ModelRegistry, ResolvedModel
from clinfuse.pipelines.scoring.chunk import ChunkTask, score_chunk
from clinfuse.pipelines.scoring.frozen_ingest import ingest_for_scoring, scoring_config
from clinfuse.pipelines.scoring.results import METADATA_KEY
from clinfuse.platform.dask_workers import DaskWorkers
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest.runner import worker_modules
from tqdm import tqdm

CHUNK_SIZE = 100


@dataclass(frozen=True)
class ScoreSummary:
    out: Path
    patients: int
    scored: int
    errors: int
    chunks_reused: int
    chunks_scored: int
    ingest_s: float  # building or verifying the scoring feature cache
    scoring_s: float  # Dask cluster start-up, chunk scoring and writing, assembly


def score(
    model_ref: str,
    config: Path,
    out: Path,
    explain: bool = False,
    workers: int = 1,
    scheduler: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: bool | None = None,
) -> ScoreSummary:
    progress = sys.stderr.isatty() if progress is None else progress
    if out.suffix != ".parquet":
        raise ClinFuseError(f"--out {out} must end in .parquet", "e.g. --out scores.parquet")
    started = time.perf_counter()
    resolved = ModelRegistry().resolve(model_ref)
    fitted = scoring_config(config, resolved.path)  # a config that does not fit the model fails before workers start
    work = out.with_suffix(".work")
    preload = (*worker_modules(fitted), score_chunk.__module__)
    with DaskWorkers(workers, scheduler, preload=preload) as cluster:  # local workers start when worth it
        return _score_on(cluster, resolved, config, out, work, explain, chunk_size, progress, started)


def _score_on(cluster: DaskWorkers, resolved: ResolvedModel, config: Path, out: Path, work: Path, explain: bool,
              chunk_size: int, progress: bool, started: float) -> ScoreSummary:  # fmt: skip
    manifest_sha256 = resolved.manifest_sha256
    cache = ingest_for_scoring(config, resolved.path, work / "cache", workers=cluster, progress=progress)
    patients = len(cache.cohort)
    ingested = time.perf_counter()
    job = {
        "model_name": resolved.name,
        "model_version": resolved.version,
        "manifest_sha256": manifest_sha256,
        "cache_fingerprints": cache.manifest["fingerprints"],
        "explain": explain,
        "chunk_size": chunk_size,
        "patients": patients,
        "scored_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
    }
    chunks_dir = work / "chunks"
    job = _resume_or_start(work / "job.json", chunks_dir, job)
    starts = range(0, patients, chunk_size)
    pending = [s for s in starts if not _chunk_path(chunks_dir, s).is_file()]
    tasks = {
        start: ChunkTask(
            str(resolved.path),
            manifest_sha256,
            str(cache.path.resolve()),
            tuple(range(start, min(start + chunk_size, patients))),
            explain,
            resolved.name,
            resolved.version,
            job["scored_at"],
        )  # fmt: skip
        for start in pending
    }
    failed = _run_chunks(tasks, chunks_dir, cluster, progress, total=len(starts), done=len(starts) - len(pending))
    if failed:
        raise ClinFuseError(
            f"{len(failed)} chunk(s) of {len(starts)} failed ({failed[0]}); the other chunks are saved",
            "rerun the same command to retry only the failed chunks",
        )
    table = pd.concat([pd.read_parquet(_chunk_path(chunks_dir, s)) for s in starts], ignore_index=True)
    metadata = {
        "model_name": resolved.name,
        "model_version": resolved.version,
        "model_aliases": list(resolved.aliases),
        "model_dir": str(resolved.path),
        "manifest_sha256": manifest_sha256,
        "cache": str(cache.path.resolve()),
        "modalities": cache.modalities,
        "explained": explain,
        "chunk_size": chunk_size,
        "scored_at": job["scored_at"],
    }
    _write_scores(table, out, metadata)
    shutil.rmtree(chunks_dir)
    (work / "job.json").unlink()
    errors = int((table["error"] != "").sum())
    return ScoreSummary(out, patients, patients - errors, errors, len(starts) - len(pending), len(pending),
                        ingest_s=ingested - started, scoring_s=time.perf_counter() - ingested)  # fmt: skip


def _resume_or_start(job_file: Path, chunks_dir: Path, job: dict) -> dict:
    """Keep finished chunks only when they were computed with the same model, inputs and options."""
    if job_file.is_file():
        previous = json.loads(job_file.read_text())
        if previous | {"scored_at": job["scored_at"]} == job:  # the same job, started earlier
            return previous
    shutil.rmtree(chunks_dir, ignore_errors=True)
    chunks_dir.mkdir(parents=True)
    _replace_atomically(job_file, lambda path: path.write_text(json.dumps(job, indent=1)))
    return job


def _run_chunks(tasks: dict[int, ChunkTask], chunks_dir: Path, cluster: DaskWorkers, progress: bool, total: int,
                done: int) -> list[str]:  # fmt: skip
    """Score the pending chunks in order, saving each as it comes back; returns the failures' descriptions. They
    run in this process, and on the cluster's workers once starting them is worth it (`DaskWorkers.map_adaptive`:
    a small job never waits for workers to start, a `--scheduler` cluster takes the chunks at once)."""
    failed: list[str] = []
    starts = list(tasks)
    outcomes = cluster.map_adaptive(_ChunkScorer(), [tasks[start] for start in starts])
    with tqdm(total=total, initial=done, unit="chunk", desc="scoring", disable=not progress) as bar:
        for start, outcome in zip(starts, outcomes, strict=True):
            try:
                if isinstance(outcome, BaseException):
                    raise outcome
                _replace_atomically(_chunk_path(chunks_dir, start), partial(outcome.to_parquet, index=False))
            except Exception as exc:  # a broken chunk, a lost worker, a failed write: the others are still saved
                failed.append(f"chunk at row {start}: {type(exc).__name__}: {str(exc)[:200]}")
            bar.update(1)
    return failed


class _ChunkScorer:
    """score_chunk returning its failure instead of raising it, so that a broken chunk, or one whose worker died,
    fails alone while the other chunks are saved."""

    def __call__(self, task: ChunkTask) -> object:
        try:
            return score_chunk(task)
        except Exception as exc:  # noqa: BLE001 - reported with the chunk by _run_chunks
            return exc

    @staticmethod
    def on_lost(task: ChunkTask, error: BaseException) -> BaseException:
        return error


def _chunk_path(chunks_dir: Path, start: int) -> Path:
    return chunks_dir / f"chunk-{start:06d}.parquet"


def _replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Write to a temporary sibling, then rename over `path`: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(temporary)
    os.replace(temporary, path)


def _write_scores(table: pd.DataFrame, out: Path, metadata: dict) -> None:
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), METADATA_KEY: json.dumps(metadata)})
    _replace_atomically(out, lambda path: pq.write_table(arrow, path))
