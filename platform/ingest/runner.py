"""`clinfuse ingest`: cohort config in, complete feature cache out (atomically), reusing what is unchanged.

A modality whose inputs, config, cohort and code are unchanged is copied from the previous cache; a changed
one is rebuilt (DICOM images reuse decoded pixels per file digest). The new cache is assembled in a staging
folder beside `--out` (`clinfuse.platform.staging`; the ingesters' scratch space lives inside it) and swapped
in only when complete, so an interrupted ingest never leaves a cache that looks complete, and the leftovers of
a killed one are swept by the next. A cohort whose ids match no modality fails before anything is swapped in.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from clinfuse.platform.cache.feature_cache import (
    CACHE_FORMAT,
    COHORT_FILE,
    MANIFEST_FILE,
    MODALITIES_DIR,
    REPORT_FILE,
    FeatureCache,
    describe_file,
)
from clinfuse.platform.config import CohortConfig, load_cohort_config
from clinfuse.platform.dask_workers import DaskWorkers
from clinfuse.platform.errors import ClinFuseError
from clinfuse.platform.ingest.cohort_table import SCORING_SPLIT, SPLITS, Cohort, load_cohort
from clinfuse.platform.ingest.context import IngestContext
from clinfuse.platform.ingest.fingerprint import code_version, combine, file_digest, kind_code_version, tree_digests
from clinfuse.platform.kinds import get_kind
from clinfuse.platform.security import Pseudonymiser, load_pseudonym_key
from clinfuse.platform.staging import LOCK_FILE, StagedFolder, sweep_leftovers

SCRATCH_DIR = ".scratch"  # inside the staging folder: swept with it, never beside --out
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class NoPatientData(ClinFuseError):
    """No patient of the cohort table has data in any modality (online scoring answers such rows with an error)."""


@dataclass(frozen=True)
class IngestResult:
    cache: Path
    rebuilt: list[str]
    reused: list[str]
    up_to_date: bool


def ingest(
    config_path: Path, out: Path, workers: int | None = None, progress: bool = False, scheduler: str | None = None
) -> IngestResult:
    """Build or refresh the feature cache at `out` from the cohort config at `config_path` (for training).

    Decoding runs on up to `workers` local worker processes (default: one per core), or on the Dask cluster
    at `scheduler`, whose workers must see the input files at the same paths."""
    config = load_cohort_config(config_path)
    with DaskWorkers(workers, scheduler, preload=worker_modules(config)) as parallel:
        return ingest_config(config, out, workers=parallel, progress=progress)


def worker_modules(config: CohortConfig) -> tuple[str, ...]:
    """What the config's kinds want imported on a Dask worker before it takes their work."""
    return tuple(dict.fromkeys(name for m in config.modalities for name in get_kind(m.kind).worker_modules))


def ingest_config(
    config: CohortConfig,
    out: Path,
    workers: DaskWorkers | None = None,
    progress: bool = False,
    frozen_alignments: dict[str, dict] | None = None,
) -> IngestResult:
    """Build or refresh the feature cache at `out` from a loaded cohort config.

    With `frozen_alignments` (scoring) the cohort needs no labels, every patient is in the split `score`,
    and each modality applies the given alignment (gene panel, vocabulary, normalisation) instead of
    fitting one. A full disk (or quota) anywhere on the way is one error; the previous cache stays as it was.
    """
    try:
        return _ingest(config, out, workers or DaskWorkers(1), progress, frozen_alignments)
    except Exception as exc:
        full = _disk_full(exc)
        if full is None:
            raise
        code, filename = full
        elsewhere = filename and not Path(filename).is_relative_to(out.parent)
        raise ClinFuseError(
            f"the disk is full while writing the feature cache in {out.parent} ({os.strerror(code)}"
            + (f": {filename}" if elsewhere else "")
            + "); the previous cache is untouched",
            "free space there (the new cache needs about as much as the previous one), or choose an --out "
            "on a disk with room",
        ) from None


def _ingest(
    config: CohortConfig,
    out: Path,
    workers: DaskWorkers,
    progress: bool,
    frozen_alignments: dict[str, dict] | None,
) -> IngestResult:
    started = time.perf_counter()
    scoring = frozen_alignments is not None
    pseudonymise = Pseudonymiser(load_pseudonym_key() if config.pseudonymise_ids else None, config.pseudonymise_ids)
    cohort = load_cohort(config, scoring=scoring)
    fingerprints, input_digests = _fingerprints(config, pseudonymise, frozen_alignments)
    previous = _previous_manifest(out)
    if previous and previous["fingerprints"] == fingerprints:
        sweep_leftovers(out)
        return IngestResult(out, rebuilt=[], reused=[m.name for m in config.modalities], up_to_date=True)

    folder = StagedFolder(out)  # sweeps dead writers' leftovers; removes its own folder on any exception
    with folder as staging:
        scratch = staging / SCRATCH_DIR
        scratch.mkdir()
        report, cohort_table, rebuilt, reused = _build(
            config, cohort, fingerprints, input_digests, previous, out, staging, scratch, pseudonymise,
            workers, progress, frozen_alignments or {},
        )  # fmt: skip
        shutil.rmtree(scratch)
        report["warnings"] = _check_presence(config, cohort_table, report["modalities"], scoring)
        report["duration_s"] = round(time.perf_counter() - started, 1)
        cohort_table.to_parquet(staging / COHORT_FILE, index=False)
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=1))
        _write_manifest(staging, config, fingerprints)
        folder.commit()
    FeatureCache(out)  # verify what was written
    return IngestResult(out, rebuilt=rebuilt, reused=reused, up_to_date=False)


def _build(
    config: CohortConfig,
    cohort: Cohort,
    fingerprints: dict,
    input_digests: dict[str, dict[str, str]],
    previous: dict | None,
    out: Path,
    staging: Path,
    scratch: Path,
    pseudonymise: Pseudonymiser,
    workers: DaskWorkers,
    progress: bool,
    frozen_alignments: dict[str, dict],
) -> tuple[dict, pd.DataFrame, list[str], list[str]]:
    table = cohort.table
    cohort_table = pd.DataFrame({"patient": [pseudonymise(pid) for pid in table["patient_id"]]})
    for column in ("label", "split", "sex", "age"):
        if column in table:
            cohort_table[column] = table[column].to_numpy()
    previous_report = json.loads((out / REPORT_FILE).read_text()) if previous else {}
    previous_cohort = pd.read_parquet(out / COHORT_FILE) if previous else None
    modality_reports, rebuilt, reused = {}, [], []
    for modality in config.modalities:
        target = staging / MODALITIES_DIR / modality.name
        same = (
            bool(previous)
            and previous["fingerprints"]["modalities"].get(modality.name) == fingerprints["modalities"][modality.name]
            and previous["fingerprints"]["cohort"] == fingerprints["cohort"]
        )
        if same and previous_cohort is not None and f"row_{modality.name}" in previous_cohort:
            shutil.copytree(out / MODALITIES_DIR / modality.name, target, copy_function=_link_or_copy)
            rows = previous_cohort[f"row_{modality.name}"].to_numpy()
            issues = previous_cohort[f"issue_{modality.name}"].to_numpy()
            modality_reports[modality.name] = {**previous_report["modalities"][modality.name], "reused": True}
            reused.append(modality.name)
        else:
            previous_dir = out / MODALITIES_DIR / modality.name if previous else None
            context = IngestContext(
                pseudonymise=pseudonymise,
                scratch=scratch,
                previous=previous_dir if previous_dir and previous_dir.exists() else None,
                workers=workers,
                progress=progress,
                input_digests=input_digests[modality.name],
                alignment=frozen_alignments.get(modality.name),
            )
            modality_started = time.perf_counter()
            output = get_kind(modality.kind).ingest(modality, cohort, target, context)
            output.report["duration_s"] = round(time.perf_counter() - modality_started, 1)
            row_of = {pid: i for i, pid in enumerate(output.present_ids)}
            rows = table["patient_id"].map(lambda pid, r=row_of: r.get(pid, -1)).to_numpy()
            issues = table["patient_id"].map(lambda pid, i=output.patient_issues: i.get(pid, "")).to_numpy()
            modality_reports[modality.name] = {"kind": modality.kind, "reused": False, **output.report}
            rebuilt.append(modality.name)
        cohort_table[f"present_{modality.name}"] = rows >= 0
        cohort_table[f"row_{modality.name}"] = rows
        cohort_table[f"issue_{modality.name}"] = issues  # why a patient's data was unusable ('' if fine/absent)
    return _report(config, cohort_table, modality_reports, pseudonymise), cohort_table, rebuilt, reused


def _check_presence(config: CohortConfig, cohort_table: pd.DataFrame, reports: dict, scoring: bool) -> list[str]:
    """Fail now, not after training, when the ids of the cohort table and of the modalities do not meet.

    No patient with any modality is always an error. A modality with no patient is an error for training (its
    branch could not be fitted: `train` failed late) and a warning for scoring (a batch may lack a modality).
    """
    empty = {
        m.name: get_kind(m.kind).why_absent(reports[m.name])
        for m in config.modalities
        if not cohort_table[f"present_{m.name}"].any()
    }
    id_column = config.cohort.patient_id
    if len(empty) == len(config.modalities):
        raise NoPatientData(
            f"no patient of the cohort table ({len(cohort_table)} patients) has data in any modality ("
            + "; ".join(f"{name}: {why}" for name, why in empty.items())
            + "); nothing was written",
            f"make the patient ids in the modality files match the cohort table's '{id_column}' column "
            "(same id column, same format)",
        )
    warnings = [f"modality '{name}' has no patient of the cohort table ({why})" for name, why in empty.items()]
    if warnings and not scoring:
        raise ClinFuseError(
            warnings[0] + "; nothing was written",
            f"make its patient ids match the cohort table's '{id_column}' column, or remove it from the config",
        )
    return warnings


def _disk_full(exc: BaseException) -> tuple[int, str | None] | None:
    """(errno, file) of the ENOSPC/EDQUOT behind `exc`, else None. Libraries wrap it: as the cause, or only in
    their message (polars, under PyHealth, raises its own errors with the OS message in the text)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in _DISK_FULL:
            return current.errno, str(current.filename) if current.filename else None
        for code in _DISK_FULL:
            if os.strerror(code) in str(current):
                return code, None
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _report(config: CohortConfig, cohort_table: pd.DataFrame, modalities: dict, pseudonymise: Pseudonymiser) -> dict:
    names = [m.name for m in config.modalities]
    patterns = cohort_table[[f"present_{n}" for n in names]].apply(
        lambda row: "+".join(n for n in names if row[f"present_{n}"]) or "none", axis=1
    )
    splits = {
        split: {"n": int((cohort_table["split"] == split).sum()),
                "positives": int(cohort_table.loc[cohort_table["split"] == split, "label"].sum())}
        for split in (*SPLITS, SCORING_SPLIT)
        if (cohort_table["split"] == split).any()
    }  # fmt: skip
    return {
        "cohort": {"name": config.name, "patients": len(cohort_table), "positives": int(cohort_table["label"].sum()),
                   "splits": splits},
        "pseudonymised_ids": pseudonymise.enabled,
        "presence_patterns": patterns.value_counts().to_dict(),
        "modalities": modalities,
    }  # fmt: skip


def _fingerprints(
    config: CohortConfig, pseudonymise: Pseudonymiser, frozen_alignments: dict[str, dict] | None
) -> tuple[dict, dict[str, dict[str, str]]]:
    """The cache's fingerprints, and per modality the digest of each input file keyed by its path (the
    ingesters reuse them instead of hashing the same files again)."""
    # Fingerprints cover content, not location: moving the data folder does not rebuild the cache.
    cohort = combine(
        file_digest(config.cohort.path),
        config.cohort.model_dump(mode="json", exclude={"path"}),
        config.split.model_dump(mode="json"),
        pseudonymise.key_fingerprint(),
        code_version(),
        frozen_alignments is not None,  # a scoring cache is never mistaken for a training one
    )
    modalities, digests = {}, {}
    for modality in config.modalities:
        listed = modality.listed_inputs()
        inputs = tree_digests(modality.path) if listed is None else {
            str(path.relative_to(modality.path)): file_digest(path) for path in listed if path.is_file()
        }  # fmt: skip
        extra = modality.extra_paths()
        modalities[modality.name] = combine(
            modality.model_dump(mode="json", exclude={"path", *modality.path_fields}),
            inputs,
            *[file_digest(path) if path.is_file() else tree_digests(path) for path in extra.values()],
            kind_code_version(get_kind(modality.kind)),
            (frozen_alignments or {}).get(modality.name),
        )
        base = modality.path if modality.path.is_dir() else modality.path.parent
        digests[modality.name] = {str(base / relative): digest for relative, digest in inputs.items()}
    return {"cohort": cohort, "modalities": modalities, "code_version": code_version()}, digests


def _previous_manifest(out: Path) -> dict | None:
    try:
        FeatureCache(out)
    except ClinFuseError:
        if out.exists() and any(out.iterdir()) and not (out / MANIFEST_FILE).exists():
            raise ClinFuseError(
                f"--out {out} exists and is not a ClinFuse feature cache", "choose an empty or new folder"
            ) from None
        return None
    return json.loads((out / MANIFEST_FILE).read_text())


def _write_manifest(staging: Path, config: CohortConfig, fingerprints: dict) -> None:
    files = {
        str(p.relative_to(staging)): describe_file(p)
        for p in sorted(staging.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }
    manifest = {
        "format": CACHE_FORMAT,
        "complete": True,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "cohort_name": config.name,
        "fingerprints": fingerprints,
        "modalities": {m.name: {"kind": m.kind, "config": m.model_dump(mode="json")} for m in config.modalities},
        "files": files,
    }
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
